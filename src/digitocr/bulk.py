"""Bulk OCR: tens of thousands of files, read in parallel worker processes, into a resumable JSON-lines file.

Each worker process loads its own Reader once (one torch thread each, so N workers use N cores) and runs
the whole pipeline per file; the parent only writes results, in input order, one flushed line per file.
A file whose line is already in the output (without an error) is skipped, so an interrupted run continues
where it stopped; a bad file becomes an error line and never stops the run. A file that failed before is
read again; when a run finishes, error lines that a newer line of the same file supersedes are dropped
(`compact_output`), so each file keeps one line, its latest. One run per output file at a time.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from .fsutil import atomic_write

_CHUNK = 8  # files per task sent to a worker: amortises inter-process overhead, keeps order fine-grained
_reader: Any = None  # the worker process's Reader, created once by _init_worker
_init_error: str | None = None  # why a pool worker could not create it (reported for each of its files)


def completed_files(output: Path) -> set[str]:
    """Files already read successfully according to an existing output file, by file_key (torn last lines
    ignored)."""
    from .errors import DigitocrError

    if output.is_dir():
        raise DigitocrError(f"--output {output}: is a directory; name a file for the JSON lines")
    if not output.is_file():  # new, or a pipe or device (--output /dev/stdout): nothing to resume from
        return set()
    with open(output, "rb") as f:  # a line torn by a kill names no file: that file is read again
        return {file_key(file) for file, is_error in map(_file_of, f) if file is not None and not is_error}


def file_key(name: str) -> str:
    """What identifies a file across runs: its absolute path (a relative name is taken from the working
    directory), so `a.png`, `./a.png` and `/abs/a.png` are one file. Pure string work, no file-system call per
    output line (outputs of 100k lines on network disks)."""
    return os.path.abspath(name)


def compact_output(output: Path) -> int:
    """Drop every error line that a later line of the same file supersedes (a retry's result, or a newer
    error), so each file keeps its newest line; every other line stays byte for byte. Called when a run has
    finished, never during one, so an interrupted run loses nothing. The file is rewritten atomically (a
    symlink's target, with its permissions) only when there is something to drop; if it cannot be, it is left
    as it is. Streams the file twice: memory grows with the number of files, not the output's size.
    Returns how many lines went."""
    target = output.resolve()
    if not target.is_file():  # a pipe or a device: nothing to rewrite
        return 0
    try:
        stale = stale_error_lines(target)
        if stale:
            def write(tmp: str) -> None:
                with open(target, "rb") as src, open(tmp, "wb") as dst:
                    dst.writelines(line for n, line in enumerate(src) if n not in stale)

            atomic_write(target, write, mode=stat.S_IMODE(target.stat().st_mode))
    except OSError:
        return 0  # e.g. a folder we may not create files in: the old lines stay, nothing is lost
    return len(stale)


def stale_error_lines(output: Path) -> set[int]:
    """Numbers of the error lines that a later line of the same file supersedes."""
    newest: dict[str, int] = {}
    errors: list[tuple[int, str]] = []
    with open(output, "rb") as f:
        for n, line in enumerate(f):
            file, is_error = _file_of(line)
            if file is not None:
                file = file_key(file)
                newest[file] = n
                if is_error:
                    errors.append((n, file))
    return {n for n, file in errors if newest[file] != n}


def _file_of(line: bytes) -> tuple[str | None, bool]:
    """(the file a JSON-lines record is about, whether it is an error); (None, False) for anything else."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, False  # a torn line, or not ours
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        return None, False
    return record["file"], "error" in record


def _init_worker(reader_kwargs: dict) -> None:
    global _reader  # one Reader per worker process, built once, not at import
    from .ocr import Reader

    torch.set_num_threads(1)
    _reader = Reader(**reader_kwargs)


def _init_pool_worker(reader_kwargs: dict) -> None:
    """_init_worker in a Pool, which restarts a worker whose initializer raises forever: keep the error."""
    global _init_error
    try:
        _init_worker(reader_kwargs)
    except Exception as e:
        _init_error = f"a worker could not load the reader ({type(e).__name__}: {e})"


def _read_one(path: str) -> dict:
    from .errors import DigitocrError

    if _init_error is not None:
        return {"file": path, "error": f"{path}: {_init_error}"}
    try:
        return _reader.read(path).to_dict()
    except DigitocrError as e:
        return {"file": path, "error": str(e)}
    except Exception as e:  # a bug on one odd file must not end a 10,000-file run; it is reported per file
        return {"file": path, "error": f"{path}: internal error {type(e).__name__}: {e}"}


def read_files(files: Iterable[Path], reader_kwargs: dict, jobs: int = 1) -> Iterator[dict]:
    """Result dicts (the `read --json` object, or {"file", "error"}) in input order. A bad --model or
    --verifier raises here, at the call, before any file is read."""
    from .ocr import Reader

    names = [str(f) for f in files]
    jobs = min(jobs, len(names), usable_cores())  # more processes than files or cores only cost start-up and memory
    if jobs <= 1:
        _init_worker(reader_kwargs)
        return map(_read_one, names)
    Reader(**reader_kwargs)  # checked once in the parent: workers could only report it file by file
    return _pool_results(names, reader_kwargs, jobs)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pool_results(names: list[str], reader_kwargs: dict, jobs: int) -> Iterator[dict]:
    ctx = mp.get_context("spawn")  # fork after torch has started its thread pools can deadlock
    with ctx.Pool(jobs, initializer=_init_pool_worker, initargs=(reader_kwargs,)) as pool:
        yield from pool.imap(_read_one, names, chunksize=_CHUNK)


def open_output(output: Path):
    """Append to the output, first completing a line torn by an earlier kill."""
    from .errors import DigitocrError

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        torn = output.exists() and output.stat().st_size > 0 and not output.read_bytes().endswith(b"\n")
        f = open(output, "a")  # noqa: SIM115 - the caller closes it
        if torn:
            f.write("\n")
    except OSError as e:
        raise DigitocrError(f"--output {output}: cannot append to it ({e.strerror or e})") from None
    return f
