"""WavLM (Large by default): the HuBERT/wav2vec 2.0 encoder with gated relative position bias.

Used as the front end of the WavLM + ECAPA-TDNN speaker verifier (UniSpeech). Parameter names
are those of the unilm/s3prl ``WavLM`` module (the layout inside ``wavlm_large_finetune.pth``
under ``feature_extract.model.``); the conv front end, feature projection and convolutional
positional embedding are :mod:`resyn_bench.nn.hubert`'s.

Differences from HuBERT, as in the WavLM paper and its code:

- self-attention adds a relative position bias: block 0 owns an embedding
  ``self_attn.relative_attention_bias`` [num_buckets, heads] indexed by bucketed relative
  positions (bidirectional T5-style buckets: half the buckets per direction, exact below
  ``num_buckets // 4``, logarithmic up to ``max_distance``); the same (ungated) bias is passed
  on to every later block;
- each block gates that bias per head and query frame (``gru_rel_pos``): with the block's
  attention input split into heads h [B, H, T, d], ``a, b = sigmoid(sum over groups of 4 of
  grep_linear(h))`` (8 outputs -> 2), gate = ``a * (b * grep_a - 1) + 2``, and the scores are
  ``q k^T / sqrt(d) + gate * bias``.

``hidden_states(wav)`` returns what s3prl's WavLM expert exposes as ``hidden_states`` (hooks on
the input of every block plus the encoder output): [x_0, out_1, ..., out_{L-1}, LN(out_L)]
for a pre-LN model, L + 1 tensors.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from resyn_bench.nn.hubert import (
    HubertArch,
    _DropLast,
    _FeatureExtractor,
    _WeightNormConv1d,
)

__all__ = ["WavLMArch", "WavLMModel", "legacy_weight_norm_names", "relative_position_buckets",
           "wavlm_arch_from_tensors"]

_BASE_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


@dataclass
class WavLMArch(HubertArch):
    """Sizes of a WavLM model (defaults: WavLM Large)."""

    extractor_mode: str = "layer_norm"
    embed_dim: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    ffn_dim: int = 4096
    layer_norm_first: bool = True
    normalize: bool = True
    num_buckets: int = 320
    max_distance: int = 800


def relative_position_buckets(t: int, num_buckets: int, max_distance: int,
                              device=None) -> torch.Tensor:
    """[T, T] bucket index of key position j relative to query position i (j - i)."""
    rel = torch.arange(t, device=device)[None, :] - torch.arange(t, device=device)[:, None]
    half = num_buckets // 2
    out = (rel > 0).long() * half
    dist = rel.abs()
    exact = half // 2
    # log-spaced buckets beyond `exact`, capped at the last bucket of this direction
    far = exact + (torch.log(dist.float().clamp(min=1) / exact)
                   / math.log(max_distance / exact) * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return out + torch.where(dist < exact, dist, far)


class _GatedRelAttention(nn.Module):
    def __init__(self, arch: WavLMArch, has_bias: bool):
        super().__init__()
        d, h = arch.embed_dim, arch.num_heads
        self.heads, self.arch = h, arch
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.grep_linear = nn.Linear(d // h, 8)
        self.grep_a = nn.Parameter(torch.ones(1, h, 1, 1))
        if has_bias:
            self.relative_attention_bias = nn.Embedding(arch.num_buckets, h)

    def position_bias(self, t: int) -> torch.Tensor:  # [H, T, T]
        emb = self.relative_attention_bias
        idx = relative_position_buckets(t, self.arch.num_buckets, self.arch.max_distance,
                                        emb.weight.device)
        return emb(idx).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None):
        b, t, d = x.shape
        if bias is None:
            bias = self.position_bias(t)
        heads = x.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # [B, H, T, d_h]
        g = torch.sigmoid(self.grep_linear(heads).view(b, self.heads, t, 2, 4).sum(-1))
        gate = g[..., :1] * (g[..., 1:] * self.grep_a - 1.0) + 2.0         # [B, H, T, 1]

        def split(y):
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                           split(self.v_proj(x)), attn_mask=gate * bias[None])
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d)), bias


class _Block(nn.Module):
    def __init__(self, arch: WavLMArch, has_bias: bool):
        super().__init__()
        d, eps = arch.embed_dim, arch.layer_norm_eps
        self.layer_norm_first = arch.layer_norm_first
        self.self_attn = _GatedRelAttention(arch, has_bias)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, arch.ffn_dim)
        self.fc2 = nn.Linear(arch.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x, bias):
        if self.layer_norm_first:
            a, bias = self.self_attn(self.self_attn_layer_norm(x), bias)
            x = x + a
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x)))), bias
        a, bias = self.self_attn(x, bias)
        x = self.self_attn_layer_norm(x + a)
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x)))), bias


class _Encoder(nn.Module):
    def __init__(self, arch: WavLMArch):
        super().__init__()
        self.pos_conv = nn.Sequential(
            _WeightNormConv1d(arch.embed_dim, arch.pos_conv_kernel, arch.pos_conv_groups),
            _DropLast(arch.pos_conv_kernel), nn.GELU())
        self.layer_norm = nn.LayerNorm(arch.embed_dim, eps=arch.layer_norm_eps)
        self.layers = nn.ModuleList(_Block(arch, i == 0) for i in range(arch.num_layers))


class WavLMModel(nn.Module):
    """WavLM encoder; ``hidden_states(wav [B, N])`` -> list of L + 1 [B, T, D] tensors."""

    def __init__(self, arch: WavLMArch | None = None):
        super().__init__()
        self.arch = arch = arch or WavLMArch()
        self.feature_extractor = _FeatureExtractor(arch)
        self.layer_norm = nn.LayerNorm(arch.conv_layers[-1][0], eps=arch.layer_norm_eps)
        self.post_extract_proj = nn.Linear(arch.conv_layers[-1][0], arch.embed_dim)
        self.encoder = _Encoder(arch)

    def hidden_states(self, wav: torch.Tensor, normalize: bool | None = None) -> list:
        if self.arch.normalize if normalize is None else normalize:
            wav = F.layer_norm(wav, wav.shape[-1:])
        x = self.post_extract_proj(self.layer_norm(self.feature_extractor(wav).transpose(1, 2)))
        enc = self.encoder
        x = x + enc.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.arch.layer_norm_first:
            x = enc.layer_norm(x)
        states, bias = [x], None
        for block in enc.layers:
            x, bias = block(x, bias)
            states.append(x)
        if self.arch.layer_norm_first:
            states[-1] = enc.layer_norm(x)
        return states

    def load_state_dict_strict(self, sd: dict, what: str = "WavLM") -> None:
        """Load unilm/s3prl-named tensors; pre-training leftovers (mask_emb, label_embs_concat,
        final_proj, quantizer) are ignored, anything else missing or extra is an error."""
        own = self.state_dict()
        skip = re.compile(r"^(mask_emb|label_embs_concat|final_proj\.|quantizer\.|project_q\.)")
        keep = {k: v for k, v in sd.items() if not skip.match(k)}
        missing = sorted(set(own) - set(keep))
        extra = sorted(set(keep) - set(own))
        if missing or extra:
            raise KeyError(f"{what}: state dict does not match a WavLM of sizes "
                           f"{self.arch.to_dict()}: missing {missing[:5]}, unexpected {extra[:5]}")
        for k, v in keep.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(f"{what}: tensor {k} has shape {tuple(v.shape)}, the model "
                                 f"expects {tuple(own[k].shape)}")
        self.load_state_dict({k: v.float() for k, v in keep.items()}, strict=True)


def legacy_weight_norm_names(sd: dict) -> dict:
    """``pos_conv.0.parametrizations.weight.original0/1`` (torch's newer weight norm, if a file
    was re-saved with it) -> the ``weight_g`` / ``weight_v`` names of the published files."""
    out = {}
    for k, v in sd.items():
        k = k.replace("parametrizations.weight.original0", "weight_g")
        out[k.replace("parametrizations.weight.original1", "weight_v")] = v
    return out


def wavlm_arch_from_tensors(sd: dict) -> WavLMArch:
    """WavLM sizes read off unilm-named tensors (heads from the relative-bias embedding; conv
    strides: the standard ones, which every released WavLM uses)."""
    convs, i = [], 0
    while f"feature_extractor.conv_layers.{i}.0.weight" in sd:
        w = sd[f"feature_extractor.conv_layers.{i}.0.weight"]
        convs.append((int(w.shape[0]), int(w.shape[2])))
        i += 1
    if tuple(k for _, k in convs) != tuple(k for _, k, _ in _BASE_CONV):
        raise ValueError(f"unsupported WavLM conv kernels {[k for _, k in convs]}")
    d = int(sd["post_extract_proj.weight"].shape[0])
    rel = sd["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    v = sd["encoder.pos_conv.0.weight_v"]
    n_layers = 1 + max(int(m.group(1)) for k in sd
                       if (m := re.match(r"encoder\.layers\.(\d+)\.", k)))
    layer_norm_mode = "feature_extractor.conv_layers.0.2.1.weight" in sd
    return WavLMArch(
        conv_layers=tuple((c, k, s) for (c, k), (_, _, s) in zip(convs, _BASE_CONV, strict=True)),
        extractor_mode="layer_norm" if layer_norm_mode else "default",
        conv_bias="feature_extractor.conv_layers.0.0.bias" in sd,
        embed_dim=d, num_layers=n_layers, num_heads=int(rel.shape[1]),
        ffn_dim=int(sd["encoder.layers.0.fc1.weight"].shape[0]),
        pos_conv_kernel=int(v.shape[2]), pos_conv_groups=d // int(v.shape[1]),
        # WavLM Large / Base+ as released: pre-LN and waveform normalisation go together
        layer_norm_first=layer_norm_mode, normalize=layer_norm_mode,
        num_buckets=int(rel.shape[0]))
