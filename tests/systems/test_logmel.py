"""GSLM log-mel features (Kaldi fbank, 80 bins, 25/10 ms) against kaldi-native-fbank (an
independent C++ Kaldi implementation) and a reference built from librosa building blocks."""
from __future__ import annotations

import numpy as np
import pytest

from resyn_bench.systems.encoders.features import make_feature_extractor
from resyn_bench.systems.encoders.logmel import (
    LogMelFeatureExtractor,
    kaldi_mel,
    kaldi_mel_banks,
    logmel_num_frames,
)

SR = 16000


def _signal(n=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.05 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 220 * t) \
        + 0.1 * np.sin(2 * np.pi * 3100 * t) + 0.02  # a DC offset too
    x[n // 3:n // 3 + 1200] = 0.0  # digital silence: exercises the log floor
    return x.astype(np.float32)


def test_against_kaldi_native_fbank():
    knf = pytest.importorskip("kaldi_native_fbank")
    x = _signal()
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0  # torchaudio's kaldi.fbank default, used by GSLM
    opts.frame_opts.samp_freq = SR
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(SR, x.tolist())
    fb.input_finished()
    ref = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    got = LogMelFeatureExtractor().extract(x)
    assert got.shape == ref.shape == (logmel_num_frames(len(x)), 80)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-4, rtol=0)
    assert np.isclose(got.min(), np.log(np.finfo(np.float32).eps))  # silent frames floored


def _librosa_reference(x: np.ndarray) -> np.ndarray:
    """Same recipe from librosa framing and mel-scale helpers, numpy FFT, float64."""
    librosa = pytest.importorskip("librosa")
    frames = librosa.util.frame(x.astype(np.float64), frame_length=400, hop_length=160, axis=0)
    frames = frames - frames.mean(axis=1, keepdims=True)
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames - 0.97 * prev
    frames = frames * np.hanning(400) ** 0.85  # numpy's Hann is the symmetric one
    power = np.abs(np.fft.rfft(frames, n=512)) ** 2
    # band edges: 82 points equally spaced on the HTK mel scale between 20 Hz and Nyquist
    edges = librosa.hz_to_mel(librosa.mel_frequencies(n_mels=82, fmin=20.0, fmax=8000.0, htk=True),
                              htk=True)
    bins_mel = librosa.hz_to_mel(np.fft.rfftfreq(512, 1 / SR), htk=True)
    bins_mel[-1] = np.inf  # Kaldi leaves the Nyquist bin out of every filter
    w = np.zeros((80, 257))
    for b in range(80):
        lo, c, hi = edges[b:b + 3]
        w[b] = np.clip(np.minimum((bins_mel - lo) / (c - lo), (hi - bins_mel) / (hi - c)), 0, None)
    return np.log(np.maximum(power @ w.T, np.finfo(np.float32).eps))


def test_against_librosa_building_blocks():
    x = _signal(12345, seed=3)
    got, ref = LogMelFeatureExtractor().extract(x), _librosa_reference(x)
    assert got.shape == ref.shape == (logmel_num_frames(len(x)), 80)
    # float32 vs float64: bands ~14 nats below the loudest differ most
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)
    assert np.abs(got - ref).mean() < 2e-5


def test_mel_scale_and_banks():
    librosa = pytest.importorskip("librosa")
    f = np.array([0.0, 20.0, 700.0, 1000.0, 8000.0])
    np.testing.assert_allclose(kaldi_mel(f), librosa.hz_to_mel(f, htk=True), rtol=1e-5)  # 1127 ln vs 2595 log10
    banks = kaldi_mel_banks()
    assert banks.shape == (80, 257)
    assert np.all(banks[:, -1] == 0) and banks.min() >= 0 and banks.max() <= 1
    # each filter peaks at the FFT bin nearest (in mel) to its centre
    centres = librosa.mel_frequencies(n_mels=82, fmin=20.0, fmax=8000.0, htk=True)[1:-1]
    peak_hz = banks.argmax(axis=1) * SR / 512
    assert np.all(np.abs(peak_hz - centres) <= SR / 512)


def test_tone_lands_in_its_band():
    t = np.arange(SR) / SR
    for freq in (300.0, 1000.0, 4000.0):
        feats = LogMelFeatureExtractor().extract((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
        band = int(np.median(feats.argmax(axis=1)))
        centres = np.linspace(kaldi_mel(20.0), kaldi_mel(8000.0), 82)[1:-1]
        assert abs(band - int(np.argmin(np.abs(centres - kaldi_mel(freq))))) <= 1


@pytest.mark.parametrize("n", [0, 399, 400, 559, 560, 16000, 16001])
def test_frame_count(n):
    expected = 0 if n < 400 else 1 + (n - 400) // 160
    assert logmel_num_frames(n) == expected
    assert LogMelFeatureExtractor().extract(np.zeros(n, np.float32)).shape == (expected, 80)


def test_factory_attributes():
    fx = make_feature_extractor("logmel")
    assert (fx.name, fx.sample_rate, fx.hop_size, fx.dim) == ("logmel", 16000, 160, 80)
    assert fx.describe()["frame_length"] == 400 and fx.describe()["n_fft"] == 512
    with pytest.raises(ValueError, match="no layer"):
        make_feature_extractor("logmel", layer=3)
    with pytest.raises(ValueError, match="unknown feature extractor"):
        make_feature_extractor("mfcc")
