"""HiFi-GAN MPD / MSD: reference key names and shapes, output and feature-map counts/shapes,
width scaling, batched real/fake equivalence and the spectral-norm layer."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn import functional as F

from resyn_bench.systems.vocoder.discriminators import (
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    SNConv1d,
)

T = 1000  # short input: shapes only


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread avoids heavy oversubscription slow-downs on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mpd():
    torch.manual_seed(0)
    return MultiPeriodDiscriminator()


@pytest.fixture(scope="module")
def msd():
    torch.manual_seed(0)
    return MultiScaleDiscriminator()


def _mpd_len(h: int) -> int:  # Conv2d (5,1) stride (3,1) pad (2,0) along the folded time axis
    return (h + 4 - 5) // 3 + 1


def test_mpd_keys_match_reference(mpd):
    sd = {k: tuple(v.shape) for k, v in mpd.state_dict().items()}
    chans = [1, 32, 128, 512, 1024, 1024]
    expected = {}
    for d in range(5):
        for j in range(5):
            cin, cout = chans[j], chans[j + 1]
            expected[f"discriminators.{d}.convs.{j}.weight_g"] = (cout, 1, 1, 1)
            expected[f"discriminators.{d}.convs.{j}.weight_v"] = (cout, cin, 5, 1)
            expected[f"discriminators.{d}.convs.{j}.bias"] = (cout,)
        expected[f"discriminators.{d}.conv_post.weight_g"] = (1, 1, 1, 1)
        expected[f"discriminators.{d}.conv_post.weight_v"] = (1, 1024, 3, 1)
        expected[f"discriminators.{d}.conv_post.bias"] = (1,)
    assert sd == expected
    assert mpd.periods == (2, 3, 5, 7, 11)


def test_msd_keys_match_reference(msd):
    sd = {k: tuple(v.shape) for k, v in msd.state_dict().items()}
    layers = [(1, 128, 15, 1), (128, 128, 41, 4), (128, 256, 41, 16), (256, 512, 41, 16),
              (512, 1024, 41, 16), (1024, 1024, 41, 16), (1024, 1024, 5, 1), (1024, 1, 3, 1)]
    expected = {}
    for d in range(3):
        for j, (cin, cout, k, g) in enumerate(layers):
            name = f"discriminators.{d}.convs.{j}" if j < 7 else f"discriminators.{d}.conv_post"
            if d == 0:  # spectral norm (legacy names)
                expected[f"{name}.weight_orig"] = (cout, cin // g, k)
                expected[f"{name}.weight_u"] = (cout,)
                expected[f"{name}.weight_v"] = (cin // g * k,)
            else:
                expected[f"{name}.weight_g"] = (cout, 1, 1)
                expected[f"{name}.weight_v"] = (cout, cin // g, k)
            expected[f"{name}.bias"] = (cout,)
    assert sd == expected
    assert len(msd.meanpools) == 2 and not list(msd.meanpools.parameters())
    # reference parameter counts (HiFi-GAN V1 discriminators)
    n_msd = sum(p.numel() for p in msd.parameters())
    assert n_msd == 29_618_821


def test_mpd_outputs_and_fmaps(mpd):
    y = torch.randn(2, 1, T)
    with torch.no_grad():
        real, fake, real_f, fake_f = mpd(y, 0.5 * y)
    assert len(real) == len(fake) == len(real_f) == len(fake_f) == 5
    chans = [32, 128, 512, 1024, 1024, 1]
    for d, p in enumerate((2, 3, 5, 7, 11)):
        h = -(-T // p)  # reflect-padded to a multiple of the period
        shapes = []
        for j in range(6):
            if j < 4:
                h = _mpd_len(h)
            shapes.append((2, chans[j], h, p))
        assert [tuple(f.shape) for f in real_f[d]] == shapes
        assert [tuple(f.shape) for f in fake_f[d]] == shapes
        assert real[d].shape == fake[d].shape == (2, h * p)
        assert torch.equal(real[d], real_f[d][-1].flatten(1))  # post conv output is the score


def test_msd_outputs_and_fmaps(msd):
    y = torch.randn(2, T)  # [B, T] accepted too
    with torch.no_grad():
        real, _fake, real_f, fake_f = msd(y, y.flip(-1))
    assert len(real) == len(real_f) == 3
    length = T
    chans = [128, 128, 256, 512, 1024, 1024, 1024, 1]
    strides = [1, 2, 2, 4, 4, 1, 1, 1]
    kernels = [15, 41, 41, 41, 41, 41, 5, 3]
    for d in range(3):
        if d > 0:
            length = (length + 4 - 4) // 2 + 1  # AvgPool1d(4, 2, padding=2)
        h = length
        shapes = []
        for c, s, k in zip(chans, strides, kernels, strict=True):
            h = (h + 2 * (k // 2) - k) // s + 1
            shapes.append((2, c, h))
        assert [tuple(f.shape) for f in real_f[d]] == shapes
        assert len(fake_f[d]) == 8
        assert real[d].shape == (2, h)


def test_batched_pass_equals_separate_calls():
    torch.manual_seed(1)
    msd = MultiScaleDiscriminator(width=0.125).eval()  # eval: spectral norm uses frozen u, v
    mpd = MultiPeriodDiscriminator(width=0.125).eval()
    y, y_hat = torch.randn(2, 1, 700), torch.randn(2, 1, 700)
    with torch.no_grad():
        real, fake, _real_f, fake_f = mpd(y, y_hat)
        for d, sub in enumerate(mpd.discriminators):
            out_r, _fm_r = sub(y)
            out_g, fm_g = sub(y_hat)
            assert torch.allclose(real[d], out_r, atol=1e-6) and torch.allclose(fake[d], out_g, atol=1e-6)
            assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fake_f[d], fm_g, strict=True))
        real, fake, _, _ = msd(y, y_hat)
        pooled = y_hat
        for d, sub in enumerate(msd.discriminators):
            if d:
                pooled = F.avg_pool1d(pooled, 4, 2, padding=2)
            assert torch.allclose(fake[d], sub(pooled)[0], atol=1e-6)


def test_period_fold_uses_reflect_padding():
    torch.manual_seed(2)
    mpd = MultiPeriodDiscriminator(periods=(7,), width=0.125).eval()
    y = torch.randn(1, 1, 100)  # 100 % 7 = 2 -> 5 samples of reflect padding
    manual = F.pad(y, (0, 5), mode="reflect").view(1, 1, 15, 7)
    sub = mpd.discriminators[0]
    x = manual
    with torch.no_grad():
        for conv in sub.convs:
            x = F.leaky_relu(conv(x), 0.1)
        expected = sub.conv_post(x).flatten(1)
        assert torch.allclose(sub(y)[0], expected)


def test_tiny_width_shrinks_channels_and_keeps_structure():
    mpd = MultiPeriodDiscriminator(width=0.125)
    msd = MultiScaleDiscriminator(width=0.125)
    assert [c.out_channels for c in mpd.discriminators[0].convs] == [4, 16, 64, 128, 128]
    for sub in msd.discriminators:
        for conv in sub.convs:
            assert conv.in_channels % conv.groups == 0 and conv.out_channels % conv.groups == 0
    assert [c.out_channels for c in msd.discriminators[0].convs] == [16, 16, 32, 64, 128, 128, 128]
    n = sum(p.numel() for p in mpd.parameters()) + sum(p.numel() for p in msd.parameters())
    assert n < 1_500_000
    y = torch.randn(2, 1, 512)
    real, fake, real_f, fake_f = mpd(y, y)
    assert len(real) == 5 and all(len(f) == 6 for f in real_f) and all(len(f) == 6 for f in fake_f)
    real, fake, real_f, _fake_f = msd(y, y)
    assert len(real) == 3 and all(len(f) == 8 for f in real_f)
    # gradients reach the generated audio
    y_hat = torch.randn(2, 1, 512, requires_grad=True)
    _, fake, _, _ = msd(y, y_hat)
    sum(f.sum() for f in fake).backward()
    assert y_hat.grad is not None and y_hat.grad.abs().sum() > 0


def test_spectral_norm_matches_power_iteration_and_torch():
    torch.manual_seed(3)
    conv = SNConv1d(4, 6, 5, padding=2)
    w = conv.weight_orig.detach().reshape(6, -1)
    sigma_true = torch.linalg.matrix_norm(w, ord=2)
    conv.train()
    x = torch.randn(1, 4, 20)
    for _ in range(200):
        conv(x)
    assert torch.isclose(torch.dot(conv.weight_u, w @ conv.weight_v), sigma_true, rtol=1e-4)
    conv.eval()
    expected = F.conv1d(x, conv.weight_orig / sigma_true, conv.bias, padding=2)
    assert torch.allclose(conv(x), expected, atol=1e-4)

    # one training step equals torch's legacy spectral_norm given the same u, v, weight
    legacy = getattr(torch.nn.utils, "spectral_norm", None)
    if legacy is None:
        pytest.skip("torch.nn.utils.spectral_norm not available")
    ref_conv = torch.nn.Conv1d(4, 6, 5, padding=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_conv = legacy(ref_conv)
    ours = SNConv1d(4, 6, 5, padding=2)
    ours.load_state_dict(ref_conv.state_dict())  # same key names: weight_orig, weight_u, weight_v, bias
    ours.train()
    ref_conv.train()
    assert torch.allclose(ours(x), ref_conv(x), atol=1e-6)
    assert torch.allclose(ours.weight_u, ref_conv.weight_u) and torch.allclose(ours.weight_v, ref_conv.weight_v)
