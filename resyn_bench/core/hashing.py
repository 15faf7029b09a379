"""SHA-256 of files: the one home for the chunked read loop.

Checkpoints and model files are hundreds of MB, so files are read in 1 MiB blocks.
:func:`sha256_file_cached` remembers a digest per (resolved path, size, mtime) for the life of
the process, for settings that name the weights behind every number they produce.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

#: bytes read per block
CHUNK = 1 << 20


def sha256_hasher(path: str | Path, chunk: int = CHUNK):
    """A ``hashlib.sha256`` object fed with the whole content of ``path`` (callers that go on
    to append bytes, such as a resumed download, keep updating it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex SHA-256 of the file at ``path`` (raises OSError when it cannot be read)."""
    return sha256_hasher(path, chunk).hexdigest()


def sha256_file_or_none(path: str | Path | None) -> str | None:
    """:func:`sha256_file`, or None when ``path`` is None or cannot be read."""
    if path is None:
        return None
    try:
        return sha256_file_cached(path)
    except OSError:
        return None


_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file_cached(path: str | Path) -> str:
    """:func:`sha256_file`, computed once per (resolved path, size, mtime) in this process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = sha256_file(path)
    return _CACHE[key]


__all__ = ["CHUNK", "sha256_file", "sha256_file_cached", "sha256_file_or_none", "sha256_hasher"]
