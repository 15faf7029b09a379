"""What each step trains on and at which rate: step-indexed batches (every random crop drawn
from an RNG seeded by (seed, step, item), the epoch order by (seed, epoch), so a step's data does
not depend on how often training was stopped), the optimizers and the per-epoch learning-rate
decay of the reference recipe (AdamW, ExponentialLR stepped once per epoch)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from resyn_bench.distributed import DistInfo
from resyn_bench.systems.vocoder.training.state import TrainingError, mix_seed, seeded

__all__ = ["Schedule", "StepItems", "adamw", "exponential_lr", "quiet_scheduler", "step_loader"]


class StepItems(torch.utils.data.Dataset):
    """Wraps a dataset so that item ``(step, index)`` is drawn with an RNG seeded by
    (seed, step, index): crops are reproducible whatever the worker count or resume point."""

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        step, index = key
        with seeded(mix_seed(self.seed, step, index)):
            return self.dataset[index]


class Schedule:
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


def step_loader(items: StepItems, batches: list[list[int]], first_step: int, num_workers: int,
            collate: Callable, device: str) -> Iterator:
    keyed = [[(first_step + i, idx) for idx in batch] for i, batch in enumerate(batches)]
    return iter(torch.utils.data.DataLoader(
        items, batch_sampler=keyed, num_workers=num_workers, collate_fn=collate,
        pin_memory=device.startswith("cuda"), persistent_workers=False))


def adamw(params, cfg) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.adam_b1, cfg.adam_b2))


def exponential_lr(opt, cfg) -> torch.optim.lr_scheduler.ExponentialLR:
    return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)


@contextlib.contextmanager
def quiet_scheduler():
    # right after a resume the scheduler is stepped (epoch boundary) before this process ran
    # optimizer.step(); torch warns about that order, but the schedule is the intended one
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*lr_scheduler\.step\(\)` before `optimizer\.step\(\)`")
        yield
