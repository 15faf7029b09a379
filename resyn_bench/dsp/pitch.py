"""Pitch (F0) extraction with named, fully-specified presets: signal processing shared by the
F0 metrics, the vocoder's training data and F0 inputs, the ``world`` system and the reports.

Every F0 number the suite reports names the preset that produced it, and the preset's
parameters go into the run manifest (``PitchPreset.to_dict``). The names are one table,
:mod:`resyn_bench.dsp.presets`, read by ``--f0-preset``, ``--f0-extractor`` and
``-o f0_extractor=`` alike. Presets:

``yaapt``
    pYAAPT (AMFM-decompy) configured as in facebookresearch/speech-resynthesis
    (``get_yaapt_f0``): 20 ms frames every 5 ms, ``nccf_thresh1=0.25``, 25 ms time-domain
    frames, library defaults otherwise (F0 search range 60-400 Hz), signal zero-padded by
    ``int(0.020*sr)//2`` samples each side. The per-frame track ``samp_values`` is used
    (0 = unvoiced; no interpolation through unvoiced regions).
``harvest``
    WORLD Harvest (pyworld), 50-800 Hz, 5 ms frame period.
``dio``
    WORLD DIO refined by StoneMask (pyworld), 50-800 Hz, 5 ms frame period.
``yin-fairseq``
    The YIN variant of fairseq's ``examples/speech_synthesis/evaluation/eval_f0.py``:
    512-sample windows every 256 samples, 100-500 Hz, harmonicity threshold 0.1, frame time =
    frame start / sr. Re-implemented here with numpy, vectorised over frames.
``pyworld-dio-60-400`` (alias ``pyworld``), ``pyworld-harvest-60-400``
    WORLD DIO+StoneMask / Harvest searching 60-400 Hz (YAAPT's range), 5 ms frame period: the
    vocoder training extractors.

Time stamps. ``F0Track.times`` is in seconds of the *input* signal:

* pyworld: the ``t`` it returns (frame ``i`` centred at ``i * frame_period``).
* YAAPT: frame ``k`` is centred at sample ``frame_size//2 + k*frame_jump`` of the padded
  signal (``frames_pos``), i.e. at ``(frames_pos - pad) / sr`` in the input. With a 20 ms
  frame and a pad of half of 20 ms the two offsets cancel: at 16 kHz ``t_k = k * 5 ms``
  exactly, and there are ``ceil(len / 80)`` frames.
* yin-fairseq: frame start / sr (fairseq's convention, not the window centre).

Both sides of an F0 comparison always use the same preset, so the different conventions never
mix.

pYAAPT quirks (AMFM-decompy 1.0.12.2), kept as-is because the paper numbers include them:

* F0 is reported as ``fs / (lag + 1)`` (an index shift from the MATLAB port), so values are
  one lag low: -0.6 % at 100 Hz, -1.2 % at 150 Hz, -2 % at 320 Hz at 16 kHz. It cancels in
  yaapt-vs-yaapt comparisons but not against other extractors.
* It halves F0 on zero-phase (sawtooth-like) harmonic stacks with many harmonics; real speech
  and random-phase test signals are fine.
* No absolute energy gate (NLFER is normalised by the file's mean): ~30 % of white-noise frames
  come out voiced.
* Inputs giving fewer than 4 analysis frames (< ~15 ms at 16 kHz) crash inside the library
  (IndexError/ValueError); they are rejected up front with a MetricError. Silent stretches
  trigger numpy RuntimeWarnings, which are silenced (``warnings.catch_warnings`` is not
  thread-safe; run metrics in processes, not threads, if that matters).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from resyn_bench.core.errors import MetricError
from resyn_bench.dsp.presets import (  # noqa: F401 - the names table, re-exported
    ALIASES,
    NAMES,
    PRESETS,
    TRAINING_HOP_S,
    TRAINING_PRESETS,
    PitchPreset,
    get_preset,
    preset_names,
    training_names,
    training_preset,
)


@dataclass
class F0Track:
    times: np.ndarray  # float64 seconds, increasing
    f0: np.ndarray     # float64 Hz, 0 = unvoiced

    def __post_init__(self):
        self.times = np.asarray(self.times, dtype=np.float64)
        self.f0 = np.asarray(self.f0, dtype=np.float64)
        if self.times.shape != self.f0.shape or self.times.ndim != 1:
            raise ValueError(f"F0Track: times {self.times.shape} and f0 {self.f0.shape} must be "
                             "1-D arrays of the same length")

    def __len__(self) -> int:
        return len(self.f0)

    @property
    def voiced(self) -> np.ndarray:
        return self.f0 > 0


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

def extract_f0(samples: np.ndarray, sample_rate: int, preset: PitchPreset | str) -> F0Track:
    """F0 track of a mono signal with the given preset.

    Raises :class:`MetricError` when the extractor cannot analyse the signal (too short for
    its windows, or the library itself fails) or returns no frames / non-finite values."""
    preset = get_preset(preset)
    x = np.asarray(samples)
    if x.ndim != 1:
        raise MetricError(f"pitch[{preset.name}]: expected a 1-D mono signal, got shape {x.shape}")
    if x.size == 0:
        raise MetricError(f"pitch[{preset.name}]: empty signal")
    if not np.all(np.isfinite(x)):
        raise MetricError(f"pitch[{preset.name}]: signal contains NaN/inf samples")
    x = np.ascontiguousarray(x, dtype=np.float64)
    sr = int(sample_rate)
    fn = _EXTRACTORS[preset.extractor]
    try:
        times, f0 = fn(x, sr, preset.params)
    except MetricError:
        raise
    except Exception as exc:  # library failures on odd inputs -> recorded per-utterance error
        raise MetricError(f"pitch[{preset.name}] failed on {x.size} samples "
                          f"({x.size / sr * 1000:.1f} ms at {sr} Hz): "
                          f"{type(exc).__name__}: {exc}") from exc
    track = F0Track(times, f0)
    if len(track) == 0:
        raise MetricError(f"pitch[{preset.name}]: signal of {x.size} samples "
                          f"({x.size / sr * 1000:.1f} ms) is too short for one analysis frame")
    if not np.all(np.isfinite(track.f0)) or np.any(track.f0 < 0):
        raise MetricError(f"pitch[{preset.name}]: extractor returned non-finite or negative F0")
    return track


def import_pyworld():
    """Import pyworld without its pkg_resources deprecation warning."""
    with warnings.catch_warnings():
        # pyworld 0.3.x imports pkg_resources, which warns on recent setuptools
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


def _harvest(x: np.ndarray, sr: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    pw = import_pyworld()
    f0, t = pw.harvest(x, sr, f0_floor=params["f0_floor"], f0_ceil=params["f0_ceil"],
                       frame_period=params["frame_period"])
    return t, f0


def _dio(x: np.ndarray, sr: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    pw = import_pyworld()
    f0, t = pw.dio(x, sr, f0_floor=params["f0_floor"], f0_ceil=params["f0_ceil"],
                   frame_period=params["frame_period"])
    f0 = pw.stonemask(x, f0, t, sr)
    return t, f0


def _yaapt(x: np.ndarray, sr: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    import amfm_decompy.basic_tools as basic
    import amfm_decompy.pYAAPT as pYAAPT

    kwargs = {k: v for k, v in params.items() if k != "pad_window_ms"}
    pad = int(params["pad_window_ms"] / 1000.0 * sr) // 2
    padded = np.pad(x, (pad, pad))
    # pYAAPT needs at least 4 frames; shorter inputs die deep inside with IndexError/ValueError.
    frame_size = int(np.fix(kwargs["frame_length"] * sr / 1000))
    frame_jump = int(np.fix(kwargs["frame_space"] * sr / 1000))
    n_frames = len(range(frame_size // 2, padded.size - frame_size // 2, max(frame_jump, 1)))
    if n_frames < 4:
        raise MetricError(f"pitch[yaapt]: signal of {x.size} samples ({x.size / sr * 1000:.1f} ms)"
                          f" gives {n_frames} analysis frames; pYAAPT needs at least 4")
    with warnings.catch_warnings():
        # pYAAPT emits divide-by-zero / empty-mean RuntimeWarnings on silent stretches
        warnings.simplefilter("ignore")
        signal = basic.SignalObj(data=padded, fs=sr)
        pitch = pYAAPT.yaapt(signal, **kwargs)
    f0 = np.asarray(pitch.samp_values, dtype=np.float64)
    pos = np.asarray(pitch.frames_pos, dtype=np.float64)
    if f0.shape != pos.shape:
        raise MetricError(f"pitch[yaapt]: {f0.size} F0 values for {pos.size} frames")
    return (pos - pad) / sr, f0


# ---- YIN (fairseq eval_f0 variant), vectorised over frames ---------------------------------

def _fft_size(n: int) -> int:
    """Smallest 'nice' FFT length >= n of the form m * 2**p, m in (16..32 with small factors),
    with p from n // 32 (the sizing rule of the original YIN port, kept so values match)."""
    p = 2 ** (n // 32).bit_length()
    return min(m * p for m in (16, 18, 20, 24, 25, 27, 30, 32) if m * p >= n)


def yin_frames(x: np.ndarray, sr: int, w_len: int = 512, w_step: int = 256,
               f0_min: float = 100.0, f0_max: float = 500.0,
               harmo_thresh: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fairseq-style YIN on all frames at once.

    Returns ``(times, f0, cmnd)``: frame start times (s), F0 (Hz, 0 = unvoiced) and the
    cumulative-mean-normalised difference, shape (n_frames, tau_max), for inspection."""
    x = np.asarray(x, dtype=np.float64)
    tau_min = int(sr / f0_max)
    tau_max = int(sr / f0_min)
    starts = np.arange(0, len(x) - w_len, w_step)
    n = len(starts)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros((0, tau_max))
    frames = np.lib.stride_tricks.sliding_window_view(x, w_len)[starts]  # (n, w_len)
    lag_max = min(tau_max, w_len)

    # Difference function d(tau) = sum_{j<w-tau} x_j^2 + sum_{j>=tau} x_j^2 - 2 r(tau), with
    # the autocorrelation r from one batched FFT.
    size = _fft_size(w_len + lag_max)
    spec = np.fft.rfft(frames, size, axis=1)
    acf = np.fft.irfft(spec * spec.conjugate(), axis=1)[:, :lag_max]
    energy = np.concatenate((np.zeros((n, 1)), np.cumsum(frames * frames, axis=1)), axis=1)
    lags = np.arange(lag_max)
    diff = energy[:, w_len - lags] + energy[:, w_len:w_len + 1] - energy[:, lags] - 2 * acf

    # CMND: d'(0) = 1, d'(tau) = d(tau) * tau / sum_{k=1..tau} d(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd = diff[:, 1:] * np.arange(1, lag_max) / np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.concatenate((np.ones((n, 1)), cmnd), axis=1)

    # First lag in [tau_min, tau_max) below the threshold, then downhill to the local minimum.
    f0 = np.zeros(n)
    hi = min(tau_max, lag_max)
    if tau_min < hi:
        seg = cmnd[:, tau_min:hi]
        below = seg < harmo_thresh  # NaN (silent frame) compares False -> unvoiced
        voiced = below.any(axis=1)
        first = np.argmax(below, axis=1)
        # stop[i, k]: the walk cannot go from tau_min+k to tau_min+k+1
        stop = np.ones_like(below)
        stop[:, :-1] = ~(seg[:, 1:] < seg[:, :-1])
        cols = np.arange(seg.shape[1])
        stop &= cols >= first[:, None]
        tau = tau_min + np.argmax(stop, axis=1)  # last column always stops
        f0[voiced] = sr / tau[voiced]
    return starts / float(sr), f0, cmnd


def _yin(x: np.ndarray, sr: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    times, f0, _ = yin_frames(x, sr, **params)
    return times, f0


_EXTRACTORS: dict[str, Callable[[np.ndarray, int, dict], tuple[np.ndarray, np.ndarray]]] = {
    "yaapt": _yaapt, "harvest": _harvest, "dio": _dio, "yin": _yin,
}

__all__ = ["PitchPreset", "F0Track", "PRESETS", "TRAINING_PRESETS", "ALIASES", "NAMES", "get_preset", "preset_names",
           "training_preset", "training_names", "extract_f0", "import_pyworld", "yin_frames"]
