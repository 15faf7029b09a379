"""The options of one run, each declared once.

:class:`RunConfig` is what :func:`resyn_bench.runner.run` evaluates. Every field carries an
:class:`OptionSpec` in its metadata, and everything else that spells run options is derived
from it:

- the options of ``resyn-bench run`` (and the subset ``demo`` offers):
  :func:`resyn_bench.cli.run_options.add_run_options`;
- the keys of a study file (``resyn-bench run --config exp.toml``): :func:`study_keys`;
- the run's identity (the fields that must match to resume a run folder):
  :meth:`RunConfig.identity`;
- the values of runs written before a field existed: :func:`legacy_defaults`.

Adding a run option is one field here (with its spec), plus the code that uses it.

Standard library only: building the command line must not import numpy or torch.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: default --max-duration (seconds): an order of magnitude above any utterance corpus
#: (LibriSpeech test-clean's longest is 35 s, VCTK's ~15 s, LJSpeech's ~10 s), and small enough
#: that one utterance's analysis stays under ~1 GB (a 2-hour file took 10 GB with one F0 metric)
MAX_DURATION_S = 600.0

SPLIT_HELP = ("file listing the utterances to use (ids, paths, or a unit file such as the "
              "reference repo's test.txt); keeps its order")

#: how the command line spells a field (see resyn_bench.cli.run_options):
#: value       --flag VALUE (converted with ``type``)
#: flag        --flag sets True
#: no-flag     --no-x sets False
#: bool        --x / --no-x
#: pairs       -o KEY=VALUE, repeatable -> {key: value}
#: group-pairs -m GROUP.KEY=VALUE, repeatable -> {group: {key: value}}
KINDS = ("value", "flag", "no-flag", "bool", "pairs", "group-pairs")


class _NoLegacy:
    def __repr__(self) -> str:
        return "NO_LEGACY"


NO_LEGACY: Any = _NoLegacy()


@dataclass(frozen=True)
class OptionSpec:
    """How a RunConfig field appears outside the dataclass."""

    help: str
    #: command-line spellings, e.g. ("-o", "--option"); the last one is the long form
    flags: tuple[str, ...]
    kind: str = "value"
    #: part of the run's identity: a run folder resumes only with the same value
    identity: bool = False
    #: the value of runs written before the field existed (identity fields added later)
    legacy: Any = NO_LEGACY
    #: conversion of a command-line value; None: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    #: settable in a study file (resyn-bench run --config); False for per-invocation switches
    study: bool = True
    #: False: the command line resolves the value before it reaches the field (``--shard auto``
    #: becomes this process's shard, set by resyn_bench.sharding.run_shard)
    direct: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"OptionSpec kind {self.kind!r} is not one of {KINDS}")


def option(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
           **spec: Any) -> Any:
    """A RunConfig field with its :class:`OptionSpec` (keyword arguments of the spec)."""
    meta = {"option": OptionSpec(**spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _seconds(text: str) -> float:
    """--utt-timeout: seconds >= 0 (0 = no limit)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (0 = no limit), got {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (0 = no limit), got {text!r}")
    return value


#: most worker processes ``--jobs auto`` (the default) starts: each worker holds its own copy
#: of a group's models (Whisper base: about 0.3 GB), so many cores do not mean many workers
#: unless asked for (``--jobs N``)
MAX_AUTO_JOBS = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_jobs() -> int:
    """``--jobs auto``: one worker per usable CPU, at most :data:`MAX_AUTO_JOBS`; under torchrun
    the CPUs are shared by the node's ranks (``LOCAL_WORLD_SIZE``). The numbers do not depend on
    it (only the runner process writes records; with several workers each runs one thread)."""
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return max(1, min(usable_cpus() // ranks, MAX_AUTO_JOBS))


def parse_jobs(value: str | int) -> int:
    """``--jobs`` value: a positive integer or ``auto`` (:func:`default_jobs`); ValueError else."""
    text = str(value).strip().lower()
    if text == "auto":
        return default_jobs()
    try:
        jobs = int(text)
    except ValueError:
        raise ValueError(f"--jobs takes a number of worker processes or 'auto', got {value!r}") from None
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1 (or 'auto'), got {value!r}")
    return jobs


def _jobs(text: str) -> int:
    """--jobs on the command line (see :func:`parse_jobs`)."""
    import argparse

    try:
        return parse_jobs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _isolation_default() -> bool:
    return os.environ.get("RESYN_BENCH_ISOLATION", "1") != "0"


@dataclass
class RunConfig:
    system: str = option(help="system name, or outputs:DIR", flags=("--system",),
                         identity=True)
    dataset: str = option(help="dataset name (see `resyn-bench ls datasets`)",
                          flags=("--dataset",), identity=True)
    out: str = option(help="run directory (default: runs/<dataset>-<system>)", flags=("--out",))
    data_root: str | None = option(None, help="dataset folder (or manifest TSV for `manifest`)",
                                   flags=("--data-root",), identity=True)
    split: str | None = option(None, help=SPLIT_HELP, flags=("--split",), identity=True)
    limit: int | None = option(None, help="use only the first N utterances", flags=("--limit",),
                               type=int)
    dataset_options: dict[str, Any] = option(
        factory=dict, help="dataset loader option, e.g. -d mic=mic2 for vctk",
        flags=("-d", "--dataset-option"), kind="pairs", metavar="KEY=VALUE", identity=True)
    metrics: str = option("fast", help="metric groups or suites, comma-separated (default: "
                                       "fast; see `resyn-bench ls metrics`)",
                          flags=("--metrics",))
    f0_preset: str | None = option(None, help="pitch extractor preset (see `resyn-bench ls "
                                              "presets`)", flags=("--f0-preset",))
    # group -> options
    metric_options: dict[str, dict[str, Any]] = option(
        factory=dict, help="metric option, e.g. -m asr.backend=whisper -m "
                           "asr.model=/path/base.en.pt",
        flags=("-m", "--metric-option"), kind="group-pairs", metavar="GROUP.KEY=VALUE")
    system_options: dict[str, Any] = option(
        factory=dict, help="system option, e.g. -o f0_method=dio (repeatable)",
        flags=("-o", "--option"), kind="pairs", metavar="KEY=VALUE", identity=True)
    resume: bool = option(True, help="continue an existing run directory, skipping finished "
                                     "utterances (default); --no-resume refuses to touch one",
                          flags=("--resume",), kind="bool", study=False)
    overwrite: bool = option(False, help="delete an existing run in --out and start again",
                             flags=("--overwrite",), kind="flag", study=False)
    retry_failed: bool = option(False, help="re-evaluate failed utterances",
                                flags=("--retry-failed",), kind="flag", study=False)
    use_cache: bool = option(True, help="do not read or write the reference-analysis cache",
                             flags=("--no-cache",), kind="no-flag")
    cache_dir: str | None = option(None, help="folder of the reference-analysis cache "
                                              "(default: $RESYN_BENCH_HOME/cache/analysis)",
                                   flags=("--cache-dir",), metavar="DIR")
    jobs: int = option(factory=default_jobs,
                       help="worker processes, or 'auto' (default): one per usable CPU, at most "
                            "4; the numbers do not depend on it",
                       flags=("--jobs",), type=_jobs, metavar="N|auto")
    # device of every model-backed metric group and system that takes one ("cuda", "cpu",
    # "cuda:1"); None: cuda when torch sees a GPU, else cpu (resyn_bench.distributed.resolve_device).
    # Not part of the run's identity; where it can change the numbers (Whisper's compute type,
    # a vocoder's kernels) the group's settings / the system's description record it.
    device: str | None = option(
        None, help="device of every model-backed metric and system (Whisper/wav2vec2 ASR, speaker "
                   "embeddings, MOS models, unit encoders, vocoders): cuda, cuda:N or cpu "
                   "(default: cuda when torch sees a GPU, else cpu); -m GROUP.device= / -o "
                   "device= override it", flags=("--device",), metavar="cuda|cpu")
    # crash isolation (resyn_bench.supervisor): the system and each metric group run in
    # supervised worker processes; False runs them in this process (debugging: a native crash
    # then ends the run; default False when RESYN_BENCH_ISOLATION=0). Seconds one utterance may
    # take in one worker: None = automatic, max(60 s, 10 x its duration); 0 = no limit. Neither
    # is part of the run's identity.
    isolate: bool = option(factory=_isolation_default,
                           help="run the system and metrics in this process instead of "
                                "supervised worker processes (debugging; a native crash then "
                                "ends the run)", flags=("--no-isolation",), kind="no-flag")
    utt_timeout: float | None = option(
        None, help="time one utterance may take in the system or one metric group before its "
                   "worker is killed and the utterance recorded as timed out (default: max(60, "
                   "10 x its duration) s; 0 = no limit)",
        flags=("--utt-timeout",), type=_seconds, metavar="SECONDS")
    # what the run measures, for the report layouts: resynthesis | vc | f0_flat | codec | ...
    experiment: str = option(
        "resynthesis", help="what the run measures, for the report tables: resynthesis "
                            "(default; vc with --vc-targets), vc (voice conversion, e.g. -o "
                            "speaker=p226), f0_flat (F0 manipulation, e.g. -o f0_edit=flat), "
                            "codec",
        flags=("--experiment",), identity=True, legacy="resynthesis")
    label: str | None = option(None, help="row label in reports (default: system name and "
                                          "options)", flags=("--label",))
    # voice conversion (the paper's protocol): each utterance converted to this many target
    # speakers of the system, drawn without replacement, seeded per utterance; 0 = off
    vc_targets: int = option(0, help="voice conversion as in the paper: convert every utterance "
                                     "to N target speakers of the system (random, seeded per "
                                     "utterance; ids UTT__to_TARGET); implies --experiment vc",
                             flags=("--vc-targets",), type=int, metavar="N", identity=True,
                             legacy=0)
    vc_seed: int = option(0, help="seed of the target choice (default 0)", flags=("--vc-seed",),
                          type=int, identity=True, legacy=0)
    # longest reference/output (seconds) evaluated; longer ones fail ("too_long"). None/0 = no limit
    max_duration: float | None = option(
        MAX_DURATION_S, help="fail utterances (reference or output) longer than this, checked "
                             "from the file header before decoding (default 600; 0 = no limit)",
        flags=("--max-duration",), type=float, metavar="SECONDS")
    # "i/N": evaluate only shard i of N of the work list (resyn_bench.sharding); None = all
    shard: str | None = option(
        None, help="evaluate one shard of the utterances into OUT/shards/ (merge them with "
                   "`resyn-bench merge --out OUT`); auto: from torchrun (RANK/WORLD_SIZE, the "
                   "default under torchrun: rank 0 merges) or a SLURM array",
        flags=("--shard",), metavar="INDEX/COUNT|auto", identity=True, legacy=None,
        study=False, direct=False)

    def identity(self) -> dict[str, Any]:
        """Fields that must match for a run directory to be resumed (those whose spec says
        ``identity``). The metric selection (metrics, f0_preset, metric_options) is not among
        them: metric groups are additive, each group's records are kept apart by its settings
        (see :func:`resyn_bench.store.metric_key`)."""
        return {f.name: getattr(self, f.name) for f in run_options() if spec(f).identity}


def spec(f: dataclasses.Field) -> OptionSpec:
    return f.metadata["option"]


def run_options() -> list[dataclasses.Field]:
    """RunConfig's fields in declaration order (each has an :class:`OptionSpec`)."""
    return list(dataclasses.fields(RunConfig))


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (a fresh one for factories); MISSING for required fields."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def legacy_defaults() -> dict[str, Any]:
    """Identity values of runs written before a field existed: {field: value}."""
    return {f.name: spec(f).legacy for f in run_options()
            if spec(f).identity and spec(f).legacy is not NO_LEGACY}


def study_keys() -> list[str]:
    """The RunConfig fields a study file may set."""
    return [f.name for f in run_options() if spec(f).study]
