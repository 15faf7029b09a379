"""Sharded evaluation: ``run --shard i/N``, ``merge``, and the torchrun / SLURM launchers.

Membership
    Utterance ``u`` (the id its records carry: ``UTT`` or, for voice conversion,
    ``UTT__to_TARGET``) belongs to shard ``int(sha256(u)[:8 bytes]) mod N``. It depends on the
    id and N alone, so it is stable when the corpus grows (an id never moves to another shard
    because others were added), and every id is in exactly one shard: no padding, no
    duplicates. Shard sizes follow the hash (about len/N each, not equal).

Shard folders
    ``run --out RUN --shard i/N`` evaluates shard i into ``RUN/shards/shard-i-of-N``, an
    ordinary run folder (resumable, ``summary``/``score`` work on it) whose manifest records
    the shard (index, count) and a fingerprint of the full selection (sha256 of its sorted ids),
    so that shards of different ``--limit``/``--split``/dataset copies are not merged.

Corpus-level steps (why merged numbers equal unsharded ones)
    * The speaker classifier (``spk``: every metric group with ``needs_corpus``) is fitted in
      every shard on the same recordings as an unsharded run: the real recordings of the whole
      dataset selection, minus those whose synthesis failed at the reference stage. A shard
      decides that for the other shards' utterances with the same test
      (:func:`resyn_bench.runner.load_reference`), so its fold models are the unsharded run's
      and the scores of its own utterances are too. Cost: every shard embeds every real
      recording once (a shared analysis cache, the default, makes that once per dataset).
    * The reference-analysis cache (:mod:`resyn_bench.cache`) is content-addressed and written
      atomically: shards share it, a hit holds the same arrays a miss computes.
    * Pooling (WER over the corpus, EER over all trials, bootstrap CIs) happens when a run is
      summarised, from the per-utterance records; a merged run holds the union of the shards'
      records, so the pooled figures are those of one process.

Merge
    :func:`merge_runs` makes one ordinary run folder from complete shards: their record logs
    concatenated, their output files hard-linked (copied across file systems), one manifest. It
    refuses shards whose configuration, dataset selection or code version differ (naming the
    field), and lists missing or incomplete shards by index.

Launchers
    ``--shard auto`` takes the shard from torchrun's ``RANK``/``WORLD_SIZE`` or a SLURM array's
    ``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` / ``SLURM_ARRAY_TASK_COUNT``; under torchrun
    (``WORLD_SIZE`` > 1) that is the default. Under torchrun rank 0 merges into ``RUN`` after
    a barrier (gloo on CPU, nccl where each rank has a GPU); when no process group can be
    formed it waits for the other shards' manifests instead (``--shard-wait`` seconds). A SLURM
    array has no rank that outlives the others: merge in a dependent job
    (docs/examples/slurm_array.sh).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from resyn_bench.runner import RunError

log_ = logging.getLogger("resyn_bench.sharding")

#: the folder of a run that holds its shards (``RUN/shards/shard-i-of-N``)
SHARDS_DIR = "shards"
MEMBERSHIP = "sha256(utt_id)[:8] big-endian mod count"
#: seconds rank 0 waits for the other shards by default (``--shard-wait``)
DEFAULT_WAIT_S = 48 * 3600.0


class ShardError(RunError):
    """Shards that cannot be run or merged as asked (the message says which and why)."""


# ---- membership ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self):
        if self.count < 1:
            raise ShardError(f"shard count must be >= 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardError(f"shard index {self.index} is outside 0..{self.count - 1} "
                             f"(shards of {self.count} are numbered from 0)")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        """The shard's folder name: ``shard-03-of-16`` (zero-padded, so folders sort)."""
        width = len(str(self.count - 1))
        return f"shard-{self.index:0{width}d}-of-{self.count}"

    def __str__(self) -> str:
        return self.label


def parse_shard(text: str) -> Shard:
    """``"i/N"`` (0 <= i < N) -> Shard; ShardError naming the option otherwise."""
    index, sep, count = str(text).strip().partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError:
        raise ShardError(f"--shard expects INDEX/COUNT with 0 <= INDEX < COUNT (e.g. 0/4), or "
                         f"auto; got {text!r}") from None


def shard_of(utt_id: str, count: int) -> int:
    """The shard (0..count-1) of an utterance id: a function of the id and count alone."""
    digest = hashlib.sha256(str(utt_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select(utterances: Iterable, shard: Shard) -> list:
    """The utterances of ``shard``, in their given order."""
    return [u for u in utterances if shard_of(u.utt_id, shard.count) == shard.index]


def selection_fingerprint(utt_ids: Iterable[str]) -> str:
    """sha256 of the sorted, newline-joined ids: equal for equal selections, whatever order."""
    h = hashlib.sha256()
    for uid in sorted(utt_ids):
        h.update(str(uid).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def shard_dir(run_dir: str | Path, shard: Shard) -> Path:
    return Path(run_dir) / SHARDS_DIR / shard.name


# ---- the runner's side ------------------------------------------------------------------------

@dataclass
class ShardWork:
    """What :func:`resyn_bench.runner.run` needs to evaluate one shard."""
    work: list                         # this shard's utterances
    manifest: dict[str, Any]           # the manifest's "shard" entry
    outside: list = field(default_factory=list)   # dataset utterances of the other shards


def take_shard(spec: str, work: list, dataset_utterances: list) -> ShardWork:
    """Split the full work list; ``outside`` are the dataset's own utterances (real
    recordings) that are evaluated by other shards, whose reference check the corpus models
    need (see :func:`corpus_synthesis`)."""
    shard = parse_shard(spec)
    mine = select(work, shard)
    ids = {u.utt_id for u in mine}
    full = {u.utt_id for u in work}
    outside = [u for u in dataset_utterances if u.utt_id in full and u.utt_id not in ids]
    entry = {"index": shard.index, "count": shard.count, "membership": MEMBERSHIP,
             "selection": {"fingerprint": selection_fingerprint(full), "n_utterances": len(full)}}
    return ShardWork(mine, entry, outside)


def corpus_synthesis(outside: list, synthesis: dict[str, dict], max_duration: float | None
                     ) -> dict[str, dict]:
    """The synthesis parts a corpus model consults, for a shard: its own records plus, for
    each utterance of the other shards, what its synthesis part would say about the reference:
    ``{"stage": "reference"}`` when :func:`~resyn_bench.runner.load_reference` refuses it (an
    unsharded run leaves those recordings out of the corpus models), else its content hash
    (which finds the cached analysis without decoding the file twice)."""
    from resyn_bench.audio import AudioError
    from resyn_bench.cache import audio_hash
    from resyn_bench.runner import load_reference

    view: dict[str, dict] = {}
    for utt in outside:
        try:
            ref = load_reference(utt.path, max_duration)
        except AudioError:
            view[utt.utt_id] = {"stage": "reference"}
            continue
        view[utt.utt_id] = {"reference_hash": audio_hash(ref.samples, ref.sample_rate)}
        del ref
    view.update(synthesis)
    return view


# ---- merge ------------------------------------------------------------------------------------

@dataclass
class MergeResult:
    run_dir: Path
    n_shards: int
    n_utterances: int
    n_parts: int
    n_outputs: int
    manifest: Any          # resyn_bench.runfiles.Manifest of the merged run


@dataclass(frozen=True)
class ShardInfo:
    """A shard run's ``manifest["shard"]``: which shard, of how many, of which selection."""
    index: int
    count: int
    fingerprint: str
    n_selected: int
    membership: str = MEMBERSHIP

    @classmethod
    def from_json(cls, d: Any, source: Path) -> ShardInfo:
        from resyn_bench.runfiles import RunFileError

        sel = d.get("selection") if isinstance(d, dict) else None
        try:
            return cls(int(d["index"]), int(d["count"]), str(sel["fingerprint"]),
                       int(sel["n_utterances"]), str(d.get("membership", MEMBERSHIP)))
        except (TypeError, KeyError, ValueError):
            raise RunFileError(f"{source}: field 'shard' must hold index, count and selection "
                               f"(fingerprint, n_utterances), got {_short(d)}") from None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count, "membership": self.membership,
                "selection": {"fingerprint": self.fingerprint, "n_utterances": self.n_selected}}


def _iter_parts(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(raw line, part) of a record log, one line at a time (memory flat in its length), each
    part checked against the run-file schema (:func:`resyn_bench.runfiles.parse_part`). A torn
    line (not JSON: a killed write, redone later) is skipped; a damaged one raises."""
    from resyn_bench.runfiles import parse_part
    from resyn_bench.store import RecordsError, record_problem

    if not path.exists():
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                part = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                log_.warning("%s line %d: torn line, skipped", path, lineno)
                continue
            problem = record_problem(part)
            if problem:
                raise RecordsError(f"{path} line {lineno}: {problem}. Check it with "
                                   f"`resyn-bench validate {path.parent}`")
            parse_part(part, path, lineno)
            yield (raw if raw.endswith(b"\n") else raw + b"\n"), part


def _fields(shard: _Shard) -> dict[str, tuple[str, Any]]:
    """The manifest fields that must be equal across shards: {field: (kind, value)}."""
    m = shard.manifest
    out: dict[str, tuple[str, Any]] = {}
    for key, value in m.config.identity.items():
        if key != "shard":
            out[f"config.identity.{key}"] = ("configuration", value)
    for key in ("label", "max_duration", "f0_preset"):
        out[f"config.{key}"] = ("configuration", m.config.data.get(key))
    for group, key in sorted(m.metric_keys().items()):
        out[f"metrics.{group}.key"] = ("configuration", key)
    out["system"] = ("configuration", m.system.to_json() if m.system is not None else None)
    out["config.limit"] = ("dataset selection", m.config.limit)
    for key, value in m.dataset.to_json().items():
        if key != "n_utterances":
            out[f"dataset.{key}"] = ("dataset selection", value)
    out["shard.selection.fingerprint"] = ("dataset selection", shard.info.fingerprint)
    out["shard.count"] = ("dataset selection", shard.info.count)
    out["resyn_bench_version"] = ("code version", m.resyn_bench_version)
    out["pooling_version"] = ("code version", m.pooling_version)
    out["schema_version"] = ("code version", m.schema_version)
    out["environment.python"] = ("code version", m.environment.get("python"))
    out["environment.git"] = ("code version", m.environment.get("git"))
    for name, version in sorted((m.environment.get("packages") or {}).items()):
        out[f"environment.packages.{name}"] = ("code version", version)
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class _Shard:
    path: Path
    manifest: Any      # resyn_bench.runfiles.Manifest
    info: ShardInfo

    @property
    def index(self) -> int:
        return self.info.index

    @property
    def count(self) -> int:
        return self.info.count

    @property
    def tag(self) -> str:
        return f"shard {self.index}/{self.count} ({self.path})"


def _read_shards(dirs: list[Path]) -> list[_Shard]:
    from resyn_bench.runfiles import RunFileError, read_manifest
    from resyn_bench.store import MANIFEST

    shards = []
    for d in dirs:
        if not (d / MANIFEST).is_file():
            raise ShardError(f"{d} is not a run folder (no {MANIFEST}): give the shard folders "
                             f"that `resyn-bench run --shard i/N` made (RUN/{SHARDS_DIR}/shard-*)")
        try:   # every field against the run-file schema; a newer schema is refused
            manifest = read_manifest(d)
        except RunFileError as exc:
            raise ShardError(str(exc)) from None
        entry = manifest.shard
        if entry is None:
            raise ShardError(f"{d} is a run made without --shard: merge takes the shards of one "
                             f"sharded run (`resyn-bench run ... --shard i/N`)")
        shards.append(_Shard(d, manifest, ShardInfo.from_json(entry, d / MANIFEST)))
    return shards


def check_shards(shards: list[_Shard]) -> None:
    """ShardError when the shards are not one complete set of one configuration: differing
    fields (named), duplicate indices, missing indices."""
    first = min(shards, key=lambda s: s.index)
    ref = _fields(first)
    problems: list[str] = []
    for shard in shards:
        if shard is first:
            continue
        mine = _fields(shard)
        for key in sorted(set(ref) | set(mine)):
            a, b = ref.get(key, ("", None)), mine.get(key, ("", None))
            if a[1] != b[1]:
                kind = a[0] or b[0]
                problems.append(f"{kind} differs: {key} is {_short(a[1])} in {first.tag} but "
                                f"{_short(b[1])} in {shard.tag}")
    if problems:   # the selection first (it explains the rest), then configuration, code
        order = ("dataset selection", "configuration", "code version")
        problems.sort(key=lambda p: (order.index(p.partition(" differs")[0]),
                                     "fingerprint" not in p))
        more = f" (and {len(problems) - 3} more differences)" if len(problems) > 3 else ""
        raise ShardError("cannot merge shards of different runs: " + "; ".join(problems[:3])
                         + more + ". Run every shard with the same command, code and data")
    count = first.count
    seen: dict[int, Path] = {}
    for shard in shards:
        if shard.index in seen:
            raise ShardError(f"shard {shard.index}/{count} given twice: {seen[shard.index]} and "
                             f"{shard.path}")
        seen[shard.index] = shard.path
    missing = [i for i in range(count) if i not in seen]
    if missing:
        listed = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise ShardError(f"missing shards {listed} of {count} (have {len(seen)}): run them "
                         f"(`resyn-bench run ... --shard INDEX/{count}`, same command) and merge "
                         f"again")


def _scan(shard: _Shard) -> tuple[int, set[str], list[str]]:
    """(parts, ids with a synthesis part, what is incomplete) of a shard's record log."""
    from resyn_bench.store import RECORDS, event_key

    keys = shard.manifest.metric_keys()
    legacy = shard.manifest.legacy_metric_keys
    synth_ok: set[str] = set()
    synth_any: set[str] = set()
    scored: dict[str, set[str]] = {g: set() for g in keys}
    n = 0
    for _raw, part in _iter_parts(shard.path / RECORDS):
        n += 1
        uid = part["utt_id"]
        if part.get("part", "synthesis") == "synthesis":
            synth_any.add(uid)
            if part.get("status") == "ok":
                synth_ok.add(uid)
            else:
                synth_ok.discard(uid)
        elif part["group"] in keys and event_key(part, legacy) == keys[part["group"]]:
            scored[part["group"]].add(uid)
    problems = []
    status = shard.manifest.status
    if status != "complete":
        problems.append(f"status {status!r}")
    expected = shard.manifest.dataset.n_utterances or 0
    if len(synth_any) < expected:
        problems.append(f"{expected - len(synth_any)} of {expected} utterances not synthesized")
    for group, ids in scored.items():
        lacking = len(synth_ok - ids)
        if lacking:
            problems.append(f"{lacking} utterances lack {group} scores")
    return n, synth_any, problems


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        try:
            if os.path.samefile(src, dst):
                return
        except OSError:
            pass
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:   # another file system, or no hard links there
        shutil.copy2(src, dst)


def merge_runs(shard_dirs: Iterable[str | Path], out: str | Path, overwrite: bool = False
               ) -> MergeResult:
    """One run folder ``out`` from the complete shards of one sharded run (see the module
    notes). A folder ``out`` that holds a run is replaced only when it is an earlier merge of
    the same selection (merging again after resuming a shard), or with ``overwrite``."""
    from resyn_bench.core.atomic import atomic_open
    from resyn_bench.runfiles import read_manifest, write_manifest
    from resyn_bench.runfolder import RunFolderError, RunLock, clear_run
    from resyn_bench.store import MANIFEST, OUTPUTS, QUARANTINE, RECORDS

    out = Path(out)
    dirs = [Path(d) for d in shard_dirs]
    if not dirs:
        raise ShardError(f"no shard folders given, and {out / SHARDS_DIR} holds none")
    for d in dirs:
        if d.resolve() == out.resolve():
            raise ShardError(f"--out {out} is one of the shards; merge into another folder")
    shards = sorted(_read_shards(dirs), key=lambda s: s.index)
    check_shards(shards)
    owner: dict[str, int] = {}
    incomplete = []
    for shard in shards:
        _n, ids, problems = _scan(shard)
        for uid in ids:
            other = owner.setdefault(uid, shard.index)
            if other != shard.index:
                raise ShardError(f"utterance {uid!r} has records in shard {other} and shard "
                                 f"{shard.index}: these folders are not shards of one run")
        if problems:
            incomplete.append(f"{shard.index} ({shard.path}: {', '.join(problems)})")
    if incomplete:
        raise ShardError(f"incomplete shards: {'; '.join(incomplete)}. Resume each with the "
                         f"command that made it (the same --shard), then merge again")
    n_utts = len(owner)
    del owner

    selection = shards[0].info.to_json()["selection"]
    try:
        with RunLock(out):
            if (out / MANIFEST).is_file():
                previous = read_manifest(out)
                again = (previous.merged_from or {}).get("selection") == selection
                if again and not set(previous.metrics) <= set(shards[0].manifest.metrics):
                    again = False   # scored further after the merge: do not drop those records
                if overwrite:
                    clear_run(out, (MANIFEST, RECORDS, QUARANTINE), OUTPUTS)
                elif not again:
                    raise ShardError(f"{out} already holds a run (not a merge of these shards); "
                                     f"choose another --out, or --overwrite to replace it")
            elif (out / RECORDS).is_file() and (out / RECORDS).stat().st_size:
                raise ShardError(f"{out} has records but no manifest; refusing to mix runs "
                                 f"(choose another --out)")
            n_outputs = 0
            for shard in shards:
                src = shard.path / OUTPUTS
                if src.is_dir():
                    (out / OUTPUTS).mkdir(parents=True, exist_ok=True)
                    for entry in os.scandir(src):
                        if entry.is_file() and not entry.name.startswith("."):
                            _link_or_copy(Path(entry.path), out / OUTPUTS / entry.name)
                            n_outputs += 1
            n_parts = 0
            with atomic_open(out / RECORDS) as fh:
                for shard in shards:
                    for raw, _part in _iter_parts(shard.path / RECORDS):
                        fh.write(raw)
                        n_parts += 1
            manifest = merged_manifest(shards, out, n_utts)
            write_manifest(out, manifest)
    except RunFolderError as exc:
        raise ShardError(str(exc)) from None
    return MergeResult(out, len(shards), n_utts, n_parts, n_outputs, manifest)


def merged_manifest(shards: list[_Shard], out: Path, n_utterances: int):
    """The typed manifest of a merged run: shard 0's, with the whole selection's count,
    every shard's sessions (tagged with the shard), summed resampling counts, the union of
    the metric sets, and ``merged_from`` in place of ``shard``."""
    from resyn_bench.runfiles import RunSettings

    base = copy.deepcopy(shards[0].manifest)
    config = base.config.to_json()
    config.update(out=str(out), shard=None)
    if isinstance(config.get("identity"), dict):
        config["identity"] = {**config["identity"], "shard": None}
    base.config = RunSettings(config)
    base.dataset.n_utterances = n_utterances
    resampling: dict[str, int] = {}
    sessions = []
    for shard in shards:
        m = shard.manifest
        for k, v in m.resampling.items():
            resampling[k] = resampling.get(k, 0) + int(v)
        for session in m.sessions:
            session = copy.deepcopy(session)
            session.other["shard"] = shard.index
            sessions.append(session)
        base.metric_sets.update(m.metric_sets)
    base.resampling = resampling
    base.sessions = sessions
    base.created = min((s.manifest.created for s in shards if s.manifest.created),
                       default=base.created)
    base.status = "complete"
    info = shards[0].info
    base.shard = None
    base.present = base.present - {"shard"}
    base.merged_from = {
        "count": info.count, "membership": info.membership,
        "selection": info.to_json()["selection"],
        "shards": [{"index": s.index, "path": str(s.path),
                    "n_utterances": s.manifest.dataset.n_utterances} for s in shards]}
    return base


def default_shard_dirs(out: str | Path) -> list[Path]:
    """The shard folders of ``out`` (``out/shards/*`` holding a manifest), sorted."""
    from resyn_bench.store import MANIFEST

    root = Path(out) / SHARDS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MANIFEST).is_file())


# ---- launchers ----------------------------------------------------------------------------

def _env_int(env: dict[str, str], name: str) -> int | None:
    value = (env.get(name) or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ShardError(f"environment variable {name}={value!r} is not an integer") from None


def shard_from_env(env: dict[str, str] | None = None) -> tuple[Shard, str] | None:
    """(shard, launcher) from torchrun's RANK/WORLD_SIZE (launcher "torchrun", when WORLD_SIZE
    > 1) or a SLURM array's task id/count (launcher "slurm"); None when neither is set."""
    env = dict(os.environ if env is None else env)
    world = _env_int(env, "WORLD_SIZE")
    if world is not None and world > 1:
        rank = _env_int(env, "RANK")
        if rank is None:
            raise ShardError(f"WORLD_SIZE={world} but RANK is not set: launch with torchrun")
        return Shard(rank, world), "torchrun"
    task = _env_int(env, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
        low = _env_int(env, "SLURM_ARRAY_TASK_MIN") or 0
        if count is None:
            raise ShardError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
        high = _env_int(env, "SLURM_ARRAY_TASK_MAX")
        if high is not None and high - low + 1 != count:
            raise ShardError(f"the SLURM array {low}-{high} is not contiguous ({count} tasks): "
                             f"use --array={low}-{low + count - 1}, or --shard INDEX/COUNT")
        return Shard(task - low, count), "slurm"
    return None


def resolve_shard(spec: str | None, env: dict[str, str] | None = None
                  ) -> tuple[Shard, str] | None:
    """``--shard`` as given: None (unsharded, except under torchrun with WORLD_SIZE > 1),
    ``auto`` (torchrun, else a SLURM array) or ``i/N``."""
    found = shard_from_env(env)
    if spec is None:
        return found if found is not None and found[1] == "torchrun" else None
    if str(spec).strip() == "auto":
        if found is None:
            raise ShardError("--shard auto: neither torchrun (RANK, WORLD_SIZE > 1) nor a SLURM "
                             "array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT) is set; give "
                             "--shard INDEX/COUNT")
        return found
    return parse_shard(spec), "manual"


class _Group:
    """A torch.distributed process group used for barriers only (None when it cannot form)."""

    def __init__(self, timeout_s: float):
        self.dist = None
        try:
            import datetime

            import torch
            import torch.distributed as dist

            local = int(os.environ.get("LOCAL_RANK", "0") or 0)
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
            kwargs: dict[str, Any] = {}
            # every rank must pick the same backend: nccl only when each rank of a node has
            # its own GPU (NCCL refuses two ranks on one device)
            if torch.cuda.is_available() and per_node <= torch.cuda.device_count():
                backend = "nccl"
                kwargs["device_id"] = torch.device(f"cuda:{local}")
                torch.cuda.set_device(local)
            else:
                backend = "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend=backend, init_method="env://",
                                        timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
            self.dist = dist
            self.backend = backend
            self.local = local
        except Exception as exc:  # no rendezvous: the file-based wait takes over
            log_.warning("no torch.distributed process group (%s: %s); rank 0 waits for the "
                         "shards' manifests instead", type(exc).__name__, exc)

    def barrier(self) -> None:
        if self.dist is not None:
            if self.backend == "nccl":
                self.dist.barrier(device_ids=[self.local])
            else:
                self.dist.barrier()

    def close(self) -> None:
        if self.dist is not None and self.dist.is_initialized():
            self.dist.destroy_process_group()


def wait_for_shards(dirs: list[Path], timeout_s: float, poll_s: float = 5.0,
                    since: str | None = None) -> None:
    """Wait until every shard folder's manifest says the shard stopped running (complete,
    interrupted or stopped) in a session that finished at or after ``since`` (ISO UTC time:
    a manifest left by an earlier launch does not count); ShardError naming the ones still
    running after ``timeout_s``."""
    from resyn_bench.store import MANIFEST, read_manifest

    deadline = time.monotonic() + timeout_s
    while True:
        waiting = []
        for d in dirs:
            try:
                manifest = read_manifest(d) if (d / MANIFEST).is_file() else {}
            except (OSError, ValueError):
                manifest = {}
            status = manifest.get("status")
            finished = str(((manifest.get("sessions") or [{}])[-1] or {}).get("finished") or "")
            if status in (None, "running"):
                waiting.append(f"{d} ({status or 'not started'})")
            elif since is not None and finished < since:
                waiting.append(f"{d} (not started in this launch)")
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise ShardError(f"waited {timeout_s:g} s for shards still running: "
                             f"{', '.join(waiting[:5])}; merge later with `resyn-bench merge`")
        time.sleep(poll_s)


def run_shard(config, shard: Shard, launcher: str, progress: bool = True,
              max_failed: float | None = None, wait_s: float = DEFAULT_WAIT_S) -> int:
    """``resyn-bench run --shard``: evaluate one shard into ``config.out/shards/<shard>``;
    under torchrun rank 0 then merges every shard into ``config.out``. The exit status:
    the shard's (manual, SLURM), the merged run's on rank 0 and 0 on other ranks (torchrun:
    a non-zero rank exit would make torchrun stop rank 0 while it merges)."""
    import dataclasses

    from resyn_bench.cli.common import report_outcome
    from resyn_bench.run_outcome import DEFAULT_MAX_FAILED
    from resyn_bench.runner import run

    max_failed = DEFAULT_MAX_FAILED if max_failed is None else max_failed
    base = Path(config.out)
    mine = dataclasses.replace(config, out=str(shard_dir(base, shard)), shard=shard.label)
    # sessions that end after this moment belong to this launch (a minute of slack for ranks
    # that start earlier): the file-based wait must not take an earlier launch's shards
    launched = (datetime.now(timezone.utc) - timedelta(seconds=60)).isoformat(timespec="seconds")
    group = _Group(wait_s) if launcher == "torchrun" else None
    try:
        result = run(mine, progress=progress)
        print(f"shard {shard.label} ({launcher}) {result.run_dir}: {result.n_processed} "
              f"evaluated ({result.n_failed} failed), {result.n_done_before} already done, "
              f"{result.n_total} in the shard; {result.wall_s:.1f} s")
        status = report_outcome(result, max_failed)
        if launcher != "torchrun":
            print(f"next: when all {shard.count} shards are done: resyn-bench merge --out {base}")
            return status
        if group is not None and group.dist is not None:
            group.barrier()
        elif shard.index == 0:
            wait_for_shards([shard_dir(base, Shard(i, shard.count)) for i in range(shard.count)],
                            wait_s, since=launched)
        if shard.index != 0:
            return 0
        merged = merge_runs([shard_dir(base, Shard(i, shard.count)) for i in range(shard.count)],
                            base, overwrite=config.overwrite)
        return report_merge(merged, max_failed)
    finally:
        if group is not None:
            group.close()


def report_merge(result: MergeResult, max_failed: float) -> int:
    """Print what a merge made; the exit status of the merged run's outcome (0 or 3)."""
    from resyn_bench.cli.common import report_outcome
    from resyn_bench.store import RecordStore

    print(f"merged {result.n_shards} shards into {result.run_dir}: {result.n_utterances} "
          f"utterances, {result.n_parts} record parts, {result.n_outputs} output files")
    records = RecordStore(result.run_dir).load(list(result.manifest.metrics), lean=True)
    outcome = _Outcome(result.run_dir, records, list(records), result.manifest.dataset.to_json())
    status = report_outcome(outcome, max_failed)
    print(f"next: resyn-bench summary {result.run_dir}")
    return status


@dataclass
class _Outcome:   # what report_outcome reads of a RunResult
    run_dir: Path
    records: dict[str, dict[str, Any]]
    work_ids: list[str]
    dataset_info: dict[str, Any]
