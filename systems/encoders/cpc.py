"""CPC feature extractor ("CPC big" of GSLM / textlesslib, ``cpc_big_ll6kh_top_ctc.pt``).

Architecture (facts from facebookresearch/CPC_audio ``cpc/model.py`` and textlesslib's
``CpcFeatureReader``):

- encoder ``gEncoder``: five Conv1d layers, (kernel, stride, padding) = (10,5,3), (8,4,2),
  (4,2,1), (4,2,1), (4,2,1), ``hidden_encoder`` channels (512 in CPC big), each followed by a
  *channel norm* ``batchNorm<i>`` and ReLU. Channel norm normalises every frame over its
  channels: (x - mean_c) / sqrt(var_c + 1e-5) with the unbiased variance, then a per-channel
  affine (``weight``/``bias`` of shape [1, C, 1]). Total stride 160 (100 Hz at 16 kHz).
- autoregressive net ``gAR.baseNet``: an ``nn.LSTM`` (batch first, zero initial state) with
  ``hidden_gar`` units (512 in CPC big) and 4 levels in the checkpoint. textlesslib builds only
  the first ``layer`` levels (it sets ``nLevelsGRU = layer``, default 2) and returns the output of
  the last one; ``layer=0`` here returns the encoder output.

Checkpoint: a dict with ``weights`` (state dict, keys ``gEncoder.conv0.weight``,
``gEncoder.batchNorm0.weight``, ``gAR.baseNet.weight_ih_l0``, ...) and ``config`` (``hiddenEncoder``,
``hiddenGar``, ``nLevelsGRU``, ...). Sizes are read off the tensors. If the file needs arbitrary
unpickling it is read only with a trusted SHA-256 (the one textlesslib documents for CPC big,
from the catalogue, or one the user passes) and then converted once to a tensors-only copy next
to it (``<stem>.resyn.pt``).

Chunking for inputs longer than ``max_chunk`` (64000 samples) follows the feature reader of
GSLM (fairseq ``examples/textless_nlp/gslm/speech2unit/pretrained/cpc_feature_reader.py``) and
textlesslib (``textless/data/cpc_feature_reader.py``): non-overlapping full chunks, each an
independent pass (zero LSTM state), then a "last chunk" for the remaining samples. Their last
chunk is ``x[:, -max_chunk:]`` on the ``(1, 1, N)`` waveform, which slices the channel
dimension, so it is the *whole* waveform: the tail frames are the last
``(N - full * max_chunk) // df`` frames of one pass over all N samples, with
``df = N // frames(N)`` (160 for any N > 64000). The k-means models of GSLM were fitted on
features read this way, so this extractor reproduces it, including the tail's LSTM state that
has run over the whole utterance. One deliberate difference: when fewer than ``df`` samples
remain, their ``feat[:, -0:]`` appends every frame of the whole pass (about twice the frame
count); here nothing is appended. The count is ``full * frames(max_chunk) + rest // df``:
N // 160, or one more where the conv padding gives the whole pass an extra frame (N = 64159:
df = 159, 401 frames, as theirs). Up to ``max_chunk`` samples the
input is one pass whose frame count is the conv arithmetic (:func:`cpc_num_frames`).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

__all__ = [
    "CPC_BIG_URL",
    "CPC_ENCODER_CONVS",
    "CPCArch",
    "CPCFeatureExtractor",
    "CPCModel",
    "ChannelNorm",
    "cpc_num_frames",
    "load_cpc",
    "read_cpc_checkpoint",
]

CPC_BIG_URL = "https://dl.fbaipublicfiles.com/textless_nlp/gslm/cpc/cpc_big_ll6kh_top_ctc.pt"
#: (kernel, stride, padding) of gEncoder.conv0..conv4
CPC_ENCODER_CONVS = ((10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1))
_FORMAT = "resyn-bench/cpc-v1"
CONVERTED_SUFFIX = ".resyn.pt"


@dataclass
class CPCArch:
    """Sizes of a CPC model (defaults: CPC big)."""

    hidden_encoder: int = 512
    hidden_gar: int = 512
    num_levels: int = 4  # LSTM levels stored in the checkpoint

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_len(n: int) -> int:
    for k, s, p in CPC_ENCODER_CONVS:
        n = (n + 2 * p - k) // s + 1
        if n < 1:
            return 0
    return n


def cpc_num_frames(num_samples: int, max_chunk: int = 64000) -> int:
    """Frames :class:`CPCFeatureExtractor` returns for ``num_samples`` (see module doc)."""
    n = int(num_samples)
    if n <= max_chunk:
        return _conv_len(n)
    full = n // max_chunk
    per_chunk = _conv_len(max_chunk)
    df = n // _conv_len(n)  # the tail comes from a pass over the whole input (module doc)
    return full * per_chunk + (n - full * max_chunk) // df


class ChannelNorm(nn.Module):
    """Per-frame normalisation over channels with a per-channel affine ([1, C, 1] params)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x):  # [B, C, T]
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True)  # unbiased, as in CPC_audio
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class _Encoder(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        in_dim = 1
        for i, (k, s, p) in enumerate(CPC_ENCODER_CONVS):
            setattr(self, f"conv{i}", nn.Conv1d(in_dim, dim, k, stride=s, padding=p))
            setattr(self, f"batchNorm{i}", ChannelNorm(dim))
            in_dim = dim

    def forward(self, x):  # [B, 1, N] -> [B, C, T]
        for i in range(len(CPC_ENCODER_CONVS)):
            x = F.relu(getattr(self, f"batchNorm{i}")(getattr(self, f"conv{i}")(x)))
        return x


class _AR(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, levels: int):
        super().__init__()
        self.baseNet = nn.LSTM(dim_in, dim_out, num_layers=levels, batch_first=True)


class CPCModel(nn.Module):
    """gEncoder + the first ``levels`` LSTM levels of gAR (0: encoder only)."""

    def __init__(self, arch: CPCArch | None = None, levels: int = 2):
        super().__init__()
        self.arch = arch = arch or CPCArch()
        if not 0 <= levels <= arch.num_levels:
            raise ValueError(f"levels must be in 0..{arch.num_levels}, not {levels}")
        self.levels = int(levels)
        self.gEncoder = _Encoder(arch.hidden_encoder)
        self.gAR = _AR(arch.hidden_encoder, arch.hidden_gar, levels) if levels else None

    @property
    def dim(self) -> int:
        return self.arch.hidden_gar if self.levels else self.arch.hidden_encoder

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B, T, dim]
        x = self.gEncoder(wav.unsqueeze(1)).transpose(1, 2)
        if self.gAR is not None:
            x, _ = self.gAR.baseNet(x)
        return x

    def load_cpc_state_dict(self, sd: dict) -> None:
        """Load the official key layout; LSTM levels beyond ``levels`` are ignored."""
        own = self.state_dict()
        keep = {}
        for k, v in sd.items():
            m = re.match(r"gAR\.baseNet\.\w+_l(\d+)$", k)
            if m and int(m.group(1)) >= self.levels:
                continue
            if k in own:
                keep[k] = v
        missing = sorted(set(own) - set(keep))
        if missing:
            raise KeyError(f"CPC checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
        for k, v in keep.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(f"CPC checkpoint tensor {k} has shape {tuple(v.shape)}, the "
                                 f"model expects {tuple(own[k].shape)}")
        self.load_state_dict({k: v.float() for k, v in keep.items()}, strict=True)


def _arch_from_weights(sd: dict) -> CPCArch:
    if "gEncoder.conv0.weight" not in sd:
        raise KeyError("not a CPC state dict: no gEncoder.conv0.weight")
    if "gEncoder.batchNorm0.running_mean" in sd or sd["gEncoder.batchNorm0.weight"].dim() != 3:
        raise ValueError("unsupported CPC encoder normalisation (only the channel norm of CPC "
                         "big, parameters of shape [1, C, 1], is implemented)")
    levels = 0
    while f"gAR.baseNet.weight_ih_l{levels}" in sd:
        levels += 1
    if levels == 0:
        raise KeyError("not a CPC state dict: no gAR.baseNet.weight_ih_l0")
    hidden = int(sd["gAR.baseNet.weight_hh_l0"].shape[1])
    if int(sd["gAR.baseNet.weight_ih_l0"].shape[0]) != 4 * hidden:
        raise ValueError("unsupported CPC autoregressive net: only LSTM (4 gates) is "
                         "implemented, as in textlesslib")
    return CPCArch(hidden_encoder=int(sd["gEncoder.conv0.weight"].shape[0]), hidden_gar=hidden,
                   num_levels=levels)


def _converted_path(path: Path) -> Path:
    stem = path.name.removesuffix(".pt")
    return path.with_name(stem + CONVERTED_SUFFIX)


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"name": path.name, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def read_cpc_checkpoint(path, trusted_sha256: Iterable[str] | str = (),
                        convert: bool = True) -> tuple[CPCArch, dict]:
    """(arch, state dict) of a CPC checkpoint: the official dict ({'weights', 'config', ...}),
    a bare state dict, or our converted copy. A full pickle needs ``trusted_sha256``."""
    from resyn_bench.safeload import load_checkpoint_object, safe_torch_load, sha256_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CPC checkpoint not found: {path}")
    conv = _converted_path(path)
    if convert and not path.name.endswith(CONVERTED_SUFFIX) and conv.is_file():
        try:
            obj = safe_torch_load(conv)
            if (obj.get("format") == _FORMAT and all(
                    obj.get("source", {}).get(k) == v for k, v in _stamp(path).items()
                    if k != "name")):
                return CPCArch(**obj["arch"]), obj["state_dict"]
        except (OSError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
            # unreadable/partial/foreign copy: fall back to the original file
            log.warning("ignoring %s (%s)", conv, exc)
    from resyn_bench import catalogue

    # the documented hash of CPC big is always trusted (like HuBERT Base's in hubert.py)
    trusted = catalogue.trusted_hashes("cpc-big-ll6kh", trusted_sha256)
    obj, was_pickle = load_checkpoint_object(path, trusted, what="CPC checkpoint")
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    if obj.get("format") == _FORMAT:
        return CPCArch(**obj["arch"]), obj["state_dict"]
    weights = obj.get("weights", obj)
    sd = {}
    for k, v in weights.items():
        if isinstance(v, torch.Tensor):
            k = str(k)
            sd[k.removeprefix("module.")] = v
    arch = _arch_from_weights(sd)
    sd = {k: v.detach().float().contiguous() for k, v in sd.items()
          if k.startswith(("gEncoder.", "gAR."))}
    if convert and was_pickle:
        out = {"format": _FORMAT, "arch": arch.to_dict(), "state_dict": sd,
               "source": {**_stamp(path), "sha256": sha256_file(path)}}
        from resyn_bench.core.atomic import atomic_open

        try:
            with atomic_open(conv) as fh:
                torch.save(out, fh)
        except OSError as exc:
            log.warning("could not write %s (%s)", conv, exc)
    return arch, sd


class CPCFeatureExtractor:
    """CPC features of 16 kHz mono audio: ``extract(wav) -> [T, dim]`` at 100 Hz."""

    sample_rate = 16000
    hop_size = 160

    def __init__(self, model: CPCModel, checkpoint: str | None = None, max_chunk: int = 64000,
                 norm_features: bool = False, device: str | torch.device = "cpu"):
        self.name = "cpc"
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.layer = model.levels
        self.dim = model.dim
        self.checkpoint = checkpoint
        if _conv_len(max_chunk) < 1:
            raise ValueError(f"max_chunk {max_chunk} is too short for one frame")
        self.max_chunk = int(max_chunk)
        self.norm_features = bool(norm_features)

    def num_frames(self, num_samples: int) -> int:
        return cpc_num_frames(num_samples, self.max_chunk)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x.unsqueeze(0))[0]
        if self.norm_features:  # textlesslib norm_output: per channel over time
            y = (y - y.mean(0, keepdim=True)) / torch.sqrt(y.var(0, keepdim=True) + 1e-8)
        return y

    @torch.inference_mode()
    def extract(self, wav) -> np.ndarray:
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1).to(self.device)
        n, c = x.numel(), self.max_chunk
        if _conv_len(n) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if n <= c:
            return self._run(x).float().cpu().numpy()
        feats, start = [], 0
        while start + c <= n:
            feats.append(self._run(x[start:start + c]))
            start += c
        if start < n:
            # GSLM/textlesslib's last chunk is the whole waveform (module doc)
            whole = self._run(x)
            keep = (n - start) // (n // whole.shape[0])
            if keep:
                feats.append(whole[whole.shape[0] - keep:])
        return torch.cat(feats, 0).float().cpu().numpy()

    def describe(self) -> dict:
        return {"name": self.name, "layer": self.layer, "checkpoint": self.checkpoint,
                "hop_size": self.hop_size, "dim": self.dim, "sample_rate": self.sample_rate}


def load_cpc(path, layer: int = 2, trusted_sha256: Iterable[str] | str = (),
             convert: bool = True, device: str = "cpu", max_chunk: int = 64000,
             norm_features: bool = False) -> CPCFeatureExtractor:
    """A :class:`CPCFeatureExtractor` with the first ``layer`` LSTM levels (textlesslib's
    default 2; 0 = encoder output) of the checkpoint at ``path``."""
    arch, sd = read_cpc_checkpoint(path, trusted_sha256=trusted_sha256, convert=convert)
    if not 0 <= int(layer) <= arch.num_levels:
        raise ValueError(f"layer must be in 0..{arch.num_levels} for this model, not {layer}")
    model = CPCModel(arch, levels=int(layer))
    model.load_cpc_state_dict(sd)
    return CPCFeatureExtractor(model, checkpoint=str(path), max_chunk=max_chunk,
                               norm_features=norm_features, device=device)
