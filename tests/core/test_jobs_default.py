"""--jobs auto: the command line's default uses the machine's CPUs (at most MAX_AUTO_JOBS)."""
from __future__ import annotations

import os

import pytest

from resyn_bench import runner
from resyn_bench.cli import build_parser


def test_parse_jobs_numbers_and_auto(monkeypatch):
    monkeypatch.setattr(runner, "usable_cpus", lambda: 2)
    assert runner.parse_jobs("auto") == 2
    assert runner.parse_jobs(" AUTO ") == 2
    assert runner.parse_jobs("3") == 3
    assert runner.parse_jobs(1) == 1
    monkeypatch.setattr(runner, "usable_cpus", lambda: 64)
    assert runner.parse_jobs("auto") == runner.MAX_AUTO_JOBS
    monkeypatch.setattr(runner, "usable_cpus", lambda: 1)
    assert runner.default_jobs() == 1


@pytest.mark.parametrize("bad", ["0", "-2", "two", ""])
def test_parse_jobs_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="--jobs"):
        runner.parse_jobs(bad)


def test_usable_cpus_follows_the_affinity_mask():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity mask on this platform")
    assert runner.usable_cpus() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("command", [["run", "--system", "copy", "--dataset", "demo"],
                                     ["demo"], ["score", "somewhere", "--metrics", "f0"]])
def test_cli_default_is_auto(command, monkeypatch):
    monkeypatch.setattr(runner, "usable_cpus", lambda: 2)
    args = build_parser().parse_args(command)
    assert args.jobs == 2
    args = build_parser().parse_args(command + ["--jobs", "1"])
    assert args.jobs == 1


def test_cli_rejects_bad_jobs(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--system", "copy", "--dataset", "demo", "--jobs", "0"])
    assert "--jobs must be >= 1" in capsys.readouterr().err


def test_manifest_records_wall_seconds_per_group(tiny_corpus, tmp_path, home):
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_manifest

    out = tmp_path / "run"
    cfg = RunConfig(system="copy", dataset="manifest", data_root=str(tiny_corpus), out=str(out),
                    metrics="f0", f0_preset="dio", isolate=False)
    run(cfg, progress=False)
    walls = read_manifest(out)["sessions"][-1]["group_wall_s"]
    assert set(walls) == {"synthesis", "f0"} and all(v > 0 for v in walls.values())
    # a resumed run with nothing left to do records no group
    run(cfg, progress=False)
    assert read_manifest(out)["sessions"][-1]["group_wall_s"] == {}
