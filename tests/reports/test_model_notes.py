"""Reports name the model behind each column and treat bookkeeping as context, not a score."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden.fixture_runs import _write_run

from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.collate import summarize_run
from resyn_bench.reports.model_notes import asr_label, group_label, models_note
from resyn_bench.reports.report import format_summary
from resyn_bench.reports.tables import build_table, render_latex, render_markdown
from resyn_bench.store import read_manifest, write_json_atomic

VCTK = "/data/vctk_&_x/manifest.tsv"

WHISPER = {"backend": {"backend": "whisper", "loader": "faster-whisper", "model": "whisper-base",
                       "beam_size": 5, "compute_type": "int8"},
           "normalizer": "whisper-en", "per": True,
           "phones": {"output": "lexicon of the recognised words"}}
SPHINX = {"backend": {"backend": "pocketsphinx"}, "normalizer": "whisper-en", "per": True,
          "phones": {"output": "recognizer: pocketsphinx"}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [_write_run(root / s, s, VCTK, None, 3 + i, per_speaker=2)
            for i, s in enumerate(("copy", "hubert100"))]


def _set_asr(run: Path, settings: dict) -> None:
    m = read_manifest(run)
    m["metrics"]["asr"]["settings"] = settings
    write_json_atomic(run / "manifest.json", m)


def test_labels_from_stored_settings():
    assert asr_label(WHISPER) == ("whisper-base (faster-whisper, beam 5, int8), Whisper English "
                                  "normaliser, bracketed words kept")
    per = asr_label(WHISPER, "asr.per")
    assert per.startswith("dictionary phones of the whisper-base") and "not phones" in per
    assert asr_label(SPHINX, "asr.per") == ("phones recognised by pocketsphinx en-us (weak: for "
                                            "relative comparisons only)")
    greedy = {**WHISPER, "backend": {**WHISPER["backend"], "beam_size": 1}}
    assert "greedy" in asr_label(greedy)
    # a backend may name itself; old runs without settings give no label
    assert group_label("asr", {"backend": {"backend": "x", "label": "wav2vec2-large"}}) \
        .startswith("wav2vec2-large")
    w2v = {"backend": {"backend": "wav2vec2", "model": "wav2vec2-large-960h-lv60-self",
                       "decoding": "greedy CTC"}, "normalizer": "whisper-en"}
    assert asr_label(w2v).startswith("wav2vec2-large-960h-lv60-self (greedy CTC), Whisper")
    assert group_label("asr", {}) is None and group_label("f0", {"preset": "dio"}) is None
    assert group_label("spk", {"backend": "resemblyzer"}) == "resemblyzer speaker embeddings"


def test_every_format_names_the_model_of_each_column(runs):
    summaries = [summarize_run(r, n_boot=0) for r in runs]
    table = build_table(summaries, "paper", marks=False)
    md, tex = render_markdown(table, "none"), render_latex(table, "none")
    for text in (md, tex.replace("\\_", "_")):
        assert "Models: PER: dictionary phones of the whisper-base" in text
        assert "WER: whisper-base (faster-whisper, beam 5, int8)" in text
        assert "EER: resemblyzer speaker embeddings" in text
        assert "MOS-proxy: DNSMOS (speechmos)" in text


def test_runs_with_different_recognisers_are_named(runs, tmp_path):
    import shutil

    other = tmp_path / "sphinx"
    shutil.copytree(runs[1], other)
    _set_asr(other, SPHINX)
    summaries = [summarize_run(runs[0], n_boot=0), summarize_run(other, n_boot=0)]
    note = models_note(summaries, [MetricSpec("asr.wer", "WER", False)])
    assert "whisper-base (faster-whisper, beam 5, int8)" in note and "for copy" in note
    assert "pocketsphinx en-us" in note and "for hubert100" in note


def test_bookkeeping_is_context_without_arrow_ci_or_mark(runs):
    summaries = [summarize_run(r, n_boot=50) for r in runs]
    table = build_table(summaries, "all", marks=True)
    cols = {tc.spec.key: j for j, tc in enumerate(table.columns) if tc.spec is not None}
    for key in ("spk.chance", "spk.n_target_trials", "spk.n_nontarget_trials"):
        tc = table.columns[cols[key]]
        assert tc.arrow == "" and tc.higher_is_better is None
        for row in table.rows:
            cell = row.cells[cols[key]]
            assert cell.low is None and not cell.mark and not cell.bold
    header = render_markdown(table).splitlines()[0]
    assert "Spk-ID chance (%) |" in header and "target trials (count) |" in header
    assert "Spk EER (%) ↓" in header
    # not in the model note either (no model produced a trial count)
    assert "trials" not in models_note(summaries, [tc.spec for tc in table.columns if tc.spec])


def test_html_draws_bookkeeping_as_plain_values_and_flags_asr_outliers(runs, tmp_path):
    from resyn_bench.reports.html import build_data
    from resyn_bench.store import RecordStore

    # one looping utterance in the second run
    store = RecordStore(runs[1])
    events = [e for e in store.events() if e.get("part") == "metric" and e.get("group") == "asr"]
    loop = dict(events[0])
    loop["extra"] = {**(loop.get("extra") or {}), "outlier": "117 inserted words, more than the "
                     "9 reference words", "recognizer": {"loop_suspected": "token cap reached"}}
    store.append(loop)
    summaries = [summarize_run(r, n_boot=0) for r in runs]
    data, _ = build_data(summaries, tmp_path)
    book = {m["key"]: m["book"] for m in data["metrics"]}
    assert book["spk.chance"] and book["spk.n_target_trials"] and not book["asr.wer"]
    flagged = [e for u in data["utts"] for e in u["s"] if e and e.get("ol")]
    assert len(flagged) == 1 and flagged[0]["loop"] == "token cap reached"
    assert "117 inserted words" in flagged[0]["ol"]
    text = format_summary(summaries[1])
    assert "1 outlier utterance(s)" in text and loop["utt_id"] in text
    assert "asr      model whisper-base (faster-whisper, beam 5, int8)" in text
    json.dumps(data)


def test_stored_specs_from_before_the_flag_are_read_as_bookkeeping():
    old = {"key": "spk.n_target_trials", "label": "target trials", "higher_is_better": False,
           "unit": "count"}
    assert MetricSpec.from_dict(old).bookkeeping
    assert MetricSpec.from_dict({**old, "key": "spk.chance", "unit": "%"}).bookkeeping
    assert not MetricSpec.from_dict({"key": "asr.wer", "label": "WER",
                                     "higher_is_better": False}).bookkeeping
    spec = MetricSpec("x.n", "n", False, bookkeeping=True)
    assert MetricSpec.from_dict(spec.to_dict()) == spec and spec.arrow == ""
    assert "bookkeeping" not in MetricSpec("x.y", "y", False).to_dict()   # old layout kept


def test_the_page_shows_bookkeeping_plainly_and_the_outlier_in_the_drill_down(runs, tmp_path):
    import shutil

    from resyn_bench.reports.browser import Browser, find_chromium
    from resyn_bench.reports.html import write_html
    from resyn_bench.store import RecordStore, read_records

    if find_chromium() is None:
        pytest.skip("no Chromium binary found: the browser check did not run")
    run = tmp_path / "looping"
    shutil.copytree(runs[1], run)
    first = read_records(run, ["asr"])[0]["utt_id"]     # utterance 0 of the page (same ids)
    store = RecordStore(run)
    event = next(e for e in store.events() if e.get("part") == "metric"
                 and e.get("group") == "asr" and e["utt_id"] == first)
    store.append({**event, "extra": {**(event.get("extra") or {}),
                                     "outlier": "117 inserted words, more than the 9 reference words"}})
    out = write_html([summarize_run(r, n_boot=50) for r in (runs[0], run)], tmp_path / "r.html",
                     sig={})
    with Browser() as browser:
        pg = browser.open(out, 1280, 900)
        pg.wait_for("document.body.getAttribute('data-ready') === '1'")
        heads = pg.evaluate("Array.from(document.querySelectorAll('#summary-table th'))"
                            ".map(t => t.textContent)")
        assert "target trials (count)" in heads and "Spk-ID chance (%)" in heads
        assert "Spk EER (%) \u2193" in heads
        plots = pg.evaluate("Array.from(document.querySelectorAll('#compare-plots .title'))"
                            ".map(t => t.textContent)")
        assert any(p.startswith("WER") for p in plots)
        assert not any("trials" in p or "chance" in p for p in plots)   # no whiskers for them
        i = heads.index("Spk-ID chance (%)")
        cell = pg.evaluate(f"document.querySelector('#summary-table tbody tr').cells[{i}].textContent")
        assert cell and "\u00b1" not in cell
        assert "Models: " in pg.evaluate("document.getElementById('stat-note').textContent")
        pg.evaluate("location.hash = 'u=0&s=1'")
        pg.wait_for("!document.getElementById('detail').hidden")
        detail = pg.evaluate("document.getElementById('detail').textContent")
        assert "ASR outlier: 117 inserted words" in detail
        assert pg.problems() == []


def test_caption_leaves_out_metrics_without_a_value(runs):
    """A resynthesis run holds the VC-only source-speaker keys without values: the caption (the
    HTML's, built without a table) must not list them as pooled or name their model."""
    from resyn_bench.reports.tables import caption

    summaries = [summarize_run(r, n_boot=0) for r in runs]
    empty = [k for s in summaries for k, m in s.metrics.items() if m.mean is None and m.pooled is None]
    defined = [m.spec.label for s in summaries for m in s.metrics.values()
               if m.mean is not None or m.pooled is not None]
    text = caption(summaries, "auto")
    for s in summaries:
        for key in empty:
            label = s.metrics[key].spec.label
            if label not in defined:
                assert label not in text, (label, text)
    assert "WER" in text
