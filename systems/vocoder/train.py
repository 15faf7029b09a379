"""Training loops: the unit HiFi-GAN vocoder (:func:`train_vocoder`) and the F0 VQ-VAE
(:func:`train_f0_quantizer`).

Both follow the reference recipe (reference-system §3.4, §6): AdamW (lr 2e-4, betas 0.8/0.99,
weight decay 0.01), ExponentialLR 0.999 stepped once per epoch; the vocoder does a
discriminator step (MPD + MSD, LSGAN, on the detached generator output) and then a generator
step (adversarial + 2 x feature matching + 45 x mel L1).

What this adds to the reference:

* **Deterministic resume.** Every random crop is drawn from an RNG seeded by (seed, step, item),
  and the epoch order from (seed, epoch), so the data a step sees depends only on the step
  number - not on how often training was stopped. A resumed run loads the latest
  ``g_XXXXXXXX`` + ``do_XXXXXXXX`` pair (weights, both optimizers, both schedulers, RNG states)
  and its next step equals the uninterrupted run's (tested).
* **Held-out validation** (mel L1 on whole utterances, cropped to ``validation_max_seconds``) at
  step 0 and every ``validation_interval`` steps; ``train_log.jsonl`` gets one line per
  ``log_interval`` steps (losses, lr, seconds/step) and one per validation.
* **Recorded inputs.** ``config.json`` (reference keys + ours: unit source, F0 extractor and
  stats file, dataset, speaker map, seeds) is written beside the checkpoints; the speaker
  name -> id map also as ``speakers.json`` and the F0 statistics as ``f0_stats.json``.
* **DDP** through :mod:`resyn_bench.distributed` (torchrun env vars; nccl on GPU, gloo on CPU):
  the global batch is divided across ranks, a DistributedSampler splits each epoch, and only
  rank 0 writes files (with barriers around checkpoints).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from resyn_bench.systems.vocoder.config import (
    F0QuantizerTrainConfig,
    TrainConfig,
    load_config,
)
from torch import nn
from torch.nn import functional as F

from resyn_bench.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    cleanup_distributed,
    local_batch_size,
    setup_distributed,
)
from resyn_bench.errors import UserError

log = logging.getLogger("resyn_bench.train")

__all__ = [
    "F0_STATS_FILE",
    "LOG_FILE",
    "SPEAKERS_FILE",
    "TrainResult",
    "TrainingError",
    "latest_step",
    "mix_seed",
    "train_f0_quantizer",
    "train_vocoder",
]

LOG_FILE = "train_log.jsonl"
SPEAKERS_FILE = "speakers.json"
F0_STATS_FILE = "f0_stats.json"
CONFIG_FILE = "config.json"

#: config keys a resumed run may change (schedule and I/O); everything else must match
_RESUMABLE_CHANGES = {"training_steps", "training_epochs", "checkpoint_interval",
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
# seeding


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and platforms, unlike hash())."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(int(p).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") >> 1


@contextlib.contextmanager
def _seeded(seed: int):
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


def _gather_rng_states(dist) -> list:
    """Every rank's RNG state (rank order), so a resume restores each rank's own stream."""
    rng = _rng_state()
    if not dist.distributed:
        return [rng]
    import torch.distributed as tdist

    rngs = [None] * dist.world_size
    tdist.all_gather_object(rngs, rng)
    return rngs


def _rng_state() -> dict[str, Any]:
    """RNG states as plain tensors/ints (loadable with weights_only=True)."""
    _kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---------------------------------------------------------------------------------------------
# step-indexed batches


class _StepItems(torch.utils.data.Dataset):
    """Wraps a dataset so that item ``(step, index)`` is drawn with an RNG seeded by
    (seed, step, index): crops are reproducible whatever the worker count or resume point."""

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        step, index = key
        with _seeded(mix_seed(self.seed, step, index)):
            return self.dataset[index]


class _Schedule:
    """Maps a global step to (epoch, position in epoch) and yields each rank's index batches.

    The epoch order comes from a DistributedSampler seeded with the config seed and the epoch
    number (one shard per rank, last incomplete batch dropped)."""

    def __init__(self, n_items: int, local_batch: int, dist: DistInfo, seed: int):
        from torch.utils.data import DistributedSampler

        self.sampler = DistributedSampler(range(n_items), num_replicas=dist.world_size,
                                          rank=dist.rank, shuffle=True, seed=seed, drop_last=True)
        self.local_batch = local_batch
        self.steps_per_epoch = len(self.sampler) // local_batch
        if self.steps_per_epoch < 1:
            raise TrainingError(
                f"{n_items} training utterances cannot fill one batch of {local_batch * dist.world_size} "
                f"({dist.world_size} process(es) x {local_batch}); use more data or a smaller "
                f"batch (--set batch_size=N)")

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_per_epoch)

    def batches(self, epoch: int, start: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        return [order[i * self.local_batch:(i + 1) * self.local_batch]
                for i in range(start, self.steps_per_epoch)]


def _loader(items: _StepItems, batches: list[list[int]], first_step: int, num_workers: int,
            collate: Callable, device: str) -> Iterator:
    keyed = [[(first_step + i, idx) for idx in batch] for i, batch in enumerate(batches)]
    return iter(torch.utils.data.DataLoader(
        items, batch_sampler=keyed, num_workers=num_workers, collate_fn=collate,
        pin_memory=device.startswith("cuda"), persistent_workers=False))


# ---------------------------------------------------------------------------------------------
# files in the output folder


class _JsonlLog:
    """train_log.jsonl (rank 0) plus optional TensorBoard scalars (only if installed)."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.path = out_dir / LOG_FILE
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except Exception as exc:  # noqa: BLE001 - tensorboard is optional, never required
                log.warning("TensorBoard logging asked but unavailable (%s); writing %s only",
                            exc, LOG_FILE)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=False) + "\n")
        if self.tb is not None:
            step = record.get("step", 0)
            for key, value in _flatten(record).items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _write_json(path: Path, data: Any) -> None:
    from resyn_bench.systems.vocoder.checkpoint import atomic_write

    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda fh: fh.write(text), binary=False)


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


def trim_log(out_dir: str | Path, step: int) -> int:
    """Drop the ``train_log.jsonl`` lines of steps after ``step`` (done after the checkpoint a
    session resumes from, then lost with the process): the resumed session logs them again, so
    each step appears once. Returns the number of lines dropped; rewrites atomically."""
    path = Path(out_dir) / LOG_FILE
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:   # a line torn by a kill
            dropped += 1
            continue
        if isinstance(record.get("step"), int) and record["step"] > step:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        text = "".join(f"{line}\n" for line in keep)
        from resyn_bench.systems.vocoder.checkpoint import atomic_write

        atomic_write(path, lambda fh: fh.write(text), binary=False)
    return dropped


def best_validation(out_dir: str | Path) -> tuple[str, float, int] | None:
    """(loss name, best value, its step) over every validation in ``train_log.jsonl``."""
    path = Path(out_dir) / LOG_FILE
    best = None
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            v = record.get("validation") or {}
            for name in ("mel_l1", "f0_mse"):
                if isinstance(v.get(name), (int, float)) and (best is None or v[name] < best[1]):
                    best = (name, float(v[name]), int(record.get("step", 0)))
    return best


class _StopOnSigint:
    """While active (single-process training only), the first Ctrl-C asks the loop to stop
    after the step in progress (so a consistent checkpoint can be written); a second one
    interrupts at once."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        import os
        import signal

        if os.getpid() != self._pid:   # a forked data-loader worker: the usual interrupt
            raise KeyboardInterrupt
        if self.requested:
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt: finishing this step and writing a checkpoint "
                    "(Ctrl-C again to stop at once)")

    def __enter__(self):
        import signal
        import threading

        if self.enabled and threading.current_thread() is threading.main_thread():
            import os

            self._pid = os.getpid()
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        else:
            self.enabled = False
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self.enabled:
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)


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


#: keys holding paths (compared after resolving them)
_PATH_KEYS = {"input_training_file", "input_validation_file", "data_root", "split",
              "validation_split", "f0_quantizer_path", "f0_stats", "unit_encoder", "f0_cache_dir"}


def _norm_path(value: Any) -> Any:
    if isinstance(value, str) and value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def _check_resume_config(saved: dict[str, Any], cfg, out_dir: Path) -> None:
    mine = cfg.to_dict()
    diffs = []
    for key, value in mine.items():
        if key in _RESUMABLE_CHANGES or key not in saved:
            continue
        theirs = saved[key]
        if key in _PATH_KEYS:
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
# optimizers


def _adamw(params, cfg) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.adam_b1, cfg.adam_b2))


def _scheduler(opt, cfg) -> torch.optim.lr_scheduler.ExponentialLR:
    return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)


@contextlib.contextmanager
def _quiet_scheduler():
    # right after a resume the scheduler is stepped (epoch boundary) before this process ran
    # optimizer.step(); torch warns about that order, but the schedule is the intended one
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*lr_scheduler\.step\(\)` before `optimizer\.step\(\)`")
        yield


def _to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def _cpu_state(sd: dict) -> dict:
    return {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in sd.items()}


def _param_checksum(*modules: nn.Module) -> float:
    """Sum of all parameters (float64): a cheap fingerprint to compare DDP ranks."""
    total = 0.0
    for m in modules:
        for p in m.parameters():
            total += float(p.detach().double().sum())
    return total


# ---------------------------------------------------------------------------------------------
# the vocoder


def train_vocoder(config: TrainConfig | str | Path, out_dir: str | Path, *, max_steps: int | None = None,
                  resume: bool = True, device: str | None = None, progress: bool = False,
                  checksum_file: str | Path | None = None) -> TrainResult:
    """Train (or resume training) a unit HiFi-GAN into ``out_dir``.

    ``config``: a :class:`TrainConfig`, a preset name or a config.json. ``max_steps`` stops this
    session at that global step (default ``config.training_steps``); a checkpoint is always
    written at the last step. ``resume=False`` refuses a folder that already holds checkpoints.
    Under torchrun every rank calls this; only rank 0 writes files. ``checksum_file`` (tests)
    makes every rank append ``step<TAB>parameter checksum`` lines to ``<file>.rank<R>``."""
    cfg = config if isinstance(config, TrainConfig) else load_config(config, kind="vocoder")
    out_dir = Path(out_dir).expanduser()
    dist = setup_distributed(device)
    try:
        return _VocoderTrainer(cfg, out_dir, dist, resume, progress, checksum_file).run(max_steps)
    finally:
        cleanup_distributed(dist)


class _VocoderTrainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path, dist: DistInfo, resume: bool,
                 progress: bool, checksum_file):
        self.dist = dist
        self.device = dist.device
        self.out_dir = out_dir
        self.progress = progress
        self.checksum_file = (Path(f"{checksum_file}.rank{dist.rank}") if checksum_file else None)
        if dist.is_main:
            remove_stale_temp_files(out_dir)   # left by a killed session mid-save
        start = latest_step(out_dir) if dist.is_main else None
        start = broadcast_object(dist, start)
        if start is not None and not resume:
            raise TrainingError(f"{out_dir} already holds checkpoints (step {start}); resume "
                                "(drop --no-resume) or choose a new --out")
        self.start_step = start or 0
        if start is not None and (out_dir / CONFIG_FILE).is_file():
            saved = json.loads((out_dir / CONFIG_FILE).read_text(encoding="utf-8"))
            _check_resume_config(saved, cfg, out_dir)
            # the data-derived fields (stats file, speaker map) come from the first session
            cfg = cfg.with_overrides({k: saved[k] for k in ("f0_stats", "speaker_map", "f0_quantizer",
                                                            "unit_encoder")
                                      if saved.get(k) is not None and k in saved
                                      and (k != "unit_encoder" or cfg.is_vqvae)})
        self.cfg = cfg
        if dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        barrier(dist)

    # -- setup --------------------------------------------------------------------------------

    def _build(self) -> None:
        from resyn_bench.systems.vocoder.discriminators import (
            MultiPeriodDiscriminator,
            MultiScaleDiscriminator,
        )
        from resyn_bench.systems.vocoder.generator import CodeGenerator

        cfg = self.cfg
        self.data = build_vocoder_data(cfg, self.out_dir, self.dist)
        cfg = self.cfg = self.data.config          # resolved: stats file, speaker map, quantizer
        torch.manual_seed(cfg.seed)               # identical initial weights on every rank
        if cfg.is_vqvae:
            # content VQ-VAE: audio encoder + EMA codebook + decoder, trained jointly (§5.4);
            # the codebook's EMA statistics are all-reduced across DDP ranks by the bottleneck
            from resyn_bench.systems.vocoder.content_vqvae import VQVAECodeGenerator

            generator_cls = VQVAECodeGenerator
        else:
            generator_cls = CodeGenerator
        self.generator = generator_cls(cfg.generator_config()).to(self.device)
        if cfg.f0:
            self.generator.quantizer.load_state_dict(self.data.quantizer_state)
            self.generator.quantizer.requires_grad_(False)
        self.mpd = MultiPeriodDiscriminator(periods=tuple(cfg.mpd_periods),
                                            width=cfg.discriminator_width).to(self.device)
        self.msd = MultiScaleDiscriminator(width=cfg.discriminator_width).to(self.device)
        self.optim_g = _adamw(self.generator.parameters(), cfg)
        self.optim_d = _adamw(list(self.msd.parameters()) + list(self.mpd.parameters()), cfg)
        self.epoch = 0
        if self.start_step:
            self._load_checkpoint(self.start_step)
        self.sched_g = _scheduler(self.optim_g, cfg)
        self.sched_d = _scheduler(self.optim_d, cfg)
        if self.start_step:
            self.sched_g.load_state_dict(self._resume_state["scheduler_g"])
            self.sched_d.load_state_dict(self._resume_state["scheduler_d"])
        self.g_ddp, self.mpd_ddp, self.msd_ddp = self.generator, self.mpd, self.msd
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda") else None
            self.g_ddp = DDP(self.generator, device_ids=ids)
            self.mpd_ddp = DDP(self.mpd, device_ids=ids)
            self.msd_ddp = DDP(self.msd, device_ids=ids)
        if self.dist.is_main:
            cfg.save(self.out_dir / CONFIG_FILE)

    def _load_checkpoint(self, step: int) -> None:
        from resyn_bench.safeload import safe_torch_load

        # on the CPU: load_state_dict copies weights and moves optimizer state to each
        # parameter's device, and the saved RNG states must stay CPU byte tensors
        g = safe_torch_load(self.out_dir / f"g_{step:08d}", map_location="cpu")
        do = safe_torch_load(self.out_dir / f"do_{step:08d}", map_location="cpu")
        self.generator.load_state_dict(g["generator"])
        if "code_vq_ema" in do:
            # the codebook's EMA statistics are not in the reference generator file (only ``k``)
            block = self.generator.code_vq.block
            block.k_sum.copy_(do["code_vq_ema"]["k_sum"])
            block.k_elem.copy_(do["code_vq_ema"]["k_elem"])
        self.mpd.load_state_dict(do["mpd"])
        self.msd.load_state_dict(do["msd"])
        self.optim_g.load_state_dict(do["optim_g"])
        self.optim_d.load_state_dict(do["optim_d"])
        self.epoch = int(do.get("epoch", 0))
        if "scheduler_g" not in do:
            raise TrainingError(f"{self.out_dir}/do_{step:08d} has no scheduler state (not written "
                                "by resyn-bench); start a new --out")
        # only the scheduler states are needed later (the schedulers are built after this)
        self._resume_state = {k: do[k] for k in ("scheduler_g", "scheduler_d")}
        rng = (do.get("rng") or {}).get(str(self.dist.rank))
        if rng is not None:
            _set_rng_state(rng)

    def _n_parameters(self) -> dict[str, int]:
        return {"generator": _n_params(self.generator), "mpd": _n_params(self.mpd),
                "msd": _n_params(self.msd)}

    def _epoch_end(self) -> None:
        """Per-epoch learning-rate decay (reference: ExponentialLR stepped once per epoch)."""
        with _quiet_scheduler():
            self.sched_g.step()
            self.sched_d.step()

    def _lr(self) -> float:
        return self.optim_g.param_groups[0]["lr"]

    def _fingerprint(self) -> float:
        return _param_checksum(self.generator, self.mpd, self.msd)

    # -- one step -----------------------------------------------------------------------------

    def _mel(self, wav: torch.Tensor) -> torch.Tensor:
        from resyn_bench.systems.vocoder.losses import mel_spectrogram

        c = self.cfg
        return mel_spectrogram(wav, sample_rate=c.sampling_rate, n_fft=c.n_fft, num_mels=c.num_mels,
                               hop_size=c.hop_size, win_size=c.win_size, fmin=c.fmin,
                               fmax=c.fmax_for_loss)

    def _generate(self, model, batch):
        """(waveform, code commitment loss or None): a content VQ-VAE reads the audio crop."""
        kwargs = {}
        if self.cfg.f0:
            kwargs["f0"] = batch["f0"]
        if self.cfg.multi_speaker:
            kwargs["spkr"] = batch["spkr"]
        if self.cfg.is_vqvae:
            wav, commit, _codes = model(batch["audio"], **kwargs)
            return wav, commit
        return model(batch["code"], **kwargs), None

    def _step(self, batch: dict[str, Any]) -> dict[str, float]:
        from resyn_bench.systems.vocoder.losses import (
            discriminator_loss,
            feature_matching_loss,
            generator_adversarial_loss,
        )

        cfg = self.cfg
        y = batch["audio"]
        y_hat, commit = self._generate(self.g_ddp, batch)
        if y_hat.shape[-1] != y.shape[-1]:
            raise TrainingError(f"generator output has {y_hat.shape[-1]} samples for a "
                                f"{y.shape[-1]}-sample segment (unit hop {cfg.code_hop_size}); "
                                "the units and the config's code_hop_size disagree")
        mel = self._mel(y)
        # discriminators, on the detached generator output
        for m in (self.mpd, self.msd):
            m.requires_grad_(True)
        self.optim_d.zero_grad(set_to_none=True)
        r, g, _, _ = self.mpd_ddp(y, y_hat.detach())
        loss_f, _ = discriminator_loss(r, g)
        r, g, _, _ = self.msd_ddp(y, y_hat.detach())
        loss_s, _ = discriminator_loss(r, g)
        loss_d = loss_f + loss_s
        loss_d.backward()
        self.optim_d.step()

        # generator: D params frozen for this backward (no gradients wasted on them); the plain
        # modules are used so DDP does not expect a gradient reduction for them
        for m in (self.mpd, self.msd):
            m.requires_grad_(False)
        self.optim_g.zero_grad(set_to_none=True)
        loss_mel = F.l1_loss(mel, self._mel(y_hat))
        _, g_f, fr_f, fg_f = self.mpd(y, y_hat)
        _, g_s, fr_s, fg_s = self.msd(y, y_hat)
        loss_fm = feature_matching_loss(fr_f, fg_f) + feature_matching_loss(fr_s, fg_s)
        loss_adv = generator_adversarial_loss(g_f)[0] + generator_adversarial_loss(g_s)[0]
        loss_g = cfg.lambda_adv * loss_adv + cfg.lambda_fm * loss_fm + cfg.lambda_mel * loss_mel
        if commit is not None:
            loss_g = loss_g + cfg.lambda_commit_code * commit
        loss_g.backward()
        self.optim_g.step()
        for m in (self.mpd, self.msd):
            m.requires_grad_(True)
        out = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_adv": loss_adv.item(),
               "loss_fm": loss_fm.item(), "mel_l1": loss_mel.item()}
        if commit is not None:
            out["code_commit"] = commit.item()
            vq = getattr(self.generator, "last_vq_metrics", {})
            for k in ("usage", "entropy"):   # codebook health: codes in use, assignment entropy
                if k in vq:
                    out[f"code_{k}"] = float(vq[k])
        return out

    # -- validation / checkpoints ----------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Mean mel L1 (no weight) over the held-out utterances, generator in eval mode."""
        self.generator.eval()
        losses = []
        try:
            for item in self.data.validation:
                batch = _to_device(item, self.device)
                y_hat, _ = self._generate(self.generator, batch)
                n = min(y_hat.shape[-1], batch["audio"].shape[-1])
                losses.append(float(F.l1_loss(self._mel(batch["audio"][..., :n]),
                                              self._mel(y_hat[..., :n]))))
        finally:
            self.generator.train()
        return {"mel_l1": float(np.mean(losses)) if losses else None, "n": len(losses)}

    def _save(self, step: int) -> Path | None:
        from resyn_bench.systems.vocoder.checkpoint import (
            save_generator,
            save_training_state,
        )

        rngs = _gather_rng_states(self.dist)
        barrier(self.dist)
        path = None
        if self.dist.is_main:
            # the training state first: a g_ file on disk implies its do_ file exists
            state = {
                "mpd": _cpu_state(self.mpd.state_dict()), "msd": _cpu_state(self.msd.state_dict()),
                "optim_g": self.optim_g.state_dict(), "optim_d": self.optim_d.state_dict(),
                "steps": step, "epoch": self.epoch,
                "scheduler_g": self.sched_g.state_dict(), "scheduler_d": self.sched_d.state_dict(),
                "rng": {str(r): s for r, s in enumerate(rngs)}, "seed": self.cfg.seed,
                "world_size": self.dist.world_size}
            if self.cfg.is_vqvae:  # exact resume of the EMA codebook needs its running sums
                block = self.generator.code_vq.block
                state["code_vq_ema"] = {"k_sum": block.k_sum.detach().cpu().clone(),
                                        "k_elem": block.k_elem.detach().cpu().clone()}
            save_training_state(self.out_dir, step, state, prefix="do_")
            path = save_generator(self.out_dir, step, self.generator, self.cfg.to_dict())
        barrier(self.dist)
        return path

    # -- the loop -------------------------------------------------------------------------------

    def run(self, max_steps: int | None) -> TrainResult:
        self._build()
        cfg, dist = self.cfg, self.dist
        last = min(max_steps, cfg.training_steps) if max_steps is not None else cfg.training_steps
        batch_local = local_batch_size(cfg.batch_size, dist.world_size)
        schedule = _Schedule(len(self.data.train), batch_local, dist, cfg.seed)
        items = _StepItems(self.data.train, mix_seed(cfg.seed, dist.rank))
        logger = _JsonlLog(self.out_dir, dist.is_main, cfg.tensorboard)
        step = self.start_step
        result = TrainResult(self.out_dir, step, step, self.epoch,
                             (self.out_dir / f"g_{step:08d}") if step and dist.is_main else None, None)
        if dist.is_main and step == 0:
            logger.write({"event": "start", "step": 0, "seed": cfg.seed, "config": cfg.preset,
                          "n_train": len(self.data.train), "n_validation": len(self.data.validation),
                          "world_size": dist.world_size, "device": self.device,
                          "steps_per_epoch": schedule.steps_per_epoch,
                          "parameters": self._n_parameters()})
            v = self.validate()
            logger.write({"step": 0, "validation": v})
            result.validation.append({"step": 0, **v})
        elif dist.is_main:
            dropped = trim_log(self.out_dir, step)
            log.info("resuming from step %d (%s)%s", step, self.out_dir / f"g_{step:08d}",
                     f"; {dropped} log lines of steps after it dropped (they are redone)"
                     if dropped else "")
            logger.write({"event": "resume", "step": step, "world_size": dist.world_size})
        barrier(dist)
        busy, n_window = 0.0, 0  # seconds spent loading data + stepping (not validating/saving)
        sums: dict[str, float] = {}
        t_session = time.perf_counter()
        bar = _progress_bar(last, self.progress and dist.is_main, initial=step)
        saved_at = step   # the checkpoint the session started from (none at step 0)
        stop = _StopOnSigint(not dist.distributed)
        with stop:
            try:
                while step < last and not stop.requested:
                    epoch, pos = schedule.position(step)
                    if epoch != self.epoch:  # an epoch boundary was crossed (per-epoch LR decay)
                        for _ in range(epoch - self.epoch):
                            self._epoch_end()
                        self.epoch = epoch
                    if hasattr(self.data.train, "set_epoch"):
                        self.data.train.set_epoch(epoch)  # crops differ per epoch, repeat exactly
                    batches = schedule.batches(epoch, pos)[: last - step]
                    t_iter = time.perf_counter()
                    for batch in _loader(items, batches, step, cfg.num_workers, self.data.collate,
                                         self.device):
                        losses = self._step(_to_device(batch, self.device))
                        busy += time.perf_counter() - t_iter
                        result.busy_s += time.perf_counter() - t_iter
                        step += 1
                        n_window += 1
                        for k, v in losses.items():
                            sums[k] = sums.get(k, 0.0) + v
                        result.last_losses = losses
                        if self.checksum_file is not None:
                            with open(self.checksum_file, "a") as fh:
                                fh.write(f"{step}\t{self._fingerprint()!r}\n")
                        if bar is not None:
                            bar.update(1)
                        if step % cfg.log_interval == 0 or step == last:
                            dt = busy / max(n_window, 1)
                            result.seconds_per_step = dt
                            logger.write({"step": step, "epoch": self.epoch,
                                          **{k: v / n_window for k, v in sums.items()},
                                          "lr": self._lr(),
                                          "seconds_per_step": round(dt, 4)})
                            sums, n_window, busy = {}, 0, 0.0
                        if step % cfg.validation_interval == 0 or step == last:
                            if dist.is_main:
                                v = self.validate()
                                logger.write({"step": step, "validation": v})
                                result.validation.append({"step": step, **v})
                            barrier(dist)
                        if step % cfg.checkpoint_interval == 0 or step == last:
                            result.checkpoint = self._save(step) or result.checkpoint
                            saved_at = step
                        if step >= last or stop.requested:
                            break
                        t_iter = time.perf_counter()
                if stop.requested and step < last:   # (at the last step: simply done)
                    if step != saved_at:
                        result.checkpoint = self._save(step) or result.checkpoint
                    logger.write({"event": "interrupted", "step": step})
                    raise TrainingInterrupted(step, result.checkpoint)
            except Exception:
                if not stop.requested:
                    raise
                # Ctrl-C also reaches data-loader workers; the loader fails when the loop asks for
                # the next batch. Every finished step is consistent: save it, then stop.
                if step != saved_at:
                    result.checkpoint = self._save(step) or result.checkpoint
                logger.write({"event": "interrupted", "step": step})
                raise TrainingInterrupted(step, result.checkpoint) from None
            finally:
                if bar is not None:
                    bar.close()
                logger.close()
                result.wall_s = time.perf_counter() - t_session
        result.step = step
        result.epoch = self.epoch
        return result


def _describe(utterances, dataset: str | None) -> dict[str, Any]:
    """The training utterances (ids, absolute paths) for data.json: a run evaluating any of
    them warns (resyn_bench.overlap)."""
    from resyn_bench.overlap import describe_utterances

    return describe_utterances(utterances, dataset)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _progress_bar(total: int, enabled: bool, initial: int = 0):
    """The bar counts global steps: a resumed session starts at its checkpoint's step."""
    if not enabled or total - initial <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# data (datasets come from systems/vocoder/data.py)


@dataclass
class VocoderData:
    config: TrainConfig                   # resolved (stats file, speaker map, quantizer params)
    train: Any                            # map-style dataset of training crops
    validation: list[dict[str, Any]]      # whole (cropped) held-out utterances, batch of 1 each
    collate: Callable
    quantizer_state: dict | None
    speakers: dict[str, int]


def _speaker_of(stem: str, method: str | None) -> str:
    """Speaker name from a file stem by the reference ``multispkr`` rule ("_": the part before
    the first underscore, "single"/other: one speaker)."""
    if method == "_":
        return stem.split("_")[0]
    return "A"


def _one_speaker(cfg) -> bool:
    return not cfg.multispkr or cfg.multispkr == "single"


def _utterances_from_unit_file(path: str, cfg) -> list:
    """Utterances named by a unit file's audio paths (the reference way, no dataset loader):
    relative paths resolve against ``data_root`` (else the unit file's folder, else cwd)."""
    from resyn_bench.datasets import Utterance
    from resyn_bench.unit_files import read_unit_file

    entries = read_unit_file(path)
    root = Path(cfg.data_root).expanduser() if cfg.data_root else None
    utts, seen = [], set()
    for e in entries:
        audio = Path(e.audio).expanduser()
        if not audio.is_absolute():
            candidates = [c / audio for c in ([root] if root else []) + [Path(path).parent, Path.cwd()]]
            audio = next((c for c in candidates if c.is_file()), candidates[0])
        if e.utt_id in seen:
            continue
        seen.add(e.utt_id)
        speaker = _speaker_of(e.stem, None) if _one_speaker(cfg) else (
            e.speaker or _speaker_of(e.stem, cfg.multispkr))
        utts.append(Utterance(e.utt_id, speaker, audio))
    return utts


def _select_utterances(cfg) -> tuple[list, list, dict[str, Any]]:
    """(training utterances, validation utterances, description) from the config's data keys."""
    from resyn_bench.datasets import load_dataset

    info: dict[str, Any] = {}
    if cfg.dataset:
        if not cfg.data_root and cfg.dataset not in ("demo", "synthetic"):
            raise TrainingError(f"dataset {cfg.dataset!r} needs a data root (--data-root DIR)")
        ds = load_dataset(cfg.dataset, cfg.data_root, cfg.split, cfg.limit)
        utts = list(ds.utterances)
        info["dataset"] = ds.info
        if _one_speaker(cfg):  # the reference's "single": every file is speaker 'A' (row 0)
            from dataclasses import replace

            utts = [replace(u, speaker="A") for u in utts]
    elif cfg.input_training_file:
        utts = _utterances_from_unit_file(cfg.input_training_file, cfg)
        if cfg.limit:
            utts = utts[:cfg.limit]
    else:
        raise TrainingError("no training data: give --dataset NAME --data-root DIR (and units "
                            "with --units), or a unit file listing the audio (--units FILE)")
    val: list = []
    if getattr(cfg, "validation_split", None):
        if not cfg.dataset:
            raise TrainingError("validation_split needs a dataset (--dataset)")
        val = list(load_dataset(cfg.dataset, cfg.data_root, cfg.validation_split).utterances)
        val_ids = {u.utt_id for u in val}
        utts = [u for u in utts if u.utt_id not in val_ids]
        info["validation"] = {"split": cfg.validation_split, "n": len(val)}
    elif getattr(cfg, "input_validation_file", None) and not cfg.dataset:
        val = _utterances_from_unit_file(cfg.input_validation_file, cfg)
        info["validation"] = {"file": cfg.input_validation_file, "n": len(val)}
    elif cfg.validation_size > 0:
        # a seeded held-out choice, so a resumed (or DDP) run holds out the same utterances
        k = min(cfg.validation_size, max(len(utts) - 1, 0))
        chosen = set(np.random.default_rng(cfg.seed).permutation(len(utts))[:k].tolist())
        val = [u for i, u in enumerate(utts) if i in chosen]
        utts = [u for i, u in enumerate(utts) if i not in chosen]
        info["validation"] = {"held_out": [u.utt_id for u in val]}
    if _one_speaker(cfg):
        from dataclasses import replace

        val = [replace(u, speaker="A") for u in val]
    if not utts:
        raise TrainingError("no training utterances left after holding out the validation set")
    return utts, val, info


def _unit_source(cfg: TrainConfig, validation: bool = False):
    """A unit file path (reference format or ours) or a unit encoder, from the config."""
    if cfg.unit_encoder:
        try:
            from resyn_bench.systems.encoders.base import load_unit_encoder
        except ImportError as exc:  # pragma: no cover - ships with the package
            raise TrainingError(f"unit encoders are unavailable ({exc})") from exc
        return load_unit_encoder(cfg.unit_encoder)
    path = cfg.input_validation_file if (validation and cfg.input_validation_file) \
        else cfg.input_training_file
    if not path:
        raise TrainingError("no unit source: give --units with a unit file (reference "
                            "train.txt format or ours) or a unit encoder spec (a k-means file "
                            "made by `resyn-bench train kmeans`, or a catalogue name such as "
                            "hubert-l6-km100)")
    return path


class _AudioFrameGrid:
    """The unit source of a content VQ-VAE run: the model encodes the audio crop itself, so the
    data pipeline needs only the 160-sample frame grid to cut aligned crops (all-zero
    placeholder codes, one per frame; never fed to the model)."""

    sample_rate = 16000
    vocab_size = 1

    def __init__(self, hop_size: int):
        self.hop_size = int(hop_size)
        self.name = f"audio frames (content VQ-VAE, hop {self.hop_size})"

    def encode(self, wav: np.ndarray) -> np.ndarray:
        return np.zeros(len(np.asarray(wav).reshape(-1)) // self.hop_size, dtype=np.int64)


def _f0_cache_dir(cfg, out_dir: Path) -> Path:
    return Path(cfg.f0_cache_dir).expanduser() if cfg.f0_cache_dir else out_dir / "f0_cache"


def _resolve_f0_stats(cfg, train_utts, val_utts, out_dir: Path, dist: DistInfo) -> tuple[str, dict]:
    """The F0 statistics file (computed from the training utterances when the config has
    none; rank 0 computes and writes ``f0_stats.json``, the others wait and read it)."""
    from resyn_bench.systems.vocoder.f0_stats import (
        compute_f0_stats,
        load_f0_stats,
        speaker_ids_from_names,
    )

    names = [u.speaker for u in list(train_utts) + list(val_utts)]
    ids = dict(cfg.speaker_map) if getattr(cfg, "speaker_map", None) else speaker_ids_from_names(names)
    if cfg.f0_stats:
        stats = load_f0_stats(cfg.f0_stats, ids if Path(cfg.f0_stats).suffix != ".json" else None)
        if stats.speaker_ids:
            ids = dict(stats.speaker_ids)
        return str(Path(cfg.f0_stats).expanduser().resolve()), ids
    path = out_dir / F0_STATS_FILE
    if dist.is_main:
        log.info("computing F0 statistics (%s) of %d training utterances", cfg.f0_extractor,
                 len(train_utts))
        # YAAPT costs ~0.1 s per second of audio: extract with the data-loading workers
        compute_f0_stats(train_utts, cfg.f0_extractor, speaker_ids=ids,
                         cache_dir=_f0_cache_dir(cfg, out_dir),
                         jobs=max(1, cfg.num_workers)).save(path)
    barrier(dist)
    return str(path.resolve()), ids


def _crop_item(item: dict[str, Any], max_samples: int, block: int, hop: int) -> dict[str, Any]:
    n = (min(item["audio"].shape[-1], max_samples) // block) * block
    if n <= 0:
        return item
    out = dict(item)
    out["audio"] = item["audio"][..., :n]
    out["code"] = item["code"][..., :n // hop]
    if "f0" in item:
        out["f0"] = item["f0"][..., :n // 80]
    return out


def build_vocoder_data(cfg: TrainConfig, out_dir: Path, dist: DistInfo) -> VocoderData:
    """Datasets, F0 statistics, speaker map and F0 quantizer weights for :func:`train_vocoder`;
    returns the config with every derived input recorded (absolute paths, speaker map)."""
    from resyn_bench.systems.vocoder.data import (
        VocoderDataset,
        alignment_block,
        collate,
    )

    train_utts, val_utts, info = _select_utterances(cfg)
    quantizer_state = None
    updates: dict[str, Any] = {}
    if cfg.f0:
        if not cfg.f0_quantizer_path:
            raise TrainingError(
                "this vocoder is conditioned on F0 codes and needs a trained F0 quantizer: "
                "train one first (resyn-bench train f0-quantizer --config tiny-f0|f0-vqvae-vctk "
                "--dataset ... --out DIR) and pass --f0-quantizer DIR (or --set f0=false "
                "model_in_dim=... for a model without F0)")
        from resyn_bench.systems.vocoder.f0_quantizer import load_f0_quantizer

        qpath = Path(cfg.f0_quantizer_path).expanduser().resolve()
        if not qpath.exists():
            raise TrainingError(f"F0 quantizer checkpoint {qpath} not found; train one with "
                                "`resyn-bench train f0-quantizer --config tiny-f0 ...`")
        quantizer, qcfg, qstep = load_f0_quantizer(qpath)
        quantizer_state = quantizer.state_dict()
        # the loaded model's own blocks: qcfg may be a vocoder's config (quantizer nested in it)
        updates["f0_quantizer"] = copy.deepcopy(quantizer.config)
        updates["f0_quantizer_path"] = str(qpath)
        updates["extra"] = {**cfg.extra, "f0_quantizer_step": qstep}
        stats_path, ids = _resolve_f0_stats(cfg, train_utts, val_utts, out_dir, dist)
        updates["f0_stats"] = stats_path
    else:
        from resyn_bench.systems.vocoder.f0_stats import speaker_ids_from_names

        stats_path = None
        ids = dict(cfg.speaker_map) if cfg.speaker_map else speaker_ids_from_names(
            u.speaker for u in train_utts + val_utts)
    if cfg.multi_speaker and ids and max(ids.values()) >= cfg.num_speakers:
        raise TrainingError(f"{len(ids)} speakers do not fit the speaker LUT of {cfg.num_speakers} "
                            "rows; raise it with --set num_speakers=N")
    updates["speaker_map"] = ids
    for key, value in (("input_training_file", cfg.input_training_file),
                       ("input_validation_file", cfg.input_validation_file),
                       ("data_root", cfg.data_root)):
        if value:
            updates[key] = str(Path(value).expanduser().resolve())
    cfg = cfg.with_overrides(updates)

    if cfg.is_vqvae:
        # the model makes its own codes: record it as its unit encoder (CheckpointSystem and
        # `resyn-bench encode` then use vqvae:<out dir>); crops only need the 160-sample grid
        cfg = cfg.with_overrides({"unit_encoder": f"vqvae:{Path(out_dir).expanduser().resolve()}"})
        units = _AudioFrameGrid(cfg.code_hop_size)
    else:
        units = _unit_source(cfg)
    common = {"code_hop": cfg.code_hop_size, "f0_extractor": cfg.f0_extractor if cfg.f0 else None,
              "f0_stats": stats_path, "f0_normalize": cfg.f0_normalize, "speaker_ids": ids,
              "cache_dir": _f0_cache_dir(cfg, out_dir), "seed": cfg.seed}
    # audio kept in memory for small corpora in the main process (workers re-read files)
    cache_audio = cfg.num_workers == 0 and len(train_utts) <= 5000
    train = VocoderDataset(train_utts, units, segment_size=cfg.segment_size,
                           align_f0_codes=cfg.f0, cache_audio=cache_audio, **common)
    if train.code_hop != cfg.code_hop_size:
        raise TrainingError(f"the units have a hop of {train.code_hop} samples but the config's "
                            f"code_hop_size is {cfg.code_hop_size}; pick a matching preset or set "
                            "code_hop_size/upsample_rates")
    train.precompute(jobs=max(1, cfg.num_workers))   # F0 extraction in worker processes
    validation: list[dict[str, Any]] = []
    if val_utts:
        val_units = _unit_source(cfg, validation=True) if (cfg.input_validation_file
                                                           and not cfg.is_vqvae) else units
        val_ds = VocoderDataset(val_utts, val_units, segment_size=None, **common)
        block = alignment_block(cfg.code_hop_size, f0_codes=True)
        max_samples = int(cfg.validation_max_seconds * cfg.sampling_rate)
        for i in range(len(val_ds)):
            item = _crop_item(val_ds[i], max_samples, block, cfg.code_hop_size)
            validation.append(collate([item]))
    if dist.is_main:
        _write_json(out_dir / SPEAKERS_FILE, ids)
        _write_json(out_dir / "data.json", {**info, "n_train": len(train),
                                            "dropped_without_units": train.dropped,
                                            "training_utterances": _describe(train_utts, cfg.dataset)})
    return VocoderData(cfg, train, validation, collate, quantizer_state, ids)


@dataclass
class F0Data:
    config: F0QuantizerTrainConfig
    train: Any
    validation: list[dict[str, Any]]
    collate: Callable
    speakers: dict[str, int]


def build_f0_data(cfg: F0QuantizerTrainConfig, out_dir: Path, dist: DistInfo) -> F0Data:
    """F0 crops (training) and whole held-out tracks (validation) for :func:`train_f0_quantizer`."""
    from resyn_bench.systems.vocoder.data import F0Dataset, collate

    train_utts, val_utts, info = _select_utterances(cfg)
    stats_path, ids = _resolve_f0_stats(cfg, train_utts, val_utts, out_dir, dist)
    cfg = cfg.with_overrides({"f0_stats": stats_path, "speaker_map": ids})
    common = {"f0_extractor": cfg.f0_extractor, "f0_stats": stats_path, "f0_normalize": True,
              "speaker_ids": ids, "cache_dir": _f0_cache_dir(cfg, out_dir), "seed": cfg.seed}
    train = F0Dataset(train_utts, segment_size=cfg.segment_size, **common)
    train.precompute(jobs=max(1, cfg.num_workers))   # F0 extraction in worker processes
    validation = []
    if val_utts:
        # fixed crops of the segment size (whole tracks would make the cost grow with the data)
        val_ds = F0Dataset(val_utts, segment_size=cfg.segment_size, **common)
        validation = [collate([val_ds[i]]) for i in range(len(val_ds))]
    if dist.is_main:
        _write_json(out_dir / SPEAKERS_FILE, ids)
        _write_json(out_dir / "data.json", {**info, "n_train": len(train),
                                            "training_utterances": _describe(train_utts, cfg.dataset)})
    return F0Data(cfg, train, validation, collate, ids)


# ---------------------------------------------------------------------------------------------
# the F0 quantizer


def train_f0_quantizer(config: F0QuantizerTrainConfig | str | Path, out_dir: str | Path, *,
                       max_steps: int | None = None, resume: bool = True, device: str | None = None,
                       progress: bool = False, checksum_file: str | Path | None = None) -> TrainResult:
    """Train (or resume training) the F0 VQ-VAE into ``out_dir`` (reference §3.4):
    ``mse(f0_hat, f0) + lambda_commit x commit`` on speaker-normalised F0 crops.

    Checkpoints: ``g_XXXXXXXX`` in the reference layout (``{'generator', 'optim_g', 'steps',
    'epoch'}``, via ``save_f0_quantizer``) plus ``do_XXXXXXXX`` with what a deterministic resume
    needs (scheduler, EMA codebook statistics, RNG states). Same options as :func:`train_vocoder`."""
    cfg = config if isinstance(config, F0QuantizerTrainConfig) else load_config(config, kind="f0-quantizer")
    out_dir = Path(out_dir).expanduser()
    dist = setup_distributed(device)
    try:
        return _F0Trainer(cfg, out_dir, dist, resume, progress, checksum_file).run(max_steps)
    finally:
        cleanup_distributed(dist)


class _F0Trainer(_VocoderTrainer):
    """Same schedule, logging, resume and DDP handling as the vocoder; one model, one loss."""

    def _build(self) -> None:
        from resyn_bench.systems.vocoder.f0_quantizer import F0Quantizer

        self.data = build_f0_data(self.cfg, self.out_dir, self.dist)
        cfg = self.cfg = self.data.config
        torch.manual_seed(cfg.seed)
        self.model = F0Quantizer.from_config(cfg.quantizer_config()).to(self.device)
        self.optim = _adamw(self.model.parameters(), cfg)
        self.epoch = 0
        if self.start_step:
            self._load_checkpoint(self.start_step)
        self.sched = _scheduler(self.optim, cfg)
        if self.start_step:
            self.sched.load_state_dict(self._resume_state["scheduler"])
        self.ddp = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda") else None
            self.ddp = DDP(self.model, device_ids=ids)
        if self.dist.is_main:
            cfg.save(self.out_dir / CONFIG_FILE)

    def _epoch_end(self) -> None:
        with _quiet_scheduler():
            self.sched.step()

    def _lr(self) -> float:
        return self.optim.param_groups[0]["lr"]

    def _fingerprint(self) -> float:
        return _param_checksum(self.model)

    def _n_parameters(self) -> dict[str, int]:
        return {"f0_quantizer": _n_params(self.model)}

    def _load_checkpoint(self, step: int) -> None:
        from resyn_bench.safeload import safe_torch_load

        # on the CPU: load_state_dict copies weights and moves optimizer state to each
        # parameter's device, and the saved RNG states must stay CPU byte tensors
        g = safe_torch_load(self.out_dir / f"g_{step:08d}", map_location="cpu")
        do = safe_torch_load(self.out_dir / f"do_{step:08d}", map_location="cpu")
        self.model.load_state_dict(g["generator"])
        self.optim.load_state_dict(g["optim_g"])
        ema = self.model.vq.block
        ema.k_sum.copy_(do["ema"]["k_sum"])
        ema.k_elem.copy_(do["ema"]["k_elem"])
        ema.initialised = bool(do["ema"]["initialised"])
        self.epoch = int(g.get("epoch", do.get("epoch", 0)))
        self._resume_state = {"scheduler": do["scheduler"]}
        rng = (do.get("rng") or {}).get(str(self.dist.rank))
        if rng is not None:
            _set_rng_state(rng)

    def _step(self, batch: dict[str, Any]) -> dict[str, float]:
        f0 = batch["f0"]
        self.optim.zero_grad(set_to_none=True)
        f0_hat, commit, info = self.ddp(f0)
        recon = F.mse_loss(f0_hat, f0)
        loss = recon + self.cfg.lambda_commit * commit
        loss.backward()
        self.optim.step()
        out = {"loss": loss.item(), "f0_mse": recon.item(), "commit": commit.item()}
        for key in ("entropy", "usage", "used_curr"):
            if key in info:
                out[f"codebook_{key}"] = float(info[key])
        return out

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Mean F0 reconstruction MSE (normalised units) and codes used, on held-out crops."""
        self.model.eval()
        losses, used = [], set()
        try:
            for item in self.data.validation:
                f0 = item["f0"].to(self.device)
                f0_hat, _, info = self.model(f0)
                losses.append(float(F.mse_loss(f0_hat, f0)))
                used.update(info["indices"].flatten().tolist())
        finally:
            self.model.train()
        return {"f0_mse": float(np.mean(losses)) if losses else None, "n": len(losses),
                "codes_used": len(used)}

    def _save(self, step: int) -> Path | None:
        from resyn_bench.systems.vocoder.checkpoint import save_training_state
        from resyn_bench.systems.vocoder.f0_quantizer import save_f0_quantizer

        rngs = _gather_rng_states(self.dist)
        barrier(self.dist)
        path = None
        if self.dist.is_main:
            ema = self.model.vq.block
            save_training_state(self.out_dir, step, {
                "scheduler": self.sched.state_dict(), "steps": step, "epoch": self.epoch,
                "ema": {"k_sum": ema.k_sum.detach().cpu(), "k_elem": ema.k_elem.detach().cpu(),
                        "initialised": bool(ema.initialised)},
                "rng": {str(r): s for r, s in enumerate(rngs)}, "seed": self.cfg.seed,
                "world_size": self.dist.world_size}, prefix="do_")
            path = save_f0_quantizer(self.out_dir, step, self.model, self.cfg.to_dict(),
                                     optim_state=self.optim.state_dict(), epoch=self.epoch)
        barrier(self.dist)
        return path
