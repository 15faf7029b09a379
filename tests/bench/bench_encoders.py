"""Feature-encoder throughput on CPU, in seconds of audio per second of compute.

    python tests/bench/bench_encoders.py [--seconds 10] [--threads 1] [--repeats 2]

Encoders: logmel (GSLM Kaldi fbank), HuBERT Base at full size with random weights (layer 6,
the paper's units, against all 12 blocks: the saving from building and running only the blocks
needed), CPC big with random weights (2 LSTM levels, textlesslib's default). Weights do not
change the cost, so no checkpoint is needed. Input: a synthetic speech-like signal (throughput
does not depend on content). Each configuration is warmed up once, then the best of
``--repeats`` timed runs is reported, as wall time and as CPU time of the process (the two
differ when other jobs share the cores; the layer-6/layer-12 ratio uses CPU time). BLAS/OpenMP pools and torch's intra-op pool are capped at
``--threads`` before torch is imported.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="audio length (default 10 s)")
    ap.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per configuration")
    return ap.parse_args(argv)


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process) over ``repeats`` runs.

    CPU time is reported too because on a shared machine wall time includes waiting for a
    core; with one thread, CPU time is the cost of the computation itself."""
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from resyn_bench.nn.hubert import (
        HubertArch,
        HubertFeatureExtractor,
        HubertModel,
    )
    from resyn_bench.systems.encoders.cpc import CPCArch, CPCFeatureExtractor, CPCModel
    from resyn_bench.systems.encoders.logmel import LogMelFeatureExtractor

    sr = 16000
    n = int(args.seconds * sr)
    t = np.arange(n) / sr
    rng = np.random.default_rng(0)
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    wav = (0.3 * wav / np.abs(wav).max() + 0.01 * rng.standard_normal(n)).astype(np.float32)

    torch.manual_seed(0)
    arch = HubertArch()
    full = HubertModel(arch)  # all 12 blocks, random weights
    l6 = HubertModel(arch, max_layer=6)
    l6.load_state_dict({k: v for k, v in full.state_dict().items()
                        if k in l6.state_dict()})
    cpc = CPCModel(CPCArch(), levels=2)
    extractors = [
        ("logmel", "80 bins, 25/10 ms", LogMelFeatureExtractor()),
        ("hubert", "layer 6 (blocks 1-6 built)", HubertFeatureExtractor(l6, 6)),
        ("hubert", "layer 12 (all blocks)", HubertFeatureExtractor(full, 12)),
        ("cpc", "big, LSTM levels 1-2", CPCFeatureExtractor(cpc)),
    ]
    print(f"# encoder throughput, CPU, torch {torch.__version__}, torch threads "
          f"{torch.get_num_threads()}, audio {args.seconds:g} s, best of {args.repeats}")
    print(f"{'encoder':8s} {'setting':28s} {'frames':>7s} {'dim':>5s} {'wall s':>8s} "
          f"{'cpu s':>8s} {'audio s/wall s':>15s} {'audio s/cpu s':>14s}")
    results = {}
    for name, setting, fx in extractors:
        out = fx.extract(wav)
        wall, cpu = best_time(lambda fx=fx: fx.extract(wav), args.repeats)
        results[(name, setting)] = cpu
        print(f"{name:8s} {setting:28s} {out.shape[0]:7d} {out.shape[1]:5d} {wall:8.3f} "
              f"{cpu:8.3f} {args.seconds / wall:15.1f} {args.seconds / cpu:14.1f}")
    t6 = results[("hubert", "layer 6 (blocks 1-6 built)")]
    t12 = results[("hubert", "layer 12 (all blocks)")]
    print(f"hubert layer 6 vs all 12 blocks (CPU time): {t12 / t6:.2f}x the throughput "
          f"({100 * (1 - t6 / t12):.0f}% less compute); parameters "
          f"{sum(p.numel() for p in l6.parameters()) / 1e6:.1f}M vs "
          f"{sum(p.numel() for p in full.parameters()) / 1e6:.1f}M")
    return 0


if __name__ == "__main__":
    sys.exit(main())
