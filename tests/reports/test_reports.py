"""Collation and tables from hand-written run directories with known numbers."""
from __future__ import annotations

import pytest

from resyn_bench.metrics.f0 import COUNT_KEYS, F0Metrics, values_from_counts
from resyn_bench.reports.collate import summarize_run
from resyn_bench.reports.report import format_summary, write_report
from resyn_bench.reports.tables import latex_escape, latex_table, markdown_table
from resyn_bench.store import RecordStore, write_json_atomic


def _counts(n_frames, n_vb, n_gross, n_verr):
    return {"f0.n_frames": n_frames, "f0.n_voiced_both": n_vb, "f0.n_gross": n_gross,
            "f0.n_voicing_err": n_verr}


def make_run(path, system, utts):
    group = F0Metrics(preset="dio")
    write_json_atomic(path / "manifest.json", {
        "config": {"system": system, "dataset": "toy"},
        "dataset": {"n_utterances": len(utts)},
        "metrics": {"f0": {"settings": group.settings(), "specs": [s.to_dict() for s in group.specs],
                           "options": {"preset": "dio"}}}})
    store = RecordStore(path)
    for uid, counts in utts.items():
        if counts is None:
            store.append({"part": "synthesis", "utt_id": uid, "speaker": "s", "status": "failed",
                          "stage": "reference", "error_kind": "silent", "reason": "silent: x"})
            continue
        store.append({"part": "synthesis", "utt_id": uid, "speaker": "s", "status": "ok"})
        local = {k.split(".", 1)[1]: v for k, v in counts.items()}
        store.append({"part": "metric", "group": "f0", "utt_id": uid, "status": "ok",
                      "values": values_from_counts({**dict.fromkeys(COUNT_KEYS, 0), **local}),
                      "counts": local})
    return path


@pytest.fixture
def runs(tmp_path):
    a = make_run(tmp_path / "a", "copy", {"u1": _counts(100, 50, 0, 0), "u2": _counts(10, 5, 0, 0)})
    # mean of GPE: (10/50 + 5/5)/2 = 0.6 ; pooled: 15/55
    b = make_run(tmp_path / "b", "sys_&_50%", {"u1": _counts(100, 50, 10, 20), "u2": _counts(10, 5, 5, 0),
                                               "u3": None})
    return a, b


def test_mean_and_pooled_differ_as_computed_by_hand(runs):
    s = summarize_run(runs[1])
    gpe = s.metrics["f0.gpe"]
    assert gpe.mean == pytest.approx(0.6)
    assert gpe.pooled == pytest.approx(15 / 55)
    assert gpe.n == 2
    assert s.metrics["f0.ffe"].pooled == pytest.approx(35 / 110)
    assert s.metrics["f0.vde"].mean == pytest.approx((0.2 + 0.0) / 2)
    assert (s.n_ok, s.n_failed, s.n_total) == (2, 1, 3)
    assert dict(s.failures) == {"reference: silent": 1}


def test_markdown_table(runs):
    summaries = [summarize_run(r) for r in runs]
    md = markdown_table(summaries, "mean", ci=False, marks=False)
    lines = md.splitlines()
    assert lines[0].startswith("| Dataset | System | GPE (%) ↓ | VDE (%) ↓ | FFE (%) ↓")
    assert "| toy | copy | 0.00 | 0.00 | 0.00 |" in md
    assert r"| toy | sys\_&\_50% | 60.00 | 10.00 | 40.00 |" in md   # Markdown-escaped
    assert "2/3 scored" in md
    pooled = markdown_table(summaries, "pooled", ci=False, marks=False)
    assert r"| toy | sys\_&\_50% | 27.27 |" in pooled and "pooled over utterances" in pooled


def test_latex_table_is_escaped_booktabs_with_arrows(runs):
    tex = latex_table([summarize_run(r) for r in runs], ci=False, marks=False)
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"GPE (\%) $\downarrow$" in tex
    assert r"sys\_\&\_50\%" in tex
    assert tex.count(r"\\") == 3  # header + 2 rows
    assert latex_escape(r"a\b~{c}^") == r"a\textbackslash{}b\textasciitilde{}\{c\}\textasciicircum{}"


def test_write_report_and_terminal_summary(runs, tmp_path):
    paths = write_report(runs, tmp_path / "rep")
    # paper (Table 1) and all; no VC/F0-manipulation runs and no bitrate: no vc/codec tables
    assert {p.name for p in paths.values()} == {"table.md", "table.tex", "table.csv", "table_all.md",
                                                "table_all.tex", "table_all.csv", "summary.json",
                                                "report.html", "plots",
                                                ".resyn-bench-report.json"}
    # the paper layout keeps Table 1's columns (here VDE, FFE); "all" has every metric
    paper = paths["markdown"].read_text()
    assert "VDE" in paper and "FFE" in paper and "GPE" not in paper
    assert "GPE" in paths["markdown (all)"].read_text()
    assert all(p.stat().st_size > 0 for p in paths.values())
    text = format_summary(summarize_run(runs[1]), utterances=True)
    assert "failed 1" in text and "reference: silent x1" in text and "u3" in text


def test_cis_and_significance_marks(tmp_path):
    # baseline: no errors; b: every one of 20 utterances (4 speakers) has many gross errors
    good = {f"u{i}": _counts(100, 50, 0, 0) for i in range(20)}
    bad = {f"u{i}": _counts(100, 50, 20 + i % 3, 5) for i in range(20)}
    a = make_run(tmp_path / "a", "copy", good)
    b = make_run(tmp_path / "b", "bad", bad)
    sa, sb = summarize_run(a), summarize_run(b)
    ci = sb.metrics["f0.gpe"].ci_pooled
    assert ci.low <= sb.metrics["f0.gpe"].pooled <= ci.high and ci.n_boot == 1000
    assert sb.metrics["f0.gpe"].ci_mean is not None
    md = markdown_table([sa, sb])
    row = next(line for line in md.splitlines() if "| bad |" in line)
    assert "41.90 ± " in row and "\\*" in row          # significantly worse than the baseline
    assert "\\*" not in next(line for line in md.splitlines() if "| copy |" in line)
    assert "95% bootstrap CI" in md
    tex = latex_table([sa, sb])
    assert r"$\pm$" in tex and "$^*$" in tex
    # reproducible: the same seed gives the same interval
    assert summarize_run(b).metrics["f0.gpe"].ci_pooled == ci


@pytest.mark.parametrize("stat", ["mean", "pooled"])
def test_vectorised_paired_comparison_equals_the_generic_bootstrap(tmp_path, stat):
    from resyn_bench.reports.stats import compare, paired_bootstrap

    rng = __import__("numpy").random.default_rng(3)
    a = make_run(tmp_path / "a", "a", {f"u{i}": _counts(100, 50, int(rng.integers(0, 5)), 2) for i in range(30)})
    b = make_run(tmp_path / "b", "b", {f"u{i}": _counts(100, 50, int(rng.integers(3, 9)), 4)
                                       for i in range(2, 32)})   # partly different utterances
    sa, sb = summarize_run(a, n_boot=0), summarize_run(b, n_boot=0)
    group, ea, eb = sa.groups["f0"], sa.entries["f0"], sb.entries["f0"]
    for e in ea + eb:   # several speakers, so the hierarchy matters
        e["speaker"] = f"s{int(e['utt_id'][1:]) % 4}"
    if stat == "mean":
        def statistic(es):
            vals = [e["values"]["f0.gpe"] for e in es if e["values"].get("f0.gpe") is not None]
            return sum(vals) / len(vals) if vals else None
    else:
        def statistic(es):
            return group.aggregate(es).get("f0.gpe")
    fast = compare(group, ea, eb, "f0.gpe", stat=stat, n_boot=300)
    slow = paired_bootstrap(ea, eb, statistic, n_boot=300)
    assert fast.n_common == slow.n_common == 28
    assert fast.delta == pytest.approx(slow.delta, abs=1e-12)
    assert fast.low == pytest.approx(slow.low, abs=1e-12) and fast.high == pytest.approx(slow.high, abs=1e-12)
    assert fast.p_value == slow.p_value


def test_comparison_without_common_utterances_is_undefined_not_an_error(tmp_path):
    from resyn_bench.reports.stats import compare

    a = make_run(tmp_path / "a", "a", {"u1": _counts(100, 50, 1, 1)})
    b = make_run(tmp_path / "b", "b", {"u2": _counts(100, 50, 1, 1)})
    sa, sb = summarize_run(a), summarize_run(b)
    for stat in ("mean", "pooled"):
        res = compare(sa.groups["f0"], sa.entries["f0"], sb.entries["f0"], "f0.gpe", stat=stat)
        assert res.n_common == 0 and res.delta is None and res.p_value is None
    row = markdown_table([sa, sb]).split("| toy | b |")[1].splitlines()[0]
    assert "\\*" not in row   # no significance mark (the ** are the bold of tied best values)


def test_dataset_labels_and_baselines_follow_the_data_not_the_loader_name():
    from resyn_bench.reports.collate import dataset_key, dataset_label

    m1 = {"config": {"dataset": "manifest", "split": None}, "dataset": {"root": "/c/vctk_16k/manifest.tsv"}}
    m2 = {"config": {"dataset": "manifest", "split": "/s/test.txt"}, "dataset": {"root": "/c/lj"}}
    m3 = {"config": {"dataset": "ljspeech"}, "dataset": {"root": "/d/LJSpeech-1.1"}}
    assert dataset_label(m1) == "vctk_16k"
    assert dataset_label(m2) == "lj (test)"
    assert dataset_label(m3) == "ljspeech"
    assert dataset_key(m1) != dataset_key(m2)
