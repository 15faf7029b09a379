"""HiFi-GAN training losses and the loss mel spectrogram (docs/reference.md §1 and §6).

* :func:`discriminator_loss` - LSGAN: ``sum_k mean((1 - D_k(x))^2) + mean(D_k(G(z))^2)``.
* :func:`generator_adversarial_loss` - ``sum_k mean((1 - D_k(G(z)))^2)``.
* :func:`feature_matching_loss` - ``sum_k sum_l mean|f_real - f_fake|``, **unweighted**: the
  reference objective multiplies it by ``lambda_fm = 2``; the trainer applies that factor
  (together with ``lambda_r = 45`` on the mel L1 term).
* :func:`mel_spectrogram` - log-mel used only by the loss: librosa-style Slaney mel basis (our
  own computation, no librosa needed), periodic Hann window, reflect padding of
  ``(n_fft - hop) / 2`` on both sides, ``center=False``, magnitude ``sqrt(re^2 + im^2 + 1e-9)``,
  ``log(clamp(mel, 1e-5))``. ``fmax=None`` means Nyquist (the reference ``fmax_for_loss: null``).

The per-sub-discriminator terms returned in ``parts`` are detached tensors (no device sync; call
``.item()`` only when logging).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "hz_to_mel_slaney",
    "mel_spectrogram",
    "mel_to_hz_slaney",
    "slaney_mel_filterbank",
]


# --------------------------------------------------------------------------------------------
# adversarial losses
# --------------------------------------------------------------------------------------------

def discriminator_loss(real_outs: Sequence[torch.Tensor], fake_outs: Sequence[torch.Tensor]):
    """LSGAN discriminator loss summed over sub-discriminators.

    Returns ``(loss, {"real": [...], "fake": [...]})`` with the detached per-sub terms
    ``mean((1 - D(x))^2)`` and ``mean(D(G(z))^2)``.
    """
    if len(real_outs) != len(fake_outs):
        raise ValueError(f"{len(real_outs)} real vs {len(fake_outs)} fake discriminator outputs")
    loss = 0.0
    real_parts, fake_parts = [], []
    for dr, dg in zip(real_outs, fake_outs, strict=True):
        r = (1.0 - dr.float()).pow(2).mean()
        g = dg.float().pow(2).mean()
        loss = loss + r + g
        real_parts.append(r.detach())
        fake_parts.append(g.detach())
    return loss, {"real": real_parts, "fake": fake_parts}


def generator_adversarial_loss(fake_outs: Sequence[torch.Tensor]):
    """LSGAN generator loss ``sum_k mean((1 - D_k(G(z)))^2)``; returns ``(loss, [per-sub terms])``."""
    loss = 0.0
    parts = []
    for dg in fake_outs:
        term = (1.0 - dg.float()).pow(2).mean()
        loss = loss + term
        parts.append(term.detach())
    return loss, parts


def feature_matching_loss(real_fmaps, fake_fmaps) -> torch.Tensor:
    """``sum`` over sub-discriminators and layers of ``mean |f_real - f_fake|`` (no x2 here).

    Real feature maps are detached: the term only trains the generator, and the gradient with
    respect to the generated audio is unchanged by this.
    """
    if len(real_fmaps) != len(fake_fmaps):
        raise ValueError(f"{len(real_fmaps)} real vs {len(fake_fmaps)} fake feature-map lists")
    loss = 0.0
    for fr_list, fg_list in zip(real_fmaps, fake_fmaps, strict=True):
        if len(fr_list) != len(fg_list):
            raise ValueError("real and fake feature-map lists differ in length")
        for fr, fg in zip(fr_list, fg_list, strict=True):
            loss = loss + (fr.detach().float() - fg.float()).abs().mean()
    return loss


# --------------------------------------------------------------------------------------------
# mel spectrogram
# --------------------------------------------------------------------------------------------

# Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(f):
    f = np.asanyarray(f, dtype=np.float64)
    mel = f / _F_SP
    log_region = f >= _MIN_LOG_HZ
    return np.where(log_region, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def mel_to_hz_slaney(m):
    m = np.asanyarray(m, dtype=np.float64)
    hz = m * _F_SP
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), hz)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, num_mels: int, fmin: float = 0.0,
                          fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters [num_mels, n_fft // 2 + 1] with Slaney area normalisation.

    Same definition as ``librosa.filters.mel(htk=False, norm='slaney')``: band edges equally
    spaced on the Slaney mel scale between fmin and fmax, each triangle scaled by
    2 / (upper edge - lower edge) in Hz. Computed in float64.
    """
    if fmax is None:
        fmax = sample_rate / 2.0
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_edges = np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), num_mels + 2)
    hz_edges = mel_to_hz_slaney(mel_edges)
    widths = np.diff(hz_edges)
    # distance of every FFT bin from every band edge
    offsets = hz_edges[:, None] - fft_freqs[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights


_BASIS_CACHE: dict = {}
_WINDOW_CACHE: dict = {}


def _mel_basis(sample_rate, n_fft, num_mels, fmin, fmax, device, dtype) -> torch.Tensor:
    key = (str(device), dtype, int(sample_rate), int(n_fft), int(num_mels), float(fmin),
           None if fmax is None else float(fmax))
    basis = _BASIS_CACHE.get(key)
    if basis is None:
        fb = slaney_mel_filterbank(sample_rate, n_fft, num_mels, fmin, fmax).astype(np.float32)
        basis = torch.from_numpy(fb).to(device=device, dtype=dtype)
        _BASIS_CACHE[key] = basis
    return basis


def _hann(win_size, device, dtype) -> torch.Tensor:
    key = (str(device), dtype, int(win_size))
    win = _WINDOW_CACHE.get(key)
    if win is None:
        win = torch.hann_window(int(win_size), periodic=True, device=device, dtype=dtype)
        _WINDOW_CACHE[key] = win
    return win


def mel_spectrogram(wav: torch.Tensor, sample_rate: int = 16000, n_fft: int = 1024, num_mels: int = 80,
                    hop_size: int = 256, win_size: int = 1024, fmin: float = 0.0,
                    fmax: float | None = None) -> torch.Tensor:
    """Log-mel spectrogram ``[B, num_mels, frames]`` of ``wav`` ``[B, T]`` / ``[B, 1, T]`` / ``[T]``.

    frames = (T + 2 * (n_fft - hop_size) // 2 - n_fft) // hop_size + 1 (= T / hop for T a
    multiple of hop with the defaults). Half-precision input is computed in float32.
    """
    if wav.dim() == 3:
        if wav.shape[1] != 1:
            raise ValueError(f"wav must be [B, T] or [B, 1, T], got {tuple(wav.shape)}")
        wav = wav[:, 0]
    elif wav.dim() == 1:
        wav = wav.unsqueeze(0)
    elif wav.dim() != 2:
        raise ValueError(f"wav must be [B, T] or [B, 1, T], got {tuple(wav.shape)}")
    if wav.dtype not in (torch.float32, torch.float64):
        wav = wav.float()
    # the log of small mel energies needs full precision: never run this under autocast
    with torch.autocast(device_type=wav.device.type, enabled=False):
        return _log_mel(wav, sample_rate, n_fft, num_mels, hop_size, win_size, fmin, fmax)


def _log_mel(wav, sample_rate, n_fft, num_mels, hop_size, win_size, fmin, fmax) -> torch.Tensor:
    pad = (n_fft - hop_size) // 2
    if wav.shape[-1] <= pad:
        raise ValueError(f"waveform of {wav.shape[-1]} samples is too short for reflect padding of {pad}")
    x = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(x, n_fft, hop_length=hop_size, win_length=win_size,
                      window=_hann(win_size, x.device, x.dtype), center=False, normalized=False,
                      onesided=True, return_complex=True)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
    mel = torch.matmul(_mel_basis(sample_rate, n_fft, num_mels, fmin, fmax, x.device, x.dtype), mag)
    return torch.log(torch.clamp(mel, min=1e-5))
