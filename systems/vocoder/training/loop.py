"""The training loop shared by every trainer (:class:`Trainer`): resume from the latest complete
checkpoint pair, step-indexed batches, per-epoch learning-rate decay, ``train_log.jsonl``,
validation and checkpoints at their intervals, DDP barriers, and Ctrl-C handled by finishing the
step in progress and saving it (:class:`StopOnSigint`).

A trainer (:class:`~resyn_bench.systems.vocoder.training.vocoder_trainer.VocoderTrainer`,
:class:`~resyn_bench.systems.vocoder.training.f0_trainer.F0QuantizerTrainer`) supplies the model
side through the hooks :meth:`Trainer.build`, :meth:`~Trainer.train_step`,
:meth:`~Trainer.validate`, :meth:`~Trainer.save_checkpoint`, :meth:`~Trainer.load_checkpoint`,
:meth:`~Trainer.epoch_end`, :meth:`~Trainer.learning_rate`, :meth:`~Trainer.fingerprint` and
:meth:`~Trainer.n_parameters`; :func:`run_training` drives one session under torchrun or alone.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from resyn_bench.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    cleanup_distributed,
    local_batch_size,
    setup_distributed,
)
from resyn_bench.systems.vocoder.training.log import JsonlLog, progress_bar, trim_log
from resyn_bench.systems.vocoder.training.schedule import Schedule, StepItems, step_loader
from resyn_bench.systems.vocoder.training.state import (
    CONFIG_FILE,
    TrainingError,
    TrainingInterrupted,
    TrainResult,
    check_resume_config,
    latest_step,
    mix_seed,
    remove_stale_temp_files,
    to_device,
)

__all__ = ["StopOnSigint", "Trainer", "run_training"]

log = logging.getLogger("resyn_bench.train")


class StopOnSigint:
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


class Trainer:
    """One training session of one model (see the module docstring for the hooks). After
    :meth:`build`, ``self.data`` has ``train`` (a map-style dataset), ``validation``, ``collate``;
    ``self.epoch`` is the epoch the (resumed) state is in."""

    #: config fields derived from the data in the first session (F0 statistics file, speaker
    #: map, quantizer block, a content VQ-VAE's own unit encoder): a resumed session keeps them
    FIRST_SESSION_KEYS = ("f0_stats", "speaker_map", "f0_quantizer", "unit_encoder")

    def __init__(self, cfg, out_dir: Path, dist: DistInfo, resume: bool,
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
            check_resume_config(saved, cfg, out_dir)
            # the data-derived fields (stats file, speaker map) come from the first session
            cfg = cfg.with_overrides({k: saved[k] for k in self.FIRST_SESSION_KEYS
                                      if saved.get(k) is not None and k in saved
                                      and (k != "unit_encoder" or cfg.is_vqvae)})
        self.cfg = cfg
        if dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        barrier(dist)

    # -- hooks: the model side -------------------------------------------------------------------

    def build(self) -> None:
        """Build data (``self.data``, and ``self.cfg`` resolved from it), models, optimizers and
        schedulers; load ``self.start_step``'s checkpoint when resuming; write config.json
        (rank 0)."""
        raise NotImplementedError

    def load_checkpoint(self, step: int) -> None:
        """Restore weights, optimizer states, ``self.epoch`` and this rank's RNG state."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimisation step on a batch already on the device; returns the losses."""
        raise NotImplementedError

    def validate(self) -> dict[str, Any]:
        """Held-out losses (rank 0), logged at step 0 and every ``validation_interval``."""
        raise NotImplementedError

    def save_checkpoint(self, step: int) -> Path | None:
        """Write the ``g_``/``do_`` pair of ``step`` (every rank calls it: barriers inside);
        returns the generator file written (rank 0) or None."""
        raise NotImplementedError

    def epoch_end(self) -> None:
        """Per-epoch learning-rate decay."""
        raise NotImplementedError

    def learning_rate(self) -> float:
        raise NotImplementedError

    def fingerprint(self) -> float:
        """A parameter checksum (tests compare DDP ranks with it)."""
        raise NotImplementedError

    def n_parameters(self) -> dict[str, int]:
        raise NotImplementedError

    # -- the loop -------------------------------------------------------------------------------

    def run(self, max_steps: int | None) -> TrainResult:
        self.build()
        cfg, dist = self.cfg, self.dist
        last = min(max_steps, cfg.training_steps) if max_steps is not None else cfg.training_steps
        batch_local = local_batch_size(cfg.batch_size, dist.world_size)
        schedule = Schedule(len(self.data.train), batch_local, dist, cfg.seed)
        items = StepItems(self.data.train, mix_seed(cfg.seed, dist.rank))
        logger = JsonlLog(self.out_dir, dist.is_main, cfg.tensorboard)
        step = self.start_step
        result = TrainResult(self.out_dir, step, step, self.epoch,
                             (self.out_dir / f"g_{step:08d}") if step and dist.is_main else None, None)
        if dist.is_main and step == 0:
            logger.write({"event": "start", "step": 0, "seed": cfg.seed, "config": cfg.preset,
                          "n_train": len(self.data.train), "n_validation": len(self.data.validation),
                          "world_size": dist.world_size, "device": self.device,
                          "steps_per_epoch": schedule.steps_per_epoch,
                          "parameters": self.n_parameters()})
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
        bar = progress_bar(last, self.progress and dist.is_main, initial=step)
        saved_at = step   # the checkpoint the session started from (none at step 0)
        stop = StopOnSigint(not dist.distributed)
        with stop:
            try:
                while step < last and not stop.requested:
                    epoch, pos = schedule.position(step)
                    if epoch != self.epoch:  # an epoch boundary was crossed (per-epoch LR decay)
                        for _ in range(epoch - self.epoch):
                            self.epoch_end()
                        self.epoch = epoch
                    if hasattr(self.data.train, "set_epoch"):
                        self.data.train.set_epoch(epoch)  # crops differ per epoch, repeat exactly
                    batches = schedule.batches(epoch, pos)[: last - step]
                    t_iter = time.perf_counter()
                    for batch in step_loader(items, batches, step, cfg.num_workers, self.data.collate,
                                         self.device):
                        losses = self.train_step(to_device(batch, self.device))
                        busy += time.perf_counter() - t_iter
                        result.busy_s += time.perf_counter() - t_iter
                        step += 1
                        n_window += 1
                        for k, v in losses.items():
                            sums[k] = sums.get(k, 0.0) + v
                        result.last_losses = losses
                        if self.checksum_file is not None:
                            with open(self.checksum_file, "a") as fh:
                                fh.write(f"{step}\t{self.fingerprint()!r}\n")
                        if bar is not None:
                            bar.update(1)
                        if step % cfg.log_interval == 0 or step == last:
                            dt = busy / max(n_window, 1)
                            result.seconds_per_step = dt
                            logger.write({"step": step, "epoch": self.epoch,
                                          **{k: v / n_window for k, v in sums.items()},
                                          "lr": self.learning_rate(),
                                          "seconds_per_step": round(dt, 4)})
                            sums, n_window, busy = {}, 0, 0.0
                        if step % cfg.validation_interval == 0 or step == last:
                            if dist.is_main:
                                v = self.validate()
                                logger.write({"step": step, "validation": v})
                                result.validation.append({"step": step, **v})
                            barrier(dist)
                        if step % cfg.checkpoint_interval == 0 or step == last:
                            result.checkpoint = self.save_checkpoint(step) or result.checkpoint
                            saved_at = step
                        if step >= last or stop.requested:
                            break
                        t_iter = time.perf_counter()
                if stop.requested and step < last:   # (at the last step: simply done)
                    if step != saved_at:
                        result.checkpoint = self.save_checkpoint(step) or result.checkpoint
                    logger.write({"event": "interrupted", "step": step})
                    raise TrainingInterrupted(step, result.checkpoint)
            except Exception:
                if not stop.requested:
                    raise
                # Ctrl-C also reaches data-loader workers; the loader fails when the loop asks for
                # the next batch. Every finished step is consistent: save it, then stop.
                if step != saved_at:
                    result.checkpoint = self.save_checkpoint(step) or result.checkpoint
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


def run_training(trainer_cls: type[Trainer], cfg, out_dir: str | Path, *, max_steps: int | None,
                 resume: bool, device: str | None, progress: bool,
                 checksum_file: str | Path | None) -> TrainResult:
    """Set up the process group (torchrun env vars, or a single process), run one session of
    ``trainer_cls`` into ``out_dir`` and tear the group down."""
    out_dir = Path(out_dir).expanduser()
    dist = setup_distributed(device)
    try:
        return trainer_cls(cfg, out_dir, dist, resume, progress, checksum_file).run(max_steps)
    finally:
        cleanup_distributed(dist)
