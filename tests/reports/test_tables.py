"""Tables: layouts, bold-best, CI modes, escaping, golden files, LaTeX compilation, the CLI.

Golden files live in tests/golden/ and are rendered from the deterministic stored runs of
tests/golden/fixture_runs.py. After an intended change of the output, regenerate them with

    RESYN_BENCH_UPDATE_GOLDEN=1 python -m pytest tests/reports/test_tables.py -k golden

and review the diff.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from golden.fixture_runs import build_golden_runs

from resyn_bench.reports.collate import (
    bitrate_bps,
    experiment_label,
    summarize_run,
    system_label,
)
from resyn_bench.reports.layouts import Column, Layout, LayoutError, load_layout
from resyn_bench.reports.tables import (
    SignificanceCache,
    build_table,
    render_csv,
    render_latex,
    render_markdown,
    significance,
)

GOLDEN = Path(__file__).parents[1] / "golden"
UPDATE = os.environ.get("RESYN_BENCH_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def golden_runs(tmp_path_factory):
    return build_golden_runs(tmp_path_factory.mktemp("golden_runs"))


@pytest.fixture(scope="module")
def golden(golden_runs):
    summaries = [summarize_run(r) for r in golden_runs]
    return summaries, SignificanceCache(summaries)


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: run with RESYN_BENCH_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from the golden file; if the change is intended, regenerate with "
        "RESYN_BENCH_UPDATE_GOLDEN=1")


@pytest.mark.parametrize("layout", ["paper", "vc", "codec", "all"])
def test_golden_tables(golden, layout):
    summaries, sig = golden
    table = build_table(summaries, layout, sig=sig)
    stem = "table" if layout == "paper" else f"table_{layout}"
    _check_golden(f"{stem}.md", render_markdown(table))
    _check_golden(f"{stem}.tex", render_latex(table))
    _check_golden(f"{stem}.csv", render_csv(table))
    if layout == "paper":
        _check_golden("table_siunitx.tex", render_latex(table, ci="siunitx"))
        _check_golden("table_noci.md", render_markdown(table, ci="none"))


def test_paper_table_layout_by_hand(golden):
    """Table 1 from known runs: columns, rows, direction, escaping, best, marks."""
    summaries, sig = golden
    table = build_table(summaries, "paper", sig=sig)
    assert [c.header() for c in table.columns] == [
        "PER (%) ↓", "WER (%) ↓", "VDE (%) ↓", "FFE (%) ↓", "EER (%) ↓", "MOS-proxy (MOS) ↑", "N"]
    assert [(r.fields["dataset"], r.fields["system"]) for r in table.rows] == [
        ("vctk_&_x", "copy"), ("vctk_&_x", "hubert100"), ("vctk_&_x", "cpc_#50%"),
        ("lj", "copy"), ("lj", "hubert100"), ("lj", "cpc_#50%")]
    assert table.shown_fields == ["dataset", "system"]   # one experiment: no experiment column
    # bold = the best of the non-reference rows of the same dataset, by the column's direction
    for j, tc in enumerate(table.columns):
        if tc.spec is None:
            continue
        for ds in ("vctk_&_x", "lj"):
            rows = [r for r in table.rows if r.fields["dataset"] == ds]
            cand = [float(r.cells[j].text) for r in rows if not r.reference and r.cells[j].value is not None]
            assert not any(r.cells[j].bold for r in rows if r.reference)
            if len(cand) >= 2:
                best = max(cand) if tc.higher_is_better else min(cand)
                assert [r.cells[j].bold for r in rows if not r.reference] == \
                    [float(r.cells[j].text) == best for r in rows if not r.reference]
    # WER pooled over the corpus, as the records' counts give it
    wer = table.columns.index(next(c for c in table.columns if c.spec and c.spec.key == "asr.wer"))
    hub = summaries[1]
    edits = sum(e["counts"]["word_edits"] for e in hub.entries["asr"])
    words = sum(e["counts"]["ref_words"] for e in hub.entries["asr"])
    assert table.rows[1].cells[wer].value == pytest.approx(edits / words)
    # marks come from the paired test against the first run on the same data (copy)
    res = significance(summaries, "auto")
    assert table.rows[1].cells[wer].mark == (res[(1, "asr.wer")].p_value < 0.05)
    assert not any(c.mark for c in table.rows[0].cells)


def test_vc_table_takes_columns_from_the_experiments(golden):
    summaries, sig = golden
    table = build_table(summaries, "vc", sig=sig)
    # lj has no VC/F0 runs: its ground-truth-only group is left out
    assert [(r.fields["dataset"], r.fields["system"]) for r in table.rows] == [
        ("vctk_&_x", "copy"), ("vctk_&_x", "hubert100"), ("vctk_&_x", "cpc_#50%")]
    ids = [c.column.id for c in table.columns]
    assert ids[:2] == ["vc:asr.per", "vc:asr.wer"] and "f0_flat:f0.vde" in ids
    by_id = {c.column.id: j for j, c in enumerate(table.columns)}
    hub_row = table.rows[1]
    vc_run = next(s for s in summaries if s.system == "hubert100" and s.experiment == "vc")
    flat_run = next(s for s in summaries if s.system == "hubert100" and s.experiment == "f0_flat")
    assert hub_row.cells[by_id["vc:spk.eer"]].value == vc_run.metrics["spk.eer"].pooled
    assert hub_row.cells[by_id["f0_flat:f0.vde"]].value == flat_run.metrics["f0.vde"].mean
    # F0-flat VDE is better high (disentanglement): arrow and best follow the override
    vde = table.columns[by_id["f0_flat:f0.vde"]]
    assert vde.arrow == "↑"
    vals = [r.cells[by_id["f0_flat:f0.vde"]].value for r in table.rows[1:]]
    assert [r.cells[by_id["f0_flat:f0.vde"]].bold for r in table.rows[1:]] == [v == max(vals) for v in vals]
    # the ground truth shows its resynthesis numbers in VC columns, nothing for F0-flat
    copy_run = summaries[0]
    assert table.rows[0].cells[by_id["vc:asr.per"]].value == copy_run.metrics["asr.per"].pooled
    assert table.rows[0].cells[by_id["f0_flat:f0.ffe"]].value is None
    tex = render_latex(table)
    assert r"\multicolumn{4}{c}{Voice conversion}" in tex and r"\cmidrule(lr){3-6}" in tex


def test_codec_table_sorted_by_computed_bitrate(golden):
    summaries, sig = golden
    table = build_table(summaries, "codec", sig=sig)
    assert table.columns[0].header() == "Bitrate (bps) ↓"
    vctk = [r for r in table.rows if r.fields["dataset"] == "vctk_&_x"]
    assert [r.fields["system"] for r in vctk] == ["copy", "hubert100", "cpc_#50%"]
    assert [r.cells[0].text for r in vctk] == ["–", "412.5", "700"]
    assert not any(r.cells[0].bold for r in table.rows)   # bitrate is a cost, not ranked


def test_bitrate_from_stream_specs_matches_the_paper():
    def streams(*specs):
        return [{"name": f"s{i}", "kind": k, "frame_rate": r, "vocab_size": v}
                for i, (k, r, v) in enumerate(specs)]
    assert bitrate_bps(streams(("discrete", 50, 100))) == 350        # HuBERT K=100
    assert bitrate_bps(streams(("discrete", 100, 100))) == 700       # CPC K=100
    assert bitrate_bps(streams(("discrete", 100, 256))) == 800       # VQ-VAE K=256
    assert bitrate_bps(streams(("discrete", 50, 50), ("discrete", 12.5, 20))) == 362.5  # +F0 codes
    assert bitrate_bps(streams(("discrete", 50, 100), ("speaker", None, 200))) == 350  # speaker free
    assert bitrate_bps(streams(("waveform", 16000, None))) is None
    assert bitrate_bps(streams(("continuous", 200, None))) is None
    assert bitrate_bps(None) is None


def test_experiment_and_system_labels_from_the_manifest():
    assert experiment_label({"config": {}}) == "resynthesis"
    assert experiment_label({"config": {"experiment": "vc"}}) == "vc"
    assert experiment_label({"config": {"experiment": {"name": "f0_flat", "shift": 0}}}) == "f0_flat"
    assert system_label({"config": {"system": "world", "system_options": {"f0_method": "dio"}}}) \
        == "world (f0_method=dio)"
    assert system_label({"config": {"system": "world", "label": "WORLD-40"}}) == "WORLD-40"


def test_latex_and_markdown_escape_every_name(golden):
    summaries, sig = golden
    tex = render_latex(build_table(summaries, "all", sig=sig))
    md = render_markdown(build_table(summaries, "all", sig=sig))
    assert r"vctk\_\&\_x" in tex and r"cpc\_\#50\%" in tex and r"f0\_flat" in tex
    assert "vctk_&_x" not in tex and "cpc_#50%" not in tex
    assert r"vctk\_&\_x" in md and r"cpc\_#50%" in md
    body = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") == body[0].count(" | ") for line in body)  # no cell broke out


def test_ties_are_all_bold_and_two_candidates_are_needed(golden_runs, tmp_path):
    from golden.fixture_runs import DATASETS, _write_run

    data = next(iter(DATASETS))
    a = _write_run(tmp_path / "a", "copy", data, None, 1, groups=("dnsmos",))
    b = _write_run(tmp_path / "b", "hubert100", data, None, 2, groups=("dnsmos",))
    c = _write_run(tmp_path / "c", "hubert100", data, None, 2, groups=("dnsmos",))  # same numbers
    sa, sb, sc = (summarize_run(p, n_boot=0) for p in (a, b, c))
    table = build_table([sa, sb, sc], "all", marks=False)
    assert [r.fields["system"] for r in table.rows] == ["copy", "hubert100 [b]", "hubert100 [c]"]
    j = next(j for j, tc in enumerate(table.columns) if tc.spec and tc.spec.key == "dnsmos.ovrl")
    assert [r.cells[j].bold for r in table.rows] == [False, True, True]
    only = build_table([sa, sb], "all", marks=False)
    assert not any(c.bold for r in only.rows for c in r.cells)   # one candidate: no "best"
    incl = Layout.from_dict({"extends": "all", "exclude_reference_from_best": False})
    t2 = build_table([sa, sb], incl, marks=False)
    assert [r.cells[j].bold for r in t2.rows] == [True, False]   # copy has the higher MOS


def test_layout_files_json_and_toml(golden, tmp_path):
    summaries, sig = golden
    spec = {"name": "mine", "title": "WER and FFE", "rows": ["dataset", "system"],
            "columns": [{"key": "asr.wer", "stat": "mean", "label": "WER-mean"}, "f0.ffe"],
            "order": {"dataset": ["lj"], "system": ["cpc_#50%"]}, "count_column": False,
            "experiments": ["resynthesis"]}
    (tmp_path / "mine.json").write_text(json.dumps(spec))
    (tmp_path / "mine.toml").write_text(
        'title = "WER and FFE"\nrows = ["dataset", "system"]\ncount_column = false\n'
        'experiments = ["resynthesis"]\n'
        'columns = [{key = "asr.wer", stat = "mean", label = "WER-mean"}, "f0.ffe"]\n'
        '[order]\ndataset = ["lj"]\nsystem = ["cpc_#50%"]\n')
    for name in ("mine.json", "mine.toml"):
        layout = load_layout(tmp_path / name)
        assert layout.name == "mine"
        table = build_table(summaries, layout, sig=sig)
        assert [c.header() for c in table.columns] == ["WER-mean (%) ↓", "FFE (%) ↓"]
        # lj first (explicit order), copy first in its group, then cpc_#50% before hubert100
        assert [(r.fields["dataset"], r.fields["system"]) for r in table.rows] == [
            ("lj", "copy"), ("lj", "cpc_#50%"), ("lj", "hubert100"),
            ("vctk_&_x", "copy"), ("vctk_&_x", "cpc_#50%"), ("vctk_&_x", "hubert100")]
        hub = summaries[4]
        assert table.rows[2].cells[0].value == pytest.approx(hub.metrics["asr.wer"].mean)
    # the example of docs/reports.md: extend a preset
    (tmp_path / "wer_ffe.toml").write_text(
        'extends = "paper"\ntitle = "Content and intonation"\n'
        'columns = [{key = "asr.wer", stat = "mean", label = "WER (mean)"}, "f0.ffe", "n"]\n'
        'order = {system = ["copy", "hubert100"]}\n')
    ext = load_layout(tmp_path / "wer_ffe.toml")
    assert (ext.name, ext.label, ext.experiments, ext.notes) == (
        "wer_ffe", "tab:wer_ffe", ("resynthesis",), load_layout("paper").notes)
    t = build_table(summaries, ext, sig=sig)
    assert [c.header() for c in t.columns] == ["WER (mean) (%) ↓", "FFE (%) ↓", "N"]
    with pytest.raises(LayoutError, match="unknown field"):
        load_layout({"name": "x", "colums": []})
    with pytest.raises(LayoutError, match="use one of"):
        load_layout("no-such-layout")
    with pytest.raises(LayoutError, match="stat must be"):
        Column.from_value({"key": "asr.wer", "stat": "median"})


def test_ci_modes(golden):
    summaries, sig = golden
    table = build_table(summaries, "paper", sig=sig)
    pm, sx, none = (render_latex(table, ci) for ci in ("pm", "siunitx", "none"))
    assert r"$\pm$" in pm and "S[table-format" not in pm
    assert r"S[table-format=2.2 \pm 1.2" in sx and r"\pm" in sx and r"\sisetup" in sx
    assert r"\pm" not in none.split(r"\caption")[0] and "half-width" not in none
    assert r"\textbf{" in pm and r"\bfseries" in sx
    with pytest.raises(ValueError, match="ci must be"):
        render_latex(table, "brackets")


def test_batched_significance_equals_the_per_key_paired_bootstrap(golden):
    """EER/minDCF tests run once per group; the numbers must equal paired_bootstrap per key."""
    from resyn_bench.reports.stats import paired_bootstrap

    summaries, _ = golden
    res = significance(summaries[:3], "auto")
    base, other = summaries[0], summaries[2]
    group = other.groups["spk"]
    for key in ("spk.eer", "spk.min_dcf"):
        ref = paired_bootstrap(base.entries["spk"], other.entries["spk"],
                               lambda es, k=key: group.aggregate(es).get(k))
        got = res[(2, key)]
        assert got.p_value == ref.p_value and got.delta == pytest.approx(ref.delta)
        assert got.low == pytest.approx(ref.low) and got.high == pytest.approx(ref.high)
    assert (2, "spk.n_target_trials") not in res   # counts are not tested


def _latex_engine() -> list[str] | None:
    if shutil.which("pdflatex"):
        return ["pdflatex", "-interaction=nonstopmode", "-halt-on-error"]
    if shutil.which("latexmk"):
        return ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error"]
    if shutil.which("tectonic"):
        return ["tectonic"]
    return None


def test_latex_compiles(golden, tmp_path):
    engine = _latex_engine()
    if engine is None:
        pytest.skip("no LaTeX engine (pdflatex, latexmk or tectonic) on PATH")
    summaries, sig = golden
    body = []
    for layout in ("paper", "vc", "codec", "all"):
        table = build_table(summaries, layout, sig=sig)
        for ci in ("pm", "siunitx", "none"):
            body.append(render_latex(table, ci, label=f"tab:{layout}-{ci}"))
    doc = ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n"
           "\\usepackage{siunitx}\n\\usepackage[a3paper,landscape,margin=1cm]{geometry}\n"
           "\\begin{document}\n" + "\n\\clearpage\n".join(body) + "\n\\end{document}\n")
    (tmp_path / "tables.tex").write_text(doc, encoding="utf-8")
    try:
        proc = subprocess.run(engine + ["tables.tex"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("LaTeX did not finish in 120 s")
    assert proc.returncode == 0 and (tmp_path / "tables.pdf").exists(), proc.stdout[-3000:]
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "Missing $" not in log


def test_rendering_imports_no_torch(golden_runs, tmp_path):
    """A whole report (tables, plots, HTML) loads no torch, no system code, and leaves
    matplotlib's global pyplot state alone."""
    code = (
        "import sys\n"
        "from resyn_bench.reports.report import write_report\n"
        f"write_report({[str(p) for p in golden_runs[:3]]!r}, {str(tmp_path / 'rep')!r}, n_boot=50)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(("
        "'torch.', 'torchaudio', 'resyn_bench.systems')))\n"
        "plt = sys.modules.get('matplotlib.pyplot')\n"   # boxplot imports it; no figure may stay
        "bad += ['pyplot figures'] if plt is not None and plt.get_fignums() else []\n"
        "print('LOADED', bad)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED []" in proc.stdout
    assert (tmp_path / "rep" / "table.md").exists()


def test_cli_report_options(golden_runs, tmp_path, capsys):
    from resyn_bench.cli import main

    layout = tmp_path / "wer.json"
    layout.write_text(json.dumps({"name": "wer", "columns": ["asr.wer"]}))
    out = tmp_path / "rep"
    rc = main(["report", *map(str, golden_runs), "--out", str(out), "--layout", "paper",
               "--layout", str(layout), "--format", "md,tex,csv", "--ci", "siunitx", "--no-plots"])
    assert rc == 0
    printed = capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == [".resyn-bench-report.json", "summary.json", "table.csv", "table.md",
                     "table.tex", "table_wer.csv", "table_wer.md", "table_wer.tex"]
    assert "S[table-format" in (out / "table.tex").read_text()
    assert "table_wer.md" in printed and "latex (wer)" in printed
    rc = main(["report", str(golden_runs[0]), "--out", str(out), "--layout", "nope"])
    assert rc == 2 and "unknown layout 'nope'" in capsys.readouterr().err
    rc = main(["report", str(golden_runs[0]), "--out", str(out), "--format", "md,docx"])
    assert rc == 2 and "docx" in capsys.readouterr().err


def test_vectorised_trial_statistics_equal_aggregate_on_every_replicate(golden):
    """EER/minDCF/chance/trial counts of the fast path (the speaker group's ``replicates`` hook)
    == SpeakerMetrics.aggregate per replicate, also with undefined trial scores and utterances
    without trials; the statistics module takes the hook generically."""
    import copy

    from resyn_bench.reports.stats import bootstrap_weights, corpus_replicates, iter_bootstrap_indices

    summaries, _ = golden
    vc = next(s for s in summaries if s.experiment == "vc" and s.system == "cpc_#50%")
    group = vc.groups["spk"]
    entries = copy.deepcopy(vc.entries["spk"])
    entries[0]["extra"]["trials"]["p226"] = float("nan")      # an undefined trial
    entries[1]["extra"] = {}                                   # no trials at all
    entries[2]["extra"]["trials"] = {k: 0.5 for k in entries[2]["extra"]["trials"]}  # ties
    # voice conversion: source-speaker trials (source EER) on most, not all, utterances
    for e in entries[4:]:
        if e["extra"].get("target") not in (None, e["speaker"]):
            e["extra"]["source"] = e["speaker"]
    speakers = [e["speaker"] for e in entries]
    fast = group.replicates(entries, bootstrap_weights(speakers, 200, 3))
    slow = [group.aggregate([entries[i] for i in idx]) for idx in iter_bootstrap_indices(speakers, 200, 3)]
    assert len(fast) == len(slow) == 200
    assert corpus_replicates(group, entries, 200, 3) == fast
    assert sum(r["spk.source_eer"] is not None for r in fast) > 150
    for a, b in zip(fast, slow, strict=True):
        assert a == b


def test_csv_holds_the_same_numbers_in_display_units(golden):
    import csv
    import io

    summaries, sig = golden
    table = build_table(summaries, "paper", sig=sig)
    rows = list(csv.DictReader(io.StringIO(render_csv(table))))
    assert [(r["dataset"], r["system"]) for r in rows] == \
        [(r.fields["dataset"], r.fields["system"]) for r in table.rows]
    hub = summaries[1]
    wer = hub.metrics["asr.wer"]
    row = rows[1]
    assert float(row["asr.wer"]) == pytest.approx(100 * wer.pooled, abs=1e-8)
    assert float(row["asr.wer.ci_low"]) == pytest.approx(100 * wer.ci_pooled.low, abs=1e-8)
    assert float(row["asr.wer.ci_high"]) == pytest.approx(100 * wer.ci_pooled.high, abs=1e-8)
    res = significance(summaries, "auto")[(1, "asr.wer")]
    assert float(row["asr.wer.p"]) == pytest.approx(res.p_value)
    assert row["asr.wer.significant"] == str(int(res.p_value < 0.05))
    assert float(row["dnsmos.ovrl"]) == pytest.approx(hub.metrics["dnsmos.ovrl"].mean, abs=1e-8)
    assert rows[0]["asr.wer.p"] == "" and row["n"] == "24/24"
