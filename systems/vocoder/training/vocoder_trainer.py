"""The unit HiFi-GAN vocoder trainer (:func:`train_vocoder`), following the reference recipe:
a discriminator step (MPD + MSD, LSGAN, on the detached generator output) then a generator step
(adversarial + 2 x feature matching + 45 x mel L1); a content VQ-VAE adds its code commitment
loss. Validation: mel L1 on whole held-out utterances. The shared loop is
:class:`~resyn_bench.systems.vocoder.training.loop.Trainer`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from resyn_bench.distributed import barrier
from resyn_bench.systems.vocoder.config import TrainConfig, load_config
from resyn_bench.systems.vocoder.training.inputs import build_vocoder_data
from resyn_bench.systems.vocoder.training.loop import Trainer, run_training
from resyn_bench.systems.vocoder.training.schedule import adamw, exponential_lr, quiet_scheduler
from resyn_bench.systems.vocoder.training.state import (
    CONFIG_FILE,
    TrainingError,
    TrainResult,
    cpu_state,
    gather_rng_states,
    n_params,
    param_checksum,
    set_rng_state,
    to_device,
)

__all__ = ["VocoderTrainer", "train_vocoder"]


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
    return run_training(VocoderTrainer, cfg, out_dir, max_steps=max_steps, resume=resume,
                        device=device, progress=progress, checksum_file=checksum_file)


class VocoderTrainer(Trainer):
    """Generator + multi-period and multi-scale discriminators, two AdamW optimizers."""

    def build(self) -> None:
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
            # content VQ-VAE (docs/reference.md §5.4): encoder + codebook + decoder, trained jointly;
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
        self.optim_g = adamw(self.generator.parameters(), cfg)
        self.optim_d = adamw(list(self.msd.parameters()) + list(self.mpd.parameters()), cfg)
        self.epoch = 0
        if self.start_step:
            self.load_checkpoint(self.start_step)
        self.sched_g = exponential_lr(self.optim_g, cfg)
        self.sched_d = exponential_lr(self.optim_d, cfg)
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

    def load_checkpoint(self, step: int) -> None:
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
            set_rng_state(rng)

    def n_parameters(self) -> dict[str, int]:
        return {"generator": n_params(self.generator), "mpd": n_params(self.mpd),
                "msd": n_params(self.msd)}

    def epoch_end(self) -> None:
        """Per-epoch learning-rate decay (reference: ExponentialLR stepped once per epoch)."""
        with quiet_scheduler():
            self.sched_g.step()
            self.sched_d.step()

    def learning_rate(self) -> float:
        return self.optim_g.param_groups[0]["lr"]

    def fingerprint(self) -> float:
        return param_checksum(self.generator, self.mpd, self.msd)

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

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
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
                batch = to_device(item, self.device)
                y_hat, _ = self._generate(self.generator, batch)
                n = min(y_hat.shape[-1], batch["audio"].shape[-1])
                losses.append(float(F.l1_loss(self._mel(batch["audio"][..., :n]),
                                              self._mel(y_hat[..., :n]))))
        finally:
            self.generator.train()
        return {"mel_l1": float(np.mean(losses)) if losses else None, "n": len(losses)}

    def save_checkpoint(self, step: int) -> Path | None:
        from resyn_bench.systems.vocoder.checkpoint import (
            save_generator,
            save_training_state,
        )

        rngs = gather_rng_states(self.dist)
        barrier(self.dist)
        path = None
        if self.dist.is_main:
            # the training state first: a g_ file on disk implies its do_ file exists
            state = {
                "mpd": cpu_state(self.mpd.state_dict()), "msd": cpu_state(self.msd.state_dict()),
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
