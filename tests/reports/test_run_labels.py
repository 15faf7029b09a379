"""One naming rule per report (resyn_bench.reports.labels): the table, the HTML report, the
plots and the caption call each run the same."""
from __future__ import annotations

import pytest
from golden.fixture_runs import DATASETS, _write_run

from resyn_bench.reports import plots
from resyn_bench.reports.collate import summarize_run, system_label
from resyn_bench.reports.html import build_data
from resyn_bench.reports.labels import path_system_label, run_label, run_names, run_titles
from resyn_bench.reports.tables import build_table, caption


def test_run_label_from_the_manifest():
    assert system_label is run_label   # the collate name stays for older callers
    cfg = {"system": "outputs:/x/y/hifigan_gen/", "system_options": {"pattern": "{stem}.wav"}}
    assert run_label({"config": cfg}) == "hifigan_gen"
    assert run_label({"config": {**cfg, "label": "theirs"}}) == "theirs"
    assert run_label({"config": {"system": "ckpt:./runs/v7", "system_options": {"step": 5}}}) \
        == "ckpt:v7 (step=5)"
    assert run_label({"config": {"system": "world", "system_options": {"mcep_dims": 24,
                                                                       "f0_method": "dio"}}}) \
        == "world (f0_method=dio, mcep_dims=24)"
    assert path_system_label("hubert100") is None and path_system_label("ckpt:run7") is None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """copy and hubert100 twice (same data, same experiment) on one dataset, copy on another,
    and a VC run of hubert100."""
    root = tmp_path_factory.mktemp("label_runs")
    vctk, lj = list(DATASETS)
    made = [_write_run(root / "a", "copy", vctk, None, 1, groups=("dnsmos",)),
            _write_run(root / "b", "hubert100", vctk, None, 2, groups=("dnsmos",)),
            _write_run(root / "c", "hubert100", vctk, None, 3, groups=("dnsmos",)),
            _write_run(root / "d", "hubert100", vctk, "vc", 4, groups=("dnsmos",)),
            _write_run(root / "e", "copy", lj, None, 5, groups=("dnsmos",))]
    return [summarize_run(p, n_boot=0) for p in made]


def test_names_and_titles(runs):
    assert run_names(runs) == ["copy", "hubert100 [b]", "hubert100 [c]", "hubert100", "copy"]
    vctk, lj = runs[0].dataset, runs[-1].dataset
    assert vctk != lj
    assert run_titles(runs) == [f"{vctk}/copy", f"{vctk}/hubert100 [b]", f"{vctk}/hubert100 [c]",
                                f"{vctk}/hubert100 (vc)", f"{lj}/copy"]
    one = runs[:3]   # one dataset: no prefix
    assert run_titles(one) == ["copy", "hubert100 [b]", "hubert100 [c]"]


def test_table_html_and_plot_name_a_run_the_same(runs, tmp_path, monkeypatch):
    table = build_table(runs, "all", marks=False)
    rows = {(r.fields["dataset"], r.fields["experiment"], r.fields["system"]) for r in table.rows}
    data, _ = build_data(runs, tmp_path)
    html_rows = [s["row_label"] for s in data["systems"]]
    html_titles = [s["label"] for s in data["systems"]]
    legend = []
    monkeypatch.setattr(plots, "_legend", lambda fig, labels: legend.extend(labels))
    assert plots.plot_metric_bars(runs, tmp_path / "bars", keys=["dnsmos.ovrl"])
    names, titles = run_names(runs), run_titles(runs)
    assert html_rows == names and html_titles == titles and legend == titles
    assert {name for _, _, name in rows} == set(names)
    assert len(rows) == len(runs)   # every run its own row
    note = caption(runs, "auto", table=table)
    for title in titles:
        assert f"{title}: " in note
    # a title is the run's name with its context, never another name
    for s, name, title in zip(runs, names, titles, strict=True):
        assert name in title and (s.experiment == "resynthesis" or s.experiment in title)
