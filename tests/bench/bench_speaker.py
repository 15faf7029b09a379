"""Speaker-embedding cost and held-out speaker-ID accuracy / EER of real vs real recordings.

    python tests/bench/bench_speaker.py [--threads T] [--backend resemblyzer] [--folds 5]

Uses ``../shared/corpora/vctk_autovc_16k`` (beside the repository root) when it is there,
otherwise synthesises the demo corpus's voices and sentences with espeak-ng in-process.
Embedding cost is seconds of compute per second of audio (lower is better), measured after one
warm-up embedding, with torch / BLAS thread pools capped at ``--threads`` (default 1, i.e. "per
core"). The accuracy/EER figures are the ``copy`` system's: outputs = the references.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpora" / "vctk_autovc_16k"
SR = 16000
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (default 1)")
    ap.add_argument("--backend", default="resemblyzer")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def load_corpus():
    """[(Utterance-like, Audio at 16 kHz)] from the VCTK subset, or None when absent."""
    import soundfile as sf

    from resyn_bench.audio import Audio, resample
    from resyn_bench.datasets import Utterance

    manifest = CORPUS / "manifest.tsv"
    if not manifest.is_file():
        return None
    items = []
    with open(manifest, encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            path = CORPUS / row["path"]
            x, sr = sf.read(str(path), dtype="float32", always_2d=True)
            items.append((Utterance(row["utt_id"], row["speaker"], path, row.get("text")),
                          Audio(resample(x.mean(axis=1), sr, SR), SR)))
    print(f"real speech: {len(items)} utterances from {CORPUS}")
    return items


def synth_corpus():
    from resyn_bench.audio import Audio, resample
    from resyn_bench.datasets import Utterance
    from resyn_bench.demo_corpus import SENTENCES, VOICES, synthesize

    print(f"corpus not found at {CORPUS}: using espeak-ng demo voices (synthetic speech)")
    items = []
    for v in VOICES:
        for sid, text in SENTENCES:
            a = synthesize(text, v.voice, rate=v.rate, pitch=v.pitch, pitch_range=v.pitch_range)
            items.append((Utterance(f"{v.speaker}_{sid}", v.speaker, Path("-"), text),
                          Audio(resample(a.samples, a.sample_rate, SR), SR)))
    return items


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from resyn_bench.metrics.speaker import SpeakerMetrics

    items = load_corpus() or synth_corpus()
    n_spk = len({u.speaker for u, _ in items})
    total_s = sum(a.duration for _, a in items)
    print(f"{len(items)} utterances, {n_spk} speakers, {total_s:.1f} s of audio; "
          f"threads={args.threads}")

    group = SpeakerMetrics(backend=args.backend, folds=args.folds, seed=args.seed)
    t0 = time.perf_counter()
    group.load()
    print(f"model load: {time.perf_counter() - t0:.2f} s")
    group.analyse_reference(items[0][1])            # warm-up (lazy inits, JIT, allocators)
    refs, per = {}, []
    t0 = time.perf_counter()
    for u, a in items:
        t1 = time.perf_counter()
        refs[u.utt_id] = group.analyse_reference(a)
        per.append((time.perf_counter() - t1) / a.duration)
    dt = time.perf_counter() - t0
    print(f"embedding cost: {dt / total_s:.4f} s compute per s audio "
          f"({total_s / dt:.0f}x real time; per utterance median {np.median(per):.4f}, "
          f"max {np.max(per):.4f})")

    utts = [u for u, _ in items]
    for classifier in ("logreg", "centroid"):
        group.classifier = classifier
        t0 = time.perf_counter()
        group.fit_corpus(utts, refs)
        fit_s = time.perf_counter() - t0
        entries = []
        for u, a in items:    # copy system: outputs are the references (re-embedded)
            s = group.score(refs[u.utt_id], a, u)
            entries.append({"utt_id": u.utt_id, "speaker": u.speaker, "values": s.values,
                            "counts": s.counts, "extra": s.extra})
        agg = group.aggregate(entries)
        cos_c = np.mean([e["values"]["spk.cos_centroid"] for e in entries])
        print(f"[{classifier:8s}] real vs real, {args.folds}-fold held-out: "
              f"acc {100 * agg['spk.acc']:.1f} % (chance {100 * agg['spk.chance']:.1f} %), "
              f"EER {100 * agg['spk.eer']:.2f} %, minDCF(p={group.p_target}) "
              f"{agg['spk.min_dcf']:.3f}, mean cos_centroid {cos_c:.3f}, "
              f"trials {agg['spk.n_target_trials']:.0f}/{agg['spk.n_nontarget_trials']:.0f} "
              f"(fit {fit_s:.2f} s)")
    group.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
