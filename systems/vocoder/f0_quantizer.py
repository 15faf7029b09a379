"""Jukebox-style 1-D VQ-VAE used to quantise normalised F0 contours (and, via its encoder, raw audio).

The speech-resynthesis system (Polyak et al. 2021) compresses the speaker-normalised 200 Hz F0
contour into 12.5 Hz codes with a small VQ-VAE built from the Jukebox components: a strided
convolutional encoder with dilated residual stacks, an EMA-updated codebook with random restarts
of unused codes, and a mirrored decoder with transposed convolutions. This module is our own
implementation written from the published architecture facts (docs/reference.md §3.4, §5.4,
§8.3). Module nesting and indices are chosen so that ``state_dict()`` keys are exactly the
reference checkpoint keys (e.g. ``encoder.level_blocks.0.model.0.1.model.2.model.3.weight``):
reference ``g_*`` files load with ``strict=True``.

Public pieces:

* :class:`Resnet1D` - stack of dilated residual blocks (ReLU, conv3, ReLU, conv1).
* :class:`JukeboxEncoder` / :class:`JukeboxDecoder` - scalar branch (``downs_t=[4]``,
  ``strides_t=[2]``: x16) and the list branch of the LibriLight content VQ-VAE
  (``downs_t=[[5, 1]]``, ``strides_t=[[2, 5]]``: five stride-2 then one stride-5 block, x160).
* :class:`EMABottleneck` (one codebook, buffer ``k``) and :class:`Bottleneck` (the
  ``level_blocks`` wrapper that gives the ``vq.level_blocks.0.k`` key).
* :class:`F0Quantizer` - encoder + bottleneck + decoder; ``from_config`` takes the reference
  config blocks ``f0_encoder_params`` / ``f0_vq_params`` / ``f0_decoder_params``.
* :func:`save_f0_quantizer` / :func:`load_f0_quantizer` - the reference checkpoint layout
  (``g_XXXXXXXX`` = ``{'generator', 'optim_g', 'steps', 'epoch'}`` plus ``config.json``).

Distributed training: when ``torch.distributed`` is initialised, the EMA statistics of each
training step (per-code sums of assigned vectors and assignment counts) are all-reduced (SUM) and
the random vectors used for initialisation/restarts are broadcast from rank 0, so every rank
applies the identical update and codebooks stay bit-identical without relying on DDP's buffer
broadcast. Every rank must therefore run the training-mode forward the same number of times
(validation is done in eval mode, which never touches the codebook).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "REFERENCE_F0_QUANTIZER_CONFIG",
    "Bottleneck",
    "DecoderConvBlock",
    "EMABottleneck",
    "EncoderConvBlock",
    "F0Quantizer",
    "JukeboxDecoder",
    "JukeboxEncoder",
    "ResConv1DBlock",
    "Resnet1D",
    "load_f0_quantizer",
    "save_f0_quantizer",
]

log = logging.getLogger(__name__)

# The nested "f0_quantizer" block of the reference vocoder configs (identical to the top-level
# blocks of configs/{LJSpeech,VCTK}/f0_vqvae.json).
_REF_CODEC = {
    "input_emb_width": 1,
    "output_emb_width": 128,
    "levels": 1,
    "downs_t": [4],
    "strides_t": [2],
    "width": 32,
    "depth": 4,
    "m_conv": 1.0,
    "dilation_growth_rate": 3,
}
REFERENCE_F0_QUANTIZER_CONFIG: dict = {
    "f0_vq_params": {"l_bins": 20, "emb_width": 128, "mu": 0.99, "levels": 1},
    "f0_encoder_params": dict(_REF_CODEC),
    "f0_decoder_params": dict(_REF_CODEC),
}


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------

def _stage_plan(downs_t, strides_t) -> list[int]:
    """Flatten one level's (downs_t, strides_t) into the list of per-stage strides.

    Scalar form: ``down=4, stride=2`` -> [2, 2, 2, 2]. List form (LibriLight content VQ-VAE):
    ``down=[5, 1], stride=[2, 5]`` -> [2, 2, 2, 2, 2, 5].
    """
    if isinstance(downs_t, (list, tuple)) != isinstance(strides_t, (list, tuple)):
        raise ValueError(f"downs_t {downs_t!r} and strides_t {strides_t!r} must both be ints or both lists")
    if isinstance(downs_t, (list, tuple)):
        if len(downs_t) != len(strides_t):
            raise ValueError(f"downs_t {downs_t!r} and strides_t {strides_t!r} differ in length")
        plan: list[int] = []
        for d, s in zip(downs_t, strides_t, strict=True):
            plan.extend([int(s)] * int(d))
        return plan
    return [int(strides_t)] * int(downs_t)


def _filter_and_pad(stride: int) -> tuple[int, int]:
    """Kernel/padding of a stride-``s`` stage: even s -> (2s, s/2); odd s -> (2s+1, s//2+1).

    Both make a strided conv map length L to L/s (L a multiple of s) and the transposed conv with
    the same numbers map L to s*L.
    """
    if stride % 2 == 0:
        return 2 * stride, stride // 2
    return 2 * stride + 1, stride // 2 + 1


class ResConv1DBlock(nn.Module):
    """x + conv1(relu(conv3_dilated(relu(x)))) * res_scale.

    ``model`` indices are fixed by the reference checkpoints: 0 ReLU, 1 dilated conv, 2 ReLU,
    3 pointwise conv.
    """

    def __init__(self, n_in: int, n_state: int, dilation: int = 1, zero_out: bool = False,
                 res_scale: float = 1.0):
        super().__init__()
        self.dilation = dilation
        self.model = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(n_in, n_state, 3, 1, dilation, dilation),
            nn.ReLU(),
            nn.Conv1d(n_state, n_in, 1, 1, 0),
        )
        if zero_out:
            nn.init.zeros_(self.model[3].weight)
            nn.init.zeros_(self.model[3].bias)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.model(x)


class Resnet1D(nn.Module):
    """``depth`` residual blocks with dilation growth**d (or growth**(d % cycle))."""

    def __init__(self, n_in: int, depth: int, m_conv: float = 1.0, dilation_growth_rate: int = 1,
                 dilation_cycle: int | None = None, zero_out: bool = False, res_scale: bool = False,
                 reverse_dilation: bool = False):
        super().__init__()
        n_state = int(m_conv * n_in)
        scale = 1.0 / math.sqrt(depth) if res_scale else 1.0
        blocks = []
        for d in range(depth):
            exponent = d if dilation_cycle is None else d % dilation_cycle
            blocks.append(ResConv1DBlock(n_in, n_state, dilation_growth_rate ** exponent,
                                         zero_out=zero_out, res_scale=scale))
        if reverse_dilation:
            blocks = blocks[::-1]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class EncoderConvBlock(nn.Module):
    """[strided Conv1d -> Resnet1D] per stage, then Conv1d(width, output_emb_width, 3, 1, 1)."""

    def __init__(self, input_emb_width: int, output_emb_width: int, downs_t, strides_t,
                 width: int, depth: int, m_conv: float, dilation_growth_rate: int = 1,
                 dilation_cycle: int | None = None, zero_out: bool = False, res_scale: bool = False):
        super().__init__()
        stages = []
        for i, stride in enumerate(_stage_plan(downs_t, strides_t)):
            k, p = _filter_and_pad(stride)
            stages.append(nn.Sequential(
                nn.Conv1d(input_emb_width if i == 0 else width, width, k, stride, p),
                Resnet1D(width, depth, m_conv, dilation_growth_rate, dilation_cycle, zero_out, res_scale),
            ))
        # no stages: the final conv must still accept the input width
        last_in = width if stages else input_emb_width
        stages.append(nn.Conv1d(last_in, output_emb_width, 3, 1, 1))
        self.model = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DecoderConvBlock(nn.Module):
    """Conv1d(code_width, width, 3, 1, 1), then [Resnet1D -> ConvTranspose1d] per stage.

    The last transposed conv outputs ``out_width`` channels (128 in the reference; the
    :class:`JukeboxDecoder` ``out`` conv then maps them to ``input_emb_width``).
    """

    def __init__(self, code_width: int, out_width: int, downs_t, strides_t, width: int, depth: int,
                 m_conv: float, dilation_growth_rate: int = 1, dilation_cycle: int | None = None,
                 zero_out: bool = False, res_scale: bool = False, reverse_decoder_dilation: bool = False):
        super().__init__()
        plan = _stage_plan(downs_t, strides_t)
        # upsampling mirrors the encoder: the last encoder stage is undone first
        plan = plan[::-1]
        stages: list[nn.Module] = [nn.Conv1d(code_width, width if plan else out_width, 3, 1, 1)]
        for i, stride in enumerate(plan):
            k, p = _filter_and_pad(stride)
            stages.append(nn.Sequential(
                Resnet1D(width, depth, m_conv, dilation_growth_rate, dilation_cycle, zero_out,
                         res_scale, reverse_dilation=reverse_decoder_dilation),
                nn.ConvTranspose1d(width, out_width if i == len(plan) - 1 else width, k, stride, p),
            ))
        self.model = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_BLOCK_KEYS = {"width", "depth", "m_conv", "dilation_growth_rate", "dilation_cycle", "zero_out", "res_scale"}
# accepted for config compatibility, no effect on the maths (gradient checkpointing in Jukebox)
_IGNORED_KEYS = {"checkpoint_res"}


def _check_levels(levels: int, downs_t, strides_t) -> tuple[Any, Any]:
    if int(levels) != 1:
        raise ValueError(
            f"levels={levels}: only single-level VQ-VAEs are supported (every reference config uses "
            f"levels 1); set 'levels': 1")
    if not isinstance(downs_t, (list, tuple)) or len(downs_t) != 1 or \
            not isinstance(strides_t, (list, tuple)) or len(strides_t) != 1:
        raise ValueError(
            f"downs_t {downs_t!r} / strides_t {strides_t!r}: expected one entry per level, e.g. "
            f"downs_t [4], strides_t [2] (F0) or downs_t [[5, 1]], strides_t [[2, 5]] (LibriLight)")
    return downs_t[0], strides_t[0]


def _hop(downs_t, strides_t) -> int:
    h = 1
    for s in _stage_plan(downs_t, strides_t):
        h *= s
    return h


class JukeboxEncoder(nn.Module):
    """Jukebox ``Encoder`` (single level): ``[B, input_emb_width, T] -> [B, output_emb_width, T/hop]``.

    ``downs_t=[4], strides_t=[2]`` gives the F0 encoder (hop 16); ``downs_t=[[5, 1]],
    strides_t=[[2, 5]]`` the LibriLight content encoder (hop 160: model.0..4 stride 2 with kernel
    4 pad 1, model.5 stride 5 with kernel 11 pad 3, model.6 the final Conv1d(32, 128, 3)).
    The output length is floor(T / hop) for the reference strides.
    """

    def __init__(self, input_emb_width: int = 1, output_emb_width: int = 128, levels: int = 1,
                 downs_t: Sequence = (4,), strides_t: Sequence = (2,), width: int = 32, depth: int = 4,
                 m_conv: float = 1.0, dilation_growth_rate: int = 3, dilation_cycle: int | None = None,
                 zero_out: bool = False, res_scale: bool = False, **ignored):
        super().__init__()
        unknown = set(ignored) - _IGNORED_KEYS
        if unknown:
            raise TypeError(f"JukeboxEncoder: unknown config key(s) {sorted(unknown)}")
        down, stride = _check_levels(levels, downs_t, strides_t)
        self.input_emb_width = input_emb_width
        self.output_emb_width = output_emb_width
        self.hop_factor = _hop(down, stride)
        self.level_blocks = nn.ModuleList([EncoderConvBlock(
            input_emb_width, output_emb_width, down, stride, width, depth, m_conv,
            dilation_growth_rate, dilation_cycle, zero_out, res_scale)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.input_emb_width:
            raise ValueError(f"encoder input must be [B, {self.input_emb_width}, T], got {tuple(x.shape)}")
        return self.level_blocks[0](x)


class JukeboxDecoder(nn.Module):
    """Jukebox ``Decoder`` (single level): ``[B, output_emb_width, T'] -> [B, input_emb_width, T'*hop]``."""

    def __init__(self, input_emb_width: int = 1, output_emb_width: int = 128, levels: int = 1,
                 downs_t: Sequence = (4,), strides_t: Sequence = (2,), width: int = 32, depth: int = 4,
                 m_conv: float = 1.0, dilation_growth_rate: int = 3, dilation_cycle: int | None = None,
                 zero_out: bool = False, res_scale: bool = False, reverse_decoder_dilation: bool = False,
                 **ignored):
        super().__init__()
        unknown = set(ignored) - _IGNORED_KEYS
        if unknown:
            raise TypeError(f"JukeboxDecoder: unknown config key(s) {sorted(unknown)}")
        down, stride = _check_levels(levels, downs_t, strides_t)
        self.input_emb_width = input_emb_width
        self.output_emb_width = output_emb_width
        self.hop_factor = _hop(down, stride)
        self.level_blocks = nn.ModuleList([DecoderConvBlock(
            output_emb_width, output_emb_width, down, stride, width, depth, m_conv,
            dilation_growth_rate, dilation_cycle, zero_out, res_scale, reverse_decoder_dilation)])
        self.out = nn.Conv1d(output_emb_width, input_emb_width, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.output_emb_width:
            raise ValueError(f"decoder input must be [B, {self.output_emb_width}, T], got {tuple(x.shape)}")
        return self.out(self.level_blocks[0](x))


# --------------------------------------------------------------------------------------------
# codebook
# --------------------------------------------------------------------------------------------

def _dist_active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class EMABottleneck(nn.Module):
    """One EMA-updated codebook (Jukebox ``BottleneckBlock`` semantics).

    * ``k`` [l_bins, emb_width]: the codebook, the only persistent buffer (checkpoint key ``k``).
      Created on CPU; move the module with ``.to(device)`` as usual.
    * ``k_sum`` / ``k_elem``: EMA of per-code sums of assigned vectors and of assignment counts
      (non-persistent buffers: they follow ``.to()`` but are not saved, as in the reference).
    * First training forward: ``k`` is initialised from randomly chosen encoder output vectors
      (tiled with Gaussian noise of std 0.01/sqrt(emb_width) when there are fewer vectors than
      codes); ``k_sum = k``, ``k_elem = 1``.
    * Every training forward (after quantising with the current codebook):
      ``k_sum <- mu k_sum + (1-mu) sum_assigned_x``, ``k_elem <- mu k_elem + (1-mu) counts``; codes
      with ``k_elem >= threshold`` become ``k_sum / k_elem``, the others are restarted at random
      current encoder outputs.
    * Loading a state dict that contains ``k`` marks the codebook initialised (``k_sum = k``,
      ``k_elem = 1``) so fine-tuning continues from the loaded codes instead of re-initialising.
    * Eval mode never changes the codebook.
    """

    def __init__(self, l_bins: int, emb_width: int, mu: float = 0.99, threshold: float = 1.0,
                 sync_across_ranks: bool = True):
        super().__init__()
        self.l_bins = int(l_bins)
        self.emb_width = int(emb_width)
        self.mu = float(mu)
        self.threshold = float(threshold)
        self.sync_across_ranks = sync_across_ranks
        self.register_buffer("k", torch.zeros(self.l_bins, self.emb_width))
        self.register_buffer("k_sum", torch.zeros(self.l_bins, self.emb_width), persistent=False)
        self.register_buffer("k_elem", torch.ones(self.l_bins), persistent=False)
        self.initialised = False

    # ---- state handling ----
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if prefix + "k" in state_dict:
            self.restore_k()

    @torch.no_grad()
    def restore_k(self) -> None:
        """Treat the current ``k`` as a trained codebook: reset the EMA state around it."""
        self.k_sum.copy_(self.k)
        self.k_elem.fill_(1.0)
        self.initialised = True

    def _tile(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n < self.l_bins:
            repeats = (self.l_bins + n - 1) // n
            x = x.repeat(repeats, 1)
            x = x + torch.randn_like(x) * (0.01 / math.sqrt(self.emb_width))
        return x

    def _random_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """``l_bins`` random rows of (tiled) ``x``; identical on every rank (rank 0's draw)."""
        y = self._tile(x)
        picked = y[torch.randperm(y.shape[0], device=y.device)[: self.l_bins]].contiguous()
        if self.sync_across_ranks and _dist_active():
            torch.distributed.broadcast(picked, src=0)
        return picked

    @torch.no_grad()
    def init_k(self, x: torch.Tensor) -> None:
        """Initialise the codebook from encoder outputs ``x`` [N, emb_width] (float32)."""
        self.k.copy_(self._random_vectors(x))
        self.k_sum.copy_(self.k)
        self.k_elem.fill_(1.0)
        self.initialised = True

    @torch.no_grad()
    def update_k(self, x: torch.Tensor, idx: torch.Tensor) -> dict:
        """One EMA step from vectors ``x`` [N, emb_width] assigned to codes ``idx`` [N]."""
        onehot = torch.zeros(self.l_bins, x.shape[0], device=x.device, dtype=x.dtype)
        onehot.scatter_(0, idx.view(1, -1), 1.0)
        batch_sum = onehot @ x                      # [l_bins, emb_width]
        batch_count = onehot.sum(dim=1)             # [l_bins]
        restart = self._random_vectors(x)
        if self.sync_across_ranks and _dist_active():
            # sum over ranks: the EMA then sees the global batch, and all ranks stay identical
            torch.distributed.all_reduce(batch_sum)
            torch.distributed.all_reduce(batch_count)
        old_k = self.k.clone()
        self.k_sum.mul_(self.mu).add_(batch_sum, alpha=1.0 - self.mu)
        self.k_elem.mul_(self.mu).add_(batch_count, alpha=1.0 - self.mu)
        used = (self.k_elem >= self.threshold).to(x.dtype).unsqueeze(1)
        self.k.copy_(used * (self.k_sum / self.k_elem.unsqueeze(1)) + (1.0 - used) * restart)
        prob = batch_count / batch_count.sum().clamp_min(1.0)
        entropy = -(prob * torch.log(prob + 1e-8)).sum()
        return {
            "entropy": entropy,
            "used_curr": (batch_count >= self.threshold).sum(),
            "usage": used.sum(),
            "dk": torch.linalg.norm(self.k - old_k) / math.sqrt(self.k.numel()),
        }

    # ---- quantisation ----
    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.emb_width:
            raise ValueError(f"bottleneck input must be [B, {self.emb_width}, T], got {tuple(x.shape)}")
        return x.permute(0, 2, 1).reshape(-1, self.emb_width).float()

    def _nearest(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.k.float()
        dist = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ k.t() + k.pow(2).sum(1).unsqueeze(0)
        min_dist, idx = dist.min(dim=1)
        return idx, min_dist.mean()

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices [B, T] of ``x`` [B, emb_width, T]; never updates the codebook."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            idx, _ = self._nearest(self._flatten(x))
        return idx.view(x.shape[0], x.shape[2])

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """Codebook vectors [B, emb_width, T] for indices [B, T]."""
        return F.embedding(idx, self.k).permute(0, 2, 1).contiguous()

    def forward(self, x: torch.Tensor, update_k: bool = True):
        """Quantise ``x`` [B, emb_width, T].

        Returns ``(idx [B, T], x_q [B, emb_width, T], commit_loss, metrics)``. In training mode
        ``x_q`` is straight-through (``x + (x_q - x).detach()``) and, with ``update_k``, the
        codebook takes one EMA step *after* quantising with the current codes; in eval mode
        ``x_q`` is detached and nothing changes. Distances and EMA statistics are computed in
        float32 with autocast disabled (half-precision distances would flip assignments).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._forward_fp32(x, update_k)

    def _forward_fp32(self, x: torch.Tensor, update_k: bool):
        B, _, T = x.shape
        flat = self._flatten(x)
        training_update = self.training and update_k
        if training_update and not self.initialised:
            self.init_k(flat.detach())
        idx, fit = self._nearest(flat.detach())
        xq_flat = F.embedding(idx, self.k)
        prenorm = torch.linalg.norm(flat.detach() - flat.detach().mean(0)) / math.sqrt(flat.numel())
        metrics = {"fit": fit.detach(), "prenorm": prenorm}
        if training_update:
            metrics.update(self.update_k(flat.detach(), idx))
        x_q = xq_flat.view(B, T, self.emb_width).permute(0, 2, 1).to(x.dtype)
        # ||sg(x_q) - x||^2 / (B * T * emb_width)
        commit_loss = (x_q.detach().float() - x.float()).pow(2).sum() / x.numel()
        if self.training:
            x_q = x + (x_q - x).detach()
        else:
            x_q = x_q.detach()
        return idx.view(B, T), x_q, commit_loss, metrics


class Bottleneck(nn.Module):
    """``level_blocks`` wrapper (keys ``<prefix>.level_blocks.0.k``) around one :class:`EMABottleneck`."""

    def __init__(self, l_bins: int = 20, emb_width: int = 128, mu: float = 0.99, levels: int = 1,
                 threshold: float = 1.0, sync_across_ranks: bool = True):
        super().__init__()
        if int(levels) != 1:
            raise ValueError(f"levels={levels}: only single-level codebooks are supported; set 'levels': 1")
        self.level_blocks = nn.ModuleList([EMABottleneck(l_bins, emb_width, mu, threshold, sync_across_ranks)])

    @property
    def block(self) -> EMABottleneck:
        return self.level_blocks[0]

    def forward(self, x: torch.Tensor, update_k: bool = True):
        return self.block(x, update_k=update_k)


# --------------------------------------------------------------------------------------------
# the F0 quantizer
# --------------------------------------------------------------------------------------------

def _quantizer_block(cfg: dict) -> dict:
    """The dict holding f0_encoder_params/f0_vq_params/f0_decoder_params (top level or nested)."""
    if "f0_encoder_params" in cfg:
        return cfg
    if isinstance(cfg.get("f0_quantizer"), dict) and "f0_encoder_params" in cfg["f0_quantizer"]:
        return cfg["f0_quantizer"]
    raise KeyError(
        "F0 quantizer config needs the blocks 'f0_encoder_params', 'f0_vq_params' and "
        "'f0_decoder_params' (top level, as in configs/*/f0_vqvae.json, or nested under "
        "'f0_quantizer', as in the vocoder configs); got keys " + repr(sorted(cfg)))


class F0Quantizer(nn.Module):
    """VQ-VAE over normalised F0 ``[B, 1, T]`` at 200 Hz -> codes at 200/hop_factor Hz.

    Submodules ``encoder`` / ``vq`` / ``decoder`` give the reference key prefixes.
    Training objective (done by the trainer): ``mse(f0_hat, f0) + lambda_commit * commit_loss``
    with ``lambda_commit = 0.02``.
    """

    def __init__(self, encoder_params: dict, vq_params: dict, decoder_params: dict):
        super().__init__()
        self.encoder = JukeboxEncoder(**encoder_params)
        self.vq = Bottleneck(**vq_params)
        self.decoder = JukeboxDecoder(**decoder_params)
        if self.encoder.output_emb_width != self.vq.block.emb_width or \
                self.decoder.output_emb_width != self.vq.block.emb_width:
            raise ValueError(
                f"encoder output_emb_width ({self.encoder.output_emb_width}), f0_vq_params emb_width "
                f"({self.vq.block.emb_width}) and decoder output_emb_width "
                f"({self.decoder.output_emb_width}) must be equal")
        if self.encoder.hop_factor != self.decoder.hop_factor:
            raise ValueError("encoder and decoder must use the same downs_t/strides_t")
        self.config = {"f0_encoder_params": dict(encoder_params), "f0_vq_params": dict(vq_params),
                       "f0_decoder_params": dict(decoder_params)}

    @classmethod
    def from_config(cls, cfg: dict | None = None) -> F0Quantizer:
        """Build from reference config keys (``None`` -> the reference F0 quantizer)."""
        block = _quantizer_block(copy.deepcopy(cfg) if cfg is not None else REFERENCE_F0_QUANTIZER_CONFIG)
        return cls(block["f0_encoder_params"], block["f0_vq_params"], block["f0_decoder_params"])

    @property
    def hop_factor(self) -> int:
        """F0 frames per code (16 for the reference: 200 Hz -> 12.5 Hz)."""
        return self.encoder.hop_factor

    @property
    def num_codes(self) -> int:
        return self.vq.block.l_bins

    @property
    def codebook(self) -> torch.Tensor:
        return self.vq.block.k

    def forward(self, f0: torch.Tensor):
        """``f0`` [B, 1, T] (T a multiple of ``hop_factor``) -> ``(f0_hat [B, 1, T], commit_loss, info)``.

        ``info``: ``indices`` [B, T/hop] plus codebook metrics (``fit``, ``prenorm``; in training
        also ``entropy``, ``used_curr``, ``usage``, ``dk``), all detached tensors.
        """
        if f0.dim() != 3 or f0.shape[1] != self.encoder.input_emb_width:
            raise ValueError(f"f0 must be [B, {self.encoder.input_emb_width}, T], got {tuple(f0.shape)}")
        if f0.shape[-1] % self.hop_factor:
            raise ValueError(
                f"F0 length {f0.shape[-1]} is not a multiple of {self.hop_factor}; crop or pad it "
                f"(the reference trains on 16640-sample crops = 208 frames)")
        h = self.encoder(f0)
        idx, h_q, commit_loss, metrics = self.vq(h)
        f0_hat = self.decoder(h_q)
        info = {"indices": idx, **metrics}
        return f0_hat, commit_loss, info

    @torch.no_grad()
    def encode_indices(self, f0: torch.Tensor) -> torch.Tensor:
        """Code indices [B, T // hop_factor] (LongTensor); never updates the codebook.

        Any T >= hop_factor works (trailing frames that do not fill a code are dropped by the
        strided convolutions).
        """
        if f0.dim() == 2:
            f0 = f0.unsqueeze(1)
        return self.vq.block.encode(self.encoder(f0))

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """Decoded contour [B, 1, hop_factor * T_codes] from indices [B, T_codes]."""
        if idx.dim() == 1:
            idx = idx.unsqueeze(0)
        return self.decoder(self.vq.block.decode(idx.long()))


# --------------------------------------------------------------------------------------------
# checkpoints (reference layout)
# --------------------------------------------------------------------------------------------

_CKPT_RE = re.compile(r"^g_(\d+)$")


def save_f0_quantizer(ckpt_dir, step: int, model: F0Quantizer, config: dict | None = None,
                      optim_state: dict | None = None, epoch: int = 0) -> Path:
    """Write ``ckpt_dir/g_{step:08d}`` = ``{'generator', 'optim_g', 'steps', 'epoch'}`` and
    ``ckpt_dir/config.json`` (``config`` or the model's own quantizer config), both atomically.

    Returns the checkpoint path. Unwraps DDP/compiled modules (``.module`` / ``._orig_mod``).
    """
    ckpt_dir = Path(ckpt_dir)
    inner = model
    for attr in ("module", "_orig_mod"):
        inner = getattr(inner, attr, inner)
    config = config if config is not None else getattr(inner, "config", None)
    if config is None:
        raise ValueError("save_f0_quantizer needs a config dict (the model has none)")
    state = {"generator": {k: v.detach().cpu() for k, v in inner.state_dict().items()},
             "optim_g": optim_state, "steps": int(step), "epoch": int(epoch)}
    path = ckpt_dir / f"g_{int(step):08d}"
    from resyn_bench.core.atomic import atomic_open, write_text_atomic

    with atomic_open(path) as fh:
        torch.save(state, fh)
    write_text_atomic(ckpt_dir / "config.json", json.dumps(config, indent=4, sort_keys=False))
    return path


def _latest_g(ckpt_dir: Path) -> Path:
    found = sorted(p for p in ckpt_dir.iterdir() if p.is_file() and _CKPT_RE.match(p.name))
    if not found:
        raise FileNotFoundError(
            f"no F0 quantizer checkpoint g_XXXXXXXX in {ckpt_dir}; the reference vocoder configs expect "
            f"checkpoints/{{lj,vctk}}_f0_vq/g_00400000 (train one with the F0 VQ-VAE trainer)")
    return found[-1]


def _extract_state_dict(obj: Any, path: Path) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("generator"), dict):
        sd = obj["generator"]
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        raise ValueError(f"{path}: not an F0 quantizer checkpoint (expected a dict with a 'generator' state dict)")
    if any(k.startswith("quantizer.") for k in sd):
        # a vocoder generator file: its F0 quantizer lives under the 'quantizer.' prefix
        sd = {k[len("quantizer."):]: v for k, v in sd.items() if k.startswith("quantizer.")}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_f0_quantizer(path_or_dir, trusted_sha256: str | Iterable[str] = ()) -> tuple[F0Quantizer, dict, int]:
    """Load a reference-layout F0 quantizer checkpoint.

    ``path_or_dir``: a ``g_XXXXXXXX`` file (``config.json`` read from its folder) or a checkpoint
    folder (lexicographically last ``g_*``). Without ``config.json`` the reference F0 quantizer
    config is assumed (and must match the weights). Files are loaded with the weights-only
    unpickler; a file that needs full unpickling is loaded only if its sha256 is in
    ``trusted_sha256``. Also accepts a vocoder generator file (keys ``quantizer.*``).

    Returns ``(model in eval mode on CPU, config dict, step)``.
    """
    from resyn_bench.safeload import (
        UnsafeCheckpointError,
        load_trusted_pickle,
        safe_torch_load,
    )

    p = Path(path_or_dir)
    if p.is_dir():
        ckpt = _latest_g(p)
    elif p.is_file():
        ckpt = p
    else:
        raise FileNotFoundError(f"F0 quantizer checkpoint not found: {p}")
    cfg_path = ckpt.parent / "config.json"
    if cfg_path.is_file():
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    else:
        log.warning("%s has no config.json beside it; assuming the reference F0 quantizer config", ckpt)
        config = copy.deepcopy(REFERENCE_F0_QUANTIZER_CONFIG)
    try:
        obj = safe_torch_load(ckpt, map_location="cpu")
    except UnsafeCheckpointError:
        if not trusted_sha256:
            raise
        obj = load_trusted_pickle(ckpt, trusted_sha256, loader="torch", map_location="cpu")
    sd = _extract_state_dict(obj, ckpt)
    model = F0Quantizer.from_config(config)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise RuntimeError(f"{ckpt}: weights do not match the F0 quantizer config in {cfg_path}: {exc}") from None
    step = obj.get("steps") if isinstance(obj, dict) else None
    if step is None:
        m = _CKPT_RE.match(ckpt.name)
        step = int(m.group(1)) if m else 0
    model.eval()
    return model, config, int(step)
