"""Unit-to-waveform generators: HiFi-GAN V1 conditioned on discrete units, F0 codes and speaker.

Module layout and parameter names follow the reference checkpoints (docs/reference.md §5, §8.2,
§8.4) so that their state dicts load strictly:

* ``conv_pre`` / ``ups.<i>`` / ``resblocks.<3i+j>.convs1|convs2.<k>`` / ``conv_post`` - the HiFi-GAN
  V1 decoder with legacy weight-norm parameters (``weight_g``, ``weight_v``, ``bias``);
* ``dict`` - unit look-up table, ``f0_dict`` - F0-code look-up table, ``quantizer.*`` - the frozen
  F0 VQ-VAE (``F0Quantizer``), ``spkr`` - speaker LUT (``nn.Embedding``) or, for the paper's
  d-vector variant, a linear projection of the d-vector (fairseq's ``embedder_dim`` layout);
* ``dur_predictor.*`` - the fairseq ``code_hifigan`` duration predictor (DurationCodeGenerator);
* fairseq / textlesslib ``CodeGenerator`` variants: ``f0_quant_embed`` - the quantized-F0 table
  (config ``f0_quant_num_bin`` > 0, no F0 VQ-VAE), or the raw F0 value as one input channel
  (``f0`` set, no table: ``model_in_dim`` = ``embedding_dim`` x parts + 1); ``style`` - the
  style LUT of the Expresso vocoders (config ``multistyle``, ``num_styles`` rows, default 100).

Conditioning order (channels of the decoder input): units | F0 | speaker | style.

Configs are the reference JSON dicts (``num_embeddings``, ``embedding_dim``, ``model_in_dim``,
``upsample_rates``, ...); unknown keys are ignored here and kept by the checkpoint code.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from resyn_bench.systems.vocoder.layers import WNConv1d, WNConvTranspose1d

__all__ = [
    "LRELU_SLOPE",
    "CodeGenerator",
    "DurationCodeGenerator",
    "HiFiGANGenerator",
    "ResBlock1",
    "ResBlock2",
    "VariancePredictor",
    "build_generator",
    "deduplicate_units",
    "expected_model_in_dim",
    "f0_input_kind",
    "prepare_for_inference",
    "repeat_frames",
]

LRELU_SLOPE = 0.1
INIT_STD = 0.01


def _padding(kernel_size: int, dilation: int = 1) -> int:
    """'same' padding for an odd kernel."""
    return dilation * (kernel_size - 1) // 2


def _init_normal_(conv: nn.Module, std: float = INIT_STD) -> None:
    """Give a weight-normed conv an effective weight drawn from N(0, std).

    HiFi-GAN intends N(0, 0.01) for ups/resblocks/conv_post. (In the reference code the init runs
    after ``weight_norm`` and only touches the derived ``weight`` tensor, so its effective init is
    PyTorch's default; config ``"weight_init": "torch_default"`` reproduces that.)
    """
    with torch.no_grad():
        if getattr(conv, "weight_normed", False):
            conv.weight_v.normal_(0.0, std)
            dims = tuple(range(1, conv.weight_v.dim()))
            conv.weight_g.copy_(conv.weight_v.pow(2).sum(dim=dims, keepdim=True).sqrt())
        else:
            conv.weight.normal_(0.0, std)


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: for each dilation d, ``x = x + c2(lrelu(c1(lrelu(x))))``."""

    def __init__(self, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, 1, dilation=d, padding=_padding(kernel_size, d))
            for d in dilations)
        self.convs2 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, 1, dilation=1, padding=_padding(kernel_size))
            for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # without autograd, intermediate activations may be overwritten in place (less traffic)
        inplace = not torch.is_grad_enabled()
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            xt = c2(F.leaky_relu(xt, LRELU_SLOPE, inplace=inplace))
            x = xt.add_(x) if inplace else xt + x
        return x


class ResBlock2(nn.Module):
    """HiFi-GAN ResBlock2 (V2/V3 configs, ``"resblock": "2"``): ``x = x + c(lrelu(x))``."""

    def __init__(self, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, 1, dilation=d, padding=_padding(kernel_size, d))
            for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()
        for c in self.convs:
            xt = c(F.leaky_relu(x, LRELU_SLOPE))
            x = xt.add_(x) if inplace else xt + x
        return x


def _cfg_list(cfg: dict, key: str) -> list:
    if key not in cfg:
        raise KeyError(f"generator config lacks '{key}' (see reference configs, e.g. "
                       f"configs/LJSpeech/hubert100_lut.json)")
    return list(cfg[key])


class HiFiGANGenerator(nn.Module):
    """HiFi-GAN V1 decoder: features [B, model_in_dim, T] -> waveform [B, 1, T * prod(upsample_rates)]."""

    def __init__(self, cfg: dict):
        super().__init__()
        rates = [int(r) for r in _cfg_list(cfg, "upsample_rates")]
        up_kernels = [int(k) for k in _cfg_list(cfg, "upsample_kernel_sizes")]
        rb_kernels = [int(k) for k in _cfg_list(cfg, "resblock_kernel_sizes")]
        rb_dilations = [list(map(int, d)) for d in _cfg_list(cfg, "resblock_dilation_sizes")]
        if len(rates) != len(up_kernels):
            raise ValueError(f"upsample_rates {rates} and upsample_kernel_sizes {up_kernels} "
                             "differ in length")
        if len(rb_kernels) != len(rb_dilations):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        for u, k in zip(rates, up_kernels, strict=True):
            if (k - u) % 2:
                raise ValueError(f"upsample kernel {k} with rate {u}: (k - u) must be even for an "
                                 f"exact x{u} length")
        resblock = str(cfg.get("resblock", "1"))
        if resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', not {resblock!r}")
        block_cls = ResBlock1 if resblock == "1" else ResBlock2
        ch0 = int(cfg["upsample_initial_channel"])
        in_dim = int(cfg.get("model_in_dim", cfg.get("num_mels", 80)))

        self.upsample_rates = rates
        self.hop_length = math.prod(rates)
        self.num_kernels = len(rb_kernels)
        self.num_upsamples = len(rates)
        self.conv_pre = WNConv1d(in_dim, ch0, 7, 1, padding=3)
        self.ups = nn.ModuleList(
            WNConvTranspose1d(ch0 // 2 ** i, ch0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(rates, up_kernels, strict=True)))
        self.resblocks = nn.ModuleList()
        for i in range(len(rates)):
            ch = ch0 // 2 ** (i + 1)
            for k, d in zip(rb_kernels, rb_dilations, strict=True):
                self.resblocks.append(block_cls(ch, k, d))
        self.conv_post = WNConv1d(ch0 // 2 ** len(rates), 1, 7, 1, padding=3)

        if str(cfg.get("weight_init", "normal")) == "normal":
            for m in [*self.ups, *self.resblocks.modules(), self.conv_post]:
                if isinstance(m, (WNConv1d, WNConvTranspose1d)):
                    _init_normal_(m)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The HiFi-GAN body on conditioning features ``x`` [B, model_in_dim, T]."""
        inplace = not torch.is_grad_enabled()
        x = self.conv_pre(x)
        nk = self.num_kernels
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            xs = self.resblocks[i * nk](x)
            for j in range(1, nk):
                r = self.resblocks[i * nk + j](x)
                xs = xs.add_(r) if inplace else xs + r
            x = xs.div_(nk) if inplace else xs / nk
        x = F.leaky_relu(x)  # default slope 0.01 here, as in the reference
        return torch.tanh(self.conv_post(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fast_decode(x) if getattr(self, "_prepared", False) else self.decode(x)

    @torch.inference_mode()
    def _fast_decode(self, x: torch.Tensor) -> torch.Tensor:
        """``decode`` for a model prepared for inference (folded weights, no autograd).

        Runs every layer as a 2-D convolution over [B, C, 1, T] in channels-last memory format:
        oneDNN then keeps activations in their native layout instead of reordering them around
        each of the ~100 convolutions (about 10 % on CPU). ``prepare_for_inference`` stores the
        weights with matching strides, so no weight is copied per call. Same arithmetic as
        ``decode`` (the output agrees to float rounding). Measured alternatives on CPU: torch.compile
        (inductor) compiled for ~45 s and ran slower; torch.jit.freeze gained ~3 % and is
        deprecated; oneDNN fused conv+activation/add ops gained 0-3 % (private API).
        """
        body = getattr(self, "_body_dtype", None)   # bf16 inference: see prepare_for_inference
        if body is not None:
            x = x.to(body)
        if x.device.type != "cpu":
            y = self.decode(x)
            return y if body is None else y.float()
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        x = _conv2d(self.conv_pre, x)
        nk = self.num_kernels
        for i, up in enumerate(self.ups):
            x = _conv_transpose2d(up, F.leaky_relu(x, LRELU_SLOPE))
            xs = None
            for j in range(nk):
                r = self.resblocks[i * nk + j]
                y = x
                if isinstance(r, ResBlock1):
                    for c1, c2 in zip(r.convs1, r.convs2, strict=True):
                        t = _conv2d(c1, F.leaky_relu(y, LRELU_SLOPE))
                        y = _conv2d(c2, F.leaky_relu_(t, LRELU_SLOPE)).add_(y)
                else:
                    for c in r.convs:
                        y = _conv2d(c, F.leaky_relu(y, LRELU_SLOPE)).add_(y)
                xs = y if xs is None else xs.add_(y)
            x = xs.div_(nk)
        x = _conv2d(self.conv_post, F.leaky_relu_(x))  # default slope 0.01, as in decode
        y = torch.tanh_(x).squeeze(2).contiguous()
        return y if body is None else y.float()


def _conv2d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A (folded) Conv1d applied to [B, C, 1, T] as a 1 x k Conv2d."""
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, (1, conv.stride[0]), (0, conv.padding[0]),
                    (1, conv.dilation[0]), conv.groups)


def _conv_transpose2d(conv: nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
    return F.conv_transpose2d(x, conv.weight.unsqueeze(2), conv.bias, (1, conv.stride[0]),
                              (0, conv.padding[0]), (0, conv.output_padding[0]), conv.groups,
                              (1, conv.dilation[0]))


def _channels_last_1d(w: torch.Tensor) -> torch.Tensor:
    """Same values and shape [A, B, k], memory ordered [A][k][B]: ``w.unsqueeze(2)`` is then a
    channels-last 4-D tensor (no copy when the fast path views it as a 1 x k kernel)."""
    return w.permute(0, 2, 1).contiguous().permute(0, 2, 1)


def repeat_frames(x: torch.Tensor, length: int, what: str = "sequence",
                  target: str = "target") -> torch.Tensor:
    """Repeat each frame of ``x`` [B, C, T] an integer number of times to reach ``length`` frames.

    Raises ``ValueError`` when ``length`` is not a multiple of T (the reference refuses to pad).
    """
    t = x.shape[-1]
    if t == length:
        return x
    if t == 0 or length % t:
        raise ValueError(
            f"cannot align the {what} ({t} frames) with the {target} ({length} frames): the longer "
            f"length must be an integer multiple of the shorter. Trim the audio to a multiple of "
            f"1280 samples (16 F0 frames x 80 samples) before extracting units and F0, or trim "
            f"the unit/F0-code sequences so that their lengths divide.")
    return x.repeat_interleave(length // t, dim=-1)


def deduplicate_units(units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Collapse runs of repeated units: ``[T] -> (unique_units [N], durations [N])``.

    ``repeat_interleave(unique_units, durations)`` restores the input.
    """
    if units.dim() != 1:
        raise ValueError(f"deduplicate_units expects a 1-D unit sequence, got shape {tuple(units.shape)}")
    u, d = torch.unique_consecutive(units, return_counts=True)
    return u, d


def _truthy_speaker(v) -> bool:
    # reference configs use strings ("single", "_", "parent_name") for multispkr
    return bool(v) and str(v).lower() not in ("false", "none", "0", "")


def _f0_bins(cfg: dict) -> int:
    if cfg.get("f0_quant_num_bin"):
        return int(cfg["f0_quant_num_bin"])
    vq = (cfg.get("f0_quantizer") or {}).get("f0_vq_params") or {}
    return int(vq.get("l_bins", 20))


def _speaker_mode(cfg: dict) -> tuple[str | None, bool]:
    """(module kind for ``spkr``: None | 'lut' | 'dvector', whether forward uses it)."""
    kind = str(cfg.get("speaker_embedding", "lut")).lower()
    if kind not in ("lut", "dvector"):
        raise ValueError(f"speaker_embedding must be 'lut' or 'dvector', not {kind!r}")
    multi = _truthy_speaker(cfg.get("multispkr"))
    if kind == "dvector":
        return "dvector", True
    if cfg.get("embedder_params"):
        # fairseq code_hifigan: a d-vector projection exists, used only when multispkr is set
        return "dvector", multi
    return ("lut", True) if multi else (None, False)


def _uses_style(cfg: dict) -> bool:
    return _truthy_speaker(cfg.get("multistyle"))


#: how a generator takes F0 (see :func:`f0_input_kind`)
F0_KINDS = ("vqvae", "codes", "fairseq_codes", "raw")


def f0_input_kind(cfg: dict) -> str | None:
    """How the generator built from ``cfg`` takes F0 (None: it does not):

    - ``"vqvae"``: speech-resynthesis, a frozen F0 VQ-VAE (``f0_quantizer`` block) turns
      normalised F0 into codes, embedded by ``f0_dict``;
    - ``"codes"``: F0 codes given directly, embedded by ``f0_dict`` (20 rows, or
      ``f0_quant_num_bin`` alongside an ``f0_quantizer``);
    - ``"fairseq_codes"``: fairseq/textlesslib, ``f0_quant_num_bin`` > 0 without an F0 VQ-VAE:
      codes embedded by ``f0_quant_embed``;
    - ``"raw"``: fairseq/textlesslib with no table: the F0 value itself is one input channel,
      recognised by ``model_in_dim`` = ``embedding_dim`` x (units, speaker, style) + 1.
    """
    if not cfg.get("f0"):
        return None
    if cfg.get("f0_quantizer"):
        return "vqvae"
    if int(cfg.get("f0_quant_num_bin") or 0) > 0:
        return "fairseq_codes"
    e = int(cfg["embedding_dim"])
    others = 1 + _speaker_mode(cfg)[1] + _uses_style(cfg)
    if "model_in_dim" in cfg and e > 1 and int(cfg["model_in_dim"]) == e * others + 1:
        return "raw"
    return "codes"


def expected_model_in_dim(cfg: dict) -> int:
    """Channels of the concatenated conditioning: units (+ F0) (+ speaker) (+ style)."""
    e = int(cfg["embedding_dim"])
    kind = f0_input_kind(cfg)
    parts = 1 + (kind not in (None, "raw")) + _speaker_mode(cfg)[1] + _uses_style(cfg)
    return e * parts + (kind == "raw")


class CodeGenerator(HiFiGANGenerator):
    """HiFi-GAN conditioned on units, F0 codes and a speaker representation (docs/reference.md §5.2).

    ``forward(code [B,T_c], f0=None [B,1,T_f0], f0_codes=None [B,T_q], spkr=None [B,1],
    dvector=None [B,D]) -> wav [B,1,T]``. Unit and F0-code embeddings are aligned by repeating
    the shorter sequence; the speaker vector is repeated over time.
    """

    def __init__(self, cfg: dict):
        cfg = dict(cfg)
        if cfg.get("code_encoder_params") or cfg.get("code_vq_params"):
            raise ValueError("configs with code_encoder_params/code_vq_params (LibriLight content "
                             "VQ-VAE, docs/reference.md §5.4) are not supported by CodeGenerator")
        for key in ("num_embeddings", "embedding_dim"):
            if key not in cfg:
                raise KeyError(f"generator config lacks '{key}'")
        expected = expected_model_in_dim(cfg)
        cfg.setdefault("model_in_dim", expected)
        if int(cfg["model_in_dim"]) != expected:
            parts = "units" + (" + F0 codes" if cfg.get("f0") else "") + \
                (" + speaker" if _speaker_mode(cfg)[1] else "") + \
                (" + style" if _uses_style(cfg) else "")
            raise ValueError(f"model_in_dim is {cfg['model_in_dim']} but the conditioning has {expected} "
                             f"channels (embedding_dim {cfg['embedding_dim']} x [{parts}]"
                             f"{'' if not cfg.get('f0') else '; a raw-F0 generator has one channel more than units + speaker + style'})")
        super().__init__(cfg)
        self.cfg = cfg
        e = int(cfg["embedding_dim"])
        self.embedding_dim = e
        self.dict = nn.Embedding(int(cfg["num_embeddings"]), e)

        self.f0 = bool(cfg.get("f0"))
        self.f0_kind = f0_input_kind(cfg)
        self.f0_dict = None
        self.f0_quant_embed = None
        if self.f0_kind in ("vqvae", "codes"):
            self.f0_dict = nn.Embedding(_f0_bins(cfg), e)
        elif self.f0_kind == "fairseq_codes":
            self.f0_quant_embed = nn.Embedding(int(cfg["f0_quant_num_bin"]), e)
        self.quantizer = None
        if self.f0 and cfg.get("f0_quantizer"):
            from resyn_bench.systems.vocoder.f0_quantizer import F0Quantizer

            self.quantizer = F0Quantizer.from_config(cfg["f0_quantizer"])
            self.quantizer.requires_grad_(False)
            self.quantizer.eval()

        kind, used = _speaker_mode(cfg)
        self.speaker_kind = kind
        self.uses_speaker = used
        self.spkr = None
        if kind == "lut":
            self.spkr = nn.Embedding(int(cfg.get("num_speakers", 200)), e)
        elif kind == "dvector":
            dim = int(cfg.get("dvector_dim", cfg.get("embedder_dim", 256)))
            self.dvector_dim = dim
            self.spkr = nn.Linear(dim, e)
        self.uses_style = _uses_style(cfg)
        self.style = nn.Embedding(int(cfg.get("num_styles", 100)), e) if self.uses_style else None

    # the F0 quantizer is frozen: it stays in eval mode (its EMA codebook must not move)
    def train(self, mode: bool = True):
        super().train(mode)
        if self.quantizer is not None:
            self.quantizer.eval()
        return self

    @property
    def code_hop_size(self) -> int:
        return int(self.cfg.get("code_hop_size", self.hop_length))

    def quantize_f0(self, f0: torch.Tensor) -> torch.Tensor:
        """Normalised F0 [B,1,T_f0] -> F0 code indices [B, T_f0/16] with the frozen quantizer."""
        if self.quantizer is None:
            raise ValueError("this generator has no F0 quantizer (config lacks an 'f0_quantizer' block); "
                             "pass f0_codes instead of f0")
        if f0.dim() == 2:
            f0 = f0.unsqueeze(1)
        with torch.no_grad():
            return self.quantizer.encode_indices(f0)

    def _embed_units(self, code: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.dict(code).transpose(1, 2)

    def _speaker_vector(self, spkr, dvector, batch: int) -> torch.Tensor | None:
        if not self.uses_speaker:
            if spkr is not None or dvector is not None:
                raise ValueError("this generator has no speaker input (config: multispkr false); "
                                 "do not pass spkr/dvector")
            return None
        if self.speaker_kind == "lut":
            if spkr is None:
                raise ValueError("multi-speaker generator (speaker LUT): pass spkr=LongTensor[B, 1] "
                                 "of speaker ids")
            if dvector is not None:
                raise ValueError("this generator uses a speaker LUT; pass spkr ids, not a d-vector")
            spkr = torch.as_tensor(spkr, device=self.dict.weight.device).long().reshape(batch, -1)[:, :1]
            if int(spkr.min()) < 0 or int(spkr.max()) >= self.spkr.num_embeddings:
                raise ValueError(f"speaker id out of range 0..{self.spkr.num_embeddings - 1}: "
                                 f"{spkr.flatten().tolist()}")
            return self.spkr(spkr).transpose(1, 2)  # [B, E, 1]
        if dvector is None:
            raise ValueError(f"d-vector generator: pass dvector=Tensor[B, {self.dvector_dim}]")
        if spkr is not None:
            raise ValueError("this generator is conditioned on d-vectors; pass dvector, not spkr ids")
        dvector = dvector.reshape(batch, -1)
        if dvector.shape[1] != self.dvector_dim:
            raise ValueError(f"d-vector has {dvector.shape[1]} dims, the model expects "
                             f"{self.dvector_dim}")
        return self.spkr(dvector).unsqueeze(-1)  # [B, E, 1]

    def _style_vector(self, style, batch: int) -> torch.Tensor | None:
        if not self.uses_style:
            if style is not None:
                raise ValueError("this generator has no style input (config: multistyle off); "
                                 "do not pass style")
            return None
        if style is None:
            raise ValueError("multi-style generator: pass style=LongTensor[B, 1] of style ids")
        style = torch.as_tensor(style, device=self.dict.weight.device).long().reshape(batch, -1)[:, :1]
        if int(style.min()) < 0 or int(style.max()) >= self.style.num_embeddings:
            raise ValueError(f"style id out of range 0..{self.style.num_embeddings - 1}: "
                             f"{style.flatten().tolist()}")
        return self.style(style).transpose(1, 2)  # [B, E, 1]

    def _f0_features(self, f0, f0_codes) -> torch.Tensor:
        """F0 conditioning [B, C, T_f0] for this generator's F0 kind."""
        if self.f0_kind == "raw":
            if f0_codes is not None or f0 is None:
                raise ValueError("this generator takes the F0 value itself (raw-F0 variant): pass "
                                 "f0=Tensor[B, T_f0] (as the model was trained: e.g. normalised "
                                 "log-F0), not f0_codes")
            f0 = torch.as_tensor(f0, device=self.dict.weight.device).float()
            return f0.reshape(f0.shape[0], 1, -1)
        if f0_codes is not None and f0 is not None:
            raise ValueError("pass either f0 (normalised F0, quantized here) or f0_codes, not both")
        if f0_codes is None:
            if f0 is None:
                raise ValueError("this generator is conditioned on F0: pass f0=[B,1,T_f0] "
                                 "(normalised) or f0_codes=LongTensor[B,T_q]")
            f0_codes = self.quantize_f0(f0)
        if f0_codes.dim() == 1:
            f0_codes = f0_codes.unsqueeze(0)
        table = self.f0_quant_embed if self.f0_kind == "fairseq_codes" else self.f0_dict
        return table(f0_codes.long()).transpose(1, 2)

    def conditioning(self, code: torch.Tensor, f0: torch.Tensor | None = None,
                     f0_codes: torch.Tensor | None = None, spkr: torch.Tensor | None = None,
                     dvector: torch.Tensor | None = None, style: torch.Tensor | None = None,
                     **kwargs) -> torch.Tensor:
        """The decoder input [B, model_in_dim, T] (units | F0 | speaker | style, aligned)."""
        if code.dim() == 1:
            code = code.unsqueeze(0)
        if code.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"code must be an integer tensor of unit ids, got {code.dtype}")
        x = self._embed_units(code, **kwargs)
        if self.f0:
            fe = self._f0_features(f0, f0_codes)
            if x.shape[-1] < fe.shape[-1]:
                x = repeat_frames(x, fe.shape[-1], "unit sequence", "F0-code sequence")
            else:
                fe = repeat_frames(fe, x.shape[-1], "F0-code sequence", "unit sequence")
            x = torch.cat([x, fe], dim=1)
        elif f0 is not None or f0_codes is not None:
            raise ValueError("this generator has no F0 input (config: f0 false); do not pass f0/f0_codes")
        s = self._speaker_vector(spkr, dvector, x.shape[0])
        if s is not None:
            x = torch.cat([x, s.expand(-1, -1, x.shape[-1])], dim=1)
        st = self._style_vector(style, x.shape[0])
        if st is not None:
            x = torch.cat([x, st.expand(-1, -1, x.shape[-1])], dim=1)
        return x

    def forward(self, code: torch.Tensor, f0: torch.Tensor | None = None,
                f0_codes: torch.Tensor | None = None, spkr: torch.Tensor | None = None,
                dvector: torch.Tensor | None = None, style: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        cond = (code, f0, f0_codes, spkr, dvector, style)
        if getattr(self, "_prepared", False):
            with torch.inference_mode():
                return self._fast_decode(self.conditioning(*cond, **kwargs))
        return self.decode(self.conditioning(*cond, **kwargs))



class VariancePredictor(nn.Module):
    """fairseq FastSpeech2 variance predictor (keys conv1.0, ln1, conv2.0, ln2, proj).

    Input [B, T, C] -> log-duration predictions [B, T].
    """

    def __init__(self, encoder_embed_dim: int = 128, var_pred_hidden_dim: int = 128,
                 var_pred_kernel_size: int = 3, var_pred_dropout: float = 0.5, **unused):
        super().__init__()
        k = int(var_pred_kernel_size)
        h = int(var_pred_hidden_dim)
        self.conv1 = nn.Sequential(nn.Conv1d(int(encoder_embed_dim), h, k, padding=(k - 1) // 2),
                                   nn.ReLU())
        self.ln1 = nn.LayerNorm(h)
        self.conv2 = nn.Sequential(nn.Conv1d(h, h, k, padding=(k - 1) // 2), nn.ReLU())
        self.ln2 = nn.LayerNorm(h)
        self.proj = nn.Linear(h, 1)
        self.dropout = nn.Dropout(float(var_pred_dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x.transpose(1, 2)).transpose(1, 2)
        x = self.dropout(self.ln1(x))
        x = self.conv2(x.transpose(1, 2)).transpose(1, 2)
        x = self.dropout(self.ln2(x))
        return self.proj(x).squeeze(-1)


class DurationCodeGenerator(CodeGenerator):
    """fairseq ``code_hifigan`` vocoder with a unit-duration predictor (docs/reference.md §8.4).

    ``forward(code, dur=None, dur_prediction=False, ...)``: with ``dur`` [B,T] (or [T]) each unit
    is repeated ``dur`` times; with ``dur_prediction=True`` durations are predicted for
    deduplicated units (``clamp(round(exp(pred) - 1), min=1)``); otherwise units are taken as
    frame-level (as fairseq does by default).
    """

    def __init__(self, cfg: dict):
        params = cfg.get("dur_predictor_params")
        if not params:
            raise KeyError("DurationCodeGenerator config needs 'dur_predictor_params' (encoder_embed_dim, "
                           "var_pred_hidden_dim, var_pred_kernel_size, var_pred_dropout)")
        super().__init__(cfg)
        self.dur_predictor = VariancePredictor(**params)

    def predict_log_durations(self, code: torch.Tensor) -> torch.Tensor:
        """log(1 + duration) predictions [B, T] (the training target of the predictor)."""
        if code.dim() == 1:
            code = code.unsqueeze(0)
        return self.dur_predictor(self.dict(code))

    def predict_durations(self, code: torch.Tensor) -> torch.Tensor:
        """Integer durations [B, T] >= 1 for deduplicated units."""
        log_dur = self.predict_log_durations(code)
        return torch.clamp(torch.round(torch.exp(log_dur) - 1).long(), min=1)

    def duration_loss(self, code: torch.Tensor, dur: torch.Tensor) -> torch.Tensor:
        """MSE between predicted log-durations and log(dur + 1) (fairseq's training target)."""
        return F.mse_loss(self.predict_log_durations(code), torch.log(dur.float() + 1))

    def _embed_units(self, code: torch.Tensor, dur: torch.Tensor | None = None,
                     dur_prediction: bool = False, **kwargs) -> torch.Tensor:
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        x = self.dict(code).transpose(1, 2)
        if dur is None and not dur_prediction:
            return x
        if dur is None:
            dur = self.predict_durations(code)
        dur = torch.as_tensor(dur, device=x.device).long()
        if dur.dim() == 1:
            dur = dur.unsqueeze(0)
        if dur.shape != code.shape:
            raise ValueError(f"durations {tuple(dur.shape)} do not match units {tuple(code.shape)}")
        if (dur < 0).any():
            raise ValueError("durations must be >= 0")
        totals = dur.sum(dim=1)
        if code.shape[0] > 1 and not bool((totals == totals[0]).all()):
            raise ValueError(f"batched duration expansion needs equal total lengths per item, got "
                             f"{totals.tolist()}; synthesize items one at a time")
        return torch.stack([xi.repeat_interleave(di, dim=1) for xi, di in zip(x, dur, strict=True)])

    def forward(self, code: torch.Tensor, f0: torch.Tensor | None = None,
                f0_codes: torch.Tensor | None = None, spkr: torch.Tensor | None = None,
                dvector: torch.Tensor | None = None, dur: torch.Tensor | None = None,
                dur_prediction: bool = False, style: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(code, f0, f0_codes, spkr, dvector, style, dur=dur,
                               dur_prediction=dur_prediction)


def build_generator(cfg: dict) -> CodeGenerator:
    """CodeGenerator; DurationCodeGenerator with ``dur_predictor_params``; the content VQ-VAE
    (VQVAECodeGenerator) with ``code_encoder_params``/``code_vq_params``."""
    if cfg.get("code_encoder_params") or cfg.get("code_vq_params"):
        # lazy: content_vqvae imports this module
        from resyn_bench.systems.vocoder.content_vqvae import VQVAECodeGenerator

        return VQVAECodeGenerator(cfg)
    if cfg.get("dur_predictor_params"):
        return DurationCodeGenerator(cfg)
    return CodeGenerator(cfg)


#: inference precisions of :func:`prepare_for_inference` (the HiFi-GAN body's weights and
#: activations; unit/F0/speaker embeddings and the F0 quantizer stay float32)
PRECISIONS = ("fp32", "bf16")


def _body_convs(model: nn.Module) -> list[nn.Module]:
    """The convolutions of the HiFi-GAN body (conv_pre, upsamplers, resblocks, conv_post)."""
    parts = [model.conv_pre, *model.ups, *model.resblocks.modules(), model.conv_post]
    return [m for m in parts if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]


def prepare_for_inference(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """Fold weight norm, switch to eval, drop autograd and enable the fast inference path (in place).

    The returned model computes the same waveform (within float rounding) and runs its forward
    under ``torch.inference_mode``; its outputs are inference tensors. Move the model to its
    device first: on CPU the folded weights are stored for the channels-last fast path.
    ``save_generator`` still writes reference (weight-norm) keys for a prepared model.

    ``precision="bf16"``: the body's weights are stored in bfloat16 and its activations computed
    in bfloat16 (oneDNN's bf16 kernels on CPUs with AVX512-BF16/AMX; tensor cores on GPUs); the
    conditioning (embeddings, F0 quantizer) stays float32 and the waveform comes back float32.
    bfloat16 keeps 8 bits of mantissa, so the waveform differs from fp32 by rounding noise:
    about 50 dB SNR against fp32 on reference-size random-weight generators (tests require
    >= 30 dB; ``tests/bench/bench_generator.py`` prints the SNR and the speed).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for m in model.modules():
        if isinstance(m, (WNConv1d, WNConvTranspose1d)):
            m.remove_weight_norm()
    if precision == "bf16" and isinstance(model, HiFiGANGenerator):
        with torch.no_grad():
            for m in _body_convs(model):
                m.weight.data = m.weight.data.to(torch.bfloat16)
                if m.bias is not None:
                    m.bias.data = m.bias.data.to(torch.bfloat16)
        model._body_dtype = torch.bfloat16
    for m in model.modules():
        if isinstance(m, (WNConv1d, WNConvTranspose1d)):
            if m.weight.device.type == "cpu":  # the channels-last fast path is CPU-only
                with torch.no_grad():
                    m.weight.data = _channels_last_1d(m.weight.data)
    model.eval()
    model.requires_grad_(False)
    if isinstance(model, HiFiGANGenerator):
        model._prepared = True
    return model
