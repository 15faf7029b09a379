"""Study files: the runs of one paper table in one versioned file.

``resyn-bench run --config table1.toml`` evaluates every run of the file in order (each one
resumable like a single ``run``), then, when the file has a ``[report]`` table, writes the
report of those runs. A study file (TOML)::

    title = "Table 1, LJSpeech"          # optional, printed before the runs

    [defaults]                           # keys every run gets unless it sets its own
    dataset = "ljspeech"
    data_root = "LJSpeech-1.1"
    metrics = "fast"

    [[run]]                              # one table per run, in table order
    system = "copy"
    out = "runs/table1/copy"

    [[run]]
    system = "world"
    system_options = { f0_method = "dio" }

    [report]                             # optional: resyn-bench report of the runs above
    out = "reports/table1"
    layout = ["paper"]

A run's keys are :class:`~resyn_bench.run_config.RunConfig`'s fields that a study may set (see
:func:`resyn_bench.run_config.study_keys`; ``resume``, ``overwrite``, ``retry_failed`` are
switches of one invocation, given on the command line), plus ``outputs_pattern`` and
``conversions`` of ``outputs:DIR`` systems. Unknown keys are errors with a did-you-mean.
Relative paths are read from the current folder, as on the command line. Options given on the
command line override the file's values in every run (``-o``/``-m``/``-d`` per key).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resyn_bench.errors import UserError
from resyn_bench.run_config import RunConfig, run_options, spec, study_keys

#: keys of a run that are not RunConfig fields: they become system options of outputs:DIR
RUN_EXTRAS = ("outputs_pattern", "conversions")
TOP_KEYS = ("title", "defaults", "run", "report")
#: keys of [report] (the options of `resyn-bench report`)
REPORT_KEYS = ("out", "stat", "layout", "format", "ci", "audio", "plots", "rename")


class StudyError(UserError, ValueError):
    """A study file that cannot be read or holds an unknown key or a value of the wrong type."""


@dataclass
class Study:
    path: Path
    title: str | None
    #: one dict per run: the defaults merged with the run's own keys, as the file spells them
    runs: list[dict[str, Any]]
    report: dict[str, Any] | None = None
    configs: list[RunConfig] = field(default_factory=list)


def _suggest(name: str, choices) -> str:
    from resyn_bench.registry import _suggest as suggest

    return suggest(name, choices)


def _check_keys(where: str, table: dict, allowed) -> None:
    for key in table:
        if key not in allowed:
            raise StudyError(f"{where}: unknown key {key!r}.{_suggest(key, allowed)}")


def _expected(f: dataclasses.Field) -> tuple[tuple[type, ...], str]:
    s = spec(f)
    if s.kind in ("flag", "no-flag", "bool"):
        return (bool,), "true or false"
    if s.kind in ("pairs", "group-pairs"):
        return (dict,), "a table ({ key = value })"
    if s.type is int:
        return (int,), "an integer"
    if s.type is not None and s.type is not str:
        return (int, float), "a number"
    return (str,), "a string"


def _check_types(where: str, run: dict) -> None:
    fields = {f.name: f for f in run_options()}
    for key, value in run.items():
        if key in RUN_EXTRAS:
            if not isinstance(value, str):
                raise StudyError(f"{where}: {key} must be a string, got {value!r}")
            continue
        f = fields[key]
        types, what = _expected(f)
        if value is None or isinstance(value, bool) and bool not in types \
                or not isinstance(value, types):
            raise StudyError(f"{where}: {key} must be {what}, got {value!r}")
        if spec(f).kind == "group-pairs" and not all(isinstance(v, dict) for v in value.values()):
            raise StudyError(f"{where}: {key} is a table of tables, e.g. "
                             f"{key} = {{ asr = {{ backend = \"whisper\" }} }}")


def _tomllib(path: Path):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise StudyError(f"{path}: study files need Python >= 3.11 (or the tomli "
                             "package: pip install tomli)") from None
    return tomllib


def read_study(path: str | Path) -> Study:
    """Read and check a study file (keys and value types; names are checked when run)."""
    path = Path(path)
    tomllib = _tomllib(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"study file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"study file {path} is not valid TOML: {exc}") from None
    _check_keys(f"{path}", data, TOP_KEYS)
    allowed = (*study_keys(), *RUN_EXTRAS)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise StudyError(f"{path}: [defaults] must be a table")
    _check_keys(f"{path} [defaults]", defaults, allowed)
    _check_types(f"{path} [defaults]", defaults)
    entries = data.get("run")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise StudyError(f"{path}: no runs; give one [[run]] table per run (with at least "
                         "system = \"NAME\")")
    runs = []
    for i, entry in enumerate(entries, 1):
        where = f"{path} [[run]] #{i}"
        _check_keys(where, entry, allowed)
        _check_types(where, entry)
        merged = {**defaults, **entry}
        for key in ("system", "dataset"):
            if key not in merged:
                raise StudyError(f"{where}: no {key} (give it in the run or in [defaults])")
        runs.append(merged)
    report = data.get("report")
    if report is not None:
        if not isinstance(report, dict):
            raise StudyError(f"{path}: [report] must be a table")
        _check_keys(f"{path} [report]", report, REPORT_KEYS)
        if not isinstance(report.get("out"), str):
            raise StudyError(f"{path} [report]: out = \"FOLDER\" is required")
    title = data.get("title")
    return Study(path=path, title=str(title) if title is not None else None, runs=runs,
                 report=report)


def _sanitize(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_")


def default_out(system: str, dataset: str) -> str:
    """The run folder of a run without ``out``: ``runs/<dataset>-<system>``."""
    return str(Path("runs") / f"{_sanitize(dataset)}-{_sanitize(system)}")


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` (the command line) over ``base`` (a study run); option tables per key."""
    kinds = {f.name: spec(f).kind for f in run_options()}
    out = dict(base)
    for key, value in override.items():
        if kinds.get(key) == "pairs" and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        elif kinds.get(key) == "group-pairs" and isinstance(out.get(key), dict):
            merged = {g: dict(o) for g, o in out[key].items()}
            for group, options in value.items():
                merged.setdefault(group, {}).update(options)
            out[key] = merged
        else:
            out[key] = value
    return out


def implied_experiment(conversions: str | None, vc_targets: int | None) -> str:
    """The experiment of a run that names none: a conversion list's own (vc, or f0_<kind> when
    its rows ask for F0 edits; an unusable list is reported by the run), vc with
    ``vc_targets``, else resynthesis."""
    if conversions:
        from resyn_bench.conversions import ConversionListError, list_experiment

        try:
            return list_experiment(conversions)
        except ConversionListError:
            return "vc"
    return "vc" if vc_targets else "resynthesis"


def run_config(values: dict[str, Any]) -> RunConfig:
    """The RunConfig of one run from its values (RunConfig fields + :data:`RUN_EXTRAS`), with
    the command line's derived defaults: ``out`` = runs/<dataset>-<system>; ``experiment``:
    :func:`implied_experiment`; ``max_duration`` 0 = no limit;
    ``outputs_pattern`` and ``conversions`` become options of an ``outputs:DIR`` system."""
    values = dict(values)
    system = values.get("system")
    options = dict(values.get("system_options") or {})
    pattern = values.pop("outputs_pattern", None)
    conversions = values.pop("conversions", None)
    if pattern:
        if not str(system).startswith("outputs:"):
            raise SystemExit("error: --outputs-pattern applies only to outputs:DIR systems")
        options["pattern"] = pattern
    if conversions:
        if not str(system).startswith("outputs:"):
            raise SystemExit("error: --conversions applies only to outputs:DIR systems")
        options["conversions"] = str(Path(conversions).expanduser().resolve())
    values["system_options"] = options
    if values.get("out") is None:
        values["out"] = default_out(str(system), str(values.get("dataset")))
    if values.get("experiment") is None:
        values["experiment"] = implied_experiment(conversions, values.get("vc_targets"))
    # None = not given: the field's default (RunConfig's own, e.g. the isolation setting)
    values = {k: v for k, v in values.items() if v is not None}
    if "max_duration" in values:
        if values["max_duration"] < 0:
            raise SystemExit("error: --max-duration must be >= 0 (0 = no limit)")
        values["max_duration"] = values["max_duration"] or None
    if values.get("overwrite") and values.get("resume") is False:
        raise SystemExit("error: --overwrite and --no-resume contradict each other")
    return RunConfig(**values)


def check_names(config: RunConfig, where: str = "") -> None:
    """The system, dataset and metric names of a run exist (a did-you-mean error otherwise);
    checks names only: no model or dataset is loaded."""
    from resyn_bench.datasets import _resolve_name
    from resyn_bench.registry import resolve_metric_names, system_entry

    prefix = f"{where}: " if where else ""
    try:
        system_entry(config.system)
        _resolve_name(config.dataset)
        resolve_metric_names(config.metrics)
        if config.f0_preset is not None:
            from resyn_bench.dsp.presets import get_preset

            try:
                get_preset(config.f0_preset)
            except KeyError as exc:
                raise StudyError(f"f0_preset: {exc.args[0]}") from None
    except UserError as exc:
        raise StudyError(f"{prefix}{exc}") from exc


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """:func:`read_study`, then the RunConfig of every run (``overrides``: command-line values
    over the file's), checking names and that no two runs share a folder."""
    study = read_study(path)
    configs = []
    seen: dict[str, int] = {}
    for i, values in enumerate(study.runs, 1):
        config = run_config(merge_values(values, overrides or {}))
        check_names(config, f"{study.path} [[run]] #{i}")
        key = str(Path(config.out).expanduser().resolve())
        if key in seen:
            raise StudyError(f"{study.path}: runs #{seen[key]} and #{i} would share the run "
                             f"folder {config.out}; give each run its own out = \"FOLDER\"")
        seen[key] = i
        configs.append(config)
    study.configs = configs
    return study
