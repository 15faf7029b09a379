"""Atomic and checked writes: the one home for "temporary file + fsync + ``os.replace``".

A reader of a file written here sees the old file or the complete new one, never a torn one:
the bytes go to a hidden temporary sibling in the same folder (``.NAME.<host>.<pid>.<rand>.tmp``, so
the rename never crosses a file system and the run-folder / checkpoint clean-ups recognise it),
are fsynced, and the sibling is renamed over the target. Any failure (Ctrl-C included) removes
the temporary file again.

* :func:`write_bytes_atomic`, :func:`write_text_atomic`, :func:`write_json_atomic`: whole files.
* :func:`atomic_open`: a context manager yielding a file object, for writers that stream into a
  handle (``torch.save``, ``np.save``/``np.savez``, a model assembled from parts); nothing is
  replaced unless the ``with`` block completes.
* :func:`write_all`: ``os.write`` may write fewer bytes than asked (a full disk, a signal, a
  pipe); it loops until everything is written and raises on an error.
* :func:`append_line`: one complete, fsynced line appended to a log (never half a line).

A full disk (``ENOSPC``, ``EDQUOT``) is raised as :class:`DiskFull`, which callers treat
differently from other write errors: it stops a run (nothing later can be written either), while
other errors belong to the one file.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

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


#: this host's name as it appears in temporary names (shards on several hosts may share a folder)
_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"


def temp_name(path: str | Path) -> Path:
    """A fresh temporary sibling for writing ``path``: hidden, unique to this host, process and
    call (two threads, or shards on two hosts sharing a folder, never share one), ending in
    ``.tmp``: ``.NAME.<host>.<pid>.<random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def _open_temp(path: Path) -> tuple[Path, int]:
    """Create the temporary sibling of ``path`` exclusively; (its path, an open fd)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = temp_name(path)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def _discard(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def write_bytes_atomic(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    """Replace ``path`` by ``data`` atomically (every byte checked, fsynced); the temporary
    file is removed on any failure. Returns ``path``."""
    path = Path(path)
    tmp, fd = _open_temp(path)
    try:
        try:
            write_all(fd, data, path)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp)
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(path, exc) from exc
        raise
    return path


#: the name this function had in ``resyn_bench.safe_io``
write_file_atomic = write_bytes_atomic


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8",
                      fsync: bool = True) -> Path:
    """:func:`write_bytes_atomic` of ``text`` encoded with ``encoding`` (no newline translation)."""
    return write_bytes_atomic(path, text.encode(encoding), fsync=fsync)


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2,
                      sort_keys: bool = False, ensure_ascii: bool = False,
                      default=None) -> Path:
    """``obj`` as JSON (UTF-8, a final newline) written with :func:`write_bytes_atomic`."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii,
                      default=default) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, encoding: str = "utf-8",
                newline: str | None = None, fsync: bool = True) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; when the ``with`` block completes the
    file is flushed, fsynced and renamed over ``path``; if it raises (Ctrl-C included) the
    temporary file is removed and ``path`` is left as it was.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding``/``newline`` as for :func:`open`)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    tmp, fd = _open_temp(path)
    try:
        text = {} if mode == "wb" else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, mode, **text) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp)
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
