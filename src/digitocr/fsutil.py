"""Atomic file writes: readers see the old file or the new one, never half of either."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable
from pathlib import Path

NEW_FILE_MODE = 0o666  # as open() creates files; the process umask narrows it


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], mode: int | None = None) -> None:
    """Call write(tmp_path) for a temp file beside `path`, fsync it, then rename it over `path`. The new file
    gets `mode` (rewriting a file: keep its permissions), else what the umask gives any new file."""
    path = Path(path)
    if path.is_dir():  # the rename would fail only after the work, naming the temp file
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    # O_EXCL: never follow or clobber anything already there; the umask applies as for any new file
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, NEW_FILE_MODE))
    except OSError as e:  # a read-only or full folder: name the file being written, not the temp file
        raise type(e)(e.errno, e.strerror, str(path)) from None
    mode = tmp.stat().st_mode & 0o777 if mode is None else mode
    try:
        write(str(tmp))
        os.chmod(tmp, mode)  # a writer that re-creates the file (safetensors does, as 0600) keeps the umask's mode
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(path: str | os.PathLike) -> None:
    """Delete temp files that atomic_write left beside `path` when a kill interrupted it (call this only
    where no other writer of `path` can be running, e.g. the one process training a run folder)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
