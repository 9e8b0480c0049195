"""digitocr read: the digits and numbers in photos, scans, screenshots and drawings, one line per file."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import Counter
from pathlib import Path

from .common import add_reader_args, positive_int

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
EXIT_SOME_FAILED = 1  # a batch where some files could not be read (each reported on stderr)
GLOB_CHARS = "*?["
STDIN = "-"  # IMAGE "-" reads one image from standard input ...
STDIN_DEBUG_NAME = "stdin"  # ... whose --debug-dir files are stdin_overlay.png and stdin_crops/


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("read", help="read digits and numbers from images (PNG, JPEG, BMP, TIFF, WebP, GIF)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, folders of images or glob patterns; - reads one image from standard input")
    add_reader_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per file (default: FILE<TAB>TEXT)")
    p.add_argument("--debug-dir", default=None,
                   help="write an overlay PNG and the network's 28x28 crops per image here (default: none)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar for many files (default: shown)")
    p.add_argument("--recursive", action="store_true", help="read folders' subfolders too (default: off)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="worker processes, each with its own model; at most one per file and per CPU core (default: 1)")
    p.add_argument("--output", default=None,
                   help="append JSON lines here instead of printing; files already in it are skipped; - prints "
                        "them (default: none)")
    p.set_defaults(handler=run)


def expand_inputs(args: list[str], recursive: bool = False) -> tuple[list[Path], bool, list[str]]:
    """Image paths from files, folders and globs, each file once however it is named; whether this is a
    batch (errors don't stop it); and the inputs that gave no file (an empty folder, a glob matching nothing),
    which stop a run of that one input but are reported, like a bad file, among several."""
    from ..bulk import file_key
    from ..errors import DigitocrError

    paths: list[Path] = []
    problems: list[str] = []
    batch = len(args) > 1

    def nothing_in(message: str) -> None:
        if len(args) == 1:
            raise DigitocrError(message)
        problems.append(message)

    for arg in args:
        path = Path(arg)
        if path.is_dir():
            batch = True
            found = path.rglob("*") if recursive else path.iterdir()
            # hidden files and folders are skipped, as the shell's globs and `**` skip them
            images = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not images:
                nothing_in(f"{arg}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
            paths += images
        elif not path.exists() and any(c in arg for c in GLOB_CHARS):
            batch = True
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True) if Path(m).is_file())
            if not matches:
                nothing_in(f"{arg}: no files match")
            paths += matches
        else:
            paths.append(path)
    seen: set[str] = set()
    unique = []
    for p in paths:  # the first naming of each file is the one kept, links to it included: a `**` glob
        if (key := os.path.realpath(file_key(str(p)))) not in seen:  # through a symlink loop names it many times
            seen.add(key)
            unique.append(p)
    return unique, batch, problems


def format_line(result, as_json: bool) -> str:
    if as_json:
        return json.dumps(result.to_dict())
    return tab_line(result.file, result.text)


def tab_line(file: str, text: str) -> str:
    """FILE<TAB>TEXT on one line: a line break in the text (several lines of digits), or a TAB or line break
    in the file's name, is written as the two characters \\n or \\t."""
    def one_field(s: str) -> str:
        return s.replace("\t", "\\t").replace("\n", "\\n")

    return f"{one_field(file)}\t{one_field(text)}"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import DigitocrError
    from ..ocr import Reader
    from ..runtime import set_threads

    set_threads(args.threads)
    if args.output == "-":  # the usual spelling of stdout: JSON lines printed, nothing to resume from
        args.output, args.json = None, True
    if STDIN in args.images:
        return read_stdin(args)
    paths, batch, problems = expand_inputs(args.images, args.recursive)
    if not paths and problems:  # several inputs, none with a file in it
        raise DigitocrError("; ".join(problems))
    for message in problems:
        print(f"digitocr read: error: {message}", file=sys.stderr)
    some_failed = EXIT_SOME_FAILED if problems else 0
    if args.debug_dir is not None and (args.output is not None or args.jobs > 1):
        raise DigitocrError("--debug-dir works with one process printing to stdout: drop --output and --jobs")
    if args.output is not None or (args.jobs > 1 and batch):  # one file reads alike with any --jobs
        return max(run_bulk(args, paths), some_failed)
    reader = Reader(**reader_options(args))
    debug_dir = Path(args.debug_dir) if args.debug_dir else None
    if debug_dir is not None:
        make_dir(debug_dir, "--debug-dir")
    names = debug_names(paths)
    failed = 0
    bar = tqdm(paths, desc="reading", unit="image", file=sys.stderr, disable=args.no_progress or len(paths) < 2)
    for path, name in zip(bar, names, strict=True):
        try:
            result = reader.read(path, debug=debug_dir is not None)
        except DigitocrError as e:
            if not batch:
                raise
            failed += 1
            bar.write(f"digitocr read: error: {e}", file=sys.stderr)
            if args.json:  # JSON lines name every file, as --output does: a reader of them sees the failures
                print(json.dumps({"file": str(path), "error": str(e)}), flush=True)
            continue
        print(format_line(result, args.json), flush=True)
        if debug_dir is not None:
            try:  # the file was read and its line printed: a debug image that can't be written is its own error
                write_debug(result, debug_dir, name)
            except DigitocrError as e:
                if not batch:
                    raise
                failed += 1
                bar.write(f"digitocr read: error: {e}", file=sys.stderr)
    if failed:
        print(f"digitocr read: {failed} of {len(paths)} files could not be read", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else some_failed


def read_stdin(args: argparse.Namespace) -> int:
    """IMAGE "-": one image's bytes from standard input (`cat scan.png | digitocr read -`), read like a file."""
    from ..errors import DigitocrError
    from ..ocr import Reader

    if args.images != [STDIN] or args.output is not None or args.jobs > 1:
        raise DigitocrError("IMAGE - (standard input) is read alone: one image, without --output or --jobs")
    reader = Reader(**reader_options(args))
    data = sys.stdin.buffer.read(reader.max_bytes + 1)  # one byte over the limit is enough to refuse it
    result = reader.read(data, name=STDIN, debug=args.debug_dir is not None)
    print(format_line(result, args.json), flush=True)
    if args.debug_dir is not None:
        make_dir(Path(args.debug_dir), "--debug-dir")
        write_debug(result, Path(args.debug_dir), STDIN_DEBUG_NAME)
    return 0


def reader_options(args: argparse.Namespace) -> dict:
    """The Reader's keyword arguments from the command line ('none' switches a helper network off)."""
    return dict(model=args.model, backend=args.backend, min_confidence=args.min_confidence,
                max_pixels=args.max_pixels, verifier=args.verifier, second=args.second, precision=args.precision)


def run_bulk(args: argparse.Namespace, paths: list[Path]) -> int:
    """Many files: parallel workers, JSON lines to --output (resumable) or stdout, errors never stop it."""
    from tqdm import tqdm

    from ..bulk import compact_output, completed_files, file_key, open_output, read_files

    out_path = Path(args.output) if args.output else None
    if out_path is not None:
        done = completed_files(out_path)
        todo = [p for p in paths if file_key(str(p)) not in done]
        if len(todo) < len(paths):
            print(f"digitocr read: skipping {len(paths) - len(todo)} files already read in {out_path}",
                  file=sys.stderr)
        paths = todo
    reader_kwargs = reader_options(args)
    failed = 0
    out = open_output(out_path) if out_path is not None else sys.stdout
    try:
        records = read_files(paths, reader_kwargs, args.jobs)  # a bad --model stops it here, in one line
        bar = tqdm(total=len(paths), desc="reading", unit="image", file=sys.stderr, disable=args.no_progress)
        for record in records:
            if "error" in record:
                failed += 1
                bar.write(f"digitocr read: error: {record['error']}", file=sys.stderr)
            if out_path is not None or args.json or "error" not in record:
                line = json.dumps(record) if (args.json or out_path is not None) else \
                    tab_line(record["file"], record["text"])
                out.write(line + "\n")
                out.flush()
            bar.update(1)
        bar.close()
    finally:
        if out is not sys.stdout:
            out.close()
    if out_path is not None:  # the run finished: retried files' old error lines go (not before: nothing lost)
        compact_output(out_path)
    if failed:
        print(f"digitocr read: {failed} of {len(paths)} files could not be read", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else 0


def make_dir(path: Path, flag: str) -> None:
    from ..errors import DigitocrError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DigitocrError(f"{flag} {path}: cannot create it ({e.strerror or e})") from None


def debug_names(paths: list[Path]) -> list[str]:
    """Each input's name in --debug-dir: its stem, or its whole name where stems repeat (a.png, a.jpg), and a
    counter where even those repeat (folders with the same file names)."""
    stems = Counter(p.stem for p in paths)
    names = [p.stem if stems[p.stem] == 1 else p.name for p in paths]
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def write_debug(result, out_dir: Path, name: str) -> None:
    """NAME_overlay.png (boxes, digits, confidences on the page) and NAME_crops/NN_D.png (what the net saw);
    crops left in NAME_crops by an earlier run are removed first."""
    import numpy as np

    from ..errors import DigitocrError

    try:
        _write_png(out_dir / f"{name}_overlay.png", overlay(result))
        crops_dir = out_dir / f"{name}_crops"
        crops_dir.mkdir(exist_ok=True)
        for old in crops_dir.glob("*.png"):
            old.unlink()
        for n, (crop, digit) in enumerate(zip(result.crops, result.digits, strict=True)):
            _write_png(crops_dir / f"{n:02d}_{digit.digit}.png", np.round(crop * 255).astype(np.uint8))
    except OSError as e:
        raise DigitocrError(f"{result.file}: cannot write its debug images in {out_dir} ({e.strerror or e})") from None


def _write_png(path: Path, image) -> None:
    """Encode with OpenCV, write with Python: cv2.imwrite crashes the process (SIGSEGV) on a path that is
    not valid UTF-8, as a file name from a folder read with surrogate escapes is."""
    import cv2

    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {path.name} as PNG")
    path.write_bytes(png.tobytes())


OVERLAY_COLOUR = (0, 160, 0)  # BGR: confident digits
LOW_COLOUR = (0, 0, 220)  # BGR: digits below --min-confidence


def overlay(result):
    """The page as the reader saw it (BGR uint8), with each digit's box, class and confidence."""
    import cv2
    import numpy as np

    page = result.page
    grey = np.round(page.pixels * 255).astype(np.uint8)
    img = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    s = page.scale
    for d in result.digits:
        x, y, w, h = (round(v * s) for v in d.box)
        colour = LOW_COLOUR if d.low_confidence else OVERLAY_COLOUR
        thick = max(1, round(h / 30))
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), colour, thick)
        font = max(0.3, h / 60)
        cv2.putText(img, f"{d.digit} {d.confidence:.2f}", (x, max(10, y - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    font, colour, thick, cv2.LINE_AA)
    return img
