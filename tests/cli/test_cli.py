import json

import pytest

from resyn_bench.cli import build_parser, main


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--outputs-pattern" in out
    assert "examples:" in build_parser().format_help()


def test_run_summary_report_via_cli(tiny_corpus, tmp_path, home, capsys):
    out = tmp_path / "run"
    assert main(["run", "--system", "world", "-o", "f0_method=dio", "--dataset", "manifest",
                 "--data-root", str(tiny_corpus), "--out", str(out), "--f0-preset", "dio", "--metrics", "pitch",
                 "--quiet"]) == 0
    assert "6 evaluated (0 failed)" in capsys.readouterr().out
    assert main(["summary", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_ok"] == 6 and data["metrics"]["f0.gpe"]["n"] == 6
    assert data["settings"]["f0"]["preset"] == "dio"
    assert main(["summary", str(out), "--utterances"]) == 0
    text = capsys.readouterr().out
    assert "GPE (%) ↓" in text and "spkB_002" in text
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "table.tex").exists()
    # resuming prints that nothing was left to do
    main(["run", "--system", "world", "-o", "f0_method=dio", "--dataset", "manifest",
          "--data-root", str(tiny_corpus), "--out", str(out), "--f0-preset", "dio", "--metrics", "pitch", "--quiet"])
    assert "0 evaluated (0 failed), 6 already done" in capsys.readouterr().out


def test_errors_are_one_clear_line(tiny_corpus, tmp_path, home, capsys):
    assert main(["run", "--system", "wrold", "--dataset", "manifest", "--data-root",
                 str(tiny_corpus), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown system 'wrold'" in err and "Did you mean 'world'" in err
    assert main(["run", "--system", "copy", "--dataset", "manifst", "--out", str(tmp_path / "x")]) == 2
    assert "manifest" in capsys.readouterr().err
    assert main(["summary", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--system", "copy", "--dataset", "demo", "-o", "novalue"])


def test_ls(capsys):
    for what in ("systems", "metrics", "datasets", "presets"):
        assert main(["ls", what]) == 0
    out = capsys.readouterr().out
    for name in ("outputs:DIR", "world", "f0", "ljspeech", "vctk", "librispeech", "manifest", "demo",
                 "synthetic", "not meaningful",
                 "harvest", "yaapt", "yin-fairseq", "(default)"):
        assert name in out


def test_demo_command_end_to_end(tmp_path, home, capsys):
    # --limit 7: six utterances of p225 and one of p226 (the whole corpus: `tox -e demo`)
    args = ["demo", "--out", str(tmp_path / "demo"), "--f0-preset", "dio", "--metrics", "pitch",
            "--quiet", "--limit", "7"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| Dataset | System | VDE (%) ↓ | FFE (%) ↓ | N |" in out   # the paper layout
    assert "| demo | copy | 0.00 ± 0.00 | 0.00 ± 0.00 | 7/7 |" in out
    assert "| demo | world |" in out and "7/7" in out
    for name in ("table.md", "table.tex", "summary.json"):
        assert (tmp_path / "demo" / "report" / name).stat().st_size > 0
    # a second invocation resumes: nothing is recomputed
    assert main(args) == 0
    assert "0 evaluated, 7 already done" in capsys.readouterr().out
