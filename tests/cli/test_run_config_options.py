"""RunConfig's fields declare their command-line options, identity and legacy values once; the
`run` and `demo` options, the identity and the legacy defaults are derived from them."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from resyn_bench.cli import build_parser
from resyn_bench.run_config import NO_LEGACY, RunConfig, legacy_defaults, run_options, spec


def _run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _argv_for(f: dataclasses.Field) -> tuple[list[str], object]:
    """Command-line words that set field ``f``, and the value the field must then hold."""
    s = spec(f)
    flag = s.flags[-1]
    if s.kind == "flag":
        return [flag], True
    if s.kind == "no-flag":
        return [flag], False
    if s.kind == "bool":
        return [flag.replace("--", "--no-", 1)], False
    if s.kind == "pairs":
        return [flag, "k=3"], {"k": 3}
    if s.kind == "group-pairs":
        return [flag, "f0.voicing_threshold=0.5"], {"f0": {"voicing_threshold": 0.5}}
    # value: a string the field's type converts
    if s.type in (int, float) or f.name in ("utt_timeout", "jobs"):
        return [flag, "7"], 7
    return [flag, f"value-of-{f.name}"], f"value-of-{f.name}"


def test_every_runconfig_field_is_a_run_option_that_reaches_the_config():
    from resyn_bench.cli.run import configs_from_args

    parser = _run_parser()
    flags = {o for a in parser._actions for o in a.option_strings}
    base = ["--system", "copy", "--dataset", "demo", "--out", "runs/x"]
    for f in run_options():
        s = spec(f)
        assert s.flags and all(flag in flags for flag in s.flags), f.name
        assert s.help, f.name
        if not s.direct:    # resolved by the command first (--shard): see the test below
            continue
        argv, expected = _argv_for(f)
        words = base
        if f.name in ("system", "dataset", "out"):   # the field's own words replace the base's
            i = base.index(s.flags[-1])
            words = base[:i] + base[i + 2:]
        args = parser.parse_args([*words, *argv])
        args.config = None
        _, (config,) = configs_from_args(args)
        got = getattr(config, f.name)
        if f.name == "max_duration":
            expected = 7.0
        assert got == expected, (f.name, got, expected)


def test_shard_reaches_the_config_through_the_sharding_code(monkeypatch, tmp_path):
    """--shard is resolved first (auto: torchrun / SLURM); run_shard sets RunConfig.shard."""
    import resyn_bench.sharding as sharding

    seen = []
    monkeypatch.setattr(sharding, "run_shard", lambda config, shard, launcher, **kw:
                        seen.append((config, shard.label, launcher, kw["wait_s"])) or 0)
    from resyn_bench.cli import main

    assert main(["run", "--system", "copy", "--dataset", "demo", "--out", str(tmp_path / "r"),
                 "--shard", "1/3", "--shard-wait", "5"]) == 0
    (config, label, _, wait_s), = seen
    assert label == "1/3" and wait_s == 5 and config.shard is None   # run_shard sets it
    assert config.out == str(tmp_path / "r")


def test_unset_options_keep_the_runconfig_defaults():
    from resyn_bench.cli.run import configs_from_args

    args = _run_parser().parse_args(["--system", "copy", "--dataset", "demo"])
    args.config = None
    _, (config,) = configs_from_args(args)
    default = RunConfig(system="copy", dataset="demo", out=config.out)
    assert config == default
    assert config.out == "runs/demo-copy"


def test_identity_holds_exactly_the_fields_whose_spec_says_so():
    config = RunConfig(system="s", dataset="d", out="o")
    declared = {f.name for f in run_options() if spec(f).identity}
    assert set(config.identity()) == declared
    # the resume check compares these; the metric selection stays out (groups are additive)
    assert declared == {"system", "dataset", "data_root", "split", "dataset_options",
                        "system_options", "experiment", "vc_targets", "vc_seed", "shard"}
    for name in ("metrics", "f0_preset", "metric_options", "jobs", "out", "label"):
        assert name not in declared
    changed = dataclasses.replace(config, vc_seed=3)
    assert changed.identity()["vc_seed"] == 3 and config.identity()["vc_seed"] == 0


def test_legacy_defaults_come_from_the_fields():
    assert legacy_defaults() == {"experiment": "resynthesis", "vc_targets": 0, "vc_seed": 0,
                                 "shard": None}
    for f in run_options():
        if spec(f).legacy is not NO_LEGACY:
            assert spec(f).identity, f"{f.name}: a legacy value only matters for identity fields"


def test_a_run_written_before_a_field_existed_resumes(tmp_path, home):
    """The legacy value stands in for an identity field an old manifest lacks."""
    import json

    from resyn_bench.runner import run

    config = RunConfig(system="copy", dataset="synthetic", out=str(tmp_path / "r"),
                       metrics="pitch", limit=2, isolate=False,
                       dataset_options={"utterances": 2})
    run(config, progress=False)
    manifest = tmp_path / "r" / "manifest.json"
    data = json.loads(manifest.read_text())
    for key in legacy_defaults():
        del data["config"]["identity"][key]
    manifest.write_text(json.dumps(data))
    assert run(config, progress=False).n_done_before == 2
    from resyn_bench.runner import RunError

    with pytest.raises(RunError, match="vc_seed"):
        run(dataclasses.replace(config, vc_seed=1), progress=False)


def test_demo_options_are_runconfig_options():
    from resyn_bench.cli.demo import DEMO_DEFAULTS, DEMO_OPTIONS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    demo = sub.choices["demo"]
    by_dest = {a.dest: a for a in demo._actions}
    fields = {f.name: f for f in run_options()}
    for name in DEMO_OPTIONS:
        assert by_dest[name].option_strings == list(spec(fields[name]).flags)
    args = demo.parse_args(["--limit", "3", "--f0-preset", "dio"])
    from resyn_bench.cli.run_options import given_values

    assert given_values(args, DEMO_OPTIONS) == {**DEMO_DEFAULTS, "limit": 3, "f0_preset": "dio"}


def test_dataset_options_of_other_commands_are_the_runconfig_ones():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    fields = {f.name: f for f in run_options()}
    for command in ("encode", "f0-stats"):
        p = sub.choices[command]
        by_dest = {a.dest: a for a in p._actions}
        for name in ("dataset", "data_root", "split", "limit", "dataset_options"):
            assert by_dest[name].option_strings == list(spec(fields[name]).flags), (command, name)
        assert by_dest["dataset"].required


def test_score_options_are_runconfig_options():
    from resyn_bench.cli.run_options import given_values
    from resyn_bench.cli.score import SCORE_OPTIONS
    from resyn_bench.run_config import default_jobs

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    score = sub.choices["score"]
    by_dest = {a.dest: a for a in score._actions}
    fields = {f.name: f for f in run_options()}
    for name in SCORE_OPTIONS:
        assert by_dest[name].option_strings == list(spec(fields[name]).flags), name
    args = score.parse_args(["RUN", "--metrics", "f0", "-m", "f0.voicing_threshold=0.4",
                             "--no-cache"])
    assert given_values(args, SCORE_OPTIONS) == {
        "metrics": "f0", "metric_options": {"f0": {"voicing_threshold": 0.4}},
        "retry_failed": False, "jobs": default_jobs(), "use_cache": False}


def test_disentangle_run_options_are_runconfig_options():
    from resyn_bench.disentangle import DISENTANGLE_RUN_OPTIONS
    from resyn_bench.run_config import default_jobs

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices["disentangle"]
    by_dest = {a.dest: a for a in p._actions}
    fields = {f.name: f for f in run_options()}
    for name in (*DISENTANGLE_RUN_OPTIONS, "jobs", "use_cache"):
        assert by_dest[name].option_strings == list(spec(fields[name]).flags), name
    args = p.parse_args(["--runs", "a", "--report", "r"])
    # disentangle's own defaults where they differ from a single run's
    assert (args.metrics, args.vc_targets, args.vc_seed, args.jobs, args.use_cache) == (
        "asr,spk,f0", 2, 0, default_jobs(), True)   # --jobs auto
    assert args.system_options == [] and args.metric_options == []
