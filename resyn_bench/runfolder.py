"""Run-folder safety: output file names from ids, the run lock, the space reserve, leftovers,
and what ``--overwrite`` may delete.

* **Ids as file names.** An utt_id is data, not a path: :func:`output_name` maps it to a file
  name that is safe (no separators, no leading dot, only ``[A-Za-z0-9._-]``), bounded (at most
  ~100 characters) and unique: an id that is already such a name is used as is
  (``outputs/<utt_id>.wav``, as before); any other id becomes a sanitised prefix, ``~`` and 16 hex
  digits of its SHA-256 (``~`` never occurs in a plain name, so the two kinds cannot collide).
  The mapping depends on the id alone, so a resumed run finds the same files. Records keep the
  id itself. Ids with control characters are refused per utterance (:func:`id_problem`): the
  utterance fails with stage ``input`` and the reason, the others go on.
* **Lock.** :class:`RunLock` holds ``fcntl.flock`` on ``RUN/.resyn-bench.lock`` for the run's
  lifetime; the file names the holder (pid, host, start time, command) so a second run on the
  same folder can say who has it.
* **Space reserve.** :class:`SpaceReserve` keeps a small file of real blocks while a run writes;
  on a full disk it is deleted first, so the final manifest ("stopped: disk full") can still be
  written.
* **Overwrite.** :func:`clear_run` deletes only a folder whose manifest marks it as a run, and
  only the suite's own files (manifest, records, quarantine, lock, the outputs its records name,
  leftover temporary files).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from resyn_bench.core.atomic import DiskFull, is_disk_full, write_all
from resyn_bench.errors import UserError

LOCK_FILE = ".resyn-bench.lock"
RESERVE_FILE = ".resyn-bench.reserve"
#: bytes kept in reserve for the last manifest write after the disk fills up
RESERVE_BYTES = 256 * 1024
#: longest plain id used as a file name unchanged (a file name is at most 255 bytes)
MAX_PLAIN = 100
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# names that mean something else on some systems (Windows devices)
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}


class RunFolderError(UserError, RuntimeError):
    """The run folder cannot be used as asked (locked, not a run, unwritable)."""


# ------------------------------------------------------------------------------------------
# ids -> file names

def id_problem(utt_id: Any) -> str | None:
    """Why ``utt_id`` cannot be evaluated (None: it can): not a string, empty, or holding
    control characters (they would corrupt terminals, logs and TSV/CSV exports)."""
    if not isinstance(utt_id, str) or not utt_id:
        return f"utt_id must be a non-empty string, got {utt_id!r}"
    bad = sorted({c for c in utt_id if unicodedata.category(c) in ("Cc", "Cs")})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        return f"utt_id {utt_id.encode('unicode_escape').decode('ascii')[:80]} holds control " \
               f"characters ({shown}); rename the utterance in the dataset"
    return None


def output_name(utt_id: str, suffix: str = ".wav") -> str:
    """A safe, bounded, unique file name for ``utt_id``'s output (see the module notes)."""
    stem = utt_id
    if (len(stem) <= MAX_PLAIN and _PLAIN.fullmatch(stem)
            and stem.split(".")[0].lower() not in _RESERVED):
        return stem + suffix
    # readable prefix: accents dropped (NFKD, combining marks removed), the rest -> "_"
    plain = "".join(c for c in unicodedata.normalize("NFKD", utt_id)
                    if unicodedata.category(c) != "Mn")
    prefix = _UNSAFE.sub("_", plain).strip("._")[:48]
    digest = hashlib.sha256(utt_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{prefix}~{digest}{suffix}"


def check_unique_names(utt_ids: Iterable[str]) -> None:
    """Refuse a work list in which two ids would share an output file (a 64-bit hash clash:
    never seen, but checked because a clash would score one utterance against another's audio)."""
    seen: dict[str, str] = {}
    for uid in utt_ids:
        if id_problem(uid):
            continue
        other = seen.setdefault(output_name(uid), uid)
        if other != uid:
            raise RunFolderError(f"utterances {other!r} and {uid!r} would share the output file "
                                 f"{output_name(uid)!r}; rename one")


# ------------------------------------------------------------------------------------------
# the lock

class RunLock:
    """Exclusive lock on a run folder for a run's lifetime (``with RunLock(run_dir, command):``).

    Raises :class:`RunFolderError` naming the holder when another process has it. Where flock is
    unavailable (no fcntl, or a file system without locks) the run goes on unlocked with a
    warning. The lock file stays (emptied) after release: deleting it would let a third process
    lock a fresh file while a second still waits on the old one."""

    def __init__(self, run_dir: str | Path, command: str | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command if command is not None else " ".join(sys.argv)
        self.fd: int | None = None
        self.locked = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.path, exc) from None
            raise RunFolderError(f"cannot write the run folder {self.run_dir}: {exc.strerror or exc}"
                                 f"; choose a writable --out") from None
        try:
            import fcntl
        except ImportError:  # Windows: no flock
            import logging

            logging.getLogger("resyn_bench.runner").warning(
                "no file locking on this platform: do not run twice on %s at once", self.run_dir)
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            os.close(self.fd)
            self.fd = None
            raise RunFolderError(f"{self.run_dir} is in use by another run ({describe_holder(holder)}); "
                                 "wait for it to finish, or choose another --out") from None
        except OSError as exc:  # a file system without locks (some network mounts)
            import logging

            logging.getLogger("resyn_bench.runner").warning(
                "cannot lock %s (%s): do not run twice on it at once", self.path, exc)
            return
        self.locked = True
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": self.command[:2000]}
        try:
            os.ftruncate(self.fd, 0)
            write_all(self.fd, (json.dumps(info) + "\n").encode("utf-8"), self.path)
        except OSError as exc:
            self.release()
            if is_disk_full(exc):
                raise DiskFull(self.path, exc) from None
            raise RunFolderError(f"cannot write the run folder {self.run_dir}: {exc}") from None

    def holder(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                info = json.loads(fh.read(8192) or "{}")
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if self.locked:
                try:
                    os.ftruncate(self.fd, 0)
                except OSError:
                    pass
                import fcntl

                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None
            self.locked = False


def describe_holder(info: dict[str, Any]) -> str:
    if not info:
        return "holder unknown"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started "
            f"{info.get('started', '?')}, command: {str(info.get('command', '?'))[:300]}")


# ------------------------------------------------------------------------------------------
# space reserve and leftovers

class SpaceReserve:
    """A file of ``RESERVE_BYTES`` real (written, not sparse) blocks in the run folder, freed
    when the disk fills up so the run can still record that it stopped."""

    def __init__(self, run_dir: str | Path, size: int = RESERVE_BYTES):
        self.path = Path(run_dir) / RESERVE_FILE
        self.size = size

    def create(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, b"\0" * self.size, self.path)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.free()
            raise
        os.close(fd)

    def free(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


_TEMP = re.compile(r"\..+\.tmp")


def remove_leftovers(run_dir: str | Path, outputs: str = "outputs") -> list[str]:
    """Delete temporary files (``.NAME[.PID].tmp``) a stopped or killed run left in the run
    folder and its outputs folder; call only while holding the lock. Returns their names."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / outputs):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if _TEMP.fullmatch(name) and (folder / name).is_file():
                try:
                    os.unlink(folder / name)
                    removed.append(str(folder / name))
                except OSError:
                    pass
    return removed


# ------------------------------------------------------------------------------------------
# --overwrite

def is_run_manifest(path: Path) -> bool:
    """True when ``path`` is a manifest this suite wrote (JSON object with its version key)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "resyn_bench_version" in data and "config" in data


def _recorded_outputs(records: Path, outputs: str) -> set[str]:
    """Names of files under OUTPUTS/ that the record log says the suite wrote."""
    names: set[str] = set()
    try:
        data = records.read_bytes()
    except OSError:
        return names
    for raw in data.split(b"\n"):
        try:
            ev = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            continue
        path = ev.get("output_path") if isinstance(ev, dict) else None
        if isinstance(path, str) and path.startswith(outputs + "/"):
            name = path[len(outputs) + 1:]
            if name and "/" not in name and name not in (".", ".."):
                names.add(name)
    return names


def clear_run(run_dir: str | Path, own_files: Iterable[str], outputs: str = "outputs"
              ) -> list[str]:
    """``--overwrite``: delete the suite's files of the run in ``run_dir``; returns what was kept.

    Refuses (:class:`RunFolderError`) a folder that holds files but no manifest marking it as a
    run. Deletes the named ``own_files`` (manifest, records, quarantine), the outputs the records
    name, temporary leftovers, then the outputs folder if it is empty. Anything else (a user's
    file in outputs/) is kept and listed."""
    run_dir = Path(run_dir)
    manifest = run_dir / "manifest.json"
    if not run_dir.exists():
        return []
    foreign = [n for n in os.listdir(run_dir) if n not in (LOCK_FILE, RESERVE_FILE)]
    if not foreign:
        return []
    if not is_run_manifest(manifest):
        why = "no manifest.json" if not manifest.exists() else "its manifest.json is not a run manifest"
        raise RunFolderError(f"--overwrite refused: {run_dir} is not a resyn-bench run folder ({why}) "
                             f"and holds {len(foreign)} files, e.g. {sorted(foreign)[:3]}; "
                             "--overwrite deletes only run folders. Choose another --out")
    out_dir = run_dir / outputs
    ours = _recorded_outputs(run_dir / "records.jsonl", outputs) if out_dir.is_dir() else set()
    for name in own_files:
        (run_dir / name).unlink(missing_ok=True)
    remove_leftovers(run_dir, outputs)
    kept: list[str] = []
    if out_dir.is_dir():
        for name in ours:
            p = out_dir / name
            if p.is_file() and not p.is_symlink():
                p.unlink()
        kept = sorted(os.listdir(out_dir))
        if not kept:
            out_dir.rmdir()
    return [f"{outputs}/{n}" for n in kept]
