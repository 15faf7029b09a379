"""GAN losses against hand computations; the loss mel spectrogram against an independent numpy
STFT + librosa mel basis."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from resyn_bench.systems.vocoder import losses
from resyn_bench.systems.vocoder.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_spectrogram,
    slaney_mel_filterbank,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread avoids heavy oversubscription slow-downs on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_discriminator_loss_hand_values():
    real = [torch.tensor([[1.0, 0.5]]), torch.tensor([[0.0]])]
    fake = [torch.tensor([[0.0, 2.0]]), torch.tensor([[-1.0, 1.0, 0.0]])]
    loss, parts = discriminator_loss(real, fake)
    # sub 0: mean(0, 0.25) + mean(0, 4) ; sub 1: mean(1) + mean(1, 1, 0)
    assert loss.item() == pytest.approx(0.125 + 2.0 + 1.0 + 2.0 / 3.0)
    assert [p.item() for p in parts["real"]] == pytest.approx([0.125, 1.0])
    assert [p.item() for p in parts["fake"]] == pytest.approx([2.0, 2.0 / 3.0])


def test_generator_adversarial_loss_hand_values():
    fake = [torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.5]])]
    loss, parts = generator_adversarial_loss(fake)
    assert loss.item() == pytest.approx(1.0 + 0.125)
    assert [p.item() for p in parts] == pytest.approx([1.0, 0.125])


def test_feature_matching_hand_values_and_gradient_only_to_fake():
    fr = [[torch.tensor([1.0, 2.0]), torch.tensor([[0.0, 0.0, 3.0]])], [torch.tensor([5.0])]]
    fg = [[torch.tensor([0.0, 4.0], requires_grad=True), torch.tensor([[1.0, 0.0, 0.0]])],
          [torch.tensor([5.5])]]
    real_leaf = fr[0][0].requires_grad_()
    loss = feature_matching_loss(fr, fg)
    # mean(1, 2) + mean(1, 0, 3) + mean(0.5); no x2 here (the trainer applies lambda_fm = 2)
    assert loss.item() == pytest.approx(1.5 + 4.0 / 3.0 + 0.5)
    loss.backward()
    assert torch.allclose(fg[0][0].grad, torch.tensor([-0.5, 0.5]))
    assert real_leaf.grad is None


def test_mel_basis_matches_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmin, fmax in [(16000, 1024, 80, 0.0, None), (22050, 1024, 80, 0.0, 8000.0),
                                          (16000, 512, 40, 50.0, 7000.0)]:
        ours = slaney_mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-7 * max(1.0, np.abs(ref).max())


def _numpy_log_mel(wav: np.ndarray, basis: np.ndarray, n_fft=1024, hop=256) -> np.ndarray:
    """Independent float64 reference: explicit frames, periodic Hann, rfft."""
    pad = (n_fft - hop) // 2
    x = np.pad(wav, (pad, pad), mode="reflect")
    n_frames = (len(x) - n_fft) // hop + 1
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([x[i * hop:i * hop + n_fft] * window for i in range(n_frames)], axis=1)
    spec = np.fft.rfft(frames, axis=0)
    mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
    return np.log(np.maximum(basis @ mag, 1e-5))


def _test_signal(n=16000 // 2, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(n)).astype(np.float64)


def test_mel_spectrogram_matches_independent_numpy():
    librosa = pytest.importorskip("librosa")
    basis = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=80, fmin=0.0, fmax=None).astype(np.float64)
    wav = _test_signal()
    # pick a length that is a multiple of the hop: frames = T / 256
    wav = wav[: 256 * 31]
    ref = _numpy_log_mel(wav, basis)
    ours64 = mel_spectrogram(torch.from_numpy(wav)[None]).numpy()[0]
    assert ours64.shape == (80, 31) == ref.shape
    # float64 path: the only difference is the float32-rounded mel basis
    assert np.abs(ours64 - ref).max() < 1e-4
    # float32 path ([B, 1, T] input), as used in training
    ours32 = mel_spectrogram(torch.from_numpy(wav).float()[None, None]).numpy()[0]
    assert np.abs(ours32 - ref).max() < 1e-3
    assert np.median(np.abs(ours32 - ref)) < 1e-4


def test_mel_spectrogram_silence_clamps_and_batch():
    out = mel_spectrogram(torch.zeros(2, 2560))
    assert out.shape == (2, 80, 10)
    # sqrt(1e-9) magnitude per bin -> mel sums < 1e-5 -> log(1e-5)
    assert torch.allclose(out, torch.full_like(out, float(np.log(1e-5))))
    wav = torch.from_numpy(_test_signal(2560 * 2, seed=1)).float().view(2, 2560)
    both = mel_spectrogram(wav)
    assert torch.allclose(both[1], mel_spectrogram(wav[1:2])[0], atol=1e-5)


def test_mel_basis_and_window_cached():
    losses._BASIS_CACHE.clear()
    losses._WINDOW_CACHE.clear()
    x = torch.randn(1, 4096)
    mel_spectrogram(x)
    mel_spectrogram(x)
    assert len(losses._BASIS_CACHE) == 1 and len(losses._WINDOW_CACHE) == 1
    mel_spectrogram(x, fmax=8000.0)
    mel_spectrogram(x.double())
    assert len(losses._BASIS_CACHE) == 3 and len(losses._WINDOW_CACHE) == 2


def test_mel_spectrogram_ignores_autocast():
    x = torch.randn(1, 4096)
    ref = mel_spectrogram(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mel_spectrogram(x)
    assert out.dtype == torch.float32 and torch.allclose(out, ref)
