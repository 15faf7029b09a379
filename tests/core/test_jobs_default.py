"""--jobs auto: the default (command line, study files, RunConfig) uses the machine's CPUs (at
most MAX_AUTO_JOBS, shared by the ranks of a torchrun node)."""
from __future__ import annotations

import os

import pytest

from resyn_bench import run_config
from resyn_bench.cli import build_parser
from resyn_bench.run_config import RunConfig


def test_parse_jobs_numbers_and_auto(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(run_config, "usable_cpus", lambda: 2)
    assert run_config.parse_jobs("auto") == 2
    assert run_config.parse_jobs(" AUTO ") == 2
    assert run_config.parse_jobs("3") == 3
    assert run_config.parse_jobs(1) == 1
    monkeypatch.setattr(run_config, "usable_cpus", lambda: 64)
    assert run_config.parse_jobs("auto") == run_config.MAX_AUTO_JOBS
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")      # 32 torchrun ranks on the node: 2 CPUs each
    assert run_config.default_jobs() == 2
    monkeypatch.setattr(run_config, "usable_cpus", lambda: 1)
    assert run_config.default_jobs() == 1


@pytest.mark.parametrize("bad", ["0", "-2", "two", ""])
def test_parse_jobs_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="--jobs"):
        run_config.parse_jobs(bad)


def test_usable_cpus_follows_the_affinity_mask():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity mask on this platform")
    assert run_config.usable_cpus() == len(os.sched_getaffinity(0))


def test_runconfig_default_is_auto(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(run_config, "usable_cpus", lambda: 3)
    assert RunConfig(system="copy", dataset="demo", out="x").jobs == 3
    assert RunConfig(system="copy", dataset="demo", out="x", jobs=1).jobs == 1


@pytest.mark.parametrize("command", [["run", "--system", "copy", "--dataset", "demo"],
                                     ["demo"], ["score", "somewhere", "--metrics", "f0"]])
def test_cli_takes_auto_and_numbers(command, monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(run_config, "usable_cpus", lambda: 2)
    assert build_parser().parse_args(command + ["--jobs", "auto"]).jobs == 2
    assert build_parser().parse_args(command + ["--jobs", "1"]).jobs == 1


def test_demo_and_run_leave_jobs_to_the_runconfig_default():
    # not given: None on the command line, so RunConfig's default (auto) applies
    assert build_parser().parse_args(["demo"]).jobs is None
    assert build_parser().parse_args(["run", "--system", "copy", "--dataset", "demo"]).jobs is None


def test_cli_rejects_bad_jobs(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--system", "copy", "--dataset", "demo", "--jobs", "0"])
    assert "--jobs must be >= 1" in capsys.readouterr().err


def test_manifest_records_wall_seconds_per_group(tiny_corpus, tmp_path, home):
    from resyn_bench.runner import run
    from resyn_bench.store import read_manifest

    out = tmp_path / "run"
    cfg = RunConfig(system="copy", dataset="manifest", data_root=str(tiny_corpus), out=str(out),
                    metrics="f0", f0_preset="dio", isolate=False)
    run(cfg, progress=False)
    walls = read_manifest(out)["sessions"][-1]["group_wall_s"]
    assert set(walls) == {"synthesis", "f0"} and all(v > 0 for v in walls.values())
    # a resumed run with nothing left to do records no group
    run(cfg, progress=False)
    assert read_manifest(out)["sessions"][-1].get("group_wall_s", {}) == {}
