"""Log-mel filterbank features of the GSLM "logmel" baseline.

GSLM's speech2unit ``LogMelFeatureReader`` (fairseq ``examples/textless_nlp/gslm``) reads the
file with soundfile (floats in [-1, 1], not int16 counts) and calls
``torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80, frame_length=25.0,
sample_frequency=16000)``; every other option is that function's default, i.e. Kaldi's
``compute-fbank-feats`` with no dither:

- frames of 25 ms (400 samples) every 10 ms (160 samples), ``snip_edges``: only whole frames,
  ``1 + (N - 400) // 160`` of them (100 Hz; hop 160 like the CPC units);
- per frame: remove the DC offset (subtract the frame mean), pre-emphasis 0.97 (the first
  sample is pre-emphasised against itself), "povey" window = Hann (symmetric) ** 0.85,
  zero-padded to 512 points, power spectrum |FFT|^2;
- 80 triangular filters equally spaced on the Kaldi mel scale mel(f) = 1127 ln(1 + f / 700)
  between 20 Hz and the Nyquist frequency, each triangle linear *in mel* over the FFT bins
  0..255 (the Nyquist bin gets weight 0); no filter normalisation;
- log(max(energy, float32 epsilon)); no energy column, no mean subtraction.

This module reimplements that with torch (no torchaudio); tests compare it with
kaldi-native-fbank (an independent C++ Kaldi implementation) and with librosa building blocks.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["LogMelFeatureExtractor", "kaldi_mel", "kaldi_mel_banks", "logmel_num_frames"]

_EPS = float(np.finfo(np.float32).eps)


def kaldi_mel(freq):
    """Kaldi's mel scale: 1127 ln(1 + f / 700) (same curve as HTK's 2595 log10(1 + f / 700))."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def kaldi_mel_banks(num_bins: int = 80, n_fft: int = 512, sample_rate: int = 16000,
                    low_freq: float = 20.0, high_freq: float = 0.0) -> np.ndarray:
    """[num_bins, n_fft // 2 + 1] triangular filters, Kaldi style (see module doc).

    ``high_freq`` <= 0 is an offset from the Nyquist frequency, as in Kaldi."""
    nyquist = 0.5 * sample_rate
    hi = high_freq if high_freq > 0 else nyquist + high_freq
    if not 0.0 <= low_freq < hi <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist, got {low_freq}, {hi}")
    mel_lo, mel_hi = kaldi_mel(low_freq), kaldi_mel(hi)
    delta = (mel_hi - mel_lo) / (num_bins + 1)
    half = n_fft // 2
    mel_fft = kaldi_mel(np.arange(half) * (sample_rate / n_fft))  # bins 0..half-1
    banks = np.zeros((num_bins, half + 1))
    for b in range(num_bins):
        left, center, right = mel_lo + b * delta, mel_lo + (b + 1) * delta, mel_lo + (b + 2) * delta
        up = (mel_fft - left) / (center - left)
        down = (right - mel_fft) / (right - center)
        banks[b, :half] = np.maximum(0.0, np.minimum(up, down))
    return banks


def logmel_num_frames(num_samples: int, frame_length: int = 400, frame_shift: int = 160) -> int:
    """Whole frames only (Kaldi ``snip_edges``): 1 + (N - 400) // 160, or 0."""
    if num_samples < frame_length:
        return 0
    return 1 + (int(num_samples) - frame_length) // frame_shift


class LogMelFeatureExtractor:
    """80 Kaldi log-mel filterbanks at 100 Hz: ``extract(wav) -> [T, 80]`` float32."""

    sample_rate = 16000

    def __init__(self, num_mel_bins: int = 80, frame_length_ms: float = 25.0,
                 frame_shift_ms: float = 10.0, low_freq: float = 20.0, high_freq: float = 0.0,
                 preemphasis: float = 0.97, remove_dc_offset: bool = True,
                 window_power: float = 0.85, device: str = "cpu"):
        self.name = "logmel"
        self.dim = int(num_mel_bins)
        self.frame_length = round(self.sample_rate * frame_length_ms / 1000.0)
        self.hop_size = round(self.sample_rate * frame_shift_ms / 1000.0)
        self.n_fft = 1 << max(0, math.ceil(math.log2(self.frame_length)))  # round to 2^k
        self.preemphasis = float(preemphasis)
        self.remove_dc_offset = bool(remove_dc_offset)
        self.device = torch.device(device)
        n = torch.arange(self.frame_length, dtype=torch.float64)
        hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / (self.frame_length - 1))
        self._window = hann.pow(window_power).float().to(self.device)
        self._banks = torch.from_numpy(kaldi_mel_banks(
            self.dim, self.n_fft, self.sample_rate, low_freq, high_freq)).float().to(self.device)
        self.settings = {"num_mel_bins": self.dim, "frame_length": self.frame_length,
                         "frame_shift": self.hop_size, "n_fft": self.n_fft,
                         "low_freq": low_freq, "high_freq": high_freq,
                         "preemphasis": self.preemphasis, "remove_dc_offset": remove_dc_offset,
                         "window": f"hann**{window_power}", "dither": 0.0}

    def num_frames(self, num_samples: int) -> int:
        return logmel_num_frames(num_samples, self.frame_length, self.hop_size)

    @torch.inference_mode()
    def extract(self, wav) -> np.ndarray:
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1).to(self.device)
        if self.num_frames(x.numel()) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        frames = x.unfold(0, self.frame_length, self.hop_size)  # [T, 400], whole frames only
        if self.remove_dc_offset:
            frames = frames - frames.mean(dim=1, keepdim=True)
        if self.preemphasis:
            prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
            frames = frames - self.preemphasis * prev
        frames = frames * self._window
        spec = torch.fft.rfft(frames, n=self.n_fft)
        power = spec.real.square() + spec.imag.square()
        mel = power @ self._banks.T
        return torch.clamp_min(mel, _EPS).log().cpu().numpy().astype(np.float32, copy=False)

    def describe(self) -> dict:
        return {"name": self.name, "hop_size": self.hop_size, "dim": self.dim,
                "sample_rate": self.sample_rate, **self.settings}
