"""DDP training with 2 CPU processes (gloo), launched by torchrun on a free port found at run
time: both ranks hold identical parameters after every step, and only rank 0 writes
checkpoints and logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover - CPU wheels ship gloo
    pytest.skip("torch.distributed is not available", allow_module_level=True)

from test_training import f0_config, make_corpus, vocoder_config, write_units

WORKER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from resyn_bench.systems.vocoder import checkpoint
    from resyn_bench.systems.vocoder.config import load_config
    from resyn_bench.systems.vocoder.train import train_vocoder

    config, out, probe = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    rank = os.environ["RANK"]

    def recording(fn):
        def wrapper(*args, **kwargs):  # who writes checkpoint files?
            with open(probe / f"writes.rank{rank}", "a") as fh:
                fh.write(fn.__name__ + "\\n")
            return fn(*args, **kwargs)
        return wrapper

    checkpoint.save_generator = recording(checkpoint.save_generator)
    checkpoint.save_training_state = recording(checkpoint.save_training_state)
    result = train_vocoder(load_config(config), out, max_steps=3, device="cpu",
                           checksum_file=probe / "checksums")
    with open(probe / f"done.rank{rank}", "w") as fh:
        fh.write(str(result.step))
""")


def test_two_process_gloo_training_keeps_ranks_identical(tmp_path):
    from resyn_bench.distributed import find_free_port
    from resyn_bench.systems.vocoder.train import train_f0_quantizer

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = make_corpus(tmp_path / "corpus")
        units = write_units(root, tmp_path / "units.jsonl")
        train_f0_quantizer(f0_config(root), tmp_path / "f0q", max_steps=1, device="cpu")
    finally:
        torch.set_num_threads(n)
    # global batch 4 -> 2 per rank; 8 training utterances -> 2 steps per epoch per rank
    cfg = vocoder_config(root, units, tmp_path / "f0q", "checkpoint_interval=2", "log_interval=1",
                         "validation_interval=3")
    config = cfg.save(tmp_path / "request.json")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    probe = tmp_path / "probe"
    probe.mkdir()
    out = tmp_path / "out"
    port = find_free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(port),
         str(script), str(config), str(out), str(probe)],
        check=False, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (probe / "done.rank0").read_text() == "3" == (probe / "done.rank1").read_text()

    sums = [dict(line.split("\t") for line in (probe / f"checksums.rank{r}").read_text().splitlines())
            for r in (0, 1)]
    assert list(sums[0]) == ["1", "2", "3"]
    assert sums[0] == sums[1]                       # identical parameters after every step
    assert len(set(sums[0].values())) == 3          # ... and they did change every step

    assert (probe / "writes.rank0").read_text().split() == [
        "save_training_state", "save_generator", "save_training_state", "save_generator"]
    assert not (probe / "writes.rank1").exists()    # only rank 0 writes checkpoints
    assert sorted(p.name for p in out.glob("[gd]*_0*")) == [
        "do_00000002", "do_00000003", "g_00000002", "g_00000003"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss_g" in r]
    assert steps == [1, 2, 3]                       # one log line per step: rank 0 only
    start = next(r for r in log if r.get("event") == "start")
    assert start["world_size"] == 2 and start["n_train"] == 8
    do = torch.load(out / "do_00000003", weights_only=True)
    assert do["world_size"] == 2 and set(do["rng"]) == {"0", "1"}


def test_single_process_setup_and_batch_split(monkeypatch):
    from resyn_bench.distributed import (
        DistributedError,
        local_batch_size,
        setup_distributed,
    )

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    info = setup_distributed("cpu")
    assert (info.rank, info.world_size, info.backend, info.is_main) == (0, 1, None, True)
    assert local_batch_size(16, 8) == 2
    with pytest.raises(DistributedError, match="not divisible"):
        local_batch_size(16, 3)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(DistributedError, match="MASTER_ADDR, MASTER_PORT not set.*torchrun"):
        setup_distributed("cpu")
