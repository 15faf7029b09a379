"""Typed, versioned run files: the interface between the runner and everything that reads a run.

A run folder (see :mod:`resyn_bench.store` for the layout and the append protocol) holds

- ``manifest.json``: one :class:`Manifest` (the run's settings, system, dataset selection, metric
  groups and their settings keys, code versions, sessions and timings);
- ``records.jsonl``: record *parts*, one JSON object a line: a :class:`SynthesisPart` per
  utterance (the reference checks and the system's output) and a :class:`MetricPart` per
  utterance and metric group (status, values, additive counts, extra), keyed by the group's
  settings (``group@<12 hex>``, :func:`resyn_bench.store.metric_key`).

Readers: :func:`read_manifest` (typed, upgraded, validated), :func:`iter_parts` (typed parts) and
:func:`iter_records` (one merged :class:`Record` per utterance, the parts combined by
:func:`resyn_bench.store.merge_events`).

Versions. The manifest carries ``schema_version`` (:data:`SCHEMA_VERSION`); a manifest without
one is version 0 (the layout before the field existed). :func:`upgrade` is the one place that
brings older run files to the current version, in memory (the files on disk are never rewritten
by a reader). A run written by a newer schema than this code knows is refused
(:class:`NewerSchemaError`: upgrade resyn-bench). The manifest also records the version of the
pooling code (``pooling_version``, :data:`resyn_bench.reports.collate.POOLING_VERSION`) the run
was scored under; :func:`pooling_warning` says when a re-render uses another one.

Bump rule for :data:`SCHEMA_VERSION`: bump it when a field is renamed, removed, or changes meaning
in ``manifest.json`` or a record part (adding an optional field does not need a bump), and add
the step from the previous version to :func:`upgrade`, with a test that reads a run of the
previous version.

Schema history:

- 0: no ``schema_version``; metric entries written before records were keyed have no ``key``
  and their parts have none either.
- 1: ``schema_version`` and ``pooling_version``; every metric entry has its ``key``; a metric
  part's key is known (stamped by :func:`upgrade` from ``legacy_metric_keys`` for old parts).
"""
from __future__ import annotations

import copy
import json
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resyn_bench.store import (
    MANIFEST,
    RECORDS,
    RecordsError,
    RecordStore,
    merge_events,
    metric_key,
    record_problem,
    write_json_atomic,
)

#: the run-file schema this code writes and reads (see the bump rule in the module notes)
SCHEMA_VERSION = 1


class RunFileError(RecordsError):
    """A run file does not hold what the schema says (names the file and the field)."""


class NewerSchemaError(RunFileError):
    """The run was written by a newer resyn-bench than this one (its schema is unknown here)."""


# --------------------------------------------------------------------------- field checks

def _where(source: str | Path | None, name: str) -> str:
    return f"{source or MANIFEST}: field {name!r}"


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number" if isinstance(value, numbers.Real)
                                    else type(value).__name__)


def _bad(source, name: str, want: str, value: Any) -> RunFileError:
    shown = json.dumps(value, default=str)[:60] if not isinstance(value, (dict, list)) else ""
    return RunFileError(f"{_where(source, name)} must be {want}, got {_type_name(value)}"
                        f"{' ' + shown if shown else ''}; the file is damaged or was not written "
                        f"by resyn-bench (`resyn-bench validate` checks a run folder)")


def _obj(d: dict, key: str, source, prefix: str = "", optional: bool = True) -> dict[str, Any]:
    value = d.get(key)
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise _bad(source, prefix + key, "an object", value)
    return value


def _str(d: dict, key: str, source, prefix: str = "") -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(source, prefix + key, "a string", value)
    return value


def _int(d: dict, key: str, source, prefix: str = "") -> int | None:
    value = d.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _bad(source, prefix + key, "an integer", value)
    return value


def _num(d: dict, key: str, source, prefix: str = "") -> float | None:
    value = d.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise _bad(source, prefix + key, "a number", value)
    return value


def _list(d: dict, key: str, source, prefix: str = "") -> list[Any]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(source, prefix + key, "a list", value)
    return value


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rest(d: dict, known: Iterable[str]) -> dict[str, Any]:
    known = set(known)
    return {k: v for k, v in d.items() if k not in known}


def _put(out: dict, key: str, value: Any, present: frozenset[str]) -> None:
    """Write an optional field: when it has a value, or was in the file (an explicit null)."""
    if value is not None or key in present:
        out[key] = value


# --------------------------------------------------------------------------- manifest

@dataclass
class MetricEntry:
    """One metric group of a run (``manifest["metrics"][group]``): the settings its parts were
    scored under and the record key they carry."""

    group: str
    key: str | None = None                   # group@<12 hex>; None only before upgrade()
    settings: dict[str, Any] = field(default_factory=dict)   # group.settings(): models, presets
    specs: list[dict[str, Any]] = field(default_factory=list)  # MetricSpec.to_dict() each
    options: dict[str, Any] = field(default_factory=dict)    # options the run gave the group
    analysis_sample_rate: int | None = None
    other: dict[str, Any] = field(default_factory=dict)     # fields this code does not know
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    FIELDS = ("key", "settings", "specs", "options", "analysis_sample_rate")

    @classmethod
    def from_json(cls, group: str, d: Any, source=None) -> MetricEntry:
        prefix = f"metrics.{group}."
        if not isinstance(d, dict):
            raise _bad(source, f"metrics.{group}", "an object", d)
        specs = _list(d, "specs", source, prefix)
        for i, s in enumerate(specs):
            if not isinstance(s, dict) or not isinstance(s.get("key"), str):
                raise _bad(source, f"{prefix}specs[{i}]", "an object with a 'key'", s)
        return cls(group, key=_str(d, "key", source, prefix),
                   settings=_obj(d, "settings", source, prefix), specs=specs,
                   options=_obj(d, "options", source, prefix),
                   analysis_sample_rate=_int(d, "analysis_sample_rate", source, prefix),
                   other=_rest(d, cls.FIELDS), present=frozenset(d))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        present = self.present or frozenset(self.FIELDS)   # built here: every field
        _put(out, "key", self.key, present)
        for name in ("settings", "specs", "options"):
            if getattr(self, name) or name in present:
                out[name] = getattr(self, name)
        _put(out, "analysis_sample_rate", self.analysis_sample_rate, present)
        out.update(self.other)
        return out

    def record_key(self) -> str:
        """The key of this group's parts (computed from the settings when none is stored)."""
        return self.key or metric_key(self.group, self.to_json())


@dataclass
class SystemInfo:
    """What the system said about itself (``System.describe()``): its name and the streams
    it transmits (kind, frame rate, vocabulary: the bitrate is computed from them)."""

    name: str | None = None
    streams: list[dict[str, Any]] = field(default_factory=list)
    other: dict[str, Any] = field(default_factory=dict)  # class, sample rates, checkpoint facts
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any], source=None) -> SystemInfo:
        streams = _list(d, "streams", source, "system.")
        for i, s in enumerate(streams):
            if not isinstance(s, dict):
                raise _bad(source, f"system.streams[{i}]", "an object", s)
        name = d.get("name")
        return cls(name=None if name is None else str(name), streams=streams,
                   other=_rest(d, ("name", "streams")), present=frozenset(d))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        present = self.present or frozenset(("name", "streams"))   # built here: every field
        _put(out, "name", self.name, present)
        if self.streams or "streams" in present:
            out["streams"] = self.streams
        out.update(self.other)
        return out


@dataclass
class DatasetInfo:
    """The dataset selection a run evaluated (``manifest["dataset"]``)."""

    name: str | None = None
    root: str | None = None
    n_utterances: int | None = None          # the work list (with VC: one per conversion)
    n_source_utterances: int | None = None   # the dataset's utterances
    info: dict[str, Any] = field(default_factory=dict)  # the dataset's own facts (counts, hashes)
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    FIELDS = ("name", "root", "n_utterances", "n_source_utterances")

    @classmethod
    def from_json(cls, d: dict[str, Any], source=None) -> DatasetInfo:
        return cls(name=_str(d, "name", source, "dataset."), root=_str(d, "root", source, "dataset."),
                   n_utterances=_int(d, "n_utterances", source, "dataset."),
                   n_source_utterances=_int(d, "n_source_utterances", source, "dataset."),
                   info=_rest(d, cls.FIELDS), present=frozenset(d))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.FIELDS:
            _put(out, name, getattr(self, name), self.present or frozenset(self.FIELDS))
        out.update(self.info)
        return out


class RunSettings:
    """The run's settings as stored (``manifest["config"]``: the fields of
    :class:`resyn_bench.runner.RunConfig`, plus ``identity``). A typed view over that dict:
    the fields the readers use are properties; any other field through :meth:`get`. The
    dict's keys are RunConfig's field names (this class never renames them)."""

    def __init__(self, data: dict[str, Any] | None = None, source=None):
        self.data: dict[str, Any] = dict(data or {})
        for name in ("system", "dataset", "data_root", "split", "label", "metrics"):
            value = self.data.get(name)
            if value is not None and not isinstance(value, str):
                raise _bad(source, f"config.{name}", "a string", value)
        for name in ("system_options", "dataset_options", "metric_options", "identity"):
            value = self.data.get(name)
            if value is not None and not isinstance(value, dict):
                raise _bad(source, f"config.{name}", "an object", value)
        limit = self.data.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise _bad(source, "config.limit", "an integer", limit)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.data.get(name)
        return default if value is None else value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunSettings) and self.data == other.data

    def __repr__(self) -> str:
        return f"RunSettings({self.data!r})"

    @property
    def system(self) -> str | None:
        return self.data.get("system")

    @property
    def dataset(self) -> str | None:
        return self.data.get("dataset")

    @property
    def data_root(self) -> str | None:
        return self.data.get("data_root")

    @property
    def split(self) -> str | None:
        return self.data.get("split")

    @property
    def limit(self) -> int | None:
        return self.data.get("limit")

    @property
    def label(self) -> str | None:
        return self.data.get("label")

    @property
    def system_options(self) -> dict[str, Any]:
        return self.data.get("system_options") or {}

    @property
    def metric_options(self) -> dict[str, Any]:
        return self.data.get("metric_options") or {}

    @property
    def experiment(self) -> Any:
        """A name, a table with ``name``/``kind``, or None (runs before experiments existed)."""
        return self.data.get("experiment")

    @property
    def identity(self) -> dict[str, Any]:
        return self.data.get("identity") or {}

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass
class Session:
    """One invocation of the runner on the folder (``manifest["sessions"][i]``)."""

    started: str | None = None
    finished: str | None = None
    n_pending: int | None = None
    n_processed: int | None = None
    n_skipped_done: int | None = None
    n_failed: int | None = None
    metric_parts: int | None = None
    wall_s: float | None = None
    jobs: int | None = None
    stage_s: dict[str, float] = field(default_factory=dict)
    #: wall seconds of the synthesis phase and of each metric group (runs since issue 16)
    group_wall_s: dict[str, float] = field(default_factory=dict)
    reference_cache: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    stopped: str | None = None
    other: dict[str, Any] = field(default_factory=dict)
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    INTS = ("n_pending", "n_processed", "n_skipped_done", "n_failed", "metric_parts", "jobs")

    @classmethod
    def from_json(cls, i: int, d: Any, source=None) -> Session:
        p = f"sessions[{i}]."
        if not isinstance(d, dict):
            raise _bad(source, f"sessions[{i}]", "an object", d)
        kw = {name: _int(d, name, source, p) for name in cls.INTS}
        return cls(started=_str(d, "started", source, p), finished=_str(d, "finished", source, p),
                   wall_s=_num(d, "wall_s", source, p), stage_s=_obj(d, "stage_s", source, p),
                   group_wall_s=_obj(d, "group_wall_s", source, p),
                   reference_cache=_obj(d, "reference_cache", source, p),
                   interrupted=bool(d.get("interrupted")), stopped=_str(d, "stopped", source, p),
                   other=_rest(d, (*cls.INTS, "started", "finished", "wall_s", "stage_s",
                                   "group_wall_s", "reference_cache", "interrupted", "stopped")),
                   present=frozenset(d), **kw)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # a session built here (not read) writes every field the runner writes
        present = self.present or frozenset(("started", "finished", *self.INTS, "wall_s", "stage_s",
                                             "reference_cache", "interrupted"))
        for name in ("started", "finished", *self.INTS, "wall_s"):
            _put(out, name, getattr(self, name), present)
        for name in ("stage_s", "group_wall_s", "reference_cache"):
            if getattr(self, name) or name in present:
                out[name] = getattr(self, name)
        if self.interrupted or "interrupted" in present:
            out["interrupted"] = self.interrupted
        _put(out, "stopped", self.stopped, present)
        out.update(self.other)
        return out


_MANIFEST_FIELDS = ("schema_version", "pooling_version", "resyn_bench_version", "created", "config",
                    "system", "dataset", "metrics", "metric_sets", "environment", "resampling",
                    "sessions", "status", "legacy_metric_keys", "training_overlap", "shard",
                    "merged_from")


@dataclass
class Manifest:
    """``manifest.json`` of a run, typed. Build it with :meth:`from_json` (validates, names
    the file and field of a damaged value) or read it with :func:`read_manifest` (which also
    upgrades older runs); :meth:`to_json` gives the dict written to disk."""

    schema_version: int = SCHEMA_VERSION
    config: RunSettings = field(default_factory=RunSettings)
    system: SystemInfo | None = None
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    metrics: dict[str, MetricEntry] = field(default_factory=dict)
    #: every settings key the records hold: key -> {group, settings, options, analysis_sample_rate}
    metric_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the version of the pooling code the run was scored under (None: before it was recorded)
    pooling_version: int | None = None
    resyn_bench_version: str | None = None
    created: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)  # python, platform, git, packages
    resampling: dict[str, Any] = field(default_factory=dict)   # resampling counts by purpose
    sessions: list[Session] = field(default_factory=list)
    status: str | None = None    # running / complete / interrupted / "stopped: ..." (None: old)
    #: group -> key of parts written before records carried keys (their run's one setting)
    legacy_metric_keys: dict[str, str] = field(default_factory=dict)
    training_overlap: dict[str, Any] | None = None   # the system's training set meets the data
    #: a shard of a sharded run (``run --shard i/N``): index, count, membership, selection
    shard: dict[str, Any] | None = None
    #: a run merged from shards (``resyn-bench merge``): count, selection, the shards
    merged_from: dict[str, Any] | None = None
    other: dict[str, Any] = field(default_factory=dict)
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Any, source: str | Path | None = None) -> Manifest:
        """A manifest dict of the current schema (see :func:`upgrade` for older ones)."""
        if not isinstance(d, dict):
            raise RunFileError(f"{source or MANIFEST} is damaged: {_type_name(d)}, not an object")
        version = d.get("schema_version", 0)
        if version != SCHEMA_VERSION:
            check_schema_version(d, source)
            raise RunFileError(f"{source or MANIFEST}: schema version {version}, this code builds "
                               f"version {SCHEMA_VERSION}; read it with read_manifest() or "
                               "upgrade() first")
        metrics = {str(g): MetricEntry.from_json(str(g), e, source)
                   for g, e in _obj(d, "metrics", source).items()}
        sets = _obj(d, "metric_sets", source)
        for k, v in sets.items():
            if not isinstance(v, dict):
                raise _bad(source, f"metric_sets.{k}", "an object", v)
        legacy = _obj(d, "legacy_metric_keys", source)
        for k, v in legacy.items():
            if not isinstance(v, str):
                raise _bad(source, f"legacy_metric_keys.{k}", "a string", v)
        overlap = d.get("training_overlap")
        if overlap is not None and not isinstance(overlap, dict):
            raise _bad(source, "training_overlap", "an object", overlap)
        shard, merged = d.get("shard"), d.get("merged_from")
        if shard is not None and not (isinstance(shard, dict) and _whole(shard.get("index"))
                                      and _whole(shard.get("count"))):
            raise _bad(source, "shard", "an object with whole numbers 'index' and 'count'", shard)
        if merged is not None and not isinstance(merged, dict):
            raise _bad(source, "merged_from", "an object", merged)
        system = d.get("system")
        if system is not None and not isinstance(system, dict):
            raise _bad(source, "system", "an object", system)
        return cls(schema_version=version,
                   config=RunSettings(_obj(d, "config", source), source),
                   system=None if system is None else SystemInfo.from_json(system, source),
                   dataset=DatasetInfo.from_json(_obj(d, "dataset", source), source),
                   metrics=metrics, metric_sets=sets,
                   pooling_version=_int(d, "pooling_version", source),
                   resyn_bench_version=_str(d, "resyn_bench_version", source),
                   created=_str(d, "created", source),
                   environment=_obj(d, "environment", source),
                   resampling=_obj(d, "resampling", source),
                   sessions=[Session.from_json(i, s, source)
                             for i, s in enumerate(_list(d, "sessions", source))],
                   status=_str(d, "status", source), legacy_metric_keys=legacy,
                   training_overlap=overlap, shard=shard, merged_from=merged,
                   other=_rest(d, _MANIFEST_FIELDS),
                   present=frozenset(d))

    def to_json(self) -> dict[str, Any]:
        # a manifest built here (not read) writes every field the runner always writes
        p = self.present or frozenset(("pooling_version", "resyn_bench_version", "created", "system",
                                       "metric_sets", "environment", "resampling", "sessions",
                                       "status"))
        out: dict[str, Any] = {"schema_version": self.schema_version}
        _put(out, "pooling_version", self.pooling_version, p)
        _put(out, "resyn_bench_version", self.resyn_bench_version, p)
        _put(out, "created", self.created, p)
        out["config"] = self.config.to_json()
        if self.system is not None or "system" in p:
            out["system"] = None if self.system is None else self.system.to_json()
        out["dataset"] = self.dataset.to_json()
        out["metrics"] = {g: e.to_json() for g, e in self.metrics.items()}
        for name in ("metric_sets", "environment", "resampling", "legacy_metric_keys"):
            if getattr(self, name) or name in p:
                out[name] = getattr(self, name)
        if self.sessions or "sessions" in p:
            out["sessions"] = [s.to_json() for s in self.sessions]
        _put(out, "status", self.status, p)
        _put(out, "training_overlap", self.training_overlap, p)
        _put(out, "shard", self.shard, p)
        _put(out, "merged_from", self.merged_from, p)
        out.update(self.other)
        return out

    # ---- what the readers ask

    def metric_keys(self) -> dict[str, str]:
        """{group: record key} of the groups the run lists."""
        return {g: e.record_key() for g, e in self.metrics.items()}

    @property
    def system_name(self) -> str | None:
        """The system spec the run was asked for (``config.system``)."""
        return self.config.system

    @property
    def streams(self) -> list[dict[str, Any]]:
        return self.system.streams if self.system is not None else []

    @property
    def overlap_note(self) -> str | None:
        """The training-set overlap warning, if the system's training data meets the dataset."""
        note = (self.training_overlap or {}).get("note")
        return None if note is None else str(note)


def check_schema_version(manifest: dict[str, Any], source: str | Path | None = None) -> int:
    """The manifest's schema version (0 when absent); :class:`NewerSchemaError` for a version
    newer than this code knows, :class:`RunFileError` for a value that is not a version."""
    version = manifest.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise _bad(source, "schema_version", "a whole number >= 0", version)
    if version > SCHEMA_VERSION:
        from resyn_bench import __version__

        raise NewerSchemaError(
            f"{source or MANIFEST}: the run was written with run-file schema version {version}, "
            f"newer than this resyn-bench ({__version__}) reads (up to {SCHEMA_VERSION}): upgrade "
            f"resyn-bench (pip install -U resyn-bench, or pull the newer checkout) to read it")
    return version


def upgrade(manifest: dict[str, Any], records: list[dict[str, Any]] | None = None,
            source: str | Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Bring a manifest dict and its record parts (raw dicts, as in ``records.jsonl``) from the
    schema they were written with to :data:`SCHEMA_VERSION`; returns upgraded copies (the
    arguments are not changed). Raises :class:`NewerSchemaError` for a newer schema.

    Steps:

    - 0 -> 1: every metric entry gets its ``key`` (the hash of its settings, as the runner
      computes it); a group whose entry had none was scored before parts carried keys, so its
      key also goes to ``legacy_metric_keys`` (the runner does the same when it resumes such a
      run), and metric parts without a key get their group's legacy key.
      ``pooling_version`` stays absent (unknown). The key step also runs on a manifest of the
      current version that lacks a key (it cannot hurt: a stored key is never changed).
    """
    version = check_schema_version(manifest, source)
    manifest = copy.deepcopy(manifest)
    records = list(records or [])
    # 0 -> 1 (applied at every version, so that a manifest edited by hand or by another tool
    # that lost its keys reads as the runner would resume it)
    metrics = manifest.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise _bad(source, "metrics", "an object", metrics)
    legacy = manifest.get("legacy_metric_keys") or {}
    if not isinstance(legacy, dict):
        raise _bad(source, "legacy_metric_keys", "an object", legacy)
    legacy = dict(legacy)
    for group, entry in (metrics or {}).items():
        if not isinstance(entry, dict):
            raise _bad(source, f"metrics.{group}", "an object", entry)
        if not entry.get("key"):
            entry["key"] = metric_key(group, entry)
            legacy.setdefault(group, entry["key"])
    if legacy:
        manifest["legacy_metric_keys"] = legacy
    if version < 1:
        manifest["schema_version"] = 1
    # parts of an old run (also one resumed by a newer runner) hold no key: their group's
    # legacy key
    if legacy:
        records = [{**r, "key": legacy[r["group"]]}
                   if isinstance(r, dict) and r.get("part") == "metric" and not r.get("key")
                   and r.get("group") in legacy else r for r in records]
    return manifest, records


# --------------------------------------------------------------------------- record parts

_SYNTH_STR = ("speaker", "text", "reference_path", "output_path", "system", "dataset", "stage",
              "reason", "error_kind", "target_speaker", "reference_hash", "status", "f0_edit")
_SYNTH_NUM = ("duration_s", "reference_sample_rate", "output_duration_s", "output_sample_rate")


@dataclass
class SynthesisPart:
    """``{"part": "synthesis", ...}``: an utterance's reference checks and the system's output.
    ``status`` ok / failed (None: an old part); a failed part names its ``stage`` (input,
    reference, system, output), ``reason`` and ``error_kind`` (crashed, timed_out, too_long, ...)."""

    utt_id: str
    status: str | None = None
    speaker: str | None = None
    text: str | None = None
    reference_path: str | None = None
    output_path: str | None = None     # relative to the run folder (outputs/...) or absolute
    system: str | None = None
    dataset: str | None = None
    stage: str | None = None
    reason: str | None = None
    error_kind: str | None = None
    target_speaker: str | None = None  # voice conversion: the voice the output should have
    f0_edit: str | None = None         # a listed conversion's requested F0 edit (shift:+2)
    reference_hash: str | None = None  # content hash of the reference audio (the cache key)
    duration_s: float | None = None
    reference_sample_rate: int | None = None
    output_duration_s: float | None = None
    output_sample_rate: int | None = None
    bitstream: dict[str, Any] | None = None  # codecs: bits and seconds the encoder produced
    extra: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    kind = "synthesis"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"part": "synthesis", "utt_id": self.utt_id}
        for name in (*_SYNTH_STR, *_SYNTH_NUM, "bitstream"):
            _put(out, name, getattr(self, name), self.present)
        for name in ("extra", "timings"):
            if getattr(self, name) or name in self.present:
                out[name] = getattr(self, name)
        out.update(self.other)
        return out


@dataclass
class MetricPart:
    """``{"part": "metric", "group": ..., ...}``: one metric group's result on one utterance,
    under the settings named by ``key``. ``status`` ok / failed / skipped; ``values`` are the
    per-utterance metrics (full keys, "f0.gpe"), ``counts`` the group's additive counts (the
    pooling input, group-local names), ``extra`` anything else the group keeps (contours,
    trial scores)."""

    utt_id: str
    group: str
    status: str | None = None
    key: str | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    error_kind: str | None = None
    cache: str | None = None           # reference analysis: "hit" / "miss"
    timings: dict[str, float] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    kind = "metric"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"part": "metric", "group": self.group, "utt_id": self.utt_id}
        for name in ("status", "key", "reason", "error_kind", "cache"):
            _put(out, name, getattr(self, name), self.present)
        for name in ("values", "counts", "extra", "timings"):
            if getattr(self, name) or name in self.present:
                out[name] = getattr(self, name)
        out.update(self.other)
        return out


Part = SynthesisPart | MetricPart


def parse_part(d: Any, source: str | Path | None = None, lineno: int | None = None) -> Part:
    """A typed part from a decoded ``records.jsonl`` line; :class:`RunFileError` naming the
    file, line and field for one the suite did not write."""
    where = f"{source or RECORDS}{f' line {lineno}' if lineno else ''}"
    problem = record_problem(d)
    if problem:
        raise RunFileError(f"{where}: {problem}")
    what = f"{d.get('part', 'synthesis')} part of {d['utt_id'][:60]!r}"

    def check(names, want, test):
        for name in names:
            value = d.get(name)
            if value is not None and not test(value):
                err = _bad(None, name, want, value)
                raise RunFileError(f"{where}: {what}: {str(err).split(': ', 1)[1]}")

    if d.get("part", "synthesis") == "synthesis":
        check(_SYNTH_STR, "a string", lambda v: isinstance(v, str))
        check(_SYNTH_NUM, "a number", lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool))
        check(("bitstream",), "an object", lambda v: isinstance(v, dict))
        known = ("part", "utt_id", *_SYNTH_STR, *_SYNTH_NUM, "bitstream", "extra", "timings")
        return SynthesisPart(**{k: d.get(k) for k in ("utt_id", *_SYNTH_STR, *_SYNTH_NUM, "bitstream")},
                             extra=d.get("extra") or {}, timings=d.get("timings") or {},
                             other=_rest(d, known), present=frozenset(d) - {"part"})
    check(("key", "reason", "error_kind", "cache"), "a string", lambda v: isinstance(v, str))
    known = ("part", "utt_id", "group", "status", "key", "values", "counts", "extra", "reason",
             "error_kind", "cache", "timings")
    return MetricPart(utt_id=d["utt_id"], group=d["group"], status=d.get("status"), key=d.get("key"),
                      values=d.get("values") or {}, counts=d.get("counts") or {},
                      extra=d.get("extra") or {}, reason=d.get("reason"),
                      error_kind=d.get("error_kind"), cache=d.get("cache"),
                      timings=d.get("timings") or {}, other=_rest(d, known),
                      present=frozenset(d) - {"part"})


class Record:
    """One utterance of a run: its synthesis part and its metric parts, merged
    (:func:`resyn_bench.store.merge_events` is the rule). ``status``: ok, partial (a metric
    group failed), failed (synthesis failed, or every metric did), incomplete (a wanted group
    has no part yet). :meth:`to_dict` gives the merged dict the tables and reports take.

    The typed parts (:attr:`synthesis`, :attr:`scores`) are built when first asked for, so a
    reader that needs only the merged values pays nothing for them."""

    def __init__(self, merged: dict[str, Any], synthesis: dict[str, Any] | None = None,
                 legacy: dict[str, str] | None = None, source: str | Path | None = None):
        """``merged``: one value of :func:`~resyn_bench.store.merge_events`; ``synthesis``: the
        utterance's synthesis part as stored (None: none yet); ``legacy``: group -> the key of
        parts written before parts carried one."""
        self.merged = merged
        self._synthesis_raw = synthesis
        self._legacy = legacy or {}
        self._source = source
        self._synthesis: SynthesisPart | None = None
        self._scores: dict[str, MetricPart] | None = None

    def __repr__(self) -> str:
        return f"Record({self.utt_id!r}, status={self.status!r}, groups={list(self.merged['scores'])})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self.merged == other.merged

    # ---- the merged values
    @property
    def utt_id(self) -> str:
        return self.merged["utt_id"]

    @property
    def status(self) -> str | None:
        return self.merged.get("status")

    @property
    def stage(self) -> str | None:
        """Where a failed utterance failed: input, reference, system, output, or metrics (every
        group failed)."""
        return self.merged.get("stage")

    @property
    def reason(self) -> str | None:
        return self.merged.get("reason")

    @property
    def error_kind(self) -> str | None:
        return self.merged.get("error_kind")

    @property
    def metrics(self) -> dict[str, float | None]:
        """Every ok group's values, full keys ("f0.gpe")."""
        return self.merged["metrics"]

    @property
    def counts(self) -> dict[str, float | None]:
        """Every ok group's counts, namespaced ("f0.n_frames")."""
        return self.merged["counts"]

    @property
    def extra(self) -> dict[str, Any]:
        """The synthesis part's extra, plus ``extra[group]`` of each ok group."""
        return self.merged["extra"]

    @property
    def errors(self) -> dict[str, str | None]:
        """group -> reason, for the groups that failed."""
        return self.merged["errors"]

    @property
    def skipped(self) -> dict[str, str | None]:
        """group -> reason, for the groups that did not apply."""
        return self.merged["skipped"]

    # ---- the typed parts
    @property
    def synthesis(self) -> SynthesisPart | None:
        """The synthesis part (None: the utterance has none yet)."""
        if self._synthesis is None and self._synthesis_raw is not None:
            part = parse_part(self._synthesis_raw, self._source)
            assert isinstance(part, SynthesisPart)
            self._synthesis = part
        return self._synthesis

    @property
    def scores(self) -> dict[str, MetricPart]:
        """group -> its metric part (under the settings the reader asked for); a part written
        before parts carried keys gets its group's legacy key."""
        if self._scores is None:
            scores = {}
            for group, ev in (self.merged.get("scores") or {}).items():
                part = parse_part(ev, self._source)
                assert isinstance(part, MetricPart)
                if part.key is None and group in self._legacy:
                    part.key = self._legacy[group]
                scores[group] = part
            self._scores = scores
        return self._scores

    @property
    def speaker(self) -> str | None:
        return self.synthesis.speaker if self.synthesis else None

    @property
    def target_speaker(self) -> str | None:
        return self.synthesis.target_speaker if self.synthesis else None

    @property
    def bitstream(self) -> dict[str, Any] | None:
        return self.synthesis.bitstream if self.synthesis else None

    def to_dict(self) -> dict[str, Any]:
        """The merged record as a dict (the layout of :func:`resyn_bench.store.merge_events`)."""
        return self.merged


# --------------------------------------------------------------------------- readers

def load_manifest_dict(run_dir: str | Path) -> dict[str, Any]:
    """The manifest as stored (raw JSON object; :class:`RunFileError` for a damaged file)."""
    from resyn_bench.store import read_manifest as read_raw

    return read_raw(run_dir)


def read_manifest(run_dir: str | Path) -> Manifest:
    """The run's manifest, upgraded to the current schema and validated. FileNotFoundError
    for a folder without one; :class:`RunFileError` (a ValueError) for a damaged one;
    :class:`NewerSchemaError` for a run of a newer resyn-bench."""
    return parse_manifest(load_manifest_dict(run_dir), Path(run_dir) / MANIFEST)


def parse_manifest(raw: Any, source: str | Path | None = None) -> Manifest:
    """A typed manifest from a manifest dict of any known schema (upgraded, then validated)."""
    if not isinstance(raw, dict):
        raise RunFileError(f"{source or MANIFEST} is damaged: {_type_name(raw)}, not an object")
    return Manifest.from_json(upgrade(raw, source=source)[0], source=source)


def write_manifest(run_dir: str | Path, manifest: Manifest | dict[str, Any]) -> None:
    """Write a manifest (atomically), stamped with the current schema version."""
    data = manifest.to_json() if isinstance(manifest, Manifest) else dict(manifest)
    data["schema_version"] = SCHEMA_VERSION
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(run_dir) / MANIFEST, data)


def _read(run_dir: Path, upgrade_parts: bool = True
          ) -> tuple[Manifest | None, list[dict[str, Any]]]:
    """The upgraded manifest (None for a folder without one) and the raw parts (upgraded,
    unless ``upgrade_parts=False``: as stored)."""
    events = RecordStore(run_dir).events()
    if not (run_dir / MANIFEST).is_file():
        return None, events
    path = run_dir / MANIFEST
    raw = load_manifest_dict(run_dir)
    manifest = parse_manifest(raw, path)
    return manifest, upgrade(raw, events, source=path)[1] if upgrade_parts else events


def iter_parts(run_dir: str | Path) -> Iterator[Part]:
    """Every record part of the run in file order, typed and upgraded (a torn line is skipped
    with a warning; a damaged one raises :class:`~resyn_bench.store.RecordsError`)."""
    run_dir = Path(run_dir)
    for ev in _read(run_dir)[1]:
        yield parse_part(ev, run_dir / RECORDS)


def iter_records(run_dir: str | Path, groups: Iterable[str] | None = None) -> Iterator[Record]:
    """One merged :class:`Record` per utterance, in the order of first appearance.

    ``groups``: the metric groups wanted (default: every group the manifest lists); each
    group's parts count only under the settings key the manifest names for it (a group the
    manifest does not list: parts of any settings)."""
    run_dir = Path(run_dir)
    # the parts as stored (the merged dicts stay what the store gives); an old part's key
    # comes from legacy_metric_keys, as upgrade() would stamp it
    manifest, events = _read(run_dir, upgrade_parts=False)
    legacy = manifest.legacy_metric_keys if manifest is not None else {}
    keys = manifest.metric_keys() if manifest is not None else {}
    wanted: dict[str, str | None] | None = (
        dict(keys) if groups is None else {g: keys.get(g) for g in groups})
    if manifest is None and groups is None:
        wanted = None
    synth = {ev["utt_id"]: ev for ev in events if ev.get("part", "synthesis") == "synthesis"}
    source = run_dir / RECORDS
    for merged in merge_events(events, wanted, legacy).values():
        yield Record(merged, synth.get(merged["utt_id"]), legacy, source)


def pooling_warning(manifest: Manifest, run_dir: str | Path | None = None) -> str | None:
    """A warning when the run was scored under another version of the pooling code than the
    one rendering it now (None when they agree, or the run predates the record)."""
    from resyn_bench.reports.collate import POOLING_VERSION

    stored = manifest.pooling_version
    if stored is None or stored == POOLING_VERSION:
        return None
    where = f"{run_dir}: " if run_dir is not None else ""
    return (f"{where}the run was scored under pooling code version {stored}, this resyn-bench "
            f"pools with version {POOLING_VERSION}: its pooled numbers may differ from a fresh "
            f"scoring of the same outputs; to compare like with like, run it again with this "
            f"version into a new --out")
