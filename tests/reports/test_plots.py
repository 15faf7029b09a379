"""Report figures: every plot writes PNG + PDF from stored runs, with known-answer data."""
from __future__ import annotations

import math

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


def test_write_plots_writes_every_applicable_figure(summaries, tmp_path):
    written = plots.write_plots(summaries, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"{n}.{ext}" for n in ("metric_bars", "distributions", "quality_vs_bitrate",
                               "speaker_similarity") for ext in ("png", "pdf"))
