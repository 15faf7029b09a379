"""A training process killed with SIGKILL resumes from its latest complete checkpoint.

The real CLI (``python -m resyn_bench.cli train vocoder --config tiny``) runs in a subprocess
with a checkpoint at every step; it is killed (SIGKILL: no handler, no cleanup) as soon as its
first generator checkpoint appears, then the same command is started again. Checked:

* the killed folder holds no partial or corrupt checkpoint under a checkpoint name (writes go
  through a temporary file + rename): every ``g_``/``do_`` file loads and says its own step;
* the restart resumes from the latest *complete* ``g_``/``do_`` pair (a ``do_`` written just
  before the kill without its ``g_`` does not count), says and logs the resume, and the step
  numbers in the log continue from there: the lines of steps done after that checkpoint and
  before the kill are dropped when it resumes, so every step is logged once;
* the state it resumed from is the one saved in ``do_<step>``, checked against an
  uninterrupted run of the same command: same ``do_<K>`` (optimizer, discriminators, RNG), and
  the same losses, optimizer states and weights at every later step up to the final one.

Units come from a unit file made with a weight-free stand-in encoder, and the vocoder runs
without F0 (``f0=false``: no F0 quantizer to train first), so the whole test takes seconds.
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

from test_training import assert_same_tree, make_corpus, write_units

MAX_STEPS = 6
CKPT = re.compile(r"(g|do)_(\d{8})")


def train_args(root: Path, units: Path, out: Path) -> list[str]:
    return ["train", "vocoder", "--config", "tiny", "--dataset", "manifest",
            "--data-root", str(root), "--units", str(units), "--out", str(out),
            "--max-steps", str(MAX_STEPS), "--threads", "1", "--device", "cpu", "--quiet",
            "--set", "f0=false", "multispkr=null", "model_in_dim=32", "checkpoint_interval=1",
            "log_interval=1", "validation_interval=1000", "validation_size=1",
            "validation_max_seconds=0.5", "batch_size=2", "segment_size=2560"]


def load(path: Path) -> dict:
    from resyn_bench.safeload import safe_torch_load

    return safe_torch_load(path)


def training_state(do: dict) -> dict:
    """A do_ file minus the global numpy/python RNG states: those are unseeded process state
    that training never draws from (crops use RNGs seeded by step), so two processes differ
    there; the torch RNG, which dropout and initialisation use, is kept."""
    out = dict(do)
    out["rng"] = {rank: {"torch": s["torch"]} for rank, s in do["rng"].items()}
    return out


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def loss_steps(log: list[dict]) -> list[int]:
    return [r["step"] for r in log if "loss_g" in r]


def losses(log: list[dict], step: int) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith("loss") or k == "mel_l1"}
            for r in log if r.get("step") == step and "loss_g" in r]


def checkpoint_files(out: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {"g": [], "do": []}
    for p in out.iterdir():
        m = CKPT.fullmatch(p.name)
        if m:
            found[m.group(1)].append(int(m.group(2)))
    return {k: sorted(v) for k, v in found.items()}


@pytest.fixture
def corpus(tmp_path):
    root = make_corpus(tmp_path / "corpus", n_per_speaker=2, duration=1.0)
    return root, write_units(root, tmp_path / "units.jsonl")


def test_sigkilled_training_resumes_from_the_latest_complete_checkpoint(corpus, tmp_path, home):
    from resyn_bench.systems.vocoder.checkpoint import latest_checkpoint
    from resyn_bench.systems.vocoder.train import latest_step

    root, units = corpus
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    # the installed package (never the source folder on PYTHONPATH: its resyn_bench has no
    # systems sub-package; setup.py maps that in)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "resyn_bench.cli", *train_args(root, units, killed)]

    # --- first session: SIGKILL once the first generator checkpoint exists, the moment the
    # training state of step 2 lands: the kill falls inside or right after a checkpoint write
    # (sometimes before g_00000002 exists: do_00000002 alone must then be ignored)
    def time_to_kill() -> bool:
        files = checkpoint_files(killed) if killed.is_dir() else {"g": [], "do": []}
        return bool(files["g"]) and max(files["do"]) >= 2

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while not time_to_kill():
            if proc.poll() is not None:
                pytest.fail(f"training ended (rc {proc.returncode}) before its first checkpoint:\n"
                            + proc.stdout.read().decode(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint after 120 s")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # nothing under a checkpoint name is partial: every file loads and holds its own step
    files = checkpoint_files(killed)
    for step in files["do"]:
        assert load(killed / f"do_{step:08d}")["steps"] == step
    for step in files["g"]:
        assert "generator" in load(killed / f"g_{step:08d}")
    # the training state is written before the generator, so a g_ always has its do_
    assert set(files["g"]) <= set(files["do"])
    resume_step = latest_step(killed)
    assert resume_step == max(files["g"]) and 1 <= resume_step < MAX_STEPS
    # a write cut short leaves only a hidden temporary file, never picked as a checkpoint
    leftovers = [p.name for p in killed.iterdir() if not CKPT.fullmatch(p.name)
                 and p.name not in ("config.json", "data.json", "speakers.json", "train_log.jsonl")]
    assert all(re.fullmatch(r"\.((g|do)_\d{8}|config\.json)\..*\.tmp", n) for n in leftovers), \
        leftovers
    assert latest_checkpoint(killed, "g_") == killed / f"g_{resume_step:08d}"
    saved_state = load(killed / f"do_{resume_step:08d}")
    steps_before = loss_steps(read_log(killed))
    last_logged = steps_before[-1]
    assert steps_before == list(range(1, last_logged + 1))
    # killed while saving the checkpoint of the last logged step, or just after it (on a busy
    # machine the poll may wake up a step later than intended)
    assert last_logged >= 2 and last_logged - resume_step in (0, 1)

    # --- second session: the same command
    done = subprocess.run(cmd, check=False, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300)
    out_text = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out_text[-3000:]
    assert f"resuming from step {resume_step} " in out_text
    assert (f"trained vocoder: steps {resume_step}->{MAX_STEPS} "
            f"({MAX_STEPS - resume_step} this session)") in out_text

    # the temporary files a kill can leave mid-save are cleared when training starts again
    assert not [p.name for p in killed.glob(".*.tmp")]
    log = read_log(killed)
    assert {"event": "resume", "step": resume_step, "world_size": 1} in log
    assert sum(1 for r in log if r.get("event") == "start") == 1
    # steps continue from the checkpoint; those after it and before the kill are not kept twice
    assert loss_steps(log) == list(range(1, MAX_STEPS + 1))
    assert checkpoint_files(killed) == {"g": list(range(1, MAX_STEPS + 1)),
                                        "do": list(range(1, MAX_STEPS + 1))}
    # the resumed session did not rewrite the checkpoint it started from
    assert_same_tree(load(killed / f"do_{resume_step:08d}"), saved_state)

    # --- the same command without interruption (in this process): the resumed run started
    # from exactly the saved state, so everything from the resume point on is identical
    from resyn_bench.cli import main

    threads = torch.get_num_threads()
    try:
        assert main(train_args(root, units, reference)) == 0
    finally:
        torch.set_num_threads(threads)
    ref_log = read_log(reference)
    assert_same_tree(training_state(load(reference / f"do_{resume_step:08d}")),
                     training_state(saved_state), "do_resume")
    for step in range(resume_step + 1, MAX_STEPS + 1):
        assert losses(log, step)[-1:] == losses(ref_log, step), step
        assert_same_tree(training_state(load(killed / f"do_{step:08d}")),
                         training_state(load(reference / f"do_{step:08d}")), f"do_{step}")
    assert_same_tree(load(killed / f"g_{MAX_STEPS:08d}"), load(reference / f"g_{MAX_STEPS:08d}"))
