"""Quality metrics: DNSMOS (non-intrusive) and PESQ / STOI / ESTOI / MCD (intrusive).

Both groups analyse 16 kHz audio (the runner resamples both sides and logs it).

``dnsmos`` - :class:`DNSMOSMetrics`
    Microsoft DNSMOS through the ``speechmos`` package (ONNX models shipped in the wheel):
    P.835 SIG / BAK / OVRL and P.808 MOS of the output alone. The reference is not used
    (``analyse_reference`` returns ``{}``); the ground-truth MOS is the ``copy`` system's row.
    speechmos scores 9.01 s windows with a 1 s hop and averages them; shorter clips are tiled
    (repeated) up to 9.01 s first, so a 3 s clip costs three 9 s model windows.

    Level. The P.835 model sees the raw waveform, so its scores depend on the level (the P.808
    model normalises its mel spectrogram to the loudest bin and does not). ``normalize="none"``
    (default) scores the waveform as it is, as Microsoft's own ``dnsmos_local.py`` does with
    the wav files it reads: a system that changes the level is judged on what it outputs.
    Samples beyond full scale (e.g. resampling overshoot) are clipped to +-1, which is what
    writing the output as 16-bit PCM does (the runner's saved outputs are clipped the same way,
    so re-scoring saved files gives the same numbers); the count is in ``extra["n_clipped"]``.
    ``normalize="peak"`` divides by the peak |x| first, as VERSA's ``dnsmos`` does
    (level-invariant, VERSA-comparable).

    Sessions. ``speechmos.dnsmos.run`` keeps one ``DNSMOS`` object (two onnxruntime sessions)
    in the module global ``speechmos.dnsmos.dnsmos`` for the life of the process, which a
    ``release()`` could not free. This group therefore builds its own ``speechmos.dnsmos.DNSMOS``
    instance in ``load()`` (with an explicit onnxruntime thread count, default 1: onnxruntime
    ignores ``OMP_NUM_THREADS`` and more threads did not help on a 2-core machine) and drops it
    in ``release()``; the tiling, windowing and polynomial mapping are speechmos' own code.

    No UTMOS: a UTMOS predictor needs weights that are not shipped in any installed package
    and cannot be fetched offline, so it is not implemented.

``intrusive`` - :class:`IntrusiveQualityMetrics` (same-utterance resynthesis)
    * PESQ (``pesq`` package, ITU-T P.862.2 wide-band at 16 kHz by default; ``pesq_mode="nb"``
      resamples both sides to 8 kHz with :func:`resyn_bench.audio.resample` and runs P.862
      narrow-band). PESQ's own errors (no utterances found in a silent signal, buffer under
      0.25 s, ...) make that utterance's PESQ ``None`` with the reason in
      ``extra["pesq_error"]``; the other numbers are still computed. Never a fake 1.0 / -1.
    * STOI and ESTOI (``pystoi``). They compare the signals sample-synchronously, so both are
      cut to the shorter length (the signed length difference output - reference, in 16 kHz
      samples, is in ``extra["length_diff_samples"]``; a truncated output is scored on the
      common part only, and an output that is not time-aligned with the reference scores low:
      a 50 ms offset drops STOI from 1.0 to about 0.3). When pystoi finds fewer than 30 frames
      after removing silent frames it warns and returns 1e-5; that case is reported as ``None``
      with the reason in ``extra["stoi_error"]``.
    * MCD (mel-cepstral distortion, dB), defined below.

    A silent output (peak below :data:`resyn_bench.audio.SILENCE_PEAK`; the runner already
    rejects those, this covers direct use) gets ``None`` for all four numbers with the reason
    in ``extra``: PESQ crashes or rates a scaled-up noise floor, STOI degenerates to 0 and the
    MCD would measure WORLD's numerical floor.

MCD definition
--------------
The mel-cepstral distortion of the TTS/VC literature (Kubichek 1993; Kominek, Schultz & Black
2008: 24 mel-cepstral coefficients c1..c24, energy c0 excluded, 10/ln10*sqrt(2*sum) scaling),
on the WORLD analysis that ESPnet/S3PRL-VC/VERSA use, with one choice made explicit: the band.

Analysis (both sides, 16 kHz): F0 by WORLD dio + StoneMask (pitch preset ``dio``: 50-800 Hz,
5 ms frame period; ``f0_preset="harvest"`` is available), spectral envelope by WORLD
CheapTrick (FFT size 1024, q1 = -0.15), then a 24th-order mel-cepstrum ``c_0..c_24`` of the
log *amplitude* envelope on the all-pass-warped frequency axis, alpha = 0.42 (SPTK's value at
16 kHz; ESPnet's ``evaluate_mcd.py`` uses order 23 with alpha 0.42 at 16 kHz, VERSA order 39
with alpha 0.466).

Band: 0-7 kHz (``band_hz=7000``, :data:`MCD_BAND_HZ`; ``band_hz=None`` is the full band).
A log-spectral distance weighs every part of its axis equally whatever the energy there, so
the near-empty top of the band decides the score when one side has been through a resampler
or an anti-alias filter: measured on the 40 VCTK utterances of ``vctk_autovc_16k``, the full
band scores a 7.6 kHz low-pass copy (12th-order Butterworth, zero phase) at 5.55 dB MCD and a
16->24->16 kHz soxr round trip at 4.66 dB, both *worse* than WORLD resynthesis (harvest,
3.42 dB), while a one-sample delay scores 0.11 dB: the
copies' envelopes drop 25-60 dB above 7.6 kHz, where VCTK holds recording noise about 65 dB
below the peak, and a 24-term cosine series spreads that cliff over every coefficient.
7 kHz is the top of the wideband speech band (ITU-T G.722, and the band PESQ-WB / P.862.2
measures); 7-8 kHz at a 16 kHz rate is the transition band of resamplers (soxr HQ passes
~91 % of Nyquist). With the band, those copies score 0.00 dB (all 40 below 0.015) and WORLD
3.44 dB; white noise at -30 dB, a spectral tilt (1 - 0.5 z^-1) and a 4 kHz low-pass score
about as on the full band (4 utterances: 5.19 / 3.05 / 27.8 dB against 5.49 / 3.22 / 31.4);
a 7 kHz low-pass, which removes only what lies outside the band, 0.11 dB (full band 13.8).
SPTK's UELS estimator on periodograms (ESPnet's ``evaluate_mcd.py``; an own prototype, not
shipped) de-emphasises the empty band but still scored the 7.6 kHz low-pass at 2.6 dB against
WORLD's 3.0 on 4 utterances, so the band is what fixes it.
Computed by :func:`band_mel_cepstrum`: the warped axis (alpha 0.42 at 16 kHz) below the band
edge is stretched onto [0, pi] and the log amplitude there expanded in cosines, so

    MCD(t) = (10 / ln 10) * sqrt(2 * sum_{d=1..24} (c_d(t) - c'_d(t))^2)      [dB]

is the RMS dB difference of the two envelopes over the band on the mel-like axis. With the
full band it is :func:`sp2mc`:

    c(m)  = irfft(log P)(m) for m >= 1, c(0) = irfft(log P)(0) / 2   (P: power envelope)
    c~    = freqt(c, order 24, alpha 0.42)     (SPTK's recursive frequency warping)

i.e. the one-sided cepstrum of the *log amplitude* envelope on the warped frequency axis, the
SPTK/pysptk ``sp2mc`` convention (pysptk is not a dependency; this is an own implementation,
checked by reconstructing the log envelope from ``sum_m c~(m) cos(m * beta(omega))``).
Only quefrencies 0..N/2-1 of the length-N real cepstrum enter the warping (the upper half is
the mirrored negative-quefrency part). ``pyworld.code_spectral_envelope`` was not used: it is
WORLD's own coding (a DCT of a mel-resampled log spectrum), not the SPTK mel-cepstrum for which
the dB scaling below is exact.

Leading and trailing frames whose envelope power is more than ``trim_db`` (default 40 dB)
below the loudest frame of the same signal are dropped, independently on each side (the
edges of the utterance carry no speech and unmatched padding would otherwise be aligned onto
the first/last speech frame). All interior frames are kept, pauses included.
``trim_db=None`` keeps every frame.

Per frame pair (c0, the energy term, excluded by default; ``include_c0=True`` keeps it) the
MCD is the formula above; it equals the RMS difference in dB between the two warped
log-amplitude envelopes (Parseval on ``sum_m c(m) cos(m x)``), which is why the factor is
10/ln10 * sqrt(2).
Frames are aligned by DTW (:func:`dtw`) over the Euclidean distance of ``c_1..c_24`` with steps
(1,0), (0,1), (1,1), unconstrained, every step costing the distance of the cell it enters;
among minimum-cost paths the shortest is taken. The utterance MCD is the mean of MCD(t) over
the pairs on the path (= K * total path cost / path length, K = 10/ln10 * sqrt(2)). The
pooled (corpus) MCD is the mean over all path pairs of all utterances (``counts``).

Analysis jitter: the *same* audio delayed by half a frame (40 samples, 2.5 ms) scores about
1.3 dB (VCTK p226_008, dio) or 2.0 dB (harvest); by 1 sample 0.1 dB, by a whole frame 0 dB.
Frame-based envelope estimates of noise-like and transient frames move with the frame
grid, so MCDs below ~1.5 dB are within this floor for outputs with an arbitrary sub-frame
offset.

Not comparable with fairseq's ``eval_sp.py`` "MCD", which is the RMS (sqrt of the *mean*
squared difference, no 10/ln10 * sqrt(2) factor) of 13 torchaudio MFCCs with c0 included.
VERSA's ``mcd_f0`` uses the same formula as here but harvest, order 39 / alpha 0.466, c0
included and, by default, no DTW.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from typing import Any

import numpy as np

from resyn_bench.audio import SILENCE_PEAK, resample
from resyn_bench.core.hashing import sha256_file_or_none
from resyn_bench.core.versions import package_versions
from resyn_bench.dsp.pitch import extract_f0, get_preset, import_pyworld
from resyn_bench.metrics.base import MetricError, MetricGroup, MetricSpec, Score

log_ = logging.getLogger("resyn_bench.metrics")

__all__ = ["MCD_BAND_HZ", "MCD_SCALE", "DNSMOSMetrics", "IntrusiveQualityMetrics",
           "band_mel_cepstrum", "dtw", "dtw_mcd",
           "freqt_matrix", "mcd_frames", "sp2mc", "trim_edges", "warped_frequency"]

SR = 16000
#: 10/ln10 * sqrt(2): mel-cepstral Euclidean distance -> dB
MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)
#: upper edge of the MCD analysis band (Hz): the wideband-speech band of ITU-T G.722 and
#: P.862.2 (PESQ-WB); the 7-8 kHz below Nyquist is where resamplers and anti-alias filters roll off
MCD_BAND_HZ = 7000.0


@functools.cache
def _versions(*dists: str) -> dict[str, str | None]:
    return package_versions(dists)


def _checked_samples(group: MetricGroup, audio, what: str) -> np.ndarray:
    """The group's rate check, plus the shape/finiteness checks these models need."""
    x = np.asarray(group.samples_at_rate(audio, what))
    if x.ndim != 1 or x.size == 0:
        raise MetricError(f"{group.name}: {what} must be a non-empty 1-D signal, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise MetricError(f"{group.name}: {what} contains NaN/inf samples")
    return x


# ============================================================================================
# DNSMOS
# ============================================================================================

_DNSMOS_SPECS = (
    MetricSpec("dnsmos.ovrl", "DNSMOS OVRL", higher_is_better=True, unit="MOS",
               description="DNSMOS P.835 overall quality (speechmos ONNX model, 1-5), "
                           "non-intrusive"),
    MetricSpec("dnsmos.sig", "DNSMOS SIG", higher_is_better=True, unit="MOS",
               description="DNSMOS P.835 speech signal quality (1-5), non-intrusive"),
    MetricSpec("dnsmos.bak", "DNSMOS BAK", higher_is_better=True, unit="MOS",
               description="DNSMOS P.835 background-noise quality (1-5), non-intrusive"),
    MetricSpec("dnsmos.p808", "DNSMOS P.808", higher_is_better=True, unit="MOS",
               description="DNSMOS P.808 overall MOS (1-5), non-intrusive"),
)

_DNSMOS_FILES = {False: ("dnsmos_models/sig_bak_ovr.onnx", "dnsmos_models/model_v8.onnx"),
                 True: ("pdnsmos_models/sig_bak_ovr.onnx", "dnsmos_models/model_v8.onnx")}
NORMALIZE_MODES = ("none", "peak")
#: ``shared``: the P.835 model computes the frames of overlapping windows once
#: (:mod:`resyn_bench.metrics.dnsmos_trunk`); ``per-window``: the whole model on every window
OVERLAP_MODES = ("shared", "per-window")


def _speechmos_dir() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


#: largest difference of a DNSMOS score (MOS points) between batched and per-window model calls
#: that the tests accept; measured differences are about 1e-6
DNSMOS_BATCH_TOLERANCE = 1e-4
#: speechmos' window (seconds) and hop (one second)
DNSMOS_WINDOW_S = 9.01


def dnsmos_windows(audio: np.ndarray, fs: int) -> np.ndarray:
    """(n_windows, window) array of the windows speechmos scores: the clip tiled (repeated)
    up to 9.01 s, then 9.01 s windows every second, as ``speechmos.dnsmos.DNSMOS.__call__``."""
    len_samples = int(DNSMOS_WINDOW_S * fs)
    while len(audio) < len_samples:
        audio = np.append(audio, audio)
    num_hops = int(np.floor(len(audio) / fs) - DNSMOS_WINDOW_S) + 1
    segments = []
    for idx in range(num_hops):
        seg = audio[int(idx * fs): int((idx + DNSMOS_WINDOW_S) * fs)]
        if len(seg) < len_samples:
            continue
        segments.append(np.asarray(seg, dtype=np.float32))
    return np.stack(segments) if segments else np.zeros((0, len_samples), np.float32)


def dnsmos_batched(model, sample: np.ndarray, fs: int, personalized: bool, batch: int) -> dict:
    """speechmos' DNSMOS of one clip with its windows run through the two ONNX models
    ``batch`` at a time (``model``: a ``speechmos.dnsmos.DNSMOS`` with its sessions). Same
    windows, features, mapping and averaging as speechmos; returns its dict of scores. With
    ``model.p835_shared`` (:class:`~resyn_bench.metrics.dnsmos_trunk.SharedTrunkP835`) the P.835
    model computes the frames that a batch's windows share once."""
    audio = np.asarray(sample)
    if not ((audio >= -1).all() and (audio <= 1).all()):
        raise ValueError("np.ndarray values must be between -1 and 1.")
    windows = dnsmos_windows(audio, fs)
    shared = getattr(model, "p835_shared", None)
    sig, bak, ovr, p808 = [], [], [], []
    for start in range(0, len(windows), batch):
        chunk = windows[start:start + batch]
        mels = np.stack([np.asarray(model.audio_melspec(audio=w[:-160]), dtype=np.float32)
                         for w in chunk])
        p808 += [float(v) for v in model.p808_onnx_sess.run(None, {"input_1": mels})[0][:, 0]]
        if shared is not None and fs == shared.hop:   # consecutive windows, one second apart
            raw = shared.run(chunk)
        else:
            raw = model.onnx_sess.run(None, {"input_1": chunk})[0]
        for s_raw, b_raw, o_raw in raw:
            s_val, b_val, o_val = model.get_polyfit_val(s_raw, b_raw, o_raw, personalized)
            sig.append(s_val)
            bak.append(b_val)
            ovr.append(o_val)
    return {"ovrl_mos": np.mean(ovr), "sig_mos": np.mean(sig), "bak_mos": np.mean(bak),
            "p808_mos": np.mean(p808)}


class DNSMOSMetrics(MetricGroup):
    """DNSMOS P.835 (OVRL, SIG, BAK) and P.808 of the output (no reference needed).

    ``normalize``: ``"none"`` (default; level as output, clipped to +-1) or ``"peak"``
    (divide by max |x|, VERSA's convention). ``personalized``: the personalised P.835 model
    (speechmos ``model_type="dnsmos_personalized"``). ``num_threads``: onnxruntime intra-op
    threads (does not change the scores, so it is not part of ``settings()``).

    ``batch``: 9.01 s windows per onnxruntime call (default 16). speechmos runs both models once
    per window; all windows of a clip have the same length, so they are stacked and run
    together (same tiling, windows, P.808 mel features and polynomial mapping). ``batch=1`` is
    speechmos' own per-window loop. A batched call adds the windows in another order inside
    the convolutions: scores equal the per-window ones within :data:`DNSMOS_BATCH_TOLERANCE`
    (measured differences are about 1e-6), so ``batch`` is not part of ``settings()`` either.

    ``overlap``: ``"shared"`` (default) computes what a batch's overlapping windows have in common
    once: P.835's full-resolution convolutions run over the clip's spectrogram, and each window
    takes its slice, with its 4 edge frames recomputed as the model sees them
    (:mod:`resyn_bench.metrics.dnsmos_trunk`; about 3x less work for a 7 s clip, identical
    outputs in the tests, within :data:`DNSMOS_BATCH_TOLERANCE` by contract). It needs the
    ``onnx`` package to cut the graph; without it, or for a graph of another shape, the group
    logs why and runs the whole model per window (``"per-window"``)."""

    name = "dnsmos"
    specs = _DNSMOS_SPECS
    sample_rate = SR

    def __init__(self, normalize: str = "none", personalized: bool = False,
                 num_threads: int | None = 1, batch: int = 16, overlap: str = "shared"):
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"dnsmos: normalize must be one of {NORMALIZE_MODES}, "
                             f"got {normalize!r}")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError("dnsmos: num_threads must be >= 1 or None (onnxruntime default)")
        if int(batch) < 1:
            raise ValueError(f"dnsmos: batch must be >= 1 (windows per model call), got {batch}")
        self.normalize = normalize
        self.personalized = bool(personalized)
        self.num_threads = None if num_threads is None else int(num_threads)
        if overlap not in OVERLAP_MODES:
            raise ValueError(f"dnsmos: overlap must be one of {OVERLAP_MODES}, got {overlap!r}")
        self.batch = int(batch)
        self.overlap = overlap
        self._model = None

    def _model_paths(self) -> tuple[str, str] | None:
        root = _speechmos_dir()
        if root is None:
            return None
        files = _DNSMOS_FILES[self.personalized]
        return tuple(os.path.join(root, *rel.split("/")) for rel in files)

    def settings(self) -> dict[str, Any]:
        paths = self._model_paths()
        return {
            "model": "DNSMOS P.835 sig_bak_ovr.onnx + P.808 model_v8.onnx (speechmos)",
            "personalized": self.personalized,
            "normalize": self.normalize,
            "out_of_range": "clipped to [-1, 1]" if self.normalize == "none" else "n/a",
            "window_s": 9.01, "hop_s": 1.0,
            "short_clips": "tiled to 9.01 s (speechmos)",
            "model_sha256": [(sha256_file_or_none(p) or "missing")[:16] for p in paths] if paths else None,
            "versions": _versions("speechmos", "onnxruntime", "librosa"),
        }

    def load(self) -> None:
        if self._model is not None:
            return
        try:
            import onnxruntime as ort
            from speechmos import dnsmos as sm_dnsmos
        except ImportError as exc:
            raise MetricError("dnsmos needs speechmos, onnxruntime, librosa and requests: "
                              "pip install speechmos==0.0.1.1 onnxruntime librosa requests "
                              f"({exc})") from exc
        primary, p808 = self._model_paths()
        for p in (primary, p808):
            if not os.path.isfile(p):
                raise MetricError(f"dnsmos: model file missing: {p} (reinstall speechmos)")
        options = ort.SessionOptions()
        if self.num_threads is not None:
            options.intra_op_num_threads = self.num_threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]

        batch = self.batch

        class _Model(sm_dnsmos.DNSMOS):
            # speechmos' DNSMOS with sessions built here (thread count, CPU provider); with
            # batch 1 its __call__ (tiling, windows, polynomial mapping) is used unchanged.
            def __init__(self):  # not calling the parent: it builds its own sessions
                self.primary_model_path = primary
                self.onnx_sess = ort.InferenceSession(primary, options, providers=providers)
                self.p808_onnx_sess = ort.InferenceSession(p808, options, providers=providers)

            def __call__(self, sample, fs, is_personalized_MOS):
                if batch == 1:
                    return super().__call__(sample, fs, is_personalized_MOS)
                return dnsmos_batched(self, sample, fs, is_personalized_MOS, batch)

        self._model = _Model()
        self._model.p835_shared = self._shared_p835(primary, options, providers)

    def _shared_p835(self, path: str, options, providers):
        if self.overlap != "shared" or self.batch == 1:
            return None
        from resyn_bench.metrics.dnsmos_trunk import SharedTrunkP835, TrunkSplitError

        try:
            return SharedTrunkP835(path, options, providers, hop=SR)
        except TrunkSplitError as exc:
            log_.warning("dnsmos: running the whole P.835 model per window (%s)", exc)
            return None

    def release(self) -> None:
        self._model = None

    def analyse_reference(self, audio) -> dict[str, np.ndarray]:
        return {}

    def predict(self, samples: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
        """DNSMOS of a 16 kHz signal: (values by spec key, extra)."""
        if self._model is None:
            self.load()
        x = np.asarray(samples, dtype=np.float32)
        extra: dict[str, Any] = {}
        if self.normalize == "peak":
            peak = float(np.max(np.abs(x)))
            if peak <= 0.0:
                raise MetricError("dnsmos: signal is all zeros (cannot peak-normalise)")
            x = x / np.float32(peak)
            extra["peak_gain"] = 1.0 / peak
        n_clipped = int(np.count_nonzero(np.abs(x) > 1.0))
        if n_clipped:
            x = np.clip(x, -1.0, 1.0)
            extra["n_clipped"] = n_clipped
        if len(x) < int(9.01 * SR):
            extra["tiled_from_s"] = round(len(x) / SR, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa/numba chatter on odd inputs
            out = self._model(x, SR, self.personalized)
        values = {"dnsmos.ovrl": float(out["ovrl_mos"]), "dnsmos.sig": float(out["sig_mos"]),
                  "dnsmos.bak": float(out["bak_mos"]), "dnsmos.p808": float(out["p808_mos"])}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise MetricError(f"dnsmos: model returned non-finite {', '.join(bad)}")
        return values, extra

    def score(self, reference: dict[str, np.ndarray], output, utterance) -> Score:
        x = _checked_samples(self, output, "output")
        values, extra = self.predict(x)
        return Score(values=values, counts={}, extra=extra)


# ============================================================================================
# Mel-cepstrum, DTW, MCD (pure functions)
# ============================================================================================

@functools.lru_cache(maxsize=16)
def freqt_matrix(n_in: int, order: int, alpha: float) -> np.ndarray:
    """Matrix ``A`` (order+1, n_in) of SPTK's ``freqt`` (all-pass frequency warping of a
    cepstrum): ``freqt(c) = A @ c`` for a cepstrum ``c`` of length ``n_in``.

    Built by running the freqt recursion on all unit vectors at once. Read-only (cached)."""
    if n_in < 1 or order < 0:
        raise ValueError("freqt_matrix: n_in >= 1 and order >= 0 required")
    b = 1.0 - alpha * alpha
    g = np.zeros((order + 1, n_in))
    for i in range(n_in - 1, -1, -1):
        d = g.copy()
        g[0] = alpha * d[0]
        g[0, i] += 1.0
        if order >= 1:
            g[1] = b * d[0] + alpha * d[1]
        for j in range(2, order + 1):
            g[j] = d[j - 1] + alpha * (d[j] - g[j - 1])
    g.setflags(write=False)
    return g


def sp2mc(power_envelope: np.ndarray, order: int, alpha: float) -> np.ndarray:
    """Mel-cepstrum (T, order+1) of a power spectral envelope (T, fft_size/2 + 1).

    One-sided cepstrum of the log *amplitude* envelope (c(0) = mean log amplitude), warped by
    :func:`freqt_matrix` - the SPTK convention, so ``log|H(e^{jw})| ~ sum_m c~(m) cos(m beta(w))``
    with ``beta`` = :func:`warped_frequency`."""
    sp = np.asarray(power_envelope, dtype=np.float64)
    if sp.ndim != 2 or sp.shape[1] < 3:
        raise ValueError(f"sp2mc: expected (frames, bins) with >= 3 bins, got {sp.shape}")
    n = 2 * (sp.shape[1] - 1)
    tiny = np.finfo(np.float64).tiny
    c = np.fft.irfft(np.log(np.maximum(sp, tiny)), n=n, axis=1)[:, : n // 2]
    c[:, 0] *= 0.5
    return c @ freqt_matrix(n // 2, int(order), float(alpha)).T


def band_mel_cepstrum(power_envelope: np.ndarray, order: int, alpha: float,
                      band_fraction: float) -> np.ndarray:
    """Mel-cepstrum (T, order+1) of the band ``0 .. band_fraction * Nyquist`` of a power
    envelope (T, fft_size/2 + 1).

    The log amplitude envelope is put on the all-pass-warped axis of the full rate
    (``beta = warped_frequency(omega, alpha)``), the part of that axis below the band edge
    ``beta_max`` is stretched linearly onto ``[0, pi]``, and its cosine series is taken::

        log|H| ~ sum_m c(m) cos(m * pi * beta / beta_max),   0 <= beta <= beta_max

    so ``(10/ln10) sqrt(2 sum_{m>=1} dc_m^2)`` is the RMS dB difference of the two envelopes
    over the band on the warped (mel-like) axis, and nothing above the band edge enters.
    ``band_fraction=1`` is the full band (the same cepstrum as :func:`sp2mc` up to its
    quefrency truncation). The envelope is linearly interpolated in log power between bins."""
    sp = np.asarray(power_envelope, dtype=np.float64)
    if sp.ndim != 2 or sp.shape[1] < 3:
        raise ValueError(f"band_mel_cepstrum: expected (frames, bins) with >= 3 bins, "
                         f"got {sp.shape}")
    if not (0.0 < float(band_fraction) <= 1.0):
        raise ValueError(f"band_mel_cepstrum: band_fraction must be in (0, 1], got {band_fraction}")
    n_bins = sp.shape[1]
    n = 2 * (n_bins - 1)
    beta_max = float(warped_frequency(np.pi * float(band_fraction), alpha))
    # uniform grid on the stretched warped axis -> linear frequency (the inverse all-pass
    # warp is the warp with -alpha) -> fractional bin positions
    beta = np.linspace(0.0, beta_max, n_bins)
    omega = np.clip(warped_frequency(beta, -alpha), 0.0, np.pi)
    pos = omega / np.pi * (n_bins - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), n_bins - 2)
    frac = pos - lo
    log_amp = 0.5 * np.log(np.maximum(sp, np.finfo(np.float64).tiny))
    grid = log_amp[:, lo] * (1.0 - frac) + log_amp[:, lo + 1] * frac
    c = np.fft.irfft(grid, n=n, axis=1)[:, : int(order) + 1]
    c[:, 1:] *= 2.0          # log|H| = c0 + sum_{m>=1} c(m) cos(m x): one-sided cosine series
    return c


def warped_frequency(omega: np.ndarray, alpha: float) -> np.ndarray:
    """Frequency (rad) on the all-pass-warped axis: w + 2 atan(a sin w / (1 - a cos w))."""
    omega = np.asarray(omega, dtype=np.float64)
    return omega + 2.0 * np.arctan(alpha * np.sin(omega) / (1.0 - alpha * np.cos(omega)))


def _dtw_core(n: int, m: int, diagonal_cost) -> tuple[float, int]:
    """Anti-diagonal DTW recursion; ``diagonal_cost(k, lo, hi)`` returns the costs of the cells
    (i, k-i), i = lo..hi. Returns (total cost, path length); see :func:`dtw`."""
    inf = np.inf
    # position i+1 holds the cell (i, k-i) of anti-diagonal k; position 0 and positions off
    # the diagonal are +inf (cost) / 0 (length)
    d2 = np.full(n + 1, inf)
    l2 = np.zeros(n + 1, dtype=np.int64)
    d1 = np.full(n + 1, inf)
    l1 = np.zeros(n + 1, dtype=np.int64)
    d1[1], l1[1] = diagonal_cost(0, 0, 0)[0], 1
    for k in range(1, n + m - 1):
        lo, hi = max(0, k - m + 1), min(k, n - 1)
        best, blen = d2[lo:hi + 1], l2[lo:hi + 1]           # diagonal step from (i-1, j-1)
        for cand, clen in ((d1[lo:hi + 1], l1[lo:hi + 1]),  # from (i-1, j)
                           (d1[lo + 1:hi + 2], l1[lo + 1:hi + 2])):  # from (i, j-1)
            take = (cand < best) | ((cand == best) & (clen < blen))
            best = np.where(take, cand, best)
            blen = np.where(take, clen, blen)
        d0 = np.full(n + 1, inf)
        l0 = np.zeros(n + 1, dtype=np.int64)
        d0[lo + 1:hi + 2] = best + diagonal_cost(k, lo, hi)
        l0[lo + 1:hi + 2] = blen + 1
        d2, l2, d1, l1 = d1, l1, d0, l0
    return float(d1[n]), int(l1[n])


def dtw(cost: np.ndarray) -> tuple[float, int]:
    """Unconstrained DTW over a cost matrix (N, M): ``(total cost, path length)``.

    Path from (0, 0) to (N-1, M-1) with steps (1,0), (0,1), (1,1); its cost is the sum of the
    cells it visits (both ends included). Among minimum-cost paths the shortest is chosen
    (lexicographic (cost, length) dynamic programming). Vectorised over anti-diagonals: O(N+M)
    numpy calls, O(N) memory besides the matrix."""
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"dtw: expected a non-empty 2-D cost matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("dtw: cost matrix contains NaN/inf")
    n, m = c.shape
    flipped = c[:, ::-1]
    return _dtw_core(n, m, lambda k, lo, hi: np.diagonal(flipped, offset=m - 1 - k))


def mcd_frames(c_ref: np.ndarray, c_out: np.ndarray) -> np.ndarray:
    """Per-frame MCD (dB) of frame-aligned cepstra (T, D): (10/ln10) sqrt(2 sum_d dc_d^2).

    Every column given is used: drop c0 before calling to exclude energy."""
    a = np.asarray(c_ref, dtype=np.float64)
    b = np.asarray(c_out, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"mcd_frames: aligned (T, D) cepstra required, got {a.shape} vs {b.shape}")
    return MCD_SCALE * np.sqrt(np.sum((a - b) ** 2, axis=1))


def dtw_mcd(c_ref: np.ndarray, c_out: np.ndarray) -> tuple[float, float, int]:
    """MCD of two cepstrum sequences (N, D) and (M, D) aligned by DTW (as :func:`dtw`) over the
    Euclidean distance of their frames.

    Returns ``(mean MCD over the path in dB, summed MCD over the path in dB, path length)``.
    Every column given is used (drop c0 first to exclude energy). Distances are computed one
    anti-diagonal at a time, so memory stays O(N + M) for long utterances."""
    a = np.ascontiguousarray(c_ref, dtype=np.float64)
    b = np.ascontiguousarray(c_out, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(f"dtw_mcd: non-empty (N, D) and (M, D) cepstra required, "
                         f"got {a.shape}, {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("dtw_mcd: cepstra contain NaN/inf")
    b_rev = b[::-1]                 # b_rev[m-1-j] = b[j]: a diagonal's j = k-i is a forward slice
    m = len(b)

    def diagonal_cost(k, lo, hi):
        diff = a[lo:hi + 1] - b_rev[m - 1 - k + lo:m - k + hi]
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))

    total, length = _dtw_core(len(a), m, diagonal_cost)
    total_db = MCD_SCALE * total
    return total_db / length, total_db, length


def trim_edges(power_db: np.ndarray, trim_db: float | None) -> tuple[int, int]:
    """``(start, stop)`` frame range without leading/trailing frames more than ``trim_db``
    below the loudest frame (``(0, T)`` when ``trim_db`` is None)."""
    p = np.asarray(power_db, dtype=np.float64)
    if trim_db is None or p.size == 0:
        return 0, int(p.size)
    keep = np.flatnonzero(p >= np.max(p) - float(trim_db))
    return int(keep[0]), int(keep[-1]) + 1


# ============================================================================================
# Intrusive group
# ============================================================================================

_INTRUSIVE_SPECS = (
    MetricSpec("intrusive.pesq", "PESQ", higher_is_better=True, unit="MOS-LQO",
               description="PESQ (pesq package): ITU-T P.862.2 wide-band at 16 kHz "
                           "(or P.862 narrow-band at 8 kHz with pesq_mode='nb')"),
    MetricSpec("intrusive.stoi", "STOI", higher_is_better=True, unit="",
               description="Short-time objective intelligibility (pystoi), signals cut to the "
                           "shorter length"),
    MetricSpec("intrusive.estoi", "ESTOI", higher_is_better=True, unit="",
               description="Extended STOI (pystoi extended=True), signals cut to the shorter "
                           "length"),
    MetricSpec("intrusive.mcd", "MCD", higher_is_better=False, unit="dB",
               description="Mel-cepstral distortion: mean over DTW-aligned frame pairs of "
                           "(10/ln10)*sqrt(2*sum_{d=1..24}(c_d-c'_d)^2); WORLD CheapTrick "
                           "envelope (dio F0, 5 ms, FFT 1024) -> 24th-order mel-cepstrum of "
                           "the 0-7 kHz band, alpha 0.42, c0 excluded, edge frames 40 dB below "
                           "the peak frame "
                           "trimmed; DTW steps (1,0),(0,1),(1,1) on Euclidean cepstral distance "
                           "(defaults; settings() records the values used)"),
)

PESQ_MODES = {"wb": 16000, "nb": 8000}
#: pystoi returns this (with a warning) when too few frames remain: not a score
_STOI_FAKE = 1e-5


class IntrusiveQualityMetrics(MetricGroup):
    """PESQ, STOI, ESTOI and DTW-aligned MCD against the reference recording."""

    name = "intrusive"
    specs = _INTRUSIVE_SPECS
    sample_rate = SR

    def __init__(self, pesq_mode: str = "wb", f0_preset: str = "dio", mcep_order: int = 24,
                 mcep_alpha: float = 0.42, fft_size: int = 1024, include_c0: bool = False,
                 trim_db: float | None = 40.0, band_hz: float | None = MCD_BAND_HZ):
        if pesq_mode not in PESQ_MODES:
            raise ValueError(f"intrusive: pesq_mode must be 'wb' or 'nb', got {pesq_mode!r}")
        preset = get_preset(f0_preset)
        if preset.extractor not in ("dio", "harvest"):
            raise ValueError(f"intrusive: f0_preset must be a WORLD preset ('dio' or 'harvest'), "
                             f"got {preset.name!r}")
        if not (0 <= float(mcep_alpha) < 1):
            raise ValueError("intrusive: mcep_alpha must be in [0, 1)")
        if int(mcep_order) < 1 or int(fft_size) < 2 * (int(mcep_order) + 1):
            raise ValueError("intrusive: need mcep_order >= 1 and fft_size >= 2*(order+1)")
        if trim_db is not None and float(trim_db) <= 0:
            raise ValueError("intrusive: trim_db must be > 0 or None")
        if band_hz is not None and not (0 < float(band_hz) <= SR / 2):
            raise ValueError(f"intrusive: band_hz (upper edge of the MCD band) must be in "
                             f"(0, {SR // 2}] Hz or None (full band), got {band_hz!r}")
        self.pesq_mode = pesq_mode
        self.preset = preset
        self.mcep_order = int(mcep_order)
        self.mcep_alpha = float(mcep_alpha)
        self.fft_size = int(fft_size)
        self.include_c0 = bool(include_c0)
        self.trim_db = None if trim_db is None else float(trim_db)
        self.band_hz = None if band_hz is None else float(band_hz)

    def settings(self) -> dict[str, Any]:
        return {
            "pesq": {"mode": self.pesq_mode, "rate": PESQ_MODES[self.pesq_mode],
                     "resampled": "soxr HQ 16 kHz -> 8 kHz" if self.pesq_mode == "nb" else None},
            "stoi": {"length": "both cut to the shorter signal"},
            "mcd": {"f0_preset": self.preset.to_dict(), "envelope": "WORLD CheapTrick",
                    "fft_size": self.fft_size, "q1": -0.15, "order": self.mcep_order,
                    "alpha": self.mcep_alpha, "include_c0": self.include_c0,
                    "band_hz": [0.0, self.band_hz if self.band_hz is not None else SR / 2],
                    "band": ("warped axis below the band edge stretched onto [0, pi]"
                             if self.band_hz is not None else "full band (SPTK sp2mc)"),
                    "trim_db": self.trim_db, "trim": "leading/trailing frames only, per side",
                    "formula": "mean over DTW path of 10/ln10*sqrt(2*sum_d (c_d-c'_d)^2)",
                    "dtw": "steps (1,0),(0,1),(1,1), Euclidean cepstral distance, "
                           "min cost then shortest path"},
            "versions": _versions("pesq", "pystoi", "pyworld"),
        }

    # -- analysis ------------------------------------------------------------------------------
    def mel_cepstrum(self, samples: np.ndarray) -> tuple[np.ndarray, int, int, int]:
        """Trimmed mel-cepstrum of a 16 kHz signal: ``(mcep (T, order+1), n_frames, start,
        stop)`` - frames ``start:stop`` of ``n_frames`` were kept."""
        x = np.ascontiguousarray(samples, dtype=np.float64)
        track = extract_f0(x, SR, self.preset)
        pw = import_pyworld()
        try:
            sp = pw.cheaptrick(x, track.f0, track.times, SR, fft_size=self.fft_size)
        except Exception as exc:
            raise MetricError(f"intrusive: WORLD CheapTrick failed on {x.size} samples: "
                              f"{type(exc).__name__}: {exc}") from exc
        sp = np.maximum(sp, np.finfo(np.float64).tiny)
        power_db = 10.0 * np.log10(np.mean(sp, axis=1))
        start, stop = trim_edges(power_db, self.trim_db)
        if self.band_hz is None:
            mc = sp2mc(sp[start:stop], self.mcep_order, self.mcep_alpha)
        else:
            mc = band_mel_cepstrum(sp[start:stop], self.mcep_order, self.mcep_alpha,
                                   self.band_hz / (SR / 2))
        return mc, int(sp.shape[0]), start, stop

    def analyse_reference(self, audio) -> dict[str, np.ndarray]:
        x = _checked_samples(self, audio, "reference")
        mc, n, start, stop = self.mel_cepstrum(x)
        return {"samples": np.asarray(x, dtype=np.float32), "mcep": mc,
                "mcep_frames": np.array([n, start, stop], dtype=np.int64)}

    # -- scoring -------------------------------------------------------------------------------
    def _pesq(self, ref: np.ndarray, out: np.ndarray) -> tuple[float | None, str | None]:
        from pesq import pesq

        rate = PESQ_MODES[self.pesq_mode]
        if rate != SR:
            ref, out = resample(ref, SR, rate), resample(out, SR, rate)
        try:
            value = float(pesq(rate, ref, out, self.pesq_mode))
        except Exception as exc:  # NoUtterancesError, BufferTooShortError, NaN on all-zero...
            msg = exc.args[0] if exc.args else ""
            if isinstance(msg, bytes):
                msg = msg.decode("utf-8", "replace")
            return None, f"{type(exc).__name__}: {msg}"
        if not math.isfinite(value):
            return None, f"pesq returned {value}"
        return value, None

    @staticmethod
    def _stoi(ref: np.ndarray, out: np.ndarray, extended: bool) -> tuple[float | None, str | None]:
        from pystoi import stoi

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = float(stoi(ref.astype(np.float64), out.astype(np.float64), SR,
                                   extended=extended))
            except Exception as exc:
                return None, f"{type(exc).__name__}: {exc}"
        notes = [str(w.message) for w in caught if "Not enough STFT frames" in str(w.message)]
        if notes or value == _STOI_FAKE:
            return None, ("pystoi: fewer than 30 frames after removing silent frames "
                          "(it returns 1e-5 then)")
        if not math.isfinite(value):
            return None, f"pystoi returned {value}"
        return value, None

    def score(self, reference: dict[str, np.ndarray], output, utterance) -> Score:
        out = np.asarray(_checked_samples(self, output, "output"), dtype=np.float32)
        ref = np.asarray(reference["samples"], dtype=np.float32)
        extra: dict[str, Any] = {}
        values: dict[str, float | None] = {}
        peak = float(np.max(np.abs(out)))
        if peak < SILENCE_PEAK:
            # PESQ fails (NaN inside the library on all-zero input) or rates a scaled-up noise
            # floor, pystoi's correlation degenerates to 0, and the MCD would measure WORLD's
            # numerical floor: none of them is a score of this output.
            reason = f"output is silent (peak {peak:.2e} < {SILENCE_PEAK:.0e})"
            extra.update(pesq_error=reason, stoi_error=reason, mcd_error=reason,
                         length_diff_samples=int(len(out) - len(ref)))
            return Score(values={s.key: None for s in self.specs}, counts={}, extra=extra)

        values["intrusive.pesq"], err = self._pesq(ref, out)
        if err:
            extra["pesq_error"] = err

        n = min(len(ref), len(out))
        extra["length_diff_samples"] = int(len(out) - len(ref))
        for key, ext in (("intrusive.stoi", False), ("intrusive.estoi", True)):
            values[key], err = self._stoi(ref[:n], out[:n], ext)
            if err:
                extra["stoi_error"] = err

        out_mc, n_out, start, stop = self.mel_cepstrum(out)
        ref_mc = np.asarray(reference["mcep"], dtype=np.float64)
        lo = 0 if self.include_c0 else 1
        mean_db, total_db, path = dtw_mcd(ref_mc[:, lo:], out_mc[:, lo:])
        values["intrusive.mcd"] = mean_db
        ref_n, ref_start, ref_stop = (int(v) for v in reference["mcep_frames"])
        extra["mcd_frames"] = {"ref": ref_stop - ref_start, "out": stop - start, "path": path,
                               "ref_trimmed": ref_n - (ref_stop - ref_start),
                               "out_trimmed": n_out - (stop - start)}
        counts = {"mcd_sum_db": total_db, "mcd_path_frames": float(path)}
        return Score(values=values, counts=counts, extra=extra)

    def pool(self, counts: dict[str, float]) -> dict[str, float | None]:
        """Frame-pooled MCD: summed path MCD / summed path length (PESQ/STOI: no pooled form)."""
        n = counts.get("mcd_path_frames", 0.0)
        return {"intrusive.mcd": counts.get("mcd_sum_db", 0.0) / n if n > 0 else None}
