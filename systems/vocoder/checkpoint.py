"""Generator checkpoints in the reference layout (speech-resynthesis / fairseq code_hifigan).

Layout (docs/reference.md §8.1): a checkpoint directory holds ``config.json`` (the training
config, reference keys) and files ``g_XXXXXXXX`` (8-digit step) = ``torch.save({'generator':
state_dict})``; training state goes to ``do_XXXXXXXX``. A directory resolves to its latest
``g_*`` file; a file reads the ``config.json`` beside it. The fairseq ``code_hifigan`` vocoders
(``g_00500000`` + ``config.json``) use the same layout plus ``dur_predictor.*`` keys, detected
from the config (``dur_predictor_params``) or the keys.

Loading is safe by default (:func:`resyn_bench.safeload.safe_torch_load`); a file that needs
arbitrary unpickling loads only when its sha256 is passed in ``trusted_sha256``. Files we write
use weight-norm keys (``weight_g``/``weight_v``) even for a model prepared for inference, so the
reference code loads them, and are written atomically (temporary file + ``os.replace``).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resyn_bench.core.atomic import atomic_open, write_text_atomic

__all__ = [
    "CONFIG_NAME",
    "LoadedGenerator",
    "export_state_dict",
    "is_duration_layout",
    "latest_checkpoint",
    "load_checkpoint_file",
    "load_generator",
    "load_training_state",
    "read_config",
    "save_generator",
    "save_training_state",
    "write_config",
]

CONFIG_NAME = "config.json"


@dataclass
class LoadedGenerator:
    model: Any  # CodeGenerator | DurationCodeGenerator, in eval mode
    config: dict
    step: int
    path: Path
    sha256: str


# ---------------------------------------------------------------- files and configs

def _step_files(directory: Path, prefix: str) -> list[tuple[int, Path]]:
    pat = re.compile(re.escape(prefix) + r"(\d+)")
    out = []
    for p in directory.iterdir():
        m = pat.fullmatch(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return out


def latest_checkpoint(directory, prefix: str = "g_") -> Path | None:
    """The latest ``<prefix><digits>`` file in ``directory`` (None if there is none).

    The reference takes the lexicographically last match; with its zero-padded 8-digit names
    that is the highest step, which is what is compared here (also right beyond 8 digits).
    Temporary files from interrupted writes never match.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    files = _step_files(directory, prefix)
    return max(files, key=lambda sp: (sp[0], sp[1].name))[1] if files else None


def read_config(path) -> dict:
    """A reference JSON config as a dict (all keys kept, unknown ones included)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            cfg = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(cfg).__name__}")
    return cfg


def write_config(directory, config: dict) -> Path:
    """Write ``config.json`` (reference formatting: indent 4) atomically."""
    text = json.dumps(config, indent=4) + "\n"
    return write_text_atomic(Path(directory) / CONFIG_NAME, text)


def _torch_save_atomic(obj, path) -> Path:
    import torch

    path = Path(path)
    with atomic_open(path) as fh:
        torch.save(obj, fh)
    return path


def load_checkpoint_file(path, trusted_sha256: str | Iterable[str] = ()) -> tuple[Any, str]:
    """(object, sha256) of a torch file: weights-only, or full unpickling for a trusted hash."""
    from resyn_bench.safeload import UnsafeCheckpointError, load_trusted_pickle, safe_torch_load, sha256_file

    digest = sha256_file(path)
    try:
        return safe_torch_load(path), digest
    except UnsafeCheckpointError:
        trusted = [trusted_sha256] if isinstance(trusted_sha256, str) else list(trusted_sha256 or ())
        if not trusted:
            raise
        return load_trusted_pickle(path, trusted, loader="torch"), digest


# ---------------------------------------------------------------- state dicts

def _weight_norm_modules(model):
    from resyn_bench.systems.vocoder.layers import WNConv1d, WNConv2d, WNConvTranspose1d

    kinds = (WNConv1d, WNConvTranspose1d, WNConv2d)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def _norm_dim0(w):
    return w.pow(2).sum(dim=tuple(range(1, w.dim())), keepdim=True).sqrt()


def export_state_dict(model) -> dict:
    """The model's state dict in the reference layout: weight-norm keys even for folded layers,
    CPU tensors, the reference key order (parameters and buffers as registered)."""
    sd = model.state_dict()
    folded = {n for n, m in _weight_norm_modules(model) if not getattr(m, "weight_normed", True)}
    import torch

    def plain(t):  # a fresh, contiguous CPU copy (prepared models keep weights channels-last)
        return t.detach().cpu().clone(memory_format=torch.contiguous_format)

    out = {}
    for k, v in sd.items():
        mod, _, leaf = k.rpartition(".")
        if mod in folded and leaf == "weight":
            w = plain(v)
            out[f"{mod}.weight_g"] = _norm_dim0(w)
            out[f"{mod}.weight_v"] = w
        else:
            out[k] = plain(v)
    if folded:
        # restore the reference order within each layer: bias, weight_g, weight_v
        order = list(model.state_dict().keys())
        rank = {}
        for i, k in enumerate(order):
            mod, _, leaf = k.rpartition(".")
            if mod in folded and leaf == "weight":
                rank[f"{mod}.weight_g"], rank[f"{mod}.weight_v"] = i + 0.1, i + 0.2
            else:
                rank[k] = i
        out = dict(sorted(out.items(), key=lambda kv: rank[kv[0]]))
    return out


def _adapt_weight_norm_keys(model, sd: dict) -> dict:
    """Let a model with weight norm load a state dict saved with folded ``weight`` keys and vice
    versa (``weight`` = g * v / ||v||)."""
    sd = dict(sd)
    for name, m in _weight_norm_modules(model):
        w, g, v = f"{name}.weight", f"{name}.weight_g", f"{name}.weight_v"
        if getattr(m, "weight_normed", True):
            if w in sd and g not in sd and v not in sd:
                t = sd.pop(w)
                sd[g], sd[v] = _norm_dim0(t.float()).to(t.dtype), t
        elif g in sd and v in sd and w not in sd:
            gv, vv = sd.pop(g), sd.pop(v)
            sd[w] = vv * (gv / _norm_dim0(vv))
    return sd


def is_duration_layout(config: dict, state_dict: dict | None = None) -> bool:
    """fairseq code_hifigan duration-predictor variant (docs/reference.md §8.4)?"""
    if config.get("dur_predictor_params"):
        return True
    return bool(state_dict) and any(k.startswith("dur_predictor.") for k in state_dict)


def _generator_state_dict(obj, path) -> dict:
    import torch

    if isinstance(obj, dict) and "generator" in obj and isinstance(obj["generator"], dict):
        return obj["generator"]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()) \
            and any(k.startswith("conv_pre.") for k in obj):
        return obj  # a bare state dict
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"{path} is not a generator checkpoint: expected {{'generator': state_dict}} "
                     f"(reference layout g_XXXXXXXX), found {keys}")


def _step_from(obj, path: Path) -> int:
    if isinstance(obj, dict) and isinstance(obj.get("steps"), int):
        return int(obj["steps"])
    m = re.search(r"(\d+)$", path.name)
    return int(m.group(1)) if m else 0


def _resolve_aux_path(p: str, bases: Iterable[Path]) -> Path | None:
    cand = Path(p)
    if cand.is_absolute():
        return cand if cand.exists() else None
    for base in bases:
        if (base / cand).exists():
            return base / cand
    return None


def _load_missing_quantizer(model, config: dict, sd: dict, cfg_dir: Path, trusted) -> dict:
    """The reference builds the F0 quantizer from ``f0_quantizer_path``; generator files normally
    also hold its weights (``quantizer.*``). Only when they do not, read the separate file."""
    if getattr(model, "quantizer", None) is None or any(k.startswith("quantizer.") for k in sd):
        return sd
    qpath = config.get("f0_quantizer_path")
    found = _resolve_aux_path(qpath, [Path.cwd(), cfg_dir, cfg_dir.parent]) if qpath else None
    if found is None:
        raise FileNotFoundError(
            f"the generator checkpoint has no 'quantizer.*' weights and the F0 quantizer file "
            f"f0_quantizer_path={qpath!r} was not found (looked relative to {Path.cwd()} and {cfg_dir}); "
            f"place the F0 VQ-VAE checkpoint (g_00400000 of checkpoints/{{lj,vctk}}_f0_vq) there")
    from resyn_bench.systems.vocoder.f0_quantizer import load_f0_quantizer

    qmodel = load_f0_quantizer(found, trusted_sha256=trusted)[0]
    sd = dict(sd)
    for k, v in qmodel.state_dict().items():
        sd[f"quantizer.{k}"] = v
    return sd


# ---------------------------------------------------------------- public API

def load_generator(path_or_dir, trusted_sha256: str | Iterable[str] = (),
                   config: dict | str | None = None, map_location: str = "cpu") -> LoadedGenerator:
    """Load a vocoder from a checkpoint file or directory (reference or fairseq code_hifigan layout).

    ``config`` overrides the ``config.json`` beside the file (a dict or a path). The model comes
    back on device ``map_location`` ("cpu", "cuda"), in eval mode, with weight norm intact
    (``prepare_for_inference`` folds it for fast synthesis).
    """
    from resyn_bench.systems.vocoder.generator import build_generator

    p = Path(path_or_dir)
    if p.is_dir():
        ckpt = latest_checkpoint(p, "g_")
        if ckpt is None:
            raise FileNotFoundError(f"no generator checkpoint (g_XXXXXXXX) in directory {p}")
        cfg_dir = p
    elif p.is_file():
        ckpt, cfg_dir = p, p.parent
    else:
        raise FileNotFoundError(f"generator checkpoint not found: {p}")

    if config is None:
        cfg_path = cfg_dir / CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(
                f"{CONFIG_NAME} not found beside {ckpt}: the reference layout keeps the training config "
                f"in the checkpoint directory; place the model's config.json at {cfg_path} "
                f"(or pass config=...)")
        cfg = read_config(cfg_path)
    elif isinstance(config, (str, os.PathLike)):
        cfg = read_config(config)
    else:
        cfg = dict(config)

    obj, digest = load_checkpoint_file(ckpt, trusted_sha256)
    sd = _generator_state_dict(obj, ckpt)
    if is_duration_layout({}, sd) and not cfg.get("dur_predictor_params"):
        raise ValueError(f"{ckpt} holds duration-predictor weights (dur_predictor.*) but its config "
                         f"lacks 'dur_predictor_params'; use the config.json shipped with the fairseq "
                         f"vocoder")
    model = build_generator(cfg)
    sd = _adapt_weight_norm_keys(model, sd)
    sd = _load_missing_quantizer(model, cfg, sd, cfg_dir, trusted_sha256)
    missing, unexpected = _key_diff(model, sd)
    if missing or unexpected:
        raise ValueError(
            f"{ckpt} does not match the model built from its config: missing keys {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}, unexpected keys {unexpected[:6]}"
            f"{' ...' if len(unexpected) > 6 else ''}. Check that config.json belongs to this checkpoint "
            f"(num_embeddings, f0, multispkr, speaker_embedding, upsample_* sizes).")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{ckpt}: tensor shapes do not match its config.json: {exc}") from None
    model.to(map_location).eval()
    return LoadedGenerator(model=model, config=cfg, step=_step_from(obj, ckpt), path=ckpt, sha256=digest)


def _key_diff(model, sd: dict) -> tuple[list[str], list[str]]:
    want = set(model.state_dict().keys())
    have = set(sd.keys())
    return sorted(want - have), sorted(have - want)


def save_generator(ckpt_dir, step: int, model, config: dict | None = None) -> Path:
    """Write ``<ckpt_dir>/g_XXXXXXXX`` = {'generator': state_dict} (+ ``config.json``) atomically.

    Keys are the reference ones (weight-norm form even if the model was prepared for inference),
    so the reference and fairseq code load the file; unknown config keys are kept.
    """
    ckpt_dir = Path(ckpt_dir)
    model = getattr(model, "module", model)      # DistributedDataParallel
    model = getattr(model, "_orig_mod", model)   # torch.compile
    if config is None:
        config = getattr(model, "cfg", None)
    if config is not None:
        write_config(ckpt_dir, dict(config))
    path = ckpt_dir / f"g_{int(step):08d}"
    return _torch_save_atomic({"generator": export_state_dict(model)}, path)


def save_training_state(ckpt_dir, step: int, state: dict, prefix: str = "do_") -> Path:
    """Write ``<ckpt_dir>/<prefix>XXXXXXXX`` = ``state`` (e.g. {'mpd', 'msd', 'optim_g', 'optim_d',
    'steps', 'epoch'}) atomically. Keep it to tensors/containers/numbers so it loads weights-only."""
    if not isinstance(state, dict):
        raise TypeError("state must be a dict")
    return _torch_save_atomic(state, Path(ckpt_dir) / f"{prefix}{int(step):08d}")


def load_training_state(path_or_dir, prefix: str = "do_",
                        trusted_sha256: str | Iterable[str] = ()) -> dict:
    """The latest ``<prefix>XXXXXXXX`` of a directory (or the given file), loaded safely."""
    p = Path(path_or_dir)
    if p.is_dir():
        found = latest_checkpoint(p, prefix)
        if found is None:
            raise FileNotFoundError(f"no training state ({prefix}XXXXXXXX) in directory {p}")
        p = found
    return load_checkpoint_file(p, trusted_sha256)[0]
