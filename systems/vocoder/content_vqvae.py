"""Content VQ-VAE: a raw-audio Jukebox encoder + 256-code EMA codebook feeding the unit HiFi-GAN.

The paper's third content representation (docs/reference.md §2.3, §5.4): a convolutional
encoder turns 16 kHz audio into 128-d vectors at 100 Hz (x160: five stride-2 stages and one
stride-5 stage, the Jukebox "list branch"), an EMA codebook of 256 vectors quantises them, and
the HiFi-GAN decoder is conditioned on the quantised vectors. Encoder, codebook and decoder are
trained together with the HiFi-GAN objective plus ``lambda_commit_code`` (0.02) x the code
commitment loss. At inference the decoder may equally be driven by integer codes: their vectors
are read straight from the codebook (the reference does the same), so ``codes -> wav`` equals
``audio -> wav`` whenever the codes are the quantiser's output.

:class:`VQVAECodeGenerator` reuses :class:`CodeGenerator` (HiFi-GAN body, optional F0-code and
speaker conditioning) and adds

* ``code_encoder`` - :class:`JukeboxEncoder` built from ``code_encoder_params``;
* ``code_vq`` - :class:`Bottleneck` built from ``code_vq_params`` (buffer
  ``code_vq.level_blocks.0.k`` [l_bins, emb_width]).

The unit look-up table ``dict`` of the other vocoders is replaced by a parameter-free view of
the codebook, so the state dict has exactly the reference keys (no ``dict.weight``).

:class:`VQVAEUnitEncoder` is the trained encoder + codebook as a unit encoder
(``load_unit_encoder("vqvae:CKPT_DIR")``): audio -> int64 codes at 100 Hz.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from resyn_bench.core.bitrate import stream_bps
from resyn_bench.systems.vocoder.f0_quantizer import Bottleneck, JukeboxEncoder
from resyn_bench.systems.vocoder.generator import CodeGenerator

__all__ = [
    "REFERENCE_LIBRILIGHT_VQVAE_CONFIG",
    "VQVAECodeGenerator",
    "VQVAEUnitEncoder",
    "is_vqvae_config",
    "load_vqvae_generator",
    "load_vqvae_unit_encoder",
]

#: The generator keys of configs/LibriLight/vqvae256.json (docs/reference.md §5.4): no F0, no
#: speaker, the decoder reads the 128-d quantised vectors directly (model_in_dim 128).
REFERENCE_LIBRILIGHT_VQVAE_CONFIG: dict[str, Any] = {
    "resblock": "1",
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [11, 8, 4, 4, 4],
    "upsample_initial_channel": 512,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "model_in_dim": 128,
    "code_hop_size": 160,
    "f0": False,
    "code_encoder_params": {
        "input_emb_width": 1, "output_emb_width": 128, "levels": 1, "downs_t": [[5, 1]],
        "strides_t": [[2, 5]], "width": 32, "depth": 4, "m_conv": 1.0, "dilation_growth_rate": 3,
    },
    "code_vq_params": {"l_bins": 256, "emb_width": 128, "mu": 0.99, "levels": 1},
    "lambda_commit_code": 0.02,
}

_VQ_KEYS = ("code_encoder_params", "code_vq_params")


def is_vqvae_config(cfg: dict) -> bool:
    """Does this generator config describe a content VQ-VAE (raw-audio encoder + codebook)?"""
    return bool(cfg.get("code_encoder_params")) or bool(cfg.get("code_vq_params"))


class _CodebookLookup(nn.Module):
    """Stands in for the unit LUT ``dict``: code ids -> codebook vectors, no state of its own.

    The codebook lives in ``code_vq``; holding it outside the module tree keeps the state dict
    free of a duplicate (``dict.*``) entry, as in the reference checkpoints.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        object.__setattr__(self, "_block", block)  # not registered: no second copy of ``k``

    @property
    def weight(self) -> torch.Tensor:
        return self._block.k

    @property
    def num_embeddings(self) -> int:
        return int(self._block.l_bins)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_embeddings):
            raise ValueError(f"code ids must lie in 0..{self.num_embeddings - 1}, got "
                             f"{int(idx.min())}..{int(idx.max())}")
        return F.embedding(idx, self._block.k)


def _vq_parts(cfg: dict) -> tuple[dict, dict]:
    enc = cfg.get("code_encoder_params")
    vq = cfg.get("code_vq_params")
    if not enc or not vq:
        raise KeyError("a content VQ-VAE config needs both 'code_encoder_params' and "
                       "'code_vq_params' (reference configs/LibriLight/vqvae256.json)")
    return dict(enc), dict(vq)


class VQVAECodeGenerator(CodeGenerator):
    """Raw-audio encoder + EMA codebook + unit HiFi-GAN, trained jointly (docs/reference.md §5.4).

    * ``forward(audio [B,1,T] float, f0=None, f0_codes=None, spkr=None, dvector=None) ->
      (wav [B,1,160*(T//160)], commit_loss scalar, codes LongTensor [B, T//160])``. In training
      mode the codebook takes one EMA step per call and the quantised vectors pass gradients
      straight through to the encoder.
    * ``forward(codes [B,T_c] int, ...) -> wav [B,1,160*T_c]``: vectors read from the codebook.
    * :meth:`encode_codes` - audio -> codes, never touching the codebook.

    F0-code and speaker conditioning work as in :class:`CodeGenerator` when the config asks
    (``f0`` with an ``f0_quantizer`` block; ``multispkr``); the content vectors take the place
    of the unit embeddings, so ``embedding_dim`` must equal ``code_vq_params.emb_width``.
    """

    def __init__(self, cfg: dict):
        full = dict(cfg)
        enc, vq = _vq_parts(full)
        emb = int(vq.get("emb_width", 128))
        bins = int(vq.get("l_bins", 256))
        if int(enc.get("output_emb_width", 128)) != emb:
            raise ValueError(f"code_encoder_params.output_emb_width ({enc.get('output_emb_width')}) "
                             f"must equal code_vq_params.emb_width ({emb})")
        if int(enc.get("input_emb_width", 1)) != 1:
            raise ValueError("code_encoder_params.input_emb_width must be 1 (mono audio)")
        full.setdefault("embedding_dim", emb)
        # no unit LUT: the number of units is the codebook size, whatever the config says
        full["num_embeddings"] = bins
        if int(full["embedding_dim"]) != emb:
            raise ValueError(f"embedding_dim ({full['embedding_dim']}) must equal code_vq_params."
                             f"emb_width ({emb}): the quantised vectors are the unit embeddings")
        base = {k: v for k, v in full.items() if k not in _VQ_KEYS}
        super().__init__(base)
        full.setdefault("model_in_dim", self.cfg["model_in_dim"])
        self.cfg = full
        self.code_encoder = JukeboxEncoder(**enc)
        self.code_vq = Bottleneck(l_bins=bins, emb_width=emb, mu=float(vq.get("mu", 0.99)),
                                  levels=int(vq.get("levels", 1)))
        self.dict = _CodebookLookup(self.code_vq.block)
        if self.code_encoder.hop_factor != self.code_hop_size:
            raise ValueError(f"the code encoder downsamples x{self.code_encoder.hop_factor} but "
                             f"code_hop_size is {self.code_hop_size}; they must agree (160 for "
                             "downs_t [[5, 1]], strides_t [[2, 5]])")
        if self.code_hop_size != self.hop_length:
            raise ValueError(f"upsample_rates multiply to {self.hop_length}, not code_hop_size "
                             f"{self.code_hop_size}")
        self.lambda_commit_code = float(full.get("lambda_commit_code", 0.02))
        self.last_vq_metrics: dict[str, torch.Tensor] = {}

    @property
    def num_codes(self) -> int:
        return int(self.code_vq.block.l_bins)

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook [l_bins, emb_width] (``code_vq.level_blocks.0.k``)."""
        return self.code_vq.block.k

    @staticmethod
    def _as_audio(audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 1:
            audio = audio[None, None]
        elif audio.dim() == 2:
            audio = audio.unsqueeze(1)
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio must be [B, 1, T] (or [B, T], [T]), got {tuple(audio.shape)}")
        return audio

    def quantize(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_q [B, emb, T//hop], commit_loss, codes [B, T//hop])`` of ``audio``.

        Training mode: one EMA codebook step, straight-through ``z_q``. Eval: no change."""
        audio = self._as_audio(audio)
        if audio.shape[-1] < self.code_hop_size:
            raise ValueError(f"audio of {audio.shape[-1]} samples is shorter than one code "
                             f"({self.code_hop_size} samples)")
        z = self.code_encoder(audio)
        codes, z_q, commit, metrics = self.code_vq(z)
        # detached tensors (no device sync here); the training loop logs them
        self.last_vq_metrics = {k: v.detach() for k, v in metrics.items()}
        return z_q, commit, codes

    @torch.no_grad()
    def encode_codes(self, audio: torch.Tensor) -> torch.Tensor:
        """Codes LongTensor [B, T // hop] of audio [B, 1, T] (or [B, T] / [T]); no EMA update."""
        z = self.code_encoder(self._as_audio(audio))
        return self.code_vq.block.encode(z)

    def _embed_units(self, code: torch.Tensor, content: torch.Tensor | None = None,
                     **kwargs) -> torch.Tensor:
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        if content is not None:  # quantised encoder output (keeps the straight-through graph)
            return content
        return self.dict(code).transpose(1, 2)

    def _forward_audio(self, audio, f0, f0_codes, spkr, dvector):
        z_q, commit, codes = self.quantize(audio)
        x = self.conditioning(codes, f0, f0_codes, spkr, dvector, content=z_q)
        wav = self._fast_decode(x) if getattr(self, "_prepared", False) else self.decode(x)
        return wav, commit, codes

    def forward(self, x: torch.Tensor, f0: torch.Tensor | None = None,
                f0_codes: torch.Tensor | None = None, spkr: torch.Tensor | None = None,
                dvector: torch.Tensor | None = None):
        if x.is_floating_point():
            if getattr(self, "_prepared", False):
                with torch.inference_mode():
                    return self._forward_audio(x, f0, f0_codes, spkr, dvector)
            return self._forward_audio(x, f0, f0_codes, spkr, dvector)
        return super().forward(x, f0, f0_codes, spkr, dvector)


# ---------------------------------------------------------------------------------------------
# checkpoints


def load_vqvae_generator(path_or_dir, trusted_sha256: str | Iterable[str] = (),
                         config: dict | str | None = None, map_location: str = "cpu"):
    """Load a content VQ-VAE vocoder (``g_XXXXXXXX`` + ``config.json``) -> ``LoadedGenerator``.

    Same layout, safety rules and errors as
    :func:`resyn_bench.systems.vocoder.checkpoint.load_generator`; the state dict must match the
    config strictly (``code_encoder.*``, ``code_vq.level_blocks.0.k``, the HiFi-GAN body).
    This adds to ``load_generator`` only the check that the folder is a content VQ-VAE and a
    training hint when it holds no checkpoint.
    """
    from resyn_bench.systems.vocoder import checkpoint as ck

    p = Path(path_or_dir).expanduser()
    if p.is_dir():
        ckpt = ck.latest_checkpoint(p, "g_")
        if ckpt is None:
            raise FileNotFoundError(f"no generator checkpoint (g_XXXXXXXX) in directory {p}; "
                                    "train one with `resyn-bench train vocoder --config "
                                    f"tiny-vqvae|vqvae256-librilight ... --out {p}`")
        cfg_dir = p
    elif p.is_file():
        ckpt, cfg_dir = p, p.parent
    else:
        raise FileNotFoundError(f"content VQ-VAE checkpoint not found: {p}")
    if config is None:
        cfg_path = cfg_dir / ck.CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{ck.CONFIG_NAME} not found beside {ckpt}; place the training "
                                    f"config at {cfg_path}")
        cfg = ck.read_config(cfg_path)
    elif isinstance(config, (str, Path)):
        cfg = ck.read_config(config)
    else:
        cfg = dict(config)
    if not is_vqvae_config(cfg):
        raise ValueError(f"{cfg_dir / ck.CONFIG_NAME} has no code_encoder_params/code_vq_params: "
                         "not a content VQ-VAE (load it with checkpoint.load_generator)")
    # the shared loader: build_generator returns a VQVAECodeGenerator for this config
    return ck.load_generator(ckpt, trusted_sha256, config=cfg, map_location=map_location)


# ---------------------------------------------------------------------------------------------
# the trained encoder as a unit encoder


class VQVAEUnitEncoder:
    """Audio (mono float32, 16 kHz) -> int64 content codes at 100 Hz, with a trained VQ-VAE.

    The audio is peak-normalised first (x 0.95, as the training crops were), then encoded and
    assigned to the nearest codebook vector; ``len(encode(wav)) == len(wav) // hop_size``.
    """

    sample_rate = 16000

    def __init__(self, ckpt_dir: str | Path, device: str = "cpu", step: int | None = None,
                 trusted_sha256: str | Iterable[str] = ()):
        folder = Path(ckpt_dir).expanduser()
        target = folder / f"g_{int(step):08d}" if step is not None else folder
        loaded = load_vqvae_generator(target, trusted_sha256=trusted_sha256, map_location=device)
        model = loaded.model
        # only the encoder and the codebook are needed: drop the decoder's memory
        self.code_encoder = model.code_encoder.eval().requires_grad_(False)
        self.code_vq = model.code_vq.eval()
        self.hop_size = int(model.code_hop_size)
        self.vocab_size = int(model.num_codes)
        self.device = device
        self.checkpoint = {"path": str(Path(loaded.path).resolve()), "step": loaded.step,
                           "sha256": loaded.sha256}
        self.source = str(folder.resolve() if folder.exists() else folder)
        self.name = f"vqvae{self.vocab_size}"
        self.config = loaded.config

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_size

    # the two attributes callers of k-means UnitEncoders read (``encoder.kmeans.meta``,
    # ``encoder.extractor.name``): here both name the VQ-VAE
    @property
    def extractor(self) -> SimpleNamespace:
        return SimpleNamespace(name="vqvae", dim=int(self.code_vq.block.emb_width),
                               hop_size=self.hop_size, sample_rate=self.sample_rate)

    @property
    def kmeans(self) -> SimpleNamespace:
        return SimpleNamespace(k=self.vocab_size, meta={"extractor": "vqvae", "k": self.vocab_size,
                                                        "source": self.source})

    def num_frames(self, num_samples: int) -> int:
        return int(num_samples) // self.hop_size

    def encode(self, wav: np.ndarray) -> np.ndarray:
        from resyn_bench.systems.vocoder.data import peak_normalize

        x = np.asarray(wav, dtype=np.float32)
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        if x.ndim != 1:
            raise ValueError(f"expected mono audio (1-D), got shape {x.shape}")
        if len(x) < self.hop_size:
            return np.zeros(0, dtype=np.int64)
        x = peak_normalize(x) if np.any(x) else x
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x))[None, None].to(self.device)
            codes = self.code_vq.block.encode(self.code_encoder(t))
        return codes[0].cpu().numpy().astype(np.int64)

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "kind": "vqvae",
                "sample_rate": self.sample_rate, "hop_size": self.hop_size,
                "frame_rate": self.frame_rate, "vocab_size": self.vocab_size,
                "bitrate_bps": stream_bps(self.frame_rate, self.vocab_size),
                "checkpoint": dict(self.checkpoint),
                "encoder": copy.deepcopy(self.config.get("code_encoder_params")),
                "codebook": copy.deepcopy(self.config.get("code_vq_params"))}

    def __repr__(self) -> str:
        return f"VQVAEUnitEncoder({self.source!r}, vocab={self.vocab_size}, hop={self.hop_size})"


def load_vqvae_unit_encoder(spec: str | Path, device: str = "cpu") -> VQVAEUnitEncoder:
    """``"vqvae:DIR"`` (or a directory) -> :class:`VQVAEUnitEncoder`."""
    text = str(spec)
    text = text.removeprefix("vqvae:")
    if not text:
        raise ValueError("vqvae unit-encoder spec needs a checkpoint folder: vqvae:DIR")
    return VQVAEUnitEncoder(text, device=device)
