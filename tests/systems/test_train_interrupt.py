"""Ctrl-C during training saves a checkpoint of the last finished step; the same command then
says "resuming from step N", starts its progress bar at N, logs every step once and ends with
a one-line summary and the next command.

The real CLI runs in a subprocess (``tiny`` preset, no F0, units from a weight-free stand-in
encoder, as in test_train_kill.py) with checkpoints far apart, so the only checkpoint before
the end is the one the interrupt writes.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from test_train_kill import checkpoint_files, load, loss_steps, read_log
from test_training import make_corpus, write_units

MAX_STEPS = 6


def _args(root: Path, units: Path, out: Path) -> list[str]:
    return ["train", "vocoder", "--config", "tiny", "--dataset", "manifest",
            "--data-root", str(root), "--units", str(units), "--out", str(out),
            "--max-steps", str(MAX_STEPS), "--threads", "1", "--device", "cpu",
            "--set", "f0=false", "multispkr=null", "model_in_dim=32", "checkpoint_interval=1000",
            "log_interval=1", "validation_interval=1000", "validation_size=1",
            "validation_max_seconds=0.5", "batch_size=2", "segment_size=2560"]


def test_ctrl_c_saves_and_the_same_command_resumes(tmp_path, home):
    root = make_corpus(tmp_path / "corpus", n_per_speaker=2, duration=1.0)
    units = write_units(root, tmp_path / "units.jsonl")
    out = tmp_path / "ckpt"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "resyn_bench.cli", *_args(root, units, out)]

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while not ((out / "train_log.jsonl").is_file() and len(loss_steps(read_log(out))) >= 2):
            if proc.poll() is not None:
                pytest.fail("training ended before the interrupt:\n"
                            + proc.stdout.read().decode(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                pytest.fail("no training step logged after 120 s")
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        first_out = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, first_out[-3000:]
    m = re.search(r"interrupted at step (\d+); checkpoint (\S+) saved", first_out)
    assert m, first_out[-3000:]
    step = int(m.group(1))
    assert 2 <= step < MAX_STEPS and "Traceback" not in first_out
    # the interrupt wrote the only checkpoint: a complete pair of the step reached
    assert checkpoint_files(out) == {"g": [step], "do": [step]}
    assert Path(m.group(2)) == out / f"g_{step:08d}"
    assert load(out / f"do_{step:08d}")["steps"] == step
    # the training set is recorded (a run evaluating these utterances warns: test_overlap.py)
    used = json.loads((out / "data.json").read_text())["training_utterances"]
    assert len(used["utterance_ids"]) == 3 and used["utterance_dataset"] == "manifest"
    assert all(Path(p).is_file() for p in used["utterance_paths"])
    log = read_log(out)
    assert loss_steps(log) == list(range(1, step + 1))
    assert log[-1] == {"event": "interrupted", "step": step}

    # --- the same command: resumes from that step, bar starts there, summary at the end
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=300)
    text = done.stdout.decode(errors="replace")
    assert done.returncode == 0, text[-3000:]
    assert f"resuming from step {step} ({out / f'g_{step:08d}'})" in text
    bars = re.findall(r"training:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)", text)
    assert bars, text[-2000:]
    assert bars[0] == (str(step), str(MAX_STEPS))            # the bar starts at N, not 0
    assert bars[-1] == (str(MAX_STEPS), str(MAX_STEPS))
    log = read_log(out)
    assert loss_steps(log) == list(range(1, MAX_STEPS + 1))   # each step once
    assert {"event": "resume", "step": step, "world_size": 1} in log
    lines = [line for line in text.splitlines() if line.startswith(("trained ", "next: "))]
    summary, nxt = lines[-2:]
    assert re.fullmatch(
        rf"trained vocoder: steps {step}->{MAX_STEPS} \({MAX_STEPS - step} this session\), "
        rf"[0-9.e-]+ s/step; best validation mel l1 [0-9.e-]+ at step (0|{MAX_STEPS}); "
        rf"checkpoint {re.escape(str(out / f'g_{MAX_STEPS:08d}'))}", summary), summary
    assert nxt.startswith(f"next: resyn-bench run --system ckpt:{out} ")
    assert "--dataset manifest" in nxt
    assert not text.lstrip().startswith("{") and '"from_step"' not in text   # no JSON dump
    best = min((r["validation"]["mel_l1"], r["step"]) for r in log if "validation" in r)
    assert f"mel l1 {best[0]:.4g} at step {best[1]}" in summary
    json.dumps(log)  # the log stays valid JSON lines
