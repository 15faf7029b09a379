"""Checked writes: every byte written or a clear error, never a silent partial file.

``os.write`` may write fewer bytes than asked (a full disk, a signal, a pipe): :func:`write_all`
loops until everything is written and raises on an error. :func:`write_file_atomic` writes a
whole file through a temporary name (removed again if anything fails) and an ``os.replace``, so a
reader sees the old file or the complete new one. A full disk (``ENOSPC``, ``EDQUOT``) is raised
as :class:`DiskFull`, which callers treat differently from other write errors: it stops a run
(nothing later can be written either), while other errors belong to the one file.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

#: errno values that mean "no space left" (the whole run has to stop, not one utterance)
DISK_FULL_ERRNOS = frozenset(e for e in (getattr(errno, "ENOSPC", None),
                                         getattr(errno, "EDQUOT", None)) if e is not None)

# The raw write call, looked up at call time (tests inject short writes and ENOSPC through it).
_write = os.write


class DiskFull(OSError):
    """No space left on the device holding ``path``."""

    def __init__(self, path: str | Path, cause: BaseException | None = None):
        code = getattr(cause, "errno", None) or errno.ENOSPC
        super().__init__(code, f"no space left on the device while writing {path}")
        self.path = str(path)

    def __reduce__(self):  # across worker processes
        return (DiskFull, (self.path,))


def is_disk_full(exc: BaseException) -> bool:
    """True for a DiskFull or an OSError whose errno says the disk (or quota) is full."""
    return isinstance(exc, DiskFull) or (isinstance(exc, OSError)
                                         and exc.errno in DISK_FULL_ERRNOS)


def write_all(fd: int, data: bytes, path: str | Path = "?") -> None:
    """Write every byte of ``data`` to ``fd`` (looping over short writes).

    Raises :class:`DiskFull` for ENOSPC/EDQUOT, the OSError otherwise, and an OSError when the
    system call keeps writing nothing."""
    view = memoryview(data)
    stalls = 0
    while view:
        try:
            n = _write(fd, view)
        except InterruptedError:
            continue
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(path, exc) from exc
            raise
        if n <= 0:
            stalls += 1
            if stalls > 3:  # a zero-length write that repeats: treat as the disk being full
                raise DiskFull(path)
            continue
        view = view[n:]


def temp_name(path: Path) -> Path:
    """The temporary sibling used while ``path`` is written (hidden, ends in ``.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_file_atomic(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` by ``data`` atomically; the temporary file is removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            write_all(fd, data, path)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(path, exc) from exc
        raise


def append_line(path: str | Path, line: bytes) -> None:
    """Append one complete line to ``path`` and fsync it. A write that fails part way is cut back
    to the previous end of the file, so the log never holds half a line (with one writer, which
    the run lock guarantees)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            write_all(fd, line, path)
            os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(path, exc) from exc
        raise
    finally:
        os.close(fd)
