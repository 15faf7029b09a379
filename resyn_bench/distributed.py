"""Distributed training helpers: torchrun environment -> process group, batch split, rank-0 I/O.

Launch with torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)::

    torchrun --nproc-per-node 8 -m resyn_bench.cli train vocoder --config hubert100-vctk ...

Nothing here hard-codes an address or a port: a single process (no WORLD_SIZE, or 1) runs
without a process group; several processes rendezvous through ``env://`` with what torchrun
exported. The backend is nccl on CUDA devices and gloo on CPU.

Importing this module is cheap (torch is imported inside the functions).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from resyn_bench.errors import UserError

__all__ = [
    "ENV_VARS",
    "DistInfo",
    "DistributedError",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "find_free_port",
    "local_batch_size",
    "setup_distributed",
]

#: the variables torchrun exports (and a hand-made launcher must set)
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(UserError, RuntimeError):
    """The distributed environment is incomplete or inconsistent."""


def resolve_device(device: str | None) -> str:
    """``device`` as given, or when unset "cuda" if torch sees a GPU, else "cpu" (also without
    torch): the default of every model-backed metric and system."""
    if device:
        return str(device)
    if not _gpu_driver_present():
        return "cpu"   # answered without importing torch (1-2 s at the start of every run)
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _gpu_driver_present() -> bool:
    """False only where no GPU can be visible to torch: Linux without NVIDIA's or ROCm's device
    nodes. Elsewhere (other systems, or nodes present) True: torch must be asked."""
    import sys

    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd",
                                            "/proc/driver/nvidia/gpus"))


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None     # None: single process, no process group
    device: str = "cpu"            # "cpu" or "cuda:<local_rank>"
    owns_group: bool = False       # the process group was created here (and is destroyed here)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and config files."""
        return self.rank == 0

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "world_size": self.world_size, "local_rank": self.local_rank,
                "backend": self.backend, "device": self.device}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def setup_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Read the torchrun variables and, with WORLD_SIZE > 1, join the process group.

    ``device``: "cpu", "cuda" or None (cuda when available). Under DDP on CUDA each process takes
    GPU ``LOCAL_RANK``. ``backend`` overrides the choice (nccl on CUDA, gloo on CPU)."""
    import torch

    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DistributedError("--device cuda was asked but torch sees no CUDA device "
                                   f"(torch {torch.__version__}); use --device cpu")
        dev = f"cuda:{local_rank}" if device == "cuda" else device
        torch.cuda.set_device(torch.device(dev))
    elif device == "cpu":
        dev = "cpu"
    else:
        raise DistributedError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if world <= 1:
        return DistInfo(0, 1, 0, None, dev)
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise DistributedError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with "
                               "torchrun (e.g. torchrun --nproc-per-node N -m resyn_bench.cli train ...)")
    if not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is outside 0..{world - 1}")
    backend = backend or ("nccl" if dev.startswith("cuda") else "gloo")
    import torch.distributed as dist

    owns = not dist.is_initialized()
    if owns:
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = torch.device(dev)
        dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                world_size=world, **kwargs)
    return DistInfo(rank, world, local_rank, backend, dev, owns)


def cleanup_distributed(info: DistInfo | None = None) -> None:
    """Leave the process group if :func:`setup_distributed` created it (a caller's own group,
    e.g. training called from inside a larger DDP program, is left alone)."""
    import torch.distributed as dist

    if info is not None and not info.owns_group:
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        import torch.distributed as dist

        if info.backend == "nccl":
            dist.barrier(device_ids=[int(info.device.split(":")[1])])
        else:
            dist.barrier()


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the speaker map, the resume step)."""
    if not info.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def local_batch_size(global_batch: int, world_size: int) -> int:
    """The per-rank batch: the global batch divided across ranks (must divide evenly, so the
    effective batch - and with it the learning dynamics - does not depend on the GPU count)."""
    if global_batch % world_size:
        raise DistributedError(f"batch_size {global_batch} is not divisible by the {world_size} "
                               f"processes; choose a multiple of {world_size} (--set batch_size=N)")
    return global_batch // world_size


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (for launching local multi-process runs and tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
