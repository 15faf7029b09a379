"""HuBERT (Base) feature extractor: an in-house module that reads the official fairseq checkpoint
(``hubert_base_ls960.pt``) and the Hugging Face format, and computes only the transformer layers
it is asked for.

Architecture (wav2vec 2.0 family, as in fairseq's HuBERT and ``transformers.HubertModel``):

- convolutional feature extractor: ``conv_layers`` = (dim, kernel, stride) per layer, by
  default 512 x [(10,5), (3,2) x 4, (2,2) x 2] without bias, GELU after each. Extractor mode
  ``"default"`` puts a GroupNorm with one group per channel (i.e. each channel normalised over
  time) after the first conv only; ``"layer_norm"`` puts a LayerNorm over channels after every
  conv. Receptive field 400 samples, stride 320: ``floor((N - 400) / 320) + 1`` frames.
- LayerNorm over the 512 conv channels, then ``post_extract_proj`` 512 -> 768.
- convolutional positional embedding: grouped Conv1d (kernel 128, 16 groups, padding 64) with
  weight norm over dim 2 (``weight_g`` of shape [1, 1, 128]), the extra last frame an even
  kernel produces removed, GELU; added to its input.
- transformer encoder of ``num_layers`` blocks (768-d, 12 heads, FFN 3072, GELU). Post-LN
  (``layer_norm_first`` False, HuBERT Base): ``encoder.layer_norm`` is applied *before* the
  first block and each block is x = LN(x + attn(x)); x = LN(x + fc2(gelu(fc1(x)))). Pre-LN
  (HuBERT Large): LN inside the residual branches, ``encoder.layer_norm`` after the last block
  only when the full stack is requested without a layer (fairseq ``output_layer=None``).

``forward(wav, output_layer=L)`` returns the output of transformer block L (1-based), i.e.
fairseq ``extract_features(output_layer=L)`` and Hugging Face ``hidden_states[L]``; blocks
after L are not run and, when the model is built with ``max_layer=L``, not even built.

Long inputs are processed in chunks of at most ``max_chunk`` samples (100 s, as textlesslib's
``HubertFeatureReader``), each an independent forward pass. Unlike textlesslib, which cuts
non-overlapping 100 s pieces and so loses one frame at every cut (and runs the model on a tail
shorter than a frame), the chunks here are cut on frame boundaries: the frames are split evenly
into ``ceil(F / K)`` runs (K = frames of one ``max_chunk``) and each run gets exactly the samples
its frames see (neighbouring chunks share the 80 samples by which the 400-sample receptive field
exceeds the 320-sample hop). The output therefore always has ``F = floor((N - 400) / 320) + 1``
frames. Inputs up to ``max_chunk`` samples (all utterances of the paper's corpora) are one
pass, identical to textlesslib.

Parameter names are fairseq's, so the official state dict loads as is; Hugging Face names are
mapped (the mapping facts are those of transformers' conversion script).
"""
from __future__ import annotations

import ast
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

__all__ = [
    "CONVERTED_SUFFIX",
    "HUBERT_BASE_LS960_SHA256",
    "HUBERT_BASE_LS960_URL",
    "HubertArch",
    "HubertFeatureExtractor",
    "HubertModel",
    "arch_from_fairseq_cfg",
    "arch_from_hf_config",
    "convert_fairseq_checkpoint",
    "hf_to_fairseq_state_dict",
    "hubert_num_frames",
    "load_hubert",
]

HUBERT_BASE_LS960_URL = "https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960.pt"
#: sha256 of hubert_base_ls960.pt as published by textlesslib
HUBERT_BASE_LS960_SHA256 = "1703cf8d2cdc76f8c046f5f6a9bcd224e0e6caf4744cad1a1f4199c32cac8c8d"
#: the tensors-only file written next to a fairseq checkpoint the first time it is read
CONVERTED_SUFFIX = ".resyn.pt"
_FORMAT = "resyn-bench/hubert-v1"

_BASE_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


@dataclass
class HubertArch:
    """Sizes of a HuBERT model (defaults: HuBERT Base)."""

    conv_layers: tuple = _BASE_CONV
    extractor_mode: str = "default"  # "default" (group norm, first conv) | "layer_norm"
    conv_bias: bool = False
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = False
    layer_norm_eps: float = 1e-5
    #: layer-normalise the waveform first (fairseq task.cfg.normalize; False for HuBERT Base)
    normalize: bool = False

    def __post_init__(self):
        self.conv_layers = tuple(tuple(int(v) for v in c) for c in self.conv_layers)
        if self.extractor_mode not in ("default", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'default' or 'layer_norm', "
                             f"not {self.extractor_mode!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by "
                             f"num_heads {self.num_heads}")

    @property
    def receptive_field(self) -> int:
        r, jump = 1, 1
        for _, k, s in self.conv_layers:
            r += (k - 1) * jump
            jump *= s
        return r

    @property
    def hop_size(self) -> int:
        return int(np.prod([s for _, _, s in self.conv_layers]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["conv_layers"] = [list(c) for c in self.conv_layers]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HubertArch:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def hubert_num_frames(num_samples: int, arch: HubertArch | None = None) -> int:
    """Frames the conv front end produces for ``num_samples`` (0 when the input is shorter
    than the receptive field): layer by layer floor((L - k) / s) + 1, which for the standard
    stack equals floor((N - 400) / 320) + 1."""
    arch = arch or HubertArch()
    n = int(num_samples)
    for _, k, s in arch.conv_layers:
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


# --------------------------------------------------------------------------------------------
# Modules (parameter names follow fairseq)

class _Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(-2, -1)


class _ChannelLayerNorm(nn.Sequential):
    """LayerNorm over channels of a [B, C, T] tensor; index 1 holds the parameters, as in
    fairseq's (TransposeLast, LayerNorm, TransposeLast) block."""

    def __init__(self, dim: int, eps: float):
        super().__init__(_Transpose(), nn.LayerNorm(dim, eps=eps), _Transpose())


class _FeatureExtractor(nn.Module):
    def __init__(self, arch: HubertArch):
        super().__init__()
        layers, in_dim = [], 1
        for i, (dim, k, s) in enumerate(arch.conv_layers):
            conv = nn.Conv1d(in_dim, dim, k, stride=s, bias=arch.conv_bias)
            if arch.extractor_mode == "layer_norm":
                norm = _ChannelLayerNorm(dim, arch.layer_norm_eps)
            elif i == 0:  # one group per channel: each channel normalised over time
                norm = nn.GroupNorm(dim, dim, eps=arch.layer_norm_eps, affine=True)
            else:
                norm = nn.Identity()
            # index 1 stands for fairseq's dropout, so the keys read "<i>.0.weight", "<i>.2.*"
            layers.append(nn.Sequential(conv, nn.Identity(), norm, nn.GELU()))
            in_dim = dim
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B, C, T]
        x = wav.unsqueeze(1)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class _WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight norm over dim 2 (``weight_g`` [1, 1, K], ``weight_v``)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        self.weight_v = nn.Parameter(torch.empty(dim, dim // groups, kernel))
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.weight_v, std=math.sqrt(4.0 / (kernel * dim)))
        with torch.no_grad():
            self.weight_g.copy_(self._norm(self.weight_v))

    @staticmethod
    def _norm(v: torch.Tensor) -> torch.Tensor:
        return v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()

    def forward(self, x):
        w = self.weight_v * (self.weight_g / self._norm(self.weight_v))
        return F.conv1d(x, w, self.bias, padding=self.padding, groups=self.groups)


class _DropLast(nn.Module):
    """An even kernel with padding k//2 yields one frame too many: drop the last one."""

    def __init__(self, kernel: int):
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x):
        return x[..., :-self.remove] if self.remove else x


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x):  # [B, T, D]
        b, t, d = x.shape

        def split(y):
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        # scaled dot product, scale 1/sqrt(head_dim), no mask (single unpadded sequence)
        y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                           split(self.v_proj(x)))
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class _EncoderLayer(nn.Module):
    def __init__(self, arch: HubertArch):
        super().__init__()
        d, eps = arch.embed_dim, arch.layer_norm_eps
        self.layer_norm_first = arch.layer_norm_first
        self.self_attn = _SelfAttention(d, arch.num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, arch.ffn_dim)
        self.fc2 = nn.Linear(arch.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x):
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x))
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class _Encoder(nn.Module):
    def __init__(self, arch: HubertArch, n_layers: int):
        super().__init__()
        self.layer_norm_first = arch.layer_norm_first
        self.pos_conv = nn.Sequential(
            _WeightNormConv1d(arch.embed_dim, arch.pos_conv_kernel, arch.pos_conv_groups),
            _DropLast(arch.pos_conv_kernel), nn.GELU())
        self.layer_norm = nn.LayerNorm(arch.embed_dim, eps=arch.layer_norm_eps)
        self.layers = nn.ModuleList(_EncoderLayer(arch) for _ in range(n_layers))


class HubertModel(nn.Module):
    """HuBERT up to transformer block ``max_layer`` (default: all ``arch.num_layers``).

    ``forward(wav [B, N] float, output_layer=L)`` -> [B, T, embed_dim], the output of block L
    (1 <= L <= max_layer; 0 = the transformer input after positional embedding and, for post-LN
    models, ``encoder.layer_norm``). ``return_all=True`` gives the list of blocks 0..L."""

    def __init__(self, arch: HubertArch | None = None, max_layer: int | None = None):
        super().__init__()
        self.arch = arch = arch or HubertArch()
        self.max_layer = arch.num_layers if max_layer is None else int(max_layer)
        if not 0 <= self.max_layer <= arch.num_layers:
            raise ValueError(f"max_layer must be in 0..{arch.num_layers}, not {max_layer}")
        self.feature_extractor = _FeatureExtractor(arch)
        self.layer_norm = nn.LayerNorm(arch.conv_layers[-1][0], eps=arch.layer_norm_eps)
        self.post_extract_proj = nn.Linear(arch.conv_layers[-1][0], arch.embed_dim)
        self.encoder = _Encoder(arch, self.max_layer)

    def forward(self, wav: torch.Tensor, output_layer: int | None = None,
                return_all: bool = False, normalize: bool | None = None):
        layer = self.max_layer if output_layer is None else int(output_layer)
        if not 0 <= layer <= self.max_layer:
            raise ValueError(f"output_layer must be in 0..{self.max_layer} (this model was "
                             f"built up to block {self.max_layer}), not {output_layer}")
        if self.arch.normalize if normalize is None else normalize:
            wav = F.layer_norm(wav, wav.shape[-1:])
        x = self.feature_extractor(wav).transpose(1, 2)  # [B, T, C]
        x = self.post_extract_proj(self.layer_norm(x))
        enc = self.encoder
        x = x + enc.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not enc.layer_norm_first:
            x = enc.layer_norm(x)
        outs = [x]
        for block in enc.layers[:layer]:
            x = block(x)
            outs.append(x)
        if (enc.layer_norm_first and output_layer is None
                and self.max_layer == self.arch.num_layers):
            x = enc.layer_norm(x)  # fairseq: final norm only for the whole stack, no layer
            outs[-1] = x
        return outs if return_all else x

    # -- weights ---------------------------------------------------------------------------
    def load_fairseq_state_dict(self, sd: dict) -> None:
        """Load fairseq-named tensors; blocks beyond ``max_layer`` and the pre-training heads
        (mask_emb, label_embs_concat, final_proj) are ignored, anything missing is an error."""
        own = self.state_dict()
        keep, unexpected = {}, []
        for k, v in sd.items():
            m = re.match(r"encoder\.layers\.(\d+)\.", k)
            if m and int(m.group(1)) >= self.max_layer:
                continue
            if k in own:
                keep[k] = v
            elif not re.match(r"(mask_emb|label_embs_concat|final_proj\.|encoder\.layers\.)", k):
                unexpected.append(k)
        missing = sorted(set(own) - set(keep))
        if missing:
            raise KeyError(f"HuBERT checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]} "
                           f"(is it a HuBERT/wav2vec2-style model with these sizes: "
                           f"{self.arch.to_dict()}?)")
        if unexpected:
            log.warning("ignoring %d unknown HuBERT checkpoint entries, e.g. %s",
                        len(unexpected), unexpected[:5])
        for k, v in keep.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(f"HuBERT checkpoint tensor {k} has shape {tuple(v.shape)}, "
                                 f"the model expects {tuple(own[k].shape)}")
        self.load_state_dict({k: v.float() for k, v in keep.items()}, strict=True)


# --------------------------------------------------------------------------------------------
# Hugging Face <-> fairseq names

_HF_TO_FS = [  # (HF regex, fairseq replacement)
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$",
     "encoder.pos_conv.0.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$",
     "encoder.pos_conv.0.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.", "encoder.pos_conv.0."),
    (r"^encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"^masked_spec_embed$", "mask_emb"),
]


def hf_to_fairseq_state_dict(sd: dict, extractor_mode: str = "default") -> dict:
    """Rename a ``transformers`` HubertModel/HubertForCTC state dict to fairseq names
    (the ``hubert.`` prefix of task models is dropped, heads such as ``lm_head`` are kept
    under their own names and later ignored)."""
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("hubert.")
        m = re.match(r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)$", k)
        if m:  # group norm (first conv, "default") or per-layer LayerNorm ("layer_norm")
            i, p = m.groups()
            sub = "2.1" if extractor_mode == "layer_norm" else "2"
            out[f"feature_extractor.conv_layers.{i}.{sub}.{p}"] = v
            continue
        for pat, rep in _HF_TO_FS:
            k2, n = re.subn(pat, rep, k)
            if n:
                k = k2
                break
        out[k] = v
    return out


def arch_from_hf_config(cfg: dict) -> HubertArch:
    """HubertArch from a ``transformers`` HubertConfig dict (config.json)."""
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu" or cfg.get("feat_extract_activation", "gelu") != "gelu":
        raise ValueError(f"only GELU HuBERT models are supported (hidden_act={act!r})")
    if cfg.get("conv_pos_batch_norm") or not cfg.get("feat_proj_layer_norm", True):
        raise ValueError("unsupported HuBERT variant (conv_pos_batch_norm / no feature "
                         "projection layer norm)")
    dims, kernels, strides = (cfg.get(k) for k in ("conv_dim", "conv_kernel", "conv_stride"))
    conv = (tuple(zip(dims, kernels, strides, strict=True)) if dims else _BASE_CONV)
    return HubertArch(
        conv_layers=conv,
        extractor_mode="layer_norm" if cfg.get("feat_extract_norm", "group") == "layer" else "default",
        conv_bias=bool(cfg.get("conv_bias", False)),
        embed_dim=int(cfg.get("hidden_size", 768)),
        num_layers=int(cfg.get("num_hidden_layers", 12)),
        num_heads=int(cfg.get("num_attention_heads", 12)),
        ffn_dim=int(cfg.get("intermediate_size", 3072)),
        pos_conv_kernel=int(cfg.get("num_conv_pos_embeddings", 128)),
        pos_conv_groups=int(cfg.get("num_conv_pos_embedding_groups", 16)),
        layer_norm_first=bool(cfg.get("do_stable_layer_norm", False)),
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-5)),
    )


def _literal_conv_spec(text: str) -> tuple:
    """Evaluate fairseq's ``conv_feature_layers`` string, e.g.
    "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2", without eval(): only list/tuple
    literals of ints, + and * are accepted."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported conv_feature_layers expression: {text!r}")

    value = ev(ast.parse(str(text), mode="eval"))
    return tuple(tuple(int(x) for x in c) for c in value)


def arch_from_fairseq_cfg(model_cfg: dict, task_cfg: dict | None = None) -> HubertArch:
    """HubertArch from the (plain-dict) ``cfg['model']`` / legacy ``args`` of a fairseq
    checkpoint, plus ``normalize`` from ``cfg['task']``."""
    g = model_cfg.get
    act = g("activation_fn", "gelu")
    if act != "gelu":
        raise ValueError(f"only GELU HuBERT models are supported (activation_fn={act!r})")
    conv = g("conv_feature_layers")
    conv = _literal_conv_spec(conv) if isinstance(conv, str) else (tuple(map(tuple, conv)) if conv else _BASE_CONV)
    task_cfg = task_cfg or {}
    return HubertArch(
        conv_layers=conv,
        extractor_mode=str(g("extractor_mode", "default")),
        conv_bias=bool(g("conv_bias", False)),
        embed_dim=int(g("encoder_embed_dim", 768)),
        num_layers=int(g("encoder_layers", 12)),
        num_heads=int(g("encoder_attention_heads", 12)),
        ffn_dim=int(g("encoder_ffn_embed_dim", 3072)),
        pos_conv_kernel=int(g("conv_pos", 128)),
        pos_conv_groups=int(g("conv_pos_groups", 16)),
        layer_norm_first=bool(g("layer_norm_first", False)),
        normalize=bool(task_cfg.get("normalize", g("normalize", False)) or False),
    )


def _arch_from_fairseq_tensors(sd: dict, like: HubertArch | None = None) -> HubertArch:
    """Sizes read off a bare fairseq-named state dict. Strides and head counts are not stored
    in tensors: the standard strides for the standard kernels, and 64-d heads, are assumed
    unless ``like`` gives them."""
    convs, i = [], 0
    while f"feature_extractor.conv_layers.{i}.0.weight" in sd:
        w = sd[f"feature_extractor.conv_layers.{i}.0.weight"]
        convs.append((int(w.shape[0]), int(w.shape[2])))
        i += 1
    if not convs:
        raise KeyError("not a HuBERT state dict: no feature_extractor.conv_layers.*.0.weight")
    kernels = tuple(k for _, k in convs)
    if like is not None and tuple(k for _, k, _ in like.conv_layers) == kernels:
        strides = [s for _, _, s in like.conv_layers]
    elif kernels == tuple(k for _, k, _ in _BASE_CONV):
        strides = [s for _, _, s in _BASE_CONV]
    else:
        raise ValueError(f"cannot infer conv strides for kernels {kernels}; pass arch=")
    n_layers = 1 + max(int(m.group(1)) for k in sd
                       if (m := re.match(r"encoder\.layers\.(\d+)\.", k)))
    d = int(sd["post_extract_proj.weight"].shape[0])
    v = sd["encoder.pos_conv.0.weight_v"]
    layer_norm_mode = "feature_extractor.conv_layers.0.2.1.weight" in sd
    return HubertArch(
        conv_layers=tuple((c, k, s) for (c, k), s in zip(convs, strides, strict=True)),
        extractor_mode="layer_norm" if layer_norm_mode else "default",
        conv_bias="feature_extractor.conv_layers.0.0.bias" in sd,
        embed_dim=d, num_layers=n_layers,
        num_heads=like.num_heads if like is not None else max(1, d // 64),
        ffn_dim=int(sd["encoder.layers.0.fc1.weight"].shape[0]),
        pos_conv_kernel=int(v.shape[2]), pos_conv_groups=d // int(v.shape[1]),
        layer_norm_first=like.layer_norm_first if like is not None else False,
        layer_norm_eps=like.layer_norm_eps if like is not None else 1e-5,
        normalize=like.normalize if like is not None else False,
    )


# --------------------------------------------------------------------------------------------
# Checkpoint reading

def _tensor_dict(obj) -> dict:
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _converted_path(path: Path) -> Path:
    stem = path.name.removesuffix(".pt")
    return path.with_name(stem + CONVERTED_SUFFIX)


def _source_stamp(path: Path) -> dict:
    st = path.stat()
    return {"name": path.name, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def convert_fairseq_checkpoint(ckpt: dict, source: Path | None = None,
                               sha256: str | None = None) -> dict:
    """The tensors-only form of a loaded fairseq HuBERT checkpoint: {'format', 'arch',
    'state_dict', 'source'} - loadable with ``torch.load(weights_only=True)``."""
    from resyn_bench.safeload import plain

    cfg = plain(ckpt.get("cfg")) or {}
    args = plain(ckpt.get("args")) or {}
    model_cfg = cfg.get("model") or args
    task_cfg = cfg.get("task") or args
    model_sd = _tensor_dict(ckpt["model"])
    if model_cfg:
        arch = arch_from_fairseq_cfg(model_cfg, task_cfg)
    else:
        arch = _arch_from_fairseq_tensors(model_sd)
    out = {"format": _FORMAT, "arch": arch.to_dict(),
           "state_dict": {k: v.detach().float().contiguous() for k, v in model_sd.items()
                          if not k.startswith(("final_proj.", "label_embs_concat"))}}
    if source is not None:
        out["source"] = {**_source_stamp(Path(source)), "sha256": sha256 or ""}
    return out


def _load_converted(path: Path) -> tuple[HubertArch, dict] | None:
    """Our converted file next to ``path`` if it is up to date with it."""
    from resyn_bench.safeload import safe_torch_load

    conv = _converted_path(path)
    if not conv.is_file():
        return None
    try:
        obj = safe_torch_load(conv)
    except (OSError, RuntimeError) as exc:  # corrupt/partial file: convert again
        log.warning("ignoring %s (%s); converting %s again", conv, exc, path)
        return None
    if not isinstance(obj, dict):
        return None
    src = obj.get("source", {})
    stamp = _source_stamp(path)
    if obj.get("format") != _FORMAT or any(src.get(k) != stamp[k] for k in ("size", "mtime_ns")):
        log.info("%s does not match %s any more; converting again", conv, path)
        return None
    return HubertArch.from_dict(obj["arch"]), obj["state_dict"]


def _save_converted(path: Path, converted: dict) -> None:
    from resyn_bench.core.atomic import atomic_open

    conv = _converted_path(path)
    try:
        with atomic_open(conv) as fh:
            torch.save(converted, fh)
        log.info("wrote tensors-only copy %s (later loads skip the pickle)", conv)
    except OSError as exc:  # read-only cache: fine, convert in memory next time too
        log.warning("could not write %s (%s); the checkpoint will be converted again next "
                    "time", conv, exc)


def read_hubert_checkpoint(path, trusted_sha256: Iterable[str] | str = (),
                           arch: HubertArch | None = None,
                           convert: bool = True) -> tuple[HubertArch, dict]:
    """(arch, fairseq-named state dict) from any supported HuBERT checkpoint:

    - a Hugging Face directory (config.json + model.safetensors or pytorch_model.bin);
    - a HF state dict file (``.safetensors`` or ``.bin``/``.pt``) - pass ``arch`` or keep the
      standard sizes, heads are assumed 64-d;
    - our converted file (``*.resyn.pt``, from the first read of a fairseq file);
    - a fairseq checkpoint (``{'model': ..., 'cfg'|'args': ...}``), tensors-only or the official
      full pickle. The official file needs arbitrary unpickling, done only when its sha256 is
      trusted: the published hash of ``hubert_base_ls960.pt`` always is, others must be given in
      ``trusted_sha256``. With ``convert`` a tensors-only copy is written next to it once
      (``<stem>.resyn.pt``) and used by later loads.
    """
    from resyn_bench.safeload import load_checkpoint_object, read_safetensors

    path = Path(path)
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{path} is a directory without config.json; expected a "
                                    f"Hugging Face HuBERT folder")
        import json

        hf_cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        arch = arch_from_hf_config(hf_cfg)
        if (path / "model.safetensors").is_file():
            sd = read_safetensors(path / "model.safetensors")
        elif (path / "pytorch_model.bin").is_file():
            sd, _ = load_checkpoint_object(path / "pytorch_model.bin", what="HuBERT weights")
        else:
            raise FileNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin")
        return arch, hf_to_fairseq_state_dict(_tensor_dict(sd), arch.extractor_mode)

    if not path.is_file():
        raise FileNotFoundError(f"HuBERT checkpoint not found: {path}")
    if convert and not path.name.endswith(CONVERTED_SUFFIX):
        hit = _load_converted(path)
        if hit is not None:
            return hit
    trusted = [trusted_sha256] if isinstance(trusted_sha256, str) else list(trusted_sha256 or ())
    trusted.append(HUBERT_BASE_LS960_SHA256)
    obj, was_pickle = load_checkpoint_object(path, trusted, what="HuBERT checkpoint")
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    if obj.get("format") == _FORMAT:
        return HubertArch.from_dict(obj["arch"]), obj["state_dict"]
    if "model" in obj and isinstance(obj["model"], dict):
        sha = None
        if was_pickle:
            from resyn_bench.safeload import sha256_file

            sha = sha256_file(path)
        converted = convert_fairseq_checkpoint(obj, path, sha)
        if convert and was_pickle:
            _save_converted(path, converted)
        a = HubertArch.from_dict(converted["arch"])
        if arch is not None:  # explicit sizes win where the cfg is silent (tests, variants)
            a = arch
        return a, converted["state_dict"]
    sd = _tensor_dict(obj)
    if any(k.startswith(("feature_projection.", "hubert.feature_projection.")) for k in sd):
        mode = arch.extractor_mode if arch is not None else (
            "layer_norm" if any(re.search(r"conv_layers\.1\.layer_norm\.", k) for k in sd)
            else "default")
        sd = hf_to_fairseq_state_dict(sd, mode)
    return (arch or _arch_from_fairseq_tensors(sd)), sd


# --------------------------------------------------------------------------------------------
# Feature extractor

class HubertFeatureExtractor:
    """HuBERT layer-``layer`` features of 16 kHz mono audio: ``extract(wav) -> [T, dim]``."""

    sample_rate = 16000

    def __init__(self, model: HubertModel, layer: int, checkpoint: str | None = None,
                 max_chunk: int = 100 * 16000, device: str | torch.device = "cpu"):
        self.name = "hubert"
        self.layer = int(layer)
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.arch = model.arch
        self.hop_size = model.arch.hop_size
        self.dim = model.arch.embed_dim
        self.checkpoint = checkpoint
        if max_chunk < model.arch.receptive_field:
            raise ValueError(f"max_chunk must hold at least one frame "
                             f"({model.arch.receptive_field} samples), not {max_chunk}")
        self.max_chunk = int(max_chunk)

    def num_frames(self, num_samples: int) -> int:
        return hubert_num_frames(num_samples, self.arch)

    def chunk_spans(self, num_samples: int) -> list[tuple[int, int, int, int]]:
        """(first frame, end frame, first sample, end sample) of each forward pass: frames
        split evenly into as few runs as ``max_chunk`` allows, each run with the samples its
        frames see."""
        total = self.num_frames(num_samples)
        if total == 0:
            return []
        per_chunk = hubert_num_frames(self.max_chunk, self.arch)
        n = -(-total // per_chunk)
        hop, rf = self.hop_size, self.arch.receptive_field
        spans = []
        for j in range(n):
            f0, f1 = j * total // n, (j + 1) * total // n
            # the last run keeps the trailing samples too: they feed the first conv layer
            # (and its per-channel normalisation over time) as in a whole-input pass
            s1 = num_samples if j == n - 1 else (f1 - 1) * hop + rf
            spans.append((f0, f1, f0 * hop, s1))
        return spans

    @torch.inference_mode()
    def extract(self, wav) -> np.ndarray:
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1).to(self.device)
        if self.arch.normalize:  # textlesslib normalises the whole waveform before chunking
            x = F.layer_norm(x, x.shape)
        feats = []
        for _, _, s0, s1 in self.chunk_spans(x.numel()):
            # normalisation (if any) was applied to the whole input above
            feats.append(self.model(x[s0:s1].unsqueeze(0), output_layer=self.layer,
                                    normalize=False)[0])
        if not feats:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(feats, 0).float().cpu().numpy()

    def describe(self) -> dict:
        return {"name": self.name, "layer": self.layer, "checkpoint": self.checkpoint,
                "hop_size": self.hop_size, "dim": self.dim, "sample_rate": self.sample_rate}


def load_hubert(path, layer: int = 6, trusted_sha256: Iterable[str] | str = (),
                arch: HubertArch | None = None, convert: bool = True,
                device: str = "cpu", max_chunk: int = 100 * 16000) -> HubertFeatureExtractor:
    """A :class:`HubertFeatureExtractor` for block ``layer`` of the checkpoint at ``path``
    (formats: see :func:`read_hubert_checkpoint`); only blocks 1..layer are built."""
    a, sd = read_hubert_checkpoint(path, trusted_sha256=trusted_sha256, arch=arch,
                                   convert=convert)
    if not 1 <= int(layer) <= a.num_layers:
        raise ValueError(f"layer must be in 1..{a.num_layers} for this model, not {layer}")
    model = HubertModel(a, max_layer=int(layer))
    model.load_fairseq_state_dict(sd)
    return HubertFeatureExtractor(model, int(layer), checkpoint=str(path), device=device,
                                  max_chunk=max_chunk)
