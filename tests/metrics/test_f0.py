"""F0 metric group (resyn_bench.metrics.f0): known answers, alignment, pooling, real extractors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import harmonic_signal

from resyn_bench.audio import Audio
from resyn_bench.dsp.pitch import PRESETS, F0Track
from resyn_bench.metrics.base import MetricError, MetricGroup
from resyn_bench.metrics.f0 import (
    DEFAULT_PRESET,
    F0Metrics,
    align_to_reference,
    f0_corr,
    f0_error_counts,
    f0_rmse_cents,
    ffe,
    gpe,
    vde,
)

SR = 16000
HOP = 0.005


def track(f0, hop=HOP, t0=0.0) -> F0Track:
    f0 = np.asarray(f0, dtype=np.float64)
    return F0Track(t0 + np.arange(len(f0)) * hop, f0)




@pytest.fixture(scope="module")
def speechlike() -> Audio:
    return Audio(harmonic_signal(), SR)


# --------------------------------------------------------------------------------------------
# Known answers on constructed tracks
# --------------------------------------------------------------------------------------------

def constructed_pair(n=100, k=7, m_lost=3, m_added=2):
    """ref voiced on frames 10..89 (80 frames); syn = ref except k gross deviations (x1.25),
    m_lost voiced->unvoiced flips and m_added unvoiced->voiced flips."""
    ref = np.zeros(n)
    ref[10:90] = np.linspace(100, 250, 80)
    syn = ref.copy()
    gross = np.arange(20, 20 + k)
    syn[gross] *= 1.25
    syn[50:50 + m_lost] = 0.0
    syn[92:92 + m_added] = 180.0
    return ref, syn


def test_known_answer_counts_and_values():
    ref, syn = constructed_pair()
    c = f0_error_counts(ref, syn)
    assert c["n_frames"] == 100 and c["n_ref_voiced"] == 80 and c["n_syn_voiced"] == 79
    assert c["n_voiced_both"] == 77 and c["n_gross"] == 7 and c["n_voicing_err"] == 5
    assert gpe(c) == 7 / 77
    assert vde(c) == 5 / 100
    assert ffe(c) == 12 / 100
    assert f0_rmse_cents(c) == pytest.approx(math.sqrt(7 * (1200 * math.log2(1.25)) ** 2 / 77),
                                             rel=1e-12)
    vb = (ref > 0) & (syn > 0)
    assert f0_corr(c) == pytest.approx(np.corrcoef(ref[vb], syn[vb])[0, 1], rel=1e-10)
    json.dumps(c)


def test_gross_threshold_is_twenty_percent_both_ways():
    ref = np.full(6, 200.0)
    syn = np.array([200.0 * 1.19, 200.0 * 0.81, 200.0 * 1.21, 200.0 * 0.79, 400.0, 100.0])
    c = f0_error_counts(ref, syn)
    assert c["n_gross"] == 4 and c["n_voicing_err"] == 0
    assert gpe(c) == 4 / 6


def test_identical_tracks_are_perfect():
    ref, _ = constructed_pair()
    c = f0_error_counts(ref, ref.copy())
    assert gpe(c) == 0.0 and vde(c) == 0.0 and ffe(c) == 0.0 and f0_rmse_cents(c) == 0.0
    assert f0_corr(c) == pytest.approx(1.0)


def test_undefined_cases_are_none():
    # reference entirely unvoiced: no voiced_both frame -> GPE/RMSE/corr undefined, VDE defined
    c = f0_error_counts(np.zeros(50), np.r_[np.zeros(40), np.full(10, 150.0)])
    assert gpe(c) is None and f0_rmse_cents(c) is None and f0_corr(c) is None
    assert vde(c) == 10 / 50 and ffe(c) == 10 / 50
    # no frames at all
    c = f0_error_counts(np.zeros(0), np.zeros(0))
    assert gpe(c) is None and vde(c) is None and ffe(c) is None
    assert f0_rmse_cents(c) is None and f0_corr(c) is None
    # one voiced_both frame: corr undefined, the rest defined
    c = f0_error_counts(np.array([0, 120.0, 0]), np.array([0, 150.0, 0]))
    assert gpe(c) == 1.0 and f0_corr(c) is None and f0_rmse_cents(c) > 0
    # constant F0 on either side: zero variance -> corr undefined (not 0, not nan)
    c = f0_error_counts(np.full(40, 150.0), np.linspace(140, 160, 40))
    assert f0_corr(c) is None
    c = f0_error_counts(np.linspace(140, 160, 400), np.full(400, 123.4))
    assert f0_corr(c) is None
    values = F0Metrics().pool({})
    assert values == {"f0.gpe": None, "f0.vde": None, "f0.ffe": None, "f0.rmse_cents": None,
                      "f0.corr": None}


def test_counts_reject_misaligned_or_bad_tracks():
    with pytest.raises(ValueError):
        f0_error_counts(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        f0_error_counts(np.array([np.nan, 1.0]), np.ones(2))


def test_pooled_differs_from_utterance_mean():
    # utterance A: 10 voiced_both frames, 5 gross; utterance B: 90 voiced_both frames, none gross
    ref_a, ref_b = np.full(10, 200.0), np.full(90, 100.0)
    syn_a = ref_a.copy()
    syn_a[:5] *= 2.0
    ca, cb = f0_error_counts(ref_a, syn_a), f0_error_counts(ref_b, ref_b.copy())
    group = F0Metrics()
    va, vb = group.pool(ca), group.pool(cb)
    assert (va["f0.gpe"], vb["f0.gpe"]) == (0.5, 0.0)
    summed = {k: ca[k] + cb[k] for k in ca}
    pooled = group.pool(summed)
    assert pooled["f0.gpe"] == 5 / 100  # hand-computed frame-pooled ratio
    assert (va["f0.gpe"] + vb["f0.gpe"]) / 2 == 0.25 != pooled["f0.gpe"]
    assert pooled["f0.ffe"] == 5 / 100 and pooled["f0.vde"] == 0.0
    assert pooled["f0.rmse_cents"] == pytest.approx(math.sqrt(5 * 1200.0 ** 2 / 100))
    # pooled corr is the correlation over all voiced_both frames of both utterances
    r = np.r_[ref_a, ref_b]
    s = np.r_[syn_a, ref_b]
    assert pooled["f0.corr"] == pytest.approx(np.corrcoef(r, s)[0, 1], rel=1e-10)


def test_utterance_values_equal_pool_of_own_counts(speechlike):
    group = F0Metrics("dio")
    ref = group.analyse_reference(speechlike)
    out = Audio(harmonic_signal(mult=1.05, seed=1), SR)
    score = group.score(ref, out, None)
    assert score.values == group.pool(score.counts)


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------

def test_alignment_syn_shorter_counts_missing_tail_as_voicing_errors():
    ref = track(np.full(100, 150.0))
    syn = track(np.full(60, 150.0))
    aligned = align_to_reference(ref, syn)
    assert np.all(aligned[:60] == 150.0) and np.all(aligned[60:] == 0.0)
    c = f0_error_counts(ref.f0, aligned)
    assert vde(c) == 40 / 100 and gpe(c) == 0.0 and ffe(c) == 40 / 100


def test_alignment_syn_longer_ignores_extra_frames():
    ref = track(np.r_[np.zeros(10), np.full(80, 150.0), np.zeros(10)])
    rng = np.random.default_rng(0)
    syn = track(np.r_[ref.f0, rng.uniform(60, 400, 50)])
    aligned = align_to_reference(ref, syn)
    np.testing.assert_array_equal(aligned, ref.f0)
    c = f0_error_counts(ref.f0, aligned)
    assert (gpe(c), vde(c), ffe(c)) == (0.0, 0.0, 0.0)


def test_alignment_before_syn_start_is_unvoiced():
    ref = track(np.full(20, 150.0))
    syn = track(np.full(20, 150.0), t0=5 * HOP)
    aligned = align_to_reference(ref, syn)
    assert np.all(aligned[:5] == 0) and np.all(aligned[5:] == 150.0)


def test_alignment_matches_scipy_interp1d_nearest():
    from scipy.interpolate import interp1d

    rng = np.random.default_rng(1)
    for trial in range(20):
        n_s = int(rng.integers(1, 40)) if trial else 2
        st = np.sort(rng.choice(np.arange(200) * 0.004, n_s, replace=False))
        sf = rng.choice([0.0, 1.0], n_s) * rng.uniform(80, 300, n_s)
        # reference grid with a different hop, plus exact syn times and exact midpoints
        rt = np.arange(0, 0.9, 0.0033)
        if n_s > 1:
            rt = np.sort(np.r_[rt, st, (st[1:] + st[:-1]) / 2])
        got = align_to_reference(F0Track(rt, np.ones_like(rt)), F0Track(st, sf))
        if n_s > 1:
            want = interp1d(st, sf, kind="nearest", bounds_error=False, fill_value=0)(rt)
        else:
            want = np.where(rt == st[0], sf[0], 0.0)
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------
# The metric group with real extractors
# --------------------------------------------------------------------------------------------

def test_group_contract():
    group = F0Metrics()
    assert isinstance(group, MetricGroup)
    assert group.name == "f0" and group.sample_rate == 16000
    assert group.preset.name == DEFAULT_PRESET == "yaapt"
    specs = {s.key: s for s in group.specs}
    assert list(specs) == ["f0.gpe", "f0.vde", "f0.ffe", "f0.rmse_cents", "f0.corr"]
    for key in ("f0.gpe", "f0.vde", "f0.ffe"):
        assert specs[key].percent and specs[key].unit == "%" and not specs[key].higher_is_better
    assert specs["f0.rmse_cents"].unit == "cents" and not specs["f0.rmse_cents"].higher_is_better
    assert specs["f0.corr"].higher_is_better and "Hz" in specs["f0.corr"].description
    s = group.settings()
    assert s["preset"] == "yaapt" and s["gross_error_threshold"] == 0.2
    assert s["alignment"] == "nearest, unvoiced outside"
    assert s["params"] == PRESETS["yaapt"].params
    json.dumps(s)
    assert F0Metrics("harvest").settings()["preset"] == "harvest"
    with pytest.raises(KeyError, match="did you mean"):
        F0Metrics("harvst")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_identical_audio_scores_zero(name, speechlike):
    group = F0Metrics(name)
    ref = group.analyse_reference(speechlike)
    assert set(ref) == {"times", "f0"} and ref["f0"].dtype == np.float64
    score = group.score(ref, speechlike, None)
    v = score.values
    assert v["f0.gpe"] == 0.0 and v["f0.vde"] == 0.0 and v["f0.ffe"] == 0.0
    assert v["f0.rmse_cents"] == 0.0
    assert v["f0.corr"] == pytest.approx(1.0)
    # the only extra is the display contour (for the HTML drill-down); identical audio, identical tracks
    assert set(score.extra) == {"contour"}
    assert score.extra["contour"]["out"] == score.extra["contour"]["ref"]
    assert score.counts["n_voiced_both"] > 20


@pytest.mark.parametrize("name", ["yaapt", "harvest", "yin-fairseq"])
def test_octave_doubled_output(name, speechlike):
    group = F0Metrics(name)
    ref = group.analyse_reference(speechlike)
    v = group.score(ref, Audio(harmonic_signal(mult=2.0), SR), None).values
    assert v["f0.gpe"] > 0.9
    assert v["f0.vde"] < 0.1
    assert v["f0.rmse_cents"] == pytest.approx(1200, rel=0.1)


@pytest.mark.parametrize("name", ["harvest", "yin-fairseq"])
def test_unpitched_output_gives_vde_equal_voiced_fraction(name, speechlike):
    """White noise (no silence, no pitch) as output: every voiced reference frame is a voicing
    error. (pYAAPT is left out: it calls ~30 % of white-noise frames voiced.)"""
    group = F0Metrics(name)
    ref = group.analyse_reference(speechlike)
    noise = 0.1 * np.random.default_rng(5).standard_normal(len(speechlike.samples))
    score = group.score(ref, Audio(noise.astype(np.float32), SR), None)
    voiced_fraction = np.mean(ref["f0"] > 0)
    assert score.values["f0.vde"] == pytest.approx(voiced_fraction, abs=0.03)
    assert score.counts["n_voiced_both"] <= 3


def test_truncated_output_audio(speechlike):
    group = F0Metrics("yaapt")
    ref = group.analyse_reference(speechlike)
    short = Audio(speechlike.samples[: SR], SR)  # 1.0 s of the 1.5 s reference
    score = group.score(ref, short, None)
    lost = np.count_nonzero((ref["times"] > 1.0) & (ref["f0"] > 0))
    assert lost > 20
    assert score.counts["n_voicing_err"] >= lost
    assert score.values["f0.vde"] == pytest.approx(lost / len(ref["f0"]), abs=0.02)


def test_wrong_sample_rate_is_a_metric_error(speechlike):
    group = F0Metrics("dio")
    with pytest.raises(MetricError, match="16000"):
        group.analyse_reference(Audio(speechlike.samples, 22050))
    ref = group.analyse_reference(speechlike)
    with pytest.raises(MetricError, match="expected 16000"):
        group.score(ref, Audio(speechlike.samples, 24000), None)


def test_too_short_output_is_a_metric_error(speechlike):
    group = F0Metrics("yaapt")
    ref = group.analyse_reference(speechlike)
    with pytest.raises(MetricError):
        group.score(ref, Audio(speechlike.samples[:100], SR), None)
