"""Training state on disk and in memory: errors and the session result, seeding and RNG states
(the deterministic resume), the output folder's files (checkpoint steps, stale temporary files,
JSON written atomically) and the check that a resumed session asks for the same config."""
from __future__ import annotations

import contextlib
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resyn_bench.errors import UserError

__all__ = ["CONFIG_FILE", "F0_STATS_FILE", "LOG_FILE", "SPEAKERS_FILE", "PATH_KEYS",
           "RESUMABLE_CHANGES", "TrainResult", "TrainingError", "TrainingInterrupted",
           "check_resume_config", "cpu_state", "gather_rng_states", "latest_step", "mix_seed",
           "n_params", "param_checksum", "remove_stale_temp_files", "rng_state", "seeded",
           "set_rng_state", "to_device", "write_json"]

LOG_FILE = "train_log.jsonl"
SPEAKERS_FILE = "speakers.json"
F0_STATS_FILE = "f0_stats.json"
CONFIG_FILE = "config.json"

#: config keys a resumed run may change (schedule and I/O); everything else must match
RESUMABLE_CHANGES = {"training_steps", "training_epochs", "checkpoint_interval",
                     "validation_interval", "log_interval", "num_workers", "tensorboard",
                     "num_gpus", "dist_config", "extra"}


class TrainingError(UserError, RuntimeError):
    """Training cannot start or go on (missing input, inconsistent resume...)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training: the step in progress was finished and a checkpoint of
    it written (``checkpoint``) before stopping; the same command resumes from ``step``."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(f"interrupted at step {step}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    out_dir: Path
    step: int                      # global step reached
    start_step: int                # step it started (resumed) from
    epoch: int
    checkpoint: Path | None        # last generator checkpoint written (rank 0)
    seconds_per_step: float | None
    validation: list[dict[str, Any]] = field(default_factory=list)  # validations of this session
    last_losses: dict[str, float] = field(default_factory=dict)
    busy_s: float = 0.0            # seconds spent loading data + stepping, over this session
    wall_s: float = 0.0            # whole session (validation and checkpoints included)

    @property
    def mean_seconds_per_step(self) -> float | None:
        """Mean training-step time over the whole session (not the last log window)."""
        n = self.step - self.start_step
        return self.busy_s / n if n > 0 else None


# ---------------------------------------------------------------------------------------------
# seeding and RNG states


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and platforms, unlike hash())."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(int(p).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") >> 1


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block with the python/numpy/torch RNGs seeded, then restore their states: data
    loading randomness is a function of ``seed`` alone and leaves the training RNGs untouched."""
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.default_generator.manual_seed(seed)  # CPU only: CUDA generators stay untouched
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(th)


def gather_rng_states(dist) -> list:
    """Every rank's RNG state (rank order), so a resume restores each rank's own stream."""
    rng = rng_state()
    if not dist.distributed:
        return [rng]
    import torch.distributed as tdist

    rngs = [None] * dist.world_size
    tdist.all_gather_object(rngs, rng)
    return rngs


def rng_state() -> dict[str, Any]:
    """RNG states as plain tensors/ints (loadable with weights_only=True)."""
    _kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---------------------------------------------------------------------------------------------
# the output folder


def write_json(path: Path, data: Any) -> None:
    from resyn_bench.core.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def latest_step(out_dir: str | Path, prefixes: tuple[str, ...] = ("g_", "do_")) -> int | None:
    """The highest step for which every prefix has a checkpoint file (a complete pair)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None
    steps = None
    for prefix in prefixes:
        found = {int(p.name[len(prefix):]) for p in out_dir.glob(f"{prefix}*")
                 if p.name[len(prefix):].isdigit() and p.is_file()}
        steps = found if steps is None else steps & found
    return max(steps) if steps else None


def remove_stale_temp_files(out_dir: str | Path) -> list[Path]:
    """Delete the hidden temporary files a killed session left mid-save (``.g_XXXXXXXX.*.tmp``,
    ``.do_*``, ``.config.json.*`` and the other JSON files: atomic writes go through them). They are never read, but
    they pile up after several kills. Call only while no other process writes this folder."""
    out_dir = Path(out_dir)
    removed = []
    if out_dir.is_dir():
        for p in out_dir.glob(".*.tmp"):
            if p.is_file() and p.name.startswith((".g_", ".do_", ".config.json.", ".speakers.json.",
                                                  ".f0_stats.json.", ".data.json.")):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


# ---------------------------------------------------------------------------------------------
# resuming: the config must match the first session's


#: keys holding paths (compared after resolving them)
PATH_KEYS = {"input_training_file", "input_validation_file", "data_root", "split",
             "validation_split", "f0_quantizer_path", "f0_stats", "unit_encoder", "f0_cache_dir"}


def _norm_path(value: Any) -> Any:
    if isinstance(value, str) and value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def check_resume_config(saved: dict[str, Any], cfg, out_dir: Path) -> None:
    mine = cfg.to_dict()
    diffs = []
    for key, value in mine.items():
        if key in RESUMABLE_CHANGES or key not in saved:
            continue
        theirs = saved[key]
        if key in PATH_KEYS:
            theirs, value = _norm_path(theirs), _norm_path(value)
        if theirs != value and not _resolved_equal(key, theirs, value, saved):
            diffs.append(f"{key}: checkpoint has {theirs!r}, asked {value!r}")
    if diffs:
        raise TrainingError(f"cannot resume training in {out_dir}: the config differs "
                            f"({'; '.join(diffs[:6])}). Use a new --out, or --no-resume to "
                            "start over in this folder")


def _resolved_equal(key: str, saved: Any, asked: Any, saved_cfg: dict[str, Any]) -> bool:
    # fields the training fills in (stats file, speaker map) may be unset in the request; the
    # F0 quantizer block is read from the quantizer checkpoint, whatever the preset said
    if key == "f0_quantizer" and saved_cfg.get("f0_quantizer_path"):
        return True
    # a content VQ-VAE records itself as its unit encoder ("vqvae:<out dir>")
    if key == "unit_encoder" and asked in (None, "") and str(saved).startswith("vqvae:"):
        return True
    return key in ("f0_stats", "speaker_map") and asked in (None, {}, "")


# ---------------------------------------------------------------------------------------------
# tensors and modules


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def cpu_state(sd: dict) -> dict:
    return {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in sd.items()}


def param_checksum(*modules: nn.Module) -> float:
    """Sum of all parameters (float64): a cheap fingerprint to compare DDP ranks."""
    total = 0.0
    for m in modules:
        for p in m.parameters():
            total += float(p.detach().double().sum())
    return total


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
