"""The F0 VQ-VAE trainer (:func:`train_f0_quantizer`): ``mse(f0_hat, f0) + lambda_commit x
commit`` on speaker-normalised F0 crops, one model and one AdamW optimizer, over the same shared
loop as the vocoder (:class:`~resyn_bench.systems.vocoder.training.loop.Trainer`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from resyn_bench.distributed import barrier
from resyn_bench.systems.vocoder.config import F0QuantizerTrainConfig, load_config
from resyn_bench.systems.vocoder.training.inputs import build_f0_data
from resyn_bench.systems.vocoder.training.loop import Trainer, run_training
from resyn_bench.systems.vocoder.training.schedule import adamw, exponential_lr, quiet_scheduler
from resyn_bench.systems.vocoder.training.state import (
    CONFIG_FILE,
    TrainResult,
    gather_rng_states,
    n_params,
    param_checksum,
    set_rng_state,
)

__all__ = ["F0QuantizerTrainer", "train_f0_quantizer"]


def train_f0_quantizer(config: F0QuantizerTrainConfig | str | Path, out_dir: str | Path, *,
                       max_steps: int | None = None, resume: bool = True, device: str | None = None,
                       progress: bool = False, checksum_file: str | Path | None = None) -> TrainResult:
    """Train (or resume training) the F0 VQ-VAE into ``out_dir`` (docs/reference.md §3.4):
    ``mse(f0_hat, f0) + lambda_commit x commit`` on speaker-normalised F0 crops.

    Checkpoints: ``g_XXXXXXXX`` in the reference layout (``{'generator', 'optim_g', 'steps',
    'epoch'}``, via ``save_f0_quantizer``) plus ``do_XXXXXXXX`` with what a deterministic resume
    needs (scheduler, EMA codebook statistics, RNG states). Same options as :func:`train_vocoder`."""
    cfg = config if isinstance(config, F0QuantizerTrainConfig) else load_config(config, kind="f0-quantizer")
    return run_training(F0QuantizerTrainer, cfg, out_dir, max_steps=max_steps, resume=resume,
                        device=device, progress=progress, checksum_file=checksum_file)


class F0QuantizerTrainer(Trainer):
    """One model (encoder, EMA codebook, decoder), one loss, one optimizer."""

    def build(self) -> None:
        from resyn_bench.systems.vocoder.f0_quantizer import F0Quantizer

        self.data = build_f0_data(self.cfg, self.out_dir, self.dist)
        cfg = self.cfg = self.data.config
        torch.manual_seed(cfg.seed)
        self.model = F0Quantizer.from_config(cfg.quantizer_config()).to(self.device)
        self.optim = adamw(self.model.parameters(), cfg)
        self.epoch = 0
        if self.start_step:
            self.load_checkpoint(self.start_step)
        self.sched = exponential_lr(self.optim, cfg)
        if self.start_step:
            self.sched.load_state_dict(self._resume_state["scheduler"])
        self.ddp = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda") else None
            self.ddp = DDP(self.model, device_ids=ids)
        if self.dist.is_main:
            cfg.save(self.out_dir / CONFIG_FILE)

    def epoch_end(self) -> None:
        with quiet_scheduler():
            self.sched.step()

    def learning_rate(self) -> float:
        return self.optim.param_groups[0]["lr"]

    def fingerprint(self) -> float:
        return param_checksum(self.model)

    def n_parameters(self) -> dict[str, int]:
        return {"f0_quantizer": n_params(self.model)}

    def load_checkpoint(self, step: int) -> None:
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
            set_rng_state(rng)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
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

    def save_checkpoint(self, step: int) -> Path | None:
        from resyn_bench.systems.vocoder.checkpoint import save_training_state
        from resyn_bench.systems.vocoder.f0_quantizer import save_f0_quantizer

        rngs = gather_rng_states(self.dist)
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
