"""Pitch-extraction throughput per preset, in seconds of audio per second of compute.

    python tests/bench/bench_pitch.py [--seconds N] [--threads T] [--presets a,b]

Uses real speech from ``../shared/corpora/vctk_autovc_16k`` (relative to the repository root)
when it is there, otherwise synthetic speech-like signals. Each preset is warmed up once on a
short clip before timing. BLAS/OpenMP thread pools are capped at ``--threads`` (default 1, i.e.
"per core" figures) before numpy is imported.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = (REPO / ".." / "shared" / "corpora" / "vctk_autovc_16k").resolve()
SR = 16000
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="seconds of audio to time per preset (default 20)")
    ap.add_argument("--threads", type=int, default=1,
                    help="cap for BLAS/OpenMP threads (default 1)")
    ap.add_argument("--presets", default="",
                    help="comma-separated preset names (default: all)")
    return ap.parse_args(argv)


def load_real(seconds: float):
    import numpy as np
    import soundfile as sf

    from resyn_bench.audio import resample

    wavs = sorted((CORPUS / "wavs").rglob("*.wav")) if CORPUS.is_dir() else []
    if not wavs:
        print(f"corpus not found at {CORPUS}: skipping real speech, using synthetic signals")
        return None
    clips, total = [], 0.0
    for path in wavs:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        x = resample(x.mean(axis=1), sr, SR)
        clips.append(np.ascontiguousarray(x))
        total += len(x) / SR
        if total >= seconds:
            break
    print(f"real speech: {len(clips)} files from {CORPUS} ({total:.1f} s at {SR} Hz)")
    return clips


def synthetic(seconds: float):
    """Speech-like: harmonic voiced stretches with a wandering 90-250 Hz contour, three
    formant resonances and random phases, separated by pauses and noise bursts."""
    import numpy as np
    from scipy.signal import lfilter

    rng = np.random.default_rng(0)
    clips, total = [], 0.0
    while total < seconds:
        n = int(rng.uniform(2.0, 4.0) * SR)
        t = np.arange(n) / SR
        f0 = rng.uniform(90, 250) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        voiced = np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 6.3)) > -0.2
        phase = 2 * np.pi * np.cumsum(f0) / SR
        y = sum(np.sin(h * phase + rng.uniform(0, 6.3)) / h for h in range(1, 25)) * voiced
        y = y + 0.05 * rng.standard_normal(n) * ~voiced
        for fc, bw in ((500, 80), (1500, 120), (2500, 160)):
            r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * fc / SR
            y = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], y)
        clips.append((0.3 * y / np.max(np.abs(y))).astype(np.float32))
        total += n / SR
    print(f"synthetic speech-like signals: {len(clips)} clips ({total:.1f} s at {SR} Hz)")
    return clips


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)

    import numpy as np

    from resyn_bench.dsp.pitch import PRESETS, extract_f0

    names = [p for p in args.presets.split(",") if p] or list(PRESETS)
    clips = load_real(args.seconds) or synthetic(args.seconds)
    audio_s = sum(len(c) for c in clips) / SR
    print(f"threads: BLAS/OpenMP capped at {args.threads} ({', '.join(THREAD_VARS[:3])}); "
          f"{os.cpu_count()} CPU cores visible; numpy {np.__version__}")
    print(f"{'preset':<12} {'audio s':>8} {'compute s':>10} {'x real time':>12} "
          f"{'voiced %':>9}  description")
    for name in names:
        preset = PRESETS[name]
        extract_f0(clips[0][:SR], SR, preset)  # warm-up (imports, caches)
        voiced = frames = 0
        t0 = time.perf_counter()
        for clip in clips:
            track = extract_f0(clip, SR, preset)
            voiced += int(np.count_nonzero(track.f0 > 0))
            frames += len(track)
        elapsed = time.perf_counter() - t0
        print(f"{name:<12} {audio_s:8.1f} {elapsed:10.2f} {audio_s / elapsed:11.1f}x "
              f"{100 * voiced / max(frames, 1):8.1f}%  {preset.description[:60]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
