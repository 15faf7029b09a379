"""F0 metrics: GPE, VDE, FFE (fairseq ``eval_f0`` definitions), F0 RMSE in cents, F0 correlation.

Both signals are analysed at 16 kHz with the same pitch preset (:mod:`resyn_bench.dsp.pitch`).
The output's F0 track is put onto the reference's frame times by nearest-neighbour lookup;
reference frames outside the output track's time span see F0 = 0 (unvoiced), exactly like
fairseq's ``interp1d(kind="nearest", bounds_error=False, fill_value=0)``: a truncated output
costs voicing errors on the missing tail, extra output frames are ignored. No DTW: this is a
metric for resynthesis of the *same* utterance.

Per frame t (N = number of reference frames):

* voiced_both(t)   = ref(t) > 0 and syn(t) > 0
* gross_error(t)   = voiced_both(t) and |syn(t)/ref(t) - 1| > 0.2
* voicing_error(t) = (ref(t) > 0) xor (syn(t) > 0)
* GPE = #gross / #voiced_both;  VDE = #voicing_error / N;  FFE = (#gross + #voicing_error) / N
* RMSE (cents) = sqrt(mean over voiced_both of (1200 log2(syn/ref))^2)   (gross errors included)
* corr = Pearson correlation of ref and syn F0 **in Hz** over voiced_both frames

For the HTML report's drill-down, ``Score.extra["contour"]`` keeps a compact copy of the two
tracks that were compared: the reference track and the output track *as aligned to the
reference frames* (what the counts above were computed from), decimated to about 50 Hz (every
k-th frame, k = round(20 ms / hop); picking frames rather than averaging keeps unvoiced frames
0 and never invents an F0 between voiced and unvoiced), rounded to 0.1 Hz::

    {"t0": 0.01, "dt": 0.02, "ref": [0.0, 121.3, ...], "out": [0.0, 119.8, ...]}

(about 2 kB of JSON per 3 s utterance; ``t0 + i * dt`` is frame i's time in seconds).

Every number is a ratio of additive counts (``f0_error_counts``), so corpus values are
frame-pooled from summed counts (:meth:`F0Metrics.pool`) and an utterance's value equals the
pool of its own counts. Undefined cases are ``None`` (GPE/RMSE with no voiced_both frame,
VDE/FFE with no frame, corr with < 2 voiced_both frames or zero variance), never 0 or 1.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from resyn_bench.dsp.pitch import F0Track, PitchPreset, extract_f0, get_preset
from resyn_bench.metrics.base import MetricGroup, MetricSpec, Score

#: Default preset. Throughput on real speech (4 VCTK p225 utterances, 24 s of 16 kHz audio,
#: one core, OMP_NUM_THREADS=1; seconds of audio per second of compute):
#:   yaapt ~17-19x, harvest ~4.8x, dio ~125x, yin-fairseq ~1700x.
#: yaapt (what speech-resynthesis used) is comfortably above the 5x bar, so it is the default.
DEFAULT_PRESET = "yaapt"
#: |syn/ref - 1| above this is a gross pitch error (fairseq: 20 %).
GROSS_ERROR_THRESHOLD = 0.2
#: Frame step of the stored display contour (seconds): ~50 Hz is enough to see intonation.
CONTOUR_STEP_S = 0.02
#: Relative variance below which a side counts as constant (Pearson r undefined). Guards the
#: cancellation in sxx - sx^2/n; 1e-9 relative is a std below ~0.003 % of the RMS F0.
_ZERO_VAR_REL = 1e-9

COUNT_KEYS = ("n_frames", "n_ref_voiced", "n_syn_voiced", "n_voiced_both", "n_gross",
              "n_voicing_err", "sum_sq_cents", "sx", "sy", "sxx", "syy", "sxy")


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------

def align_to_reference(ref: F0Track, syn: F0Track) -> np.ndarray:
    """``syn``'s F0 sampled at ``ref``'s frame times (nearest neighbour, 0 outside syn's span).

    Same rule as ``scipy.interpolate.interp1d(syn.times, syn.f0, kind="nearest",
    bounds_error=False, fill_value=0)``: a time exactly half-way between two syn frames takes
    the earlier one; times before syn's first or after its last frame get 0 (unvoiced)."""
    st, sf, rt = syn.times, syn.f0, ref.times
    out = np.zeros(len(rt), dtype=np.float64)
    if len(st) == 0 or len(rt) == 0:
        return out
    if len(st) > 1 and np.any(np.diff(st) <= 0):
        order = np.argsort(st, kind="stable")
        st, sf = st[order], sf[order]
    inside = (rt >= st[0]) & (rt <= st[-1])
    mids = (st[1:] + st[:-1]) / 2.0
    idx = np.searchsorted(mids, rt[inside], side="left")
    out[inside] = sf[idx]
    return out


def f0_error_counts(ref_f0: np.ndarray, syn_f0_aligned: np.ndarray,
                    gross_threshold: float = GROSS_ERROR_THRESHOLD) -> dict[str, float]:
    """Additive per-utterance statistics of two frame-aligned F0 tracks (0 = unvoiced)."""
    ref = np.asarray(ref_f0, dtype=np.float64)
    syn = np.asarray(syn_f0_aligned, dtype=np.float64)
    if ref.shape != syn.shape or ref.ndim != 1:
        raise ValueError(f"F0 tracks must be 1-D and aligned: {ref.shape} vs {syn.shape}")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(syn))):
        raise ValueError("F0 tracks contain NaN/inf")
    rv, sv = ref > 0, syn > 0
    both = rv & sv
    r, s = ref[both], syn[both]
    ratio = s / r
    cents = 1200.0 * np.log2(ratio)
    return {
        "n_frames": int(ref.size),
        "n_ref_voiced": int(np.count_nonzero(rv)),
        "n_syn_voiced": int(np.count_nonzero(sv)),
        "n_voiced_both": int(np.count_nonzero(both)),
        "n_gross": int(np.count_nonzero(np.abs(ratio - 1.0) > gross_threshold)),
        "n_voicing_err": int(np.count_nonzero(rv ^ sv)),
        "sum_sq_cents": float(np.sum(cents * cents)),
        "sx": float(np.sum(r)), "sy": float(np.sum(s)),
        "sxx": float(np.sum(r * r)), "syy": float(np.sum(s * s)), "sxy": float(np.sum(r * s)),
    }


def gpe(counts: Mapping[str, float]) -> float | None:
    """Gross pitch error rate: #gross / #voiced_both (None without voiced_both frames)."""
    n = counts["n_voiced_both"]
    return float(counts["n_gross"]) / n if n > 0 else None


def vde(counts: Mapping[str, float]) -> float | None:
    """Voicing decision error: #voicing_errors / #frames (None without frames)."""
    n = counts["n_frames"]
    return float(counts["n_voicing_err"]) / n if n > 0 else None


def ffe(counts: Mapping[str, float]) -> float | None:
    """F0 frame error: (#gross + #voicing_errors) / #frames (None without frames)."""
    n = counts["n_frames"]
    return float(counts["n_gross"] + counts["n_voicing_err"]) / n if n > 0 else None


def f0_rmse_cents(counts: Mapping[str, float]) -> float | None:
    """RMS of 1200*log2(syn/ref) over voiced_both frames (None without any)."""
    n = counts["n_voiced_both"]
    return math.sqrt(max(float(counts["sum_sq_cents"]), 0.0) / n) if n > 0 else None


def f0_corr(counts: Mapping[str, float]) -> float | None:
    """Pearson r of ref/syn F0 (Hz) over voiced_both frames, from the additive sums.

    None with fewer than 2 voiced_both frames or when either side has (numerically) zero
    variance."""
    n = float(counts["n_voiced_both"])
    if n < 2:
        return None
    sx, sy = float(counts["sx"]), float(counts["sy"])
    sxx, syy, sxy = float(counts["sxx"]), float(counts["syy"]), float(counts["sxy"])
    vx = sxx - sx * sx / n
    vy = syy - sy * sy / n
    if vx <= _ZERO_VAR_REL * sxx or vy <= _ZERO_VAR_REL * syy:
        return None
    r = (sxy - sx * sy / n) / math.sqrt(vx * vy)
    return min(1.0, max(-1.0, r))


def display_contour(ref: F0Track, syn_aligned: np.ndarray, step_s: float = CONTOUR_STEP_S
                    ) -> dict[str, Any]:
    """The compact reference/output contour stored in ``Score.extra["contour"]`` (see the module
    docstring): every k-th reference frame, k chosen for a step near ``step_s``, 0.1 Hz."""
    times = ref.times
    hop = float(np.median(np.diff(times))) if len(times) > 1 else step_s
    if not (math.isfinite(hop) and hop > 0):   # degenerate frame times: keep a drawable step
        hop = step_s
    k = max(1, round(step_s / hop))
    pick = slice(0, None, k)
    return {"t0": round(float(times[0]), 4) if len(times) else 0.0, "dt": round(hop * k, 6),
            "ref": np.round(ref.f0[pick], 1).tolist(),
            "out": np.round(np.asarray(syn_aligned, dtype=np.float64)[pick], 1).tolist()}


# --------------------------------------------------------------------------------------------
# Metric group
# --------------------------------------------------------------------------------------------

_SPECS = (
    MetricSpec("f0.gpe", "GPE", higher_is_better=False, unit="%", percent=True,
               description="Gross pitch error: share of frames voiced in both signals whose F0 "
                           "deviates by more than 20 % (fairseq eval_f0 definition)"),
    MetricSpec("f0.vde", "VDE", higher_is_better=False, unit="%", percent=True,
               description="Voicing decision error: share of reference frames whose "
                           "voiced/unvoiced decision differs"),
    MetricSpec("f0.ffe", "FFE", higher_is_better=False, unit="%", percent=True,
               description="F0 frame error: share of reference frames with a gross pitch error "
                           "or a voicing error"),
    MetricSpec("f0.rmse_cents", "F0 RMSE", higher_is_better=False, unit="cents",
               description="RMS F0 difference in cents (1200 log2 syn/ref) over frames voiced "
                           "in both signals, gross errors included"),
    MetricSpec("f0.corr", "F0 corr", higher_is_better=True, unit="",
               description="Pearson correlation of reference and output F0 in Hz over frames "
                           "voiced in both signals"),
)


def values_from_counts(counts: Mapping[str, float]) -> dict[str, float | None]:
    """All five metric values from (per-utterance or summed) counts."""
    return {"f0.gpe": gpe(counts), "f0.vde": vde(counts), "f0.ffe": ffe(counts),
            "f0.rmse_cents": f0_rmse_cents(counts), "f0.corr": f0_corr(counts)}


class F0Metrics(MetricGroup):
    """GPE / VDE / FFE / F0 RMSE (cents) / F0 correlation against the reference recording."""

    name = "f0"
    specs = _SPECS
    sample_rate = 16000

    def __init__(self, preset: str | PitchPreset = DEFAULT_PRESET):
        self.preset = get_preset(preset)

    def settings(self) -> dict[str, Any]:
        return {"preset": self.preset.name, **self.preset.to_dict(),
                "gross_error_threshold": GROSS_ERROR_THRESHOLD,
                "alignment": "nearest, unvoiced outside"}

    def _track(self, audio, what: str) -> F0Track:
        return extract_f0(self.samples_at_rate(audio, what), audio.sample_rate, self.preset)

    def analyse_reference(self, audio) -> dict[str, np.ndarray]:
        track = self._track(audio, "reference")
        return {"times": track.times, "f0": track.f0}

    def score(self, reference: dict[str, np.ndarray], output, utterance) -> Score:
        ref = F0Track(reference["times"], reference["f0"])
        syn = self._track(output, "output")
        aligned = align_to_reference(ref, syn)
        counts = f0_error_counts(ref.f0, aligned)
        return Score(values=values_from_counts(counts), counts=counts,
                     extra={"contour": display_contour(ref, aligned)})

    def pool(self, counts: dict[str, float]) -> dict[str, float | None]:
        # Missing keys count as 0: pooling nothing (every utterance failed) gives all None.
        return values_from_counts({k: counts.get(k, 0) for k in COUNT_KEYS})


__all__ = ["F0Metrics", "DEFAULT_PRESET", "GROSS_ERROR_THRESHOLD", "align_to_reference",
           "f0_error_counts", "display_contour", "CONTOUR_STEP_S", "gpe", "vde", "ffe",
           "f0_rmse_cents", "f0_corr", "values_from_counts"]
