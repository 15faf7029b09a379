"""What a training session tells: ``train_log.jsonl`` (one line per ``log_interval`` steps and
per validation; rank 0 only) with optional TensorBoard scalars, the log trimmed back to the step
a session resumes from, the best validation so far, and the progress bar."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from resyn_bench.systems.vocoder.training.state import LOG_FILE

__all__ = ["JsonlLog", "best_validation", "flatten", "progress_bar", "trim_log"]

log = logging.getLogger("resyn_bench.train")


class JsonlLog:
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
            for key, value in flatten(record).items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
        from resyn_bench.core.atomic import write_text_atomic

        write_text_atomic(path, "".join(f"{line}\n" for line in keep))
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


def progress_bar(total: int, enabled: bool, initial: int = 0):
    """The bar counts global steps: a resumed session starts at its checkpoint's step."""
    if not enabled or total - initial <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True)
