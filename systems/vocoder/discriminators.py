"""HiFi-GAN multi-period and multi-scale discriminators (our implementation of the published design).

Facts from docs/reference.md §6: MPD with periods 2, 3, 5, 7, 11 (waveform reflect-padded to a
multiple of the period, folded to ``[B, 1, T/p, p]``, a Conv2d stack with (5, 1) kernels) and MSD
with three scales (raw, average-pooled once and twice; the first sub-discriminator uses spectral
norm, the others weight norm; a grouped Conv1d stack). LeakyReLU slope 0.1 after every hidden
conv; every conv output (after its activation), including the final ``conv_post``, is a feature
map, so MPD gives 5 x 6 and MSD 3 x 8 feature maps.

State-dict keys follow the reference checkpoints (``do_XXXXXXXX`` 'mpd' / 'msd' entries):
``discriminators.{i}.convs.{j}.{weight_g,weight_v,bias}``, ``discriminators.{i}.conv_post.*``;
MSD sub-discriminator 0 carries the legacy spectral-norm names ``weight_orig``, ``weight_u``,
``weight_v``, ``bias`` through our own :class:`SNConv1d` (no key mapping needed; the deprecated
``torch.nn.utils.spectral_norm`` is not used). ``meanpools`` (two ``AvgPool1d``) have no
parameters, as in the reference.

``width`` scales every hidden channel count for small training presets; ``width=1.0`` gives the
reference sizes exactly. MSD channel counts are rounded to multiples of 16 so the grouped convs
(groups 4 and 16) still divide them.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from resyn_bench.systems.vocoder.layers import WNConv1d, WNConv2d

__all__ = [
    "LRELU_SLOPE",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "PeriodDiscriminator",
    "SNConv1d",
    "ScaleDiscriminator",
]

LRELU_SLOPE = 0.1


class SNConv1d(nn.Conv1d):
    """Conv1d with spectral normalisation (Miyato et al. 2018), one power iteration per training
    forward, using the parameter/buffer names of torch's legacy ``spectral_norm``.

    * ``weight_orig`` (parameter): the unnormalised weight;
    * ``weight_u`` [out] / ``weight_v`` [in*k/groups] (buffers): power-iteration vectors.

    The conv uses ``weight_orig / sigma`` with ``sigma = u^T W v`` (W = weight_orig as
    [out, -1]); u and v are updated without gradient in training mode and frozen in eval mode.
    """

    def __init__(self, *args, eps: float = 1e-12, **kwargs):
        super().__init__(*args, **kwargs)
        weight = self.weight.detach()
        del self.weight
        self.eps = eps
        self.weight_orig = nn.Parameter(weight.clone())
        h = weight.shape[0]
        w = weight[0].numel()
        self.register_buffer("weight_u", F.normalize(torch.randn(h), dim=0, eps=eps))
        self.register_buffer("weight_v", F.normalize(torch.randn(w), dim=0, eps=eps))

    def normalised_weight(self) -> torch.Tensor:
        mat = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        u, v = self.weight_u, self.weight_v
        if self.training:
            with torch.no_grad():
                v = F.normalize(mat.t() @ u, dim=0, eps=self.eps)
                u = F.normalize(mat @ v, dim=0, eps=self.eps)
                self.weight_u.copy_(u)
                self.weight_v.copy_(v)
            # the buffers may be overwritten by a later forward before backward runs
            u, v = u.clone(), v.clone()
        sigma = torch.dot(u, mat @ v)
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalised_weight(), self.bias)


def _scale(ch: int, width: float, multiple: int = 1) -> int:
    """Hidden channel count ``ch * width`` rounded to a positive multiple of ``multiple``."""
    if width == 1.0:
        return ch
    return max(multiple, round(ch * width / multiple) * multiple)


class PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator: fold the waveform by ``period`` and run a (k, 1) Conv2d stack."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, width: float = 1.0):
        super().__init__()
        self.period = int(period)
        chans = [1] + [_scale(c, width) for c in (32, 128, 512, 1024)]
        pad = (kernel_size - 1) // 2
        convs = [WNConv2d(chans[i], chans[i + 1], (kernel_size, 1), (stride, 1), padding=(pad, 0))
                 for i in range(4)]
        last = chans[-1]
        convs.append(WNConv2d(last, last, (kernel_size, 1), 1, padding=(pad, 0)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = WNConv2d(last, 1, (3, 1), 1, padding=(1, 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x`` [B, 1, T] -> (scores [B, N], feature maps)."""
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
            t = x.shape[-1]
        x = x.view(b, c, t // self.period, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return torch.flatten(x, 1, -1), fmaps


class ScaleDiscriminator(nn.Module):
    """One MSD sub-discriminator: a grouped, strided Conv1d stack on the (pooled) waveform."""

    # (in, out, kernel, stride, groups, padding) at width 1.0
    LAYERS = ((1, 128, 15, 1, 1, 7), (128, 128, 41, 2, 4, 20), (128, 256, 41, 2, 16, 20),
              (256, 512, 41, 4, 16, 20), (512, 1024, 41, 4, 16, 20), (1024, 1024, 41, 1, 16, 20),
              (1024, 1024, 5, 1, 1, 2))

    def __init__(self, use_spectral_norm: bool = False, width: float = 1.0):
        super().__init__()
        conv = SNConv1d if use_spectral_norm else WNConv1d
        convs = []
        for cin, cout, k, s, g, p in self.LAYERS:
            cin = cin if cin == 1 else _scale(cin, width, 16)
            cout = _scale(cout, width, 16)
            convs.append(conv(cin, cout, k, s, groups=g, padding=p))
        self.convs = nn.ModuleList(convs)
        self.conv_post = conv(convs[-1].out_channels, 1, 3, 1, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return torch.flatten(x, 1, -1), fmaps


def _as_b1t(y: torch.Tensor, name: str) -> torch.Tensor:
    if y.dim() == 2:
        y = y.unsqueeze(1)
    if y.dim() != 3 or y.shape[1] != 1:
        raise ValueError(f"{name} must be a waveform batch [B, 1, T] or [B, T], got {tuple(y.shape)}")
    return y


class _MultiDiscriminator(nn.Module):
    """Runs real and generated audio through every sub-discriminator in one batched pass."""

    def _sub_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """``(real_outs, fake_outs, real_fmaps, fake_fmaps)``, one entry per sub-discriminator.

        Real and generated batches are concatenated so each sub-discriminator runs once (the
        convolutions act per example, so results equal two separate calls, except that a
        spectral-norm layer does one power iteration instead of two).
        """
        y, y_hat = _as_b1t(y, "y"), _as_b1t(y_hat, "y_hat")
        if y.shape != y_hat.shape:
            raise ValueError(f"real {tuple(y.shape)} and generated {tuple(y_hat.shape)} audio differ in shape; "
                             f"crop both to the same length")
        n = y.shape[0]
        real_outs, fake_outs, real_fmaps, fake_fmaps = [], [], [], []
        for disc, x in zip(self.discriminators, self._sub_inputs(torch.cat([y, y_hat.to(y.dtype)], 0)), strict=True):
            out, fmaps = disc(x)
            real_outs.append(out[:n])
            fake_outs.append(out[n:])
            real_fmaps.append([f[:n] for f in fmaps])
            fake_fmaps.append([f[n:] for f in fmaps])
        return real_outs, fake_outs, real_fmaps, fake_fmaps


class MultiPeriodDiscriminator(_MultiDiscriminator):
    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), width: float = 1.0):
        super().__init__()
        self.periods = tuple(int(p) for p in periods)
        self.discriminators = nn.ModuleList([PeriodDiscriminator(p, width=width) for p in self.periods])

    def _sub_inputs(self, x):
        return [x] * len(self.discriminators)


class MultiScaleDiscriminator(_MultiDiscriminator):
    def __init__(self, width: float = 1.0, scales: int = 3):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [ScaleDiscriminator(use_spectral_norm=(i == 0), width=width) for i in range(scales)])
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2) for _ in range(scales - 1)])

    def _sub_inputs(self, x):
        inputs = [x]
        for pool in self.meanpools:
            x = pool(x)
            inputs.append(x)
        return inputs
