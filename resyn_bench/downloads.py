"""Resumable downloads and safe extraction of the catalogued test sets (``resyn-bench fetch``).

``fetch_dataset(name)`` downloads the archive of a :class:`~resyn_bench.catalogue.DatasetArchive`
into ``$RESYN_BENCH_HOME/datasets/.downloads/``, checks its size and SHA-256, extracts it into
``$RESYN_BENCH_HOME/datasets/<folder>/`` and returns the folder to pass as ``--data-root``.

The download loop here is the package's only one: ``resyn-bench fetch`` of a catalogue
checkpoint (:func:`resyn_bench.catalogue.fetch`) goes through :func:`download_resumable` too.

Resume. Bytes arrive in ``<archive>.part``; beside it ``<archive>.part.json`` records the URL
and the server's validators (ETag, Last-Modified). A download that stops for any reason (network
drop, Ctrl-C, a killed process) keeps the part, and the next ``fetch`` asks for the rest with an
HTTP ``Range: bytes=<have>-`` request (and ``If-Range``, so a file that changed upstream is
fetched whole instead of spliced). A server that answers 200 instead of 206 sends the whole file
again, which replaces the part. The hash is computed over the whole file at the end; a mismatch
deletes the part (it cannot be repaired by resuming) and names both hashes.

Extraction goes into a temporary sibling folder that is renamed into place when complete
(a marker file records what was extracted from which archive), so a folder under ``datasets/``
is either complete or absent. Members with absolute paths, ``..`` components, links pointing
outside the folder, or device files are refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from resyn_bench.catalogue import (
    CHUNK,
    TIMEOUT_S,
    CatalogueError,
    DatasetArchive,
    datasets_root,
    get_dataset_archive,
)
from resyn_bench.core.atomic import write_json_atomic, write_text_atomic
from resyn_bench.core.hashing import sha256_hasher

#: name of the marker file written into a completely extracted folder
COMPLETE = ".resyn-bench-complete.json"


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm  # the terminal bar (tqdm.auto would pick a notebook widget)

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, disable=not enabled, file=sys.stderr, leave=True)


class DownloadError(CatalogueError):
    """A download that did not give the expected file. ``kind`` says why, so a caller can add
    its own advice: ``"http"`` (an HTTP error status), ``"network"`` (offline, refused, DNS),
    ``"stopped"`` (the transfer broke off; the part is kept for resuming), ``"range"`` (the
    server broke the resume protocol; the part was deleted), ``"size"`` / ``"sha256"`` (the
    file is not the expected one; nothing was kept)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _read_meta(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _content_range_start(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes a-b/total`` header."""
    if not value or not value.strip().lower().startswith("bytes "):
        return None, None
    spec = value.strip()[6:]
    rng, _, total = spec.partition("/")
    first = rng.split("-", 1)[0].strip()
    return (int(first) if first.isdigit() else None,
            int(total) if total.strip().isdigit() else None)


def download_resumable(url: str, dest: Path, *, sha256: str | None = None,
                       size: int | None = None, progress: bool = True,
                       desc: str | None = None) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` where a previous call stopped.

    The one download loop of the package (test-set archives and catalogue checkpoints).
    Returns ``dest`` once the file is complete and matches ``size`` and ``sha256`` (where
    given); without ``sha256`` the digest received is recorded beside it in ``dest.sha256``.
    Raises :class:`DownloadError`; an interrupted transfer keeps its part for the next call,
    a complete file with the wrong hash or size is deleted."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    meta_path = dest.with_name(dest.name + ".part.json")
    meta = _read_meta(meta_path)
    if part.exists() and meta.get("url") != url:
        part.unlink()  # bytes of another URL (or of unknown origin): never splice them
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    desc = desc or dest.name
    headers = {"User-Agent": "resyn-bench"}
    if have:
        headers["Range"] = f"bytes={have}-"
        validator = meta.get("etag") or meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # nothing left to send: the part is the whole file (or the file shrank upstream)
            if size is None or have == size:
                return _finish(part, meta_path, dest, None, sha256, size, url)
            part.unlink()
            raise DownloadError("range", f"{url} refused the resume range at byte {have}; the "
                                "partial download was deleted, run the same command again"
                                ) from None
        raise DownloadError("http", f"could not download {url}: HTTP {exc.code} {exc.reason}"
                            ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        kept = f" ({have} bytes kept in {part}; run again to resume)" if have else ""
        raise DownloadError("network", f"could not download {url} ({reason}){kept}") from None
    with resp:
        status = getattr(resp, "status", None)
        first, total = _content_range_start(resp.headers.get("Content-Range"))
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if have and status == 206 and first == have:
            mode, h = "ab", sha256_hasher(part)
            total = total if total is not None else (have + length if length is not None
                                                     else None)
        elif status == 206:  # a range we did not ask for: never splice it
            part.unlink(missing_ok=True)
            raise DownloadError("range", f"{url} answered with bytes from {first}, not {have}; "
                                "the partial download was deleted, run the same command again")
        else:  # a fresh download, or the server ignored the range: start over
            have, mode, h = 0, "wb", hashlib.sha256()
            total = length
        if mode == "wb":
            meta = {"url": url, "etag": resp.headers.get("ETag"),
                    "last_modified": resp.headers.get("Last-Modified")}
            write_json_atomic(meta_path, meta, indent=None, ensure_ascii=True)
        if size is not None and total is not None and total != size:
            raise DownloadError("size", f"{url} is {total} bytes, but the catalogue says {size}; "
                                "nothing was changed. The file moved or changed upstream: "
                                "fetch it by hand and check it, or use --url with a mirror")
        received = have
        with open(part, mode) as fh, _progress_bar(total, have, desc, progress) as bar:
            try:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
            except Exception as exc:  # reset, timeout, IncompleteRead: keep what arrived
                fh.flush()
                raise DownloadError(
                    "stopped", f"download of {url} stopped at {received} of {total or '?'} "
                    f"bytes ({type(exc).__name__}: {exc}); run the same command again to resume "
                    f"from {part}") from None
            fh.flush()
            os.fsync(fh.fileno())
    if total is not None and received < total:
        raise DownloadError("stopped", f"download of {url} stopped at {received} of {total} "
                            f"bytes; run the same command again to resume from {part}")
    return _finish(part, meta_path, dest, h, sha256, size, url)


def _finish(part: Path, meta_path: Path, dest: Path, h, sha256: str | None, size: int | None,
            url: str) -> Path:
    got = part.stat().st_size
    digest = (h or sha256_hasher(part)).hexdigest()
    if size is not None and got != size:
        part.unlink()
        meta_path.unlink(missing_ok=True)
        raise DownloadError("size", f"{url} gave {got} bytes, expected {size}; the download was "
                            "deleted. Try again, or fetch it by hand")
    if sha256 and digest != sha256:
        part.unlink()
        meta_path.unlink(missing_ok=True)
        raise DownloadError("sha256", f"{url} gave a file with sha256 {digest}, but it must have "
                            f"sha256 {sha256}; the download was deleted. It was corrupted in "
                            "transit or changed upstream: try again, or use --url with a mirror")
    if not sha256:
        # what we got, recorded before the file appears (informational, not trusted)
        write_text_atomic(dest.with_name(dest.name + ".sha256"), f"{digest}  {dest.name}\n")
    os.replace(part, dest)  # the completed part becomes the file: the download's commit
    meta_path.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------------------------
# Extraction

def _safe_name(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise CatalogueError(f"{archive} holds an unsafe member path {name!r}; refusing to "
                             "extract it")
    return path


def _extract_tar(archive: Path, into: Path, progress: bool) -> int:
    from tqdm import tqdm

    n = 0
    with tarfile.open(archive, mode="r|*") as tar, \
            tqdm(desc=f"extracting {archive.name}", unit=" files", disable=not progress,
                 file=sys.stderr) as bar:
        for member in tar:
            rel = _safe_name(member.name, archive)
            if member.isdev() or member.isfifo():
                raise CatalogueError(f"{archive} holds a device or fifo {member.name!r}; "
                                     "refusing to extract it")
            if member.issym() or member.islnk():
                target = (PurePosixPath(member.linkname) if member.islnk()
                          else rel.parent / member.linkname)
                _safe_name(str(target), archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extract(member, into, **kwargs)
            n += 1
            bar.update(1)
    return n


def _extract_zip(archive: Path, into: Path, progress: bool) -> int:
    from tqdm import tqdm

    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _safe_name(info.filename, archive)
        for info in tqdm(infos, desc=f"extracting {archive.name}", unit=" files",
                         disable=not progress, file=sys.stderr):
            zf.extract(info, into)
    return len(infos)


def extract(archive: Path, target: Path, *, progress: bool = True, info: dict | None = None
            ) -> Path:
    """Extract ``archive`` (.tar.*, .tgz or .zip) so that ``target`` appears complete or not at
    all; returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
    try:
        if zipfile.is_zipfile(archive):
            count = _extract_zip(archive, tmp, progress)
        else:
            try:
                count = _extract_tar(archive, tmp, progress)
            except tarfile.TarError as exc:
                raise CatalogueError(f"{archive} is not a readable tar or zip archive ({exc}); "
                                     "delete it and fetch again") from None
        record = dict(info or {})
        record.update(archive=archive.name, members=count,
                      extracted=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        (tmp / COMPLETE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if target.exists():
            shutil.rmtree(target)  # an incomplete earlier extraction (no marker)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------

def is_fetched(name: str) -> bool:
    entry = get_dataset_archive(name)
    return (datasets_root() / entry.folder / COMPLETE).is_file()


def fetch_dataset(name: str, *, progress: bool = True, url_override: str | None = None,
                  force: bool = False, keep_archive: bool = False) -> Path:
    """Download (resuming), verify and extract the test set ``name``; return its data root.

    A test set already extracted is kept unless ``force``. ``url_override`` replaces the URL (a
    mirror or a ``file://`` copy); the checks are the same."""
    from resyn_bench.catalogue import dataset_data_root

    entry: DatasetArchive = get_dataset_archive(name)
    root = datasets_root()
    folder = root / entry.folder
    if (folder / COMPLETE).is_file() and not force:
        return _check_layout(entry, dataset_data_root(entry.name))
    archive = root / ".downloads" / entry.filename
    url = url_override or entry.url
    if not archive.is_file() or force:
        if force:
            archive.unlink(missing_ok=True)
        download_resumable(url, archive, sha256=entry.sha256, size=entry.size,
                           progress=progress, desc=entry.name)
    elif entry.sha256:
        digest = sha256_hasher(archive).hexdigest()
        if digest != entry.sha256:
            archive.unlink()
            raise CatalogueError(f"{archive} had sha256 {digest}, not {entry.sha256}; it was "
                                 f"deleted: run `resyn-bench fetch {entry.name}` again")
    extract(archive, folder, progress=progress,
            info={"name": entry.name, "url": url, "sha256": entry.sha256})
    if not keep_archive:
        archive.unlink(missing_ok=True)
        archive.with_name(archive.name + ".sha256").unlink(missing_ok=True)
    return _check_layout(entry, dataset_data_root(entry.name))


def _check_layout(entry: DatasetArchive, data_root: Path) -> Path:
    marker = data_root / entry.marker if entry.marker else data_root
    if not marker.exists():
        raise CatalogueError(f"{entry.name} was extracted into {datasets_root() / entry.folder} "
                             f"but {marker} is not there (the archive's layout differs from the "
                             f"catalogue's); look inside and pass the right folder as --data-root")
    return data_root
