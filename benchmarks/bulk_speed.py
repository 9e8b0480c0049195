"""Bulk OCR: `digitocr read DIR --recursive --jobs N --output FILE` on thousands of generated photos.

    python benchmarks/make_ocr_set.py --out /tmp/bulk_set --seed 5 --n 10000
    python benchmarks/bulk_speed.py --set /tmp/bulk_set --jobs 1,2 --model best

For each --jobs value, reads the whole set into a fresh JSON-lines file and reports images/s (wall time of
the command, start-up and model loading included), errors and exact-match accuracy against the set's
truth.json. Then a resume drill: the run with the most jobs is killed (SIGKILL) part-way, restarted with the
same command until it finishes, and its output is checked: one good line per image, the same texts as the
uninterrupted run's. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

KILL_AFTER = 0.4  # the resume drill kills the run after this fraction of the uninterrupted run's time


def read_command(set_dir: Path, output: Path, jobs: int, model: str) -> list[str]:
    return [sys.executable, "-m", "digitocr", "read", str(set_dir), "--recursive", "--jobs", str(jobs),
            "--output", str(output), "--model", model]


def run_timed(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t0, proc.returncode


def results(output: Path) -> dict[str, dict]:
    """file name -> its last good record; errors and torn lines are left out."""
    out = {}
    for line in output.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "error" not in record:
            out[Path(record["file"]).name] = record
    return out


def accuracy(found: dict[str, dict], truth: list[dict]) -> float:
    right = sum(found.get(t["file"], {}).get("text") == t["text"] for t in truth)
    return right / len(truth)


def resume_drill(cmd: list[str], output: Path, kill_after_s: float) -> tuple[int, float]:
    """Kill the run at kill_after_s, then rerun it to the end: (lines written before the kill, rerun s)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(kill_after_s)
    os.killpg(proc.pid, signal.SIGKILL)  # the workers too: nothing gets to flush or clean up
    proc.wait()
    before = len(results(output))
    seconds, code = run_timed(cmd)
    if code not in (0, 1):
        raise SystemExit(f"the resumed run failed with exit code {code}")
    return before, seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", required=True, help="a folder made by benchmarks/make_ocr_set.py")
    p.add_argument("--jobs", default="1,2", help="comma-separated --jobs values (default: 1,2)")
    p.add_argument("--model", default="best", help="(default: best)")
    p.add_argument("--out-dir", default="runs/bulk", help="where the JSON-lines outputs go (default: runs/bulk)")
    p.add_argument("--no-drill", action="store_true", help="skip the kill-and-resume drill")
    args = p.parse_args()

    set_dir, out_dir = Path(args.set), Path(args.out_dir)
    truth = json.loads((set_dir / "truth.json").read_text())["images"]
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    rows, reference, slowest = [], None, 0.0
    for jobs in (int(j) for j in args.jobs.split(",")):
        output = out_dir / f"jobs{jobs}.jsonl"
        output.unlink(missing_ok=True)
        seconds, code = run_timed(read_command(set_dir, output, jobs, args.model))
        found = results(output)
        lines = len(output.read_text().splitlines())
        rows.append((jobs, seconds, len(found), lines - len(found), code, accuracy(found, truth)))
        reference, slowest = found, max(slowest, seconds)

    print(f"\n{len(truth):,} images from `{set_dir}`, `--model {args.model}`; {platform.node() or 'this machine'}: "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print("| --jobs | wall s | images/s | good | errors | exit | exact match |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for jobs, seconds, good, errors, code, acc in rows:
        print(f"| {jobs} | {seconds:.1f} | {len(truth) / seconds:,.1f} | {good:,} | {errors} | {code} | {acc:.2%} |")

    if not args.no_drill:
        jobs = rows[-1][0]
        output = out_dir / f"drill-jobs{jobs}.jsonl"
        output.unlink(missing_ok=True)
        kill_s = KILL_AFTER * rows[-1][1]
        before, rerun_s = resume_drill(read_command(set_dir, output, jobs, args.model), output, kill_s)
        found = results(output)
        records = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
        good_lines = sum("error" not in r for r in records)
        same = sum(found[name]["text"] == reference[name]["text"] for name in found if name in reference)
        print(f"\nResume drill (--jobs {jobs}): SIGKILL after {kill_s:.1f} s with {before:,} images written; "
              f"the same command then finished in {rerun_s:.1f} s. Output: {good_lines:,} good lines for "
              f"{len(found):,} distinct images (of {len(truth):,}); {same:,} texts equal the uninterrupted run's.")
        if good_lines != len(found) or len(found) != len(reference) or same != len(reference):
            print("RESUME DRILL FAILED", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
