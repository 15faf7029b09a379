"""Report figures: every plot writes PNG + PDF from stored runs, with known-answer data."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from conftest import harmonic_tone
from golden.fixture_runs import build_golden_runs

from resyn_bench.reports import plots
from resyn_bench.reports.collate import summarize_run
from resyn_bench.store import RecordStore, write_json_atomic


@pytest.fixture(scope="module")
def summaries(tmp_path_factory):
    runs = build_golden_runs(tmp_path_factory.mktemp("plot_runs"))
    return [summarize_run(r, n_boot=50) for r in runs]


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _is_pdf(path) -> bool:
    return path.read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("name", ["plot_metric_bars", "plot_distributions", "plot_quality_vs_bitrate",
                                  "plot_speaker_similarity"])
def test_each_plot_writes_png_and_pdf(summaries, tmp_path, name):
    paths = getattr(plots, name)(summaries, tmp_path / name)
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    assert _is_png(paths[0]) and _is_pdf(paths[1])
    assert paths[0].stat().st_size > 5000


def test_nothing_to_draw_writes_nothing(summaries, tmp_path):
    no_bitrate = [s for s in summaries if s.bitrate is None]
    assert plots.plot_quality_vs_bitrate(no_bitrate, tmp_path / "q") == []
    resynthesis = [s for s in summaries if s.experiment != "vc"]
    assert plots.plot_speaker_similarity(resynthesis, tmp_path / "s") == []   # no conversions
    assert plots.plot_metric_bars(summaries, tmp_path / "m", keys=["no.such"]) == []
    assert plots.plot_f0_contours(summaries, tmp_path / "f") == []   # fixture has no audio files
    assert not list(tmp_path.iterdir())


def test_bar_data_is_the_table_value_with_its_ci(summaries):
    vals, lo, hi = plots.metric_bar_data(summaries, "asr.wer")
    for s, v, a, b in zip(summaries, vals, lo, hi, strict=True):
        m = s.metrics["asr.wer"]                      # WER: pooled over the corpus, in percent
        assert v == pytest.approx(100 * m.pooled)
        assert v - a == pytest.approx(100 * m.ci_pooled.low)
        assert v + b == pytest.approx(100 * m.ci_pooled.high)
    eer, _, _ = plots.metric_bar_data(summaries, "spk.eer")
    lj = [i for i, s in enumerate(summaries) if s.dataset == "lj"]
    assert all(math.isnan(eer[i]) for i in lj)          # one speaker: no EER, no bar


def test_similarity_matrix_is_the_mean_per_source_target_pair(summaries):
    vc = next(s for s in summaries if s.experiment == "vc" and s.system == "hubert100")
    sources, targets, mat = plots.similarity_matrix(vc)
    assert sources == targets == sorted(["p225_&_x", "p226", "p227", "p228"])
    expected: dict = {}
    for r in vc.records:
        ev = r["scores"]["spk"]
        expected.setdefault((r["speaker"], ev["extra"]["target"]), []).append(
            ev["values"]["spk.cos_centroid"])
    for (a, b), vals in expected.items():
        assert mat[sources.index(a), targets.index(b)] == pytest.approx(np.mean(vals))
    assert all(np.isnan(mat[i, i]) for i in range(len(sources)))   # never converted to itself


def _audio_run(path, system, freq, ref_dir):
    """A run of one utterance whose output (and reference) are real wav files."""
    import soundfile as sf

    ref = ref_dir / "u1.wav"
    if not ref.exists():
        sf.write(ref, harmonic_tone(lambda t: 150.0 + 60.0 * t, duration=1.0), 16000)
    (path / "outputs").mkdir(parents=True)
    sf.write(path / "outputs" / "u1.wav", harmonic_tone(freq, duration=1.0), 16000)
    write_json_atomic(path / "manifest.json", {"config": {"system": system, "dataset": "toy"},
                                               "dataset": {"n_utterances": 1}, "metrics": {}})
    RecordStore(path).append({"part": "synthesis", "utt_id": "u1", "speaker": "s", "status": "ok",
                              "reference_path": str(ref), "output_path": "outputs/u1.wav"})
    return path


def test_f0_contours_from_the_stored_audio(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    runs = [summarize_run(_audio_run(tmp_path / "a", "flat$", 180.0, refs), n_boot=0),
            summarize_run(_audio_run(tmp_path / "b", "low", 120.0, refs), n_boot=0)]
    assert plots.common_utterance(runs) == "u1"
    tracks = plots.f0_contours(runs, "u1")
    assert [t[0] for t in tracks] == ["reference", r"flat\$", "low"]   # $ shown literally
    ref, flat, low = (t[1] for t in tracks)
    voiced = ref.f0 > 0
    assert np.median(np.abs(ref.f0[voiced] - (150.0 + 60.0 * ref.times[voiced]))) < 3.0   # the sweep
    assert np.median(flat.f0[flat.f0 > 0]) == pytest.approx(180.0, abs=2.0)
    assert np.median(low.f0[low.f0 > 0]) == pytest.approx(120.0, abs=2.0)
    paths = plots.plot_f0_contours(runs, tmp_path / "plots" / "f0")
    assert _is_png(paths[0]) and _is_pdf(paths[1])
    (tmp_path / "b" / "outputs" / "u1.wav").unlink()            # a file gone: that line is left out
    assert [t[0] for t in plots.f0_contours(runs, "u1")] == ["reference", r"flat\$"]


def _scored_run(path, system, freq, ref_dir, store_contour=True, uid="u1"):
    """A one-utterance run scored by the real f0 group (dio) on harmonic tones: the record holds
    the contour the group stored at scoring time (unless ``store_contour`` is False: an old
    run). Output and reference wav files exist, so a re-analysis would also work."""
    import soundfile as sf

    from resyn_bench.audio import Audio
    from resyn_bench.metrics.f0 import F0Metrics

    group = F0Metrics("dio")
    ref_wav = harmonic_tone(lambda t: 150.0 + 60.0 * t, duration=1.0)
    out_wav = harmonic_tone(freq, duration=1.0)
    sf.write(ref_dir / f"{uid}.wav", ref_wav, 16000)
    (path / "outputs").mkdir(parents=True)
    sf.write(path / "outputs" / f"{uid}.wav", out_wav, 16000)
    score = group.score(group.analyse_reference(Audio(ref_wav, 16000)), Audio(out_wav, 16000), None)
    write_json_atomic(path / "manifest.json", {
        "config": {"system": system, "dataset": "toy"}, "dataset": {"n_utterances": 1},
        "metrics": {"f0": {"settings": group.settings(), "options": {"preset": "dio"},
                           "specs": [sp.to_dict() for sp in group.specs]}}})
    store = RecordStore(path)
    store.append({"part": "synthesis", "utt_id": uid, "speaker": "s", "status": "ok",
                  "reference_path": str(ref_dir / f"{uid}.wav"),
                  "output_path": f"outputs/{uid}.wav"})
    store.append({"part": "metric", "group": "f0", "utt_id": uid, "status": "ok",
                  "values": score.values, "counts": score.counts,
                  **({"extra": score.extra} if store_contour else {})})
    return path, score.extra["contour"]


def _capture_title(monkeypatch):
    seen = {}

    def save(fig, stem, tight=True):
        seen["title"] = fig.axes[0].get_title()
        seen["lines"] = [ln.get_label() for ln in fig.axes[0].get_lines()]
        return [Path(stem).with_suffix(".png")]
    monkeypatch.setattr(plots, "save_figure", save)
    return seen


def test_f0_plot_is_drawn_from_the_stored_contours_without_pitch_analysis(tmp_path, monkeypatch):
    refs = tmp_path / "refs"
    refs.mkdir()
    (a, ca), (b, cb) = (_scored_run(tmp_path / "a", "flat", 180.0, refs),
                        _scored_run(tmp_path / "b", "low", 120.0, refs))
    runs = [summarize_run(a, n_boot=0), summarize_run(b, n_boot=0)]
    assert plots.stored_contour(runs[0].records[0]) == ca
    tracks, missing = plots.stored_f0_contours(runs, "u1")
    assert [t[0] for t in tracks] == ["reference", "flat", "low"] and missing == []
    ref, flat, low = (t[1] for t in tracks)
    # the stored tracks, on their stored time grid (t0 + i dt)
    np.testing.assert_allclose(ref.f0, ca["ref"])
    np.testing.assert_allclose(low.f0, cb["out"])
    np.testing.assert_allclose(ref.times, ca["t0"] + ca["dt"] * np.arange(len(ca["ref"])))
    voiced = ref.f0 > 0
    assert np.median(np.abs(ref.f0[voiced] - (150.0 + 60.0 * ref.times[voiced]))) < 3.0  # the sweep
    assert np.median(flat.f0[flat.f0 > 0]) == pytest.approx(180.0, abs=2.0)
    assert np.median(low.f0[low.f0 > 0]) == pytest.approx(120.0, abs=2.0)

    def no_analysis(*a, **k):
        raise AssertionError("the plot re-ran pitch analysis")
    monkeypatch.setattr(plots, "_f0", no_analysis)
    paths = plots.plot_f0_contours(runs, tmp_path / "plots" / "f0")   # real files
    assert _is_png(paths[0]) and _is_pdf(paths[1])
    seen = _capture_title(monkeypatch)
    for run in ("a", "b"):
        (tmp_path / run / "outputs" / "u1.wav").unlink()      # audio gone: the contours remain
    plots.plot_f0_contours(runs, tmp_path / "f0")
    assert "stored, dio" in seen["title"] and seen["lines"] == ["reference", "flat", "low"]


def test_f0_plot_of_old_runs_says_it_reanalysed_the_audio(tmp_path, monkeypatch, caplog):
    refs = tmp_path / "refs"
    refs.mkdir()
    runs = [summarize_run(_scored_run(tmp_path / n, n, f, refs, store_contour=False)[0], n_boot=0)
            for n, f in (("old1", 180.0), ("old2", 120.0))]
    assert plots.stored_f0_contours(runs, "u1") == ([], ["old1", "old2"])
    seen = _capture_title(monkeypatch)
    with caplog.at_level("WARNING", logger="resyn_bench.reports"):
        assert plots.plot_f0_contours(runs, tmp_path / "f0")
    assert "re-analysed from the audio" in seen["title"] and "stored no contour" in seen["title"]
    assert seen["lines"] == ["reference", "old1", "old2"]
    assert "re-analysing their audio" in caplog.text


def test_f0_plot_names_runs_without_a_stored_contour(tmp_path, monkeypatch, caplog):
    refs = tmp_path / "refs"
    refs.mkdir()
    new = summarize_run(_scored_run(tmp_path / "new", "new", 180.0, refs)[0], n_boot=0)
    old = summarize_run(_scored_run(tmp_path / "old", "old", 120.0, refs, store_contour=False)[0],
                        n_boot=0)
    seen = _capture_title(monkeypatch)
    with caplog.at_level("WARNING", logger="resyn_bench.reports"):
        plots.plot_f0_contours([old, new], tmp_path / "f0")
    assert seen["lines"] == ["reference", "new"]
    assert "1 run(s) without a stored contour left out" in seen["title"]
    assert "no stored contour in old" in caplog.text


def test_common_utterance_prefers_one_with_stored_contours(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    run, _ = _scored_run(tmp_path / "r", "r", 150.0, refs, uid="u2")
    store = RecordStore(run)     # u1: synthesised and scored, without a stored contour
    store.append({"part": "synthesis", "utt_id": "u1", "speaker": "s", "status": "ok",
                  "reference_path": str(refs / "u2.wav"), "output_path": "outputs/u2.wav"})
    store.append({"part": "metric", "group": "f0", "utt_id": "u1", "status": "ok",
                  "values": {}, "counts": {}})
    s = summarize_run(run, n_boot=0)
    assert plots.common_utterance([s]) == "u1"
    assert plots.common_utterance([s], with_contour=True) == "u2"


def test_write_plots_writes_every_applicable_figure(summaries, tmp_path):
    written = plots.write_plots(summaries, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"{n}.{ext}" for n in ("metric_bars", "distributions", "quality_vs_bitrate",
                               "speaker_similarity") for ext in ("png", "pdf"))
