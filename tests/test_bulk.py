"""Bulk OCR: parallel workers, resumable JSON-lines output, bad files recorded without stopping the run."""

import json

import pytest

from digitocr import bulk
from digitocr.bulk import compact_output, completed_files, file_key, open_output, read_files
from digitocr.cli import main
from ocr_fixtures import Style, easy_digits, make_image, small_model_dir


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    model = small_model_dir()
    images, labels = easy_digits(model)
    root = tmp_path_factory.mktemp("bulk")
    (root / "sub").mkdir()
    texts = {}
    for i, text in enumerate(["12", "7", "305", "4", "86"]):
        path = root / ("sub" if i % 2 else ".") / f"n{i}.png"
        path.write_bytes(make_image(text, Style(seed=i), images, labels))
        texts[path.resolve()] = text
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return root, model, texts


def test_workers_match_one_process(folder, monkeypatch):
    root, model, _ = folder
    monkeypatch.setattr(bulk, "usable_cores", lambda: 2)  # two processes even on a one-core machine
    files = sorted(root.rglob("*.png"))
    one = list(read_files(files, {"model": str(model)}, jobs=1))
    two = list(read_files(files, {"model": str(model)}, jobs=2))
    assert one == two and [r["file"] for r in one] == [str(f) for f in files]
    assert sum("error" in r for r in one) == 1


def test_cli_bulk_is_resumable_and_keeps_going(folder, tmp_path, capsys):
    root, model, texts = folder
    out = tmp_path / "results.jsonl"
    code = main(["read", str(root), "--recursive", "--jobs", "2", "--output", str(out), "--model", str(model),
                 "--no-progress"])
    assert code == 1  # one bad file: reported, the rest read
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6 and sum("error" in r for r in records) == 1
    good = {r["file"] for r in records if "error" not in r}
    assert len(good) == 5 and {str(p) for p in texts} == good
    # a torn last line (as a kill -9 leaves) and a re-run: only the unread files are read again
    out.write_text(out.read_text() + '{"file": "half')
    capsys.readouterr()
    code = main(["read", str(root), "--recursive", "--output", str(out), "--model", str(model), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "skipping 5 files already read" in err
    assert completed_files(out) == good
    lines = out.read_text().splitlines()
    assert sum("broken.png" in line for line in lines) == 1  # retried, failed again: its old error line went
    assert len(lines) == 7 and lines[5] == '{"file": "half'  # the torn line is kept as it was, and completed


def test_jobs_are_capped_by_files_and_cores(folder, monkeypatch):
    root, model, _ = folder
    started = []
    monkeypatch.setattr(bulk, "_pool_results", lambda names, kwargs, jobs: started.append(jobs) or iter([]))
    monkeypatch.setattr(bulk, "usable_cores", lambda: 3)
    one = sorted(root.glob("*.png"))[:1]
    assert [r["file"] for r in read_files(one, {"model": str(model)}, jobs=1000)] == [str(one[0])]
    assert started == []  # one file: read in this process, no pool of 1000 to start
    list(read_files(sorted(root.rglob("*.png")), {"model": str(model)}, jobs=1000))
    assert started == [3]


def test_open_output_completes_a_torn_line(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"file": "a", "text": "1"}\n{"fi')
    with open_output(out) as f:
        f.write('{"file": "b", "text": "2"}\n')
    assert completed_files(out) == {file_key("a"), file_key("b")}


@pytest.mark.parametrize("bad", [["--model", "no-such-model"], ["--verifier", "no-such-verifier"],
                                 ["--second", "no-such-network"]])
def test_workers_with_a_bad_model_stop_at_once_with_one_line(folder, tmp_path, capsys, bad):
    """A Pool restarts a worker whose start-up fails, forever: the reader is checked in the parent first."""
    root, model, _ = folder
    code = main(["read", str(root), "--jobs", "2", "--model", str(model), *bad, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and bad[1] in err


def test_a_worker_that_cannot_load_reports_each_file(folder, monkeypatch):
    import digitocr.bulk as bulk

    root, model, _ = folder
    monkeypatch.setattr(bulk, "_init_error", None)
    monkeypatch.setattr(bulk, "_init_worker", lambda kwargs: (_ for _ in ()).throw(MemoryError("no room")))
    bulk._init_pool_worker({"model": str(model)})
    record = bulk._read_one(str(root / "n0.png"))
    assert "error" in record and "no room" in record["error"]


def test_output_that_is_a_folder_or_unwritable_is_refused(folder, tmp_path, capsys):
    root, model, _ = folder
    for out in (tmp_path, tmp_path / "file.txt" / "under-a-file.jsonl"):
        (tmp_path / "file.txt").write_text("x")
        code = main(["read", str(root / "n0.png"), "--output", str(out), "--model", str(model), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "--output" in err


def test_compact_output_keeps_each_files_newest_line_and_every_other_byte(tmp_path):
    out = tmp_path / "r.jsonl"
    lines = ['{"file": "a", "text": "1"}\n', '{"file": "b", "error": "b: bad"}\n', 'not json \xff\n',
             '{"file": ["x"], "error": "odd"}\n', '{"file": "c", "error": "c: bad"}\n',
             '{"file": "b", "text": "2"}\n', '{"file": "c", "error": "c: still bad"}\n', '{"file": "d", "er']
    out.write_bytes("".join(lines).encode("latin-1"))
    out.chmod(0o600)
    assert compact_output(out) == 2  # b's error (read since) and c's first error (a newer one follows)
    assert out.read_bytes() == "".join(lines[i] for i in (0, 2, 3, 5, 6, 7)).encode("latin-1")
    assert out.stat().st_mode & 0o777 == 0o600  # the rewrite keeps the file's permissions
    inode = out.stat().st_ino
    assert compact_output(out) == 0 and out.stat().st_ino == inode  # nothing to drop: not even rewritten


def test_a_resume_that_fails_to_start_keeps_every_line(folder, tmp_path, capsys):
    root, model, _ = folder
    out = tmp_path / "results.jsonl"
    assert main(["read", str(root), "--recursive", "--output", str(out), "--model", str(model),
                 "--no-progress"]) == 1
    before = out.read_bytes()
    assert main(["read", str(root), "--recursive", "--output", str(out), "--model", "no-such-model",
                 "--no-progress"]) == 2
    assert out.read_bytes() == before  # the bad file's error line is still there


def test_a_resume_knows_files_by_their_absolute_path(folder, tmp_path, capsys, monkeypatch):
    root, model, _ = folder
    out = tmp_path / "results.jsonl"
    monkeypatch.chdir(root)
    assert main(["read", "sub", "--output", str(out), "--model", str(model), "--no-progress"]) == 1
    first = out.read_text().splitlines()
    capsys.readouterr()
    assert main(["read", str(root / "sub"), "--output", str(out), "--model", str(model), "--no-progress"]) == 1
    assert "skipping 2 files" in capsys.readouterr().err  # the two good files, named as typed the first time
    lines = out.read_text().splitlines()
    assert lines[:2] == [line for line in first if "error" not in line]  # only the broken file was read again
    assert len(lines) == 3 and json.loads(lines[2])["file"] == str(root / "sub" / "broken.png")


def test_output_to_a_pipe_streams_instead_of_waiting_to_resume(folder, tmp_path):
    import subprocess
    import sys

    root, model, _ = folder
    cmd = [sys.executable, "-m", "digitocr", "read", str(root / "n0.png"), "--output", "/dev/stdout",
           "--model", str(model), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # used to hang reading its own pipe
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["file"] == str(root / "n0.png")
