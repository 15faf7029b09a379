"""Study files (`resyn-bench run --config exp.toml`), `validate` of files, and the command
line's one error policy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from resyn_bench.cli import main

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _study(tmp_path, tiny_corpus, extra_run: str = "", report: bool = True) -> Path:
    text = f"""
title = "two systems"
[defaults]
dataset = "manifest"
data_root = "{tiny_corpus}"
metrics = "pitch"
f0_preset = "dio"
isolate = false

[[run]]
system = "copy"
out = "{tmp_path / 'runs' / 'copy'}"

[[run]]
system = "world"
out = "{tmp_path / 'runs' / 'world'}"
system_options = {{ f0_method = "dio" }}
label = "WORLD dio"
{extra_run}
"""
    if report:
        text += f"""
[report]
out = "{tmp_path / 'report'}"
format = "md,csv"
plots = false
"""
    return _write(tmp_path / "study.toml", text)


def test_study_runs_every_run_then_the_report(tmp_path, tiny_corpus, home, capsys):
    from resyn_bench.store import read_manifest

    path = _study(tmp_path, tiny_corpus)
    assert main(["run", "--config", str(path), "--quiet", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "two systems" in out and "[1/2] copy on manifest" in out and "[2/2] world" in out
    copy = read_manifest(tmp_path / "runs" / "copy")["config"]
    world = read_manifest(tmp_path / "runs" / "world")["config"]
    # the file's values, with the command line's --limit over every run
    assert copy["system"] == "copy" and copy["limit"] == 2 and copy["f0_preset"] == "dio"
    assert world["system_options"] == {"f0_method": "dio"} and world["label"] == "WORLD dio"
    assert world["isolate"] is False and world["metrics"] == "f0"   # the suite pitch = f0
    assert list((tmp_path / "report").rglob("*.csv"))          # format = "md,csv"
    assert not list((tmp_path / "report").rglob("*.html"))
    assert "WORLD dio" in "".join(p.read_text() for p in (tmp_path / "report").rglob("*.md"))
    # rerun: everything resumes, nothing is evaluated again
    assert main(["run", "--config", str(path), "--quiet", "--limit", "2"]) == 0
    assert "0 evaluated (0 failed), 2 already done" in capsys.readouterr().out


def test_command_line_options_override_the_file_per_key(tmp_path, tiny_corpus):
    from resyn_bench.study import load_study

    path = _study(tmp_path, tiny_corpus, report=False)
    study = load_study(path, {"metrics": "fast", "system_options": {"frame_period": 10},
                              "jobs": 3})
    copy, world = study.configs
    assert copy.metrics == world.metrics == "fast" and copy.jobs == world.jobs == 3
    assert world.system_options == {"f0_method": "dio", "frame_period": 10}   # merged per key
    assert copy.data_root == str(tiny_corpus) and copy.isolate is False      # from [defaults]
    assert study.report is None and study.title == "two systems"


@pytest.mark.parametrize("text,match", [
    ('[defaults]\nsytem = "copy"\n[[run]]\nsystem = "copy"\ndataset = "demo"',
     r"\[defaults\]: unknown key 'sytem'. Did you mean 'system'"),
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\nmetric = "pitch"',
     r"#1: unknown key 'metric'. Did you mean 'metrics'"),
    ('[[runs]]\nsystem = "copy"', r"unknown key 'runs'. Did you mean 'run'"),
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\nresume = false',
     r"unknown key 'resume'"),        # a switch of one invocation, not of the study
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\nlimit = "ten"', r"limit must be an integer"),
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\nuse_cache = 1', r"use_cache must be true or false"),
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\nmetric_options = { asr = 1 }',
     r"metric_options is a table of tables"),
    ('[[run]]\nsystem = "copy"', r"#1: no dataset"),
    ('title = "x"', r"no runs"),
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\n[report]\nlayout = "paper"',
     r"\[report\]: out = \"FOLDER\" is required"),
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\n[report]\nout = "r"\nlayouts = "paper"',
     r"unknown key 'layouts'. Did you mean 'layout'"),
    ('[[run]]\nsystem = "wrold"\ndataset = "demo"', r"#1: unknown system 'wrold'. Did you mean 'world'"),
    ('[[run]]\nsystem = "copy"\ndataset = "ljspeeh"', r"unknown dataset 'ljspeeh'. Did you mean 'ljspeech'"),
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\nf0_preset = "yapt"', r"did you mean 'yaapt'"),
    ('[[run]]\nsystem = "copy"\ndataset = "demo"\n[[run]]\nsystem = "copy"\ndataset = "demo"\n'
     'label = "again"', r"runs #1 and #2 would share the run folder runs/demo-copy"),
    ('[[run]\nsystem = "copy"', r"not valid TOML"),
])
def test_bad_study_files_are_one_line_errors(tmp_path, capsys, text, match):
    from resyn_bench.study import StudyError, load_study

    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(StudyError, match=match):
        load_study(path)
    # the command line: one line naming the file, exit 2, nothing run
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resyn-bench run: error: ") and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # validate: the same problem, exit 1
    assert main(["validate", str(path), "--kind", "study"]) == 1


def test_run_without_system_or_config_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--dataset", "demo"])
    assert info.value.code == 2
    assert "--system" in capsys.readouterr().err


def test_example_study_files_validate(capsys):
    examples = sorted((REPO / "docs" / "examples").glob("*.toml"))
    assert examples, "docs/examples holds the README's example study files"
    for path in examples:
        assert main(["validate", str(path)]) == 0, path
        assert "ok (study file" in capsys.readouterr().out


# ------------------------------------------------------------------------------- validate

def test_validate_recognises_layouts_and_training_configs(tmp_path, capsys):
    layout = _write(tmp_path / "t.toml", 'extends = "paper"\nname = "mine"\n')
    assert main(["validate", str(layout)]) == 0
    assert "ok (report layout 'mine'" in capsys.readouterr().out
    bad_layout = _write(tmp_path / "b.json", json.dumps({"name": "x", "colums": []}))
    assert main(["validate", str(bad_layout), "--kind", "layout"]) == 1
    assert "unknown field(s) ['colums']" in capsys.readouterr().out

    from resyn_bench.systems.vocoder.config import get_preset

    cfg = _write(tmp_path / "config.json", get_preset("tiny").to_json())
    assert main(["validate", str(cfg)]) == 0
    assert "ok (vocoder training config)" in capsys.readouterr().out
    broken = _write(tmp_path / "broken.json", "{not json")
    assert main(["validate", str(broken), "--kind", "training"]) == 1
    assert "not valid JSON" in capsys.readouterr().out
    assert main(["validate", str(layout), "--repair"]) == 2
    assert "--repair applies to run folders only" in capsys.readouterr().err


# --------------------------------------------------------------------------- error policy

def test_a_project_error_is_one_line_and_a_bug_is_a_traceback(tmp_path, capsys, monkeypatch):
    from resyn_bench.cli import summary

    missing = tmp_path / "no-run"
    assert main(["summary", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resyn-bench summary: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

    # --traceback (before or after the command) shows where a project error came from
    for argv in (["--traceback", "summary", str(missing)], ["summary", str(missing),
                                                            "--traceback"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "resyn-bench summary: error:" in err

    # anything else is a bug: traceback + a request to report it, exit 1 - a bare ValueError
    # is no longer taken for the user's mistake
    def broken(args):
        raise ValueError("an internal inconsistency")

    monkeypatch.setattr(summary, "run", broken)
    assert main(["summary", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ValueError: an internal" in err
    assert "this is a bug in resyn-bench, please report it" in err


def test_error_classes_are_user_errors_and_keep_their_builtin_bases():
    from resyn_bench.audio import AudioError
    from resyn_bench.catalogue import CatalogueError
    from resyn_bench.datasets import DatasetError
    from resyn_bench.errors import UserError
    from resyn_bench.registry import RegistryError
    from resyn_bench.reports.layouts import LayoutError
    from resyn_bench.runner import RunError
    from resyn_bench.safeload import UnsafeCheckpointError
    from resyn_bench.store import RecordsError
    from resyn_bench.systems.vocoder.config import ConfigError

    for cls, base in ((AudioError, ValueError), (DatasetError, ValueError),
                      (RegistryError, KeyError), (RunError, RuntimeError),
                      (CatalogueError, RuntimeError), (LayoutError, ValueError),
                      (UnsafeCheckpointError, RuntimeError), (RecordsError, ValueError),
                      (ConfigError, ValueError)):
        assert issubclass(cls, UserError) and issubclass(cls, base), cls
    assert str(RegistryError("plain message")) == "plain message"   # no KeyError quotes


def test_python_m_resyn_bench_cli(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "resyn_bench.cli", "ls", "presets"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "yaapt" in proc.stdout


def test_the_documented_study_example_validates(tmp_path, capsys):
    """The example file of docs/studies.md (the README links there) is a valid study."""
    import re

    page = (REPO / "docs" / "studies.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", page, re.S)
    assert block, "docs/studies.md shows an example study file"
    path = _write(tmp_path / "readme.toml", block.group(1))
    assert main(["validate", str(path)]) == 0
    assert "3 runs" in capsys.readouterr().out


def test_help_texts_name_example_files_that_exist():
    import argparse
    import re

    from resyn_bench.cli import build_parser

    parser = build_parser()
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts += [p.format_help() for p in action.choices.values()]
    named = set(re.findall(r"docs/examples/[\w.-]+", "\n".join(texts)))
    assert named, "the help texts show an example study file"
    for rel in named:
        assert (REPO / rel).is_file(), rel
