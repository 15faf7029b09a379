"""Issue 20 report items: CI bounds in the ± form, n for trial-based numbers, reports of
unfinished runs, Table 2 baselines and split grouping, report folder hygiene, labels."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden.fixture_runs import build_golden_runs

from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.collate import summarize_run
from resyn_bench.reports.report import format_summary
from resyn_bench.reports.tables import Cell, build_table, interval_text, pm_fits, render_markdown

EER = MetricSpec("spk.eer", "Spk EER", higher_is_better=False, unit="%", percent=True)
ACC = MetricSpec("spk.acc", "acc", higher_is_better=True, unit="%", percent=True)
MCD = MetricSpec("intrusive.mcd", "MCD", higher_is_better=False, unit="dB")
PESQ = MetricSpec("intrusive.pesq", "PESQ", higher_is_better=True, unit="MOS-LQO")


@pytest.fixture(scope="module")
def golden_runs(tmp_path_factory):
    return build_golden_runs(tmp_path_factory.mktemp("runs"))


def test_pm_form_never_leaves_the_metric_range():
    # issue 20: "EER 1.67 ± 1.68" printed an interval reaching below 0
    eer = Cell(value=0.0167, low=0.0, high=0.0336)
    assert not pm_fits(EER, eer)
    assert interval_text(EER, eer) == " [0.00, 3.36]"
    near_one = Cell(value=0.99, low=0.95, high=1.0)          # 99 ± 2.5 would pass 100 %
    assert interval_text(ACC, near_one) == " [95.00, 100.00]"
    inside = Cell(value=0.20, low=0.15, high=0.26)
    assert interval_text(EER, inside) == " ± 5.50"
    assert interval_text(MCD, Cell(value=0.3, low=0.0, high=0.9)) == " [0.000, 0.900]"
    # no known bound (PESQ): the symmetric form stays
    assert interval_text(PESQ, Cell(value=1.1, low=0.1, high=2.5)) == " ± 1.200"
    assert interval_text(EER, Cell(value=0.1)) == ""


def test_tables_print_bounds_where_pm_would_go_below_zero(golden_runs):
    summaries = [summarize_run(r) for r in golden_runs[:3]]
    table = build_table(summaries, "paper")
    md = render_markdown(table)
    j = next(k for k, c in enumerate(table.columns) if c.spec is not None and c.spec.key == "spk.eer")
    copy = table.rows[0].cells[j]
    assert copy.value - copy.half < 0                        # the symmetric form would cross 0
    assert "4.17 [0.00, 11.11]" in md and "4.17 ±" not in md
    assert "\\[low, high\\]: the interval's bounds" in md      # caption (Markdown-escaped)
    for row in table.rows:                 # every ± printed stays at or above 0 (all are rates here)
        for tc, cell in zip(table.columns, row.cells, strict=True):
            if tc.spec is not None and tc.spec.percent and cell.half is not None \
                    and pm_fits(tc.spec, cell):
                assert 0 <= cell.value - cell.half and cell.value + cell.half <= 1


def test_summary_n_counts_trials_for_eer_and_mindcf(golden_runs):
    s = summarize_run(golden_runs[0])                        # 4 speakers x 6 utterances
    eer, dcf, acc = s.metrics["spk.eer"], s.metrics["spk.min_dcf"], s.metrics["spk.acc"]
    assert eer.n == dcf.n == 24 * 4 and eer.n_unit == dcf.n_unit == "trials"   # 24 target + 72
    assert acc.n == 24 and acc.n_unit == "utterances"
    text = format_summary(s)
    line = next(t for t in text.splitlines() if t.startswith("Spk EER"))
    assert line.rstrip().endswith("96 trials")
    assert "output-vs-speaker trials" in text
    assert s.to_dict()["metrics"]["spk.eer"]["n_unit"] == "trials"


# --------------------------------------------------------------------------------------------
# Report folder hygiene and labels
# --------------------------------------------------------------------------------------------

def _write(runs, out, **kw):
    from resyn_bench.reports.report import write_report

    return write_report(runs, out, plots=False, n_boot=0, **kw)


def test_report_into_an_older_report_removes_only_the_suites_stale_files(golden_runs, tmp_path,
                                                                         caplog):
    from resyn_bench.reports.report import INDEX

    out = tmp_path / "rep"
    _write(golden_runs, out, formats=["md", "csv"])           # all four layouts
    index = json.loads((out / INDEX).read_text())
    assert "table_vc.md" in index["files"] and "summary.json" in index["files"]
    (out / "notes.txt").write_text("mine")                      # the user's own file
    # the second report has no VC runs: table_vc.* of the first would be stale
    resyn = [r for r in golden_runs if "-vc-" not in r.name and "f0_flat" not in r.name]
    with caplog.at_level("INFO", logger="resyn_bench.reports"):
        paths = _write(resyn, out, formats=["md"])
    names = sorted(p.name for p in out.iterdir())
    assert "table_vc.md" not in names and "table_vc.csv" not in names and "table.csv" not in names
    assert "table.md" in names and "notes.txt" in names
    assert "removed" in caplog.text and "table_vc.md" in caplog.text
    assert set(json.loads((out / INDEX).read_text())["files"]) == {
        p.relative_to(out).as_posix() for p in out.rglob("*")
        if p.is_file() and p.name not in (INDEX, "notes.txt")}
    assert paths["index"] == out / INDEX


def test_untracked_leftovers_are_named_not_deleted(golden_runs, tmp_path, caplog):
    out = tmp_path / "old"
    out.mkdir()
    (out / "table_codec.tex").write_text("% from a report written before the index existed")
    with caplog.at_level("WARNING", logger="resyn_bench.reports"):
        _write(golden_runs[:3], out, formats=["md"])
    assert (out / "table_codec.tex").exists()
    assert "table_codec.tex" in caplog.text and "fresh --out" in caplog.text
    with pytest.raises(ValueError, match="is a file"):
        _write(golden_runs[:3], out / "table.md", formats=["md"])


def test_index_never_removes_outside_the_folder(golden_runs, tmp_path):
    from resyn_bench.reports.report import INDEX

    out = tmp_path / "rep"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep")
    (out / INDEX).write_text(json.dumps({"files": ["../precious.txt", "/etc/hostname"]}))
    _write(golden_runs[:3], out, formats=["md"])
    assert victim.read_text() == "keep"


def test_default_label_of_outputs_dir_is_the_folder_name():
    from resyn_bench.reports.collate import system_label

    m = {"config": {"system": "outputs:/data/exp/hifigan_gen/",
                    "system_options": {"pattern": "{stem}_gen.wav"}}}
    assert system_label(m) == "hifigan_gen"
    m["config"]["label"] = "HiFi-GAN (theirs)"
    assert system_label(m) == "HiFi-GAN (theirs)"                # run --label wins
    assert system_label({"config": {"system": "ckpt:./runs/v7", "system_options": {}}}) == "ckpt:v7"
    assert system_label({"config": {"system": "world", "system_options": {"f0_method": "dio"}}}) \
        == "world (f0_method=dio)"


def test_report_rename(golden_runs, tmp_path):
    out = tmp_path / "rep"
    _write(golden_runs[:3], out, formats=["md"], rename={"hubert100": "HuBERT-100",
                                                          golden_runs[2].name: "CPC"})
    md = (out / "table.md").read_text()
    assert "HuBERT-100" in md and "| CPC |" in md and "hubert100" not in md
    page = _write(golden_runs[:3], tmp_path / "html", formats=["html"],
                  rename={"hubert100": "HuBERT-100"})["html"].read_text()
    assert [r[1] for r in _html_table(page, "summary-table")[1:]] == ["copy", "HuBERT-100",
                                                                      "cpc_#50%"]
    with pytest.raises(ValueError, match="no run labelled 'nope'.*'copy'"):
        _write(golden_runs[:3], out, formats=["md"], rename={"nope": "x"})


def test_cli_report_rename_and_listing(golden_runs, tmp_path, capsys):
    from resyn_bench.cli import main

    out = tmp_path / "cli"
    rc = main(["report", *map(str, golden_runs[:3]), "--out", str(out), "--format", "md",
               "--no-plots", "--rename", "copy=Ground truth"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "files written, listed in" in printed
    assert "Ground truth" in (out / "table.md").read_text()
    assert main(["report", str(golden_runs[0]), "--out", str(out), "--rename", "copy"]) == 2
    assert "OLD=NEW" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Unfinished runs
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unfinished_run(golden_runs, tmp_path_factory):
    """hubert100 on vctk as if stopped early: manifest status 'running', 24 of 40 utterances."""
    import shutil

    run = tmp_path_factory.mktemp("late") / "vctk-hubert100-late"
    shutil.copytree(golden_runs[1], run)
    m = json.loads((run / "manifest.json").read_text())
    m["status"], m["dataset"]["n_utterances"] = "running", 40
    (run / "manifest.json").write_text(json.dumps(m))
    return run


def test_unfinished_run_is_flagged_everywhere(golden_runs, unfinished_run, tmp_path, caplog):
    from resyn_bench.reports.report import write_report

    s = summarize_run(unfinished_run, n_boot=0)
    assert s.status == "running" and "24/40" in s.unfinished and "still running" in s.unfinished
    done = summarize_run(golden_runs[0], n_boot=0)
    assert done.unfinished is None
    assert "WARNING  run not finished" in format_summary(s)
    out = tmp_path / "rep"
    with caplog.at_level("WARNING", logger="resyn_bench.reports"):
        write_report([golden_runs[0], unfinished_run], out, plots=False, n_boot=0,
                     formats=["md", "tex", "csv", "html"], layouts=["paper"])
    assert "is not finished" in caplog.text and "24/40" in caplog.text
    md = (out / "table.md").read_text()
    assert "| hubert100 † |" in md and "| copy |" in md
    assert "† NOT FINISHED: hubert100 (vctk-hubert100-late)" in md
    tex = (out / "table.tex").read_text()
    assert r"hubert100 $^\dagger$" in tex
    rows = (out / "table.csv").read_text().splitlines()
    assert rows[0].endswith(",unfinished") and "24/40" in rows[2] and rows[1].endswith(",")
    page = (out / "report.html").read_text()
    assert 'class="warning"' in page and "Not finished" in page and "hubert100 †" in page
    assert json.loads((out / "summary.json").read_text())["runs"][1]["status"] == "running"
    # a finished report has none of it
    write_report(golden_runs[:3], tmp_path / "ok", plots=False, n_boot=0, formats=["md", "csv"],
                 layouts=["paper"])
    assert "†" not in (tmp_path / "ok" / "table.md").read_text()
    assert "unfinished" not in (tmp_path / "ok" / "table.csv").read_text()


# --------------------------------------------------------------------------------------------
# Static HTML tables
# --------------------------------------------------------------------------------------------

def _html_table(page: str, table_id: str) -> list[list[str]]:
    """Rows (header first) of one table, by parsing the HTML as a script-less viewer would."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.rows, self.cell = 0, [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table" and dict(attrs).get("id") == table_id:
                self.depth = 1
            elif self.depth and tag == "tr":
                self.rows.append([])
            elif self.depth and tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag):
            if self.depth and tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append("".join(self.cell).strip())
                self.cell = None
            elif self.depth and tag == "table":
                self.depth = 0

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    p = P()
    p.feed(page)
    return p.rows


def test_html_summary_reads_without_javascript(golden_runs, tmp_path):
    from resyn_bench.reports.html import write_html

    summaries = [summarize_run(r) for r in golden_runs[:3]]
    page = write_html(summaries, tmp_path / "r.html").read_text()
    assert "needs JavaScript to render" not in page
    rows = _html_table(page, "summary-table")
    head, body = rows[0], rows[1:]
    assert head[:2] == ["Dataset", "System"] and head[-1] == "N" and "Spk EER (%) ↓" in head
    assert [r[1] for r in body] == ["copy", "hubert100", "cpc_#50%"]
    eer = head.index("Spk EER (%) ↓")
    assert body[0][eer] == "4.17 [0.00, 11.11]"                 # same as the Markdown table
    wer = head.index("WER (%) ↓")
    md = render_markdown(build_table(summaries, "paper"))
    for r in body:
        assert r[-1] == "24/24"
        assert r[wer].rstrip("*").split(" ± ")[0] in md        # the numbers of the tables
    # the caption, the first page of the per-utterance table and the manifests are static too
    assert 'id="stat-note" class="muted small">Values are' in page
    drill = _html_table(page, "drill")
    assert drill[0][:4] == ["Utterance", "Speaker", "System", "Status"] and len(drill) == 51
    assert drill[1][:4] == ["p225_&_x_000", "p225_&_x", "copy", "ok"]      # escaped, as text
    assert drill[2][2] == "hubert100" and drill[1][-1] == ""
    assert "rows 1–50 of 72; the rest in records.jsonl" in page
    assert 'class="kv"' in page.split('id="manifest"')[1]


def test_html_tables_in_a_browser_with_and_without_javascript(golden_runs, tmp_path):
    """Headless Chromium: with scripts disabled the summary table is there as written; with
    scripts the same table is rebuilt sortable (and the drill-down appears)."""
    from resyn_bench.reports.browser import Browser, find_chromium
    from resyn_bench.reports.html import write_html

    if find_chromium() is None:
        pytest.skip("no Chromium binary found: the browser check of the static tables did not run")
    page_file = write_html([summarize_run(r, n_boot=100) for r in golden_runs[:3]],
                           tmp_path / "r.html", sig={})
    cells = ("Array.from(document.querySelectorAll('#summary-table tbody tr'))"
             ".map(r => Array.from(r.cells).map(c => c.textContent))")
    with Browser() as browser:
        off = browser.open("about:blank", 1000, 700)
        off.send("Emulation.setScriptExecutionDisabled", {"value": True})
        off.navigate(page_file.as_uri())
        static = off.evaluate(cells)
        assert off.evaluate("document.body.getAttribute('data-ready')") is None   # no script ran
        assert [r[1] for r in static] == ["copy", "hubert100", "cpc_#50%"]
        assert all(r[-1] == "24/24" for r in static)
        assert off.evaluate("document.querySelectorAll('#summary-table th.sortable').length") == 0
        assert off.evaluate("document.querySelectorAll('#drill tbody tr').length") == 50
        assert off.evaluate("document.querySelectorAll('#manifest table.kv').length") == 3
        text = off.evaluate("document.body.innerText")
        assert "Values are" in text and "hubert100" in text
        eer_static = [c for c in static[0] if c.startswith("4.17")]
        assert len(eer_static) == 1 and eer_static[0].startswith("4.17 [0.00, ")
        on = browser.open(page_file, 1000, 700)
        on.wait_for("document.body.getAttribute('data-ready') === '1'")
        assert on.evaluate("document.querySelectorAll('#summary-table th.sortable').length") > 5
        live = on.evaluate(cells)
        assert [r[1] for r in live] == ["copy", "hubert100", "cpc_#50%"]
        eer_live = [c for c in live[0] if c.startswith("4.17")]
        assert eer_live == eer_static                             # the script keeps the bounds
        assert on.evaluate("document.querySelectorAll('#drill thead').length") == 1  # replaced
        assert on.evaluate("document.querySelectorAll('#drill tbody tr').length") == 50
        assert on.problems() == []


# --------------------------------------------------------------------------------------------
# Table 2: resynthesis baselines next to flat-F0 figures; runs on a split
# --------------------------------------------------------------------------------------------

def _col(table, col_id):
    return next(j for j, c in enumerate(table.columns) if c.column.id == col_id)


def test_table2_shows_each_systems_resynthesis_vde_ffe_and_the_difference(golden_runs):
    summaries = [summarize_run(r) for r in golden_runs]
    table = build_table(summaries, "vc")
    assert [r.fields["dataset"] for r in table.rows] == ["vctk_&_x"] * 3   # lj: no VC/F0 runs
    rows = {r.fields["system"]: r for r in table.rows}
    by = {s.run_dir.name: s for s in summaries}
    for metric in ("vde", "ffe"):
        base = _col(table, f"resynthesis:f0.{metric}")
        flat = _col(table, f"f0_flat:f0.{metric}")
        delta = _col(table, f"f0_flat:f0.{metric}-resynthesis")
        assert base < flat < delta
        # ground truth: its resynthesis figure (the analysis floor); it has no flat-F0 run
        gt = rows["copy"].cells
        assert gt[base].value == pytest.approx(by["vctk-copy"].metrics[f"f0.{metric}"].mean)
        assert gt[flat].value is None and gt[delta].value is None
        for system, short in (("hubert100", "hubert100"), ("cpc_#50%", "cpc_50")):
            c = rows[system].cells
            resyn = by[f"vctk-{short}"].metrics[f"f0.{metric}"].mean
            flat_v = by[f"vctk-f0_flat-{short}"].metrics[f"f0.{metric}"].mean
            assert c[base].value == pytest.approx(resyn)
            assert c[flat].value == pytest.approx(flat_v)
            assert c[delta].value == pytest.approx(flat_v - resyn)     # same 24 utterances
            assert c[delta].low < c[delta].value < c[delta].high
            assert not c[base].bold                                    # a baseline, not ranked
    md = render_markdown(table)
    assert "VDE (resyn.)" in md and "ΔFFE" in md and "Δ = flat - resynthesis" in md


def _with_split(run: Path, dest: Path, split: str) -> Path:
    import shutil

    shutil.copytree(run, dest)
    m = json.loads((dest / "manifest.json").read_text())
    m["config"]["split"] = split
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def test_table2_groups_split_runs_with_their_dataset(golden_runs, tmp_path):
    """VC and flat-F0 runs on a split keep the full set's ground-truth and resynthesis rows."""
    from dataclasses import replace

    from resyn_bench.reports.layouts import VC

    resyn = [r for r in golden_runs if r.name in ("vctk-copy", "vctk-hubert100", "vctk-cpc_50")]
    split = [_with_split(r, tmp_path / r.name, "/data/splits/test.txt") for r in golden_runs
             if "-vc-" in r.name or "f0_flat" in r.name]
    summaries = [summarize_run(r, n_boot=0) for r in resyn + split]
    assert summaries[-1].dataset == "vctk_&_x (test)" and summaries[-1].split == "test"
    assert summaries[-1].dataset_name == "vctk_&_x" and summaries[0].split is None
    table = build_table(summaries, "vc")
    assert [(r.fields["dataset"], r.fields["system"]) for r in table.rows] == [
        ("vctk_&_x", "copy"), ("vctk_&_x", "hubert100"), ("vctk_&_x", "cpc_#50%")]
    hub = table.rows[1]
    assert hub.cells[_col(table, "vc:asr.wer")].value is not None
    assert hub.cells[_col(table, "f0_flat:f0.vde-resynthesis")].value is not None
    assert hub.cells[-1].text == "24/24 (test), 24/24"                 # the split is shown
    assert table.rows[0].cells[-1].text == "24/24"
    # without the grouping (the old behaviour) the split rows lose their ground truth
    old = build_table(summaries, replace(VC, group_splits=False))
    assert ("vctk_&_x (test)", "copy") not in [(r.fields["dataset"], r.fields["system"])
                                               for r in old.rows]
