"""Quality-metric cost, in seconds of compute per second of audio (lower is cheaper).

    python tests/bench/bench_quality.py [--seconds N] [--threads T] [--snr DB]

Components timed separately: DNSMOS (output only), PESQ, STOI+ESTOI, and MCD split into the
reference analysis (WORLD + mel-cepstrum, cached by the runner) and the output side (WORLD +
mel-cepstrum of the output + DTW). Also prints the DTW time alone for a 10 s pair (2000 x 2000
frames at 5 ms).

Audio: real speech from ``<repo>/../shared/corpora/vctk_autovc_16k`` when it is there,
otherwise espeak-ng sentences from the demo synthesiser (resampled to 16 kHz). The "output" is
the reference plus white noise at ``--snr`` dB (same length), so every metric does its full
work. BLAS/OpenMP pools are capped at ``--threads`` (default 1) before numpy is imported;
DNSMOS uses one onnxruntime thread (the group's default). Each component is warmed up once
(imports, numba JIT of librosa, ONNX session creation) before timing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("RESYN_BENCH_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpora" / "vctk_autovc_16k"
SR = 16000
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="seconds of audio to time (default 60)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP thread cap (default 1)")
    ap.add_argument("--snr", type=float, default=20.0, help="SNR of the degraded output (dB)")
    return ap.parse_args(argv)


def load_clips(seconds: float):
    import numpy as np
    import soundfile as sf

    from resyn_bench.audio import resample

    wavs = sorted((CORPUS / "wavs").rglob("*.wav")) if CORPUS.is_dir() else []
    clips, total = [], 0.0
    if wavs:
        for path in wavs:
            x, sr = sf.read(str(path), dtype="float32", always_2d=True)
            clips.append(np.ascontiguousarray(resample(x.mean(axis=1), sr, SR), dtype=np.float32))
            total += len(clips[-1]) / SR
            if total >= seconds:
                break
        print(f"real speech: {len(clips)} files from {CORPUS} ({total:.1f} s at {SR} Hz)")
        return clips
    print(f"corpus not found at {CORPUS}: using espeak-ng demo synthesis")
    from resyn_bench.demo_corpus import synthesize

    i = 0
    while total < seconds:
        a = synthesize(SENTENCES[i % len(SENTENCES)], "en-us")
        clips.append(np.ascontiguousarray(resample(a.samples, a.sample_rate, SR), dtype=np.float32))
        total += len(clips[-1]) / SR
        i += 1
    print(f"espeak speech: {len(clips)} sentences ({total:.1f} s at {SR} Hz)")
    return clips


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)

    import numpy as np

    from resyn_bench.audio import Audio
    from resyn_bench.metrics.quality import DNSMOSMetrics, IntrusiveQualityMetrics, dtw, dtw_mcd

    clips = load_clips(args.seconds)
    audio_s = sum(len(c) for c in clips) / SR
    rng = np.random.default_rng(0)
    outputs = []
    for c in clips:
        n = rng.standard_normal(len(c))
        n *= np.sqrt(np.mean(c.astype(np.float64) ** 2) / np.mean(n ** 2) / 10 ** (args.snr / 10))
        y = c + n.astype(np.float32)
        outputs.append((y / max(1.0, float(np.max(np.abs(y))))).astype(np.float32))
    print(f"threads: BLAS/OpenMP capped at {args.threads}; {os.cpu_count()} CPU cores visible; "
          f"outputs = reference + white noise at {args.snr:g} dB SNR")

    intr = IntrusiveQualityMetrics()
    dns = DNSMOSMetrics()
    short = Audio(clips[0][: 2 * SR], SR)
    t = time.perf_counter()
    dns.load()
    dns.score({}, short, None)
    print(f"DNSMOS load + first call (session creation, librosa JIT): "
          f"{time.perf_counter() - t:.2f} s")
    warm_ref = intr.analyse_reference(short)
    intr.score(warm_ref, short, None)

    timings = {"dnsmos": 0.0, "pesq": 0.0, "stoi+estoi": 0.0, "mcd reference": 0.0,
               "mcd output+dtw": 0.0}
    mcd_dtw = 0.0
    values: dict[str, list[float]] = {}
    for ref, out in zip(clips, outputs, strict=True):
        t = time.perf_counter()
        s = dns.score({}, Audio(out, SR), None)
        timings["dnsmos"] += time.perf_counter() - t
        values.setdefault("dnsmos.ovrl", []).append(s.values["dnsmos.ovrl"])

        t = time.perf_counter()
        ra = intr.analyse_reference(Audio(ref, SR))
        timings["mcd reference"] += time.perf_counter() - t

        t = time.perf_counter()
        p, _ = intr._pesq(ref, out)
        timings["pesq"] += time.perf_counter() - t
        n = min(len(ref), len(out))
        t = time.perf_counter()
        st, _ = intr._stoi(ref[:n], out[:n], False)
        es, _ = intr._stoi(ref[:n], out[:n], True)
        timings["stoi+estoi"] += time.perf_counter() - t

        t = time.perf_counter()
        mc, *_ = intr.mel_cepstrum(out)
        t_an = time.perf_counter() - t
        t = time.perf_counter()
        mcd, _, _ = dtw_mcd(ra["mcep"][:, 1:], mc[:, 1:])
        t_dtw = time.perf_counter() - t
        timings["mcd output+dtw"] += t_an + t_dtw
        mcd_dtw += t_dtw
        for k, v in (("pesq", p), ("stoi", st), ("estoi", es), ("mcd", mcd)):
            if v is not None:
                values.setdefault(k, []).append(v)
    dns.release()

    print(f"\n{'component':<18} {'compute s':>10} {'s per audio s':>14} {'x real time':>12}")
    for name, sec in timings.items():
        print(f"{name:<18} {sec:10.2f} {sec / audio_s:14.4f} {audio_s / sec:11.1f}x")
    print(f"{'  (dtw alone)':<18} {mcd_dtw:10.2f} {mcd_dtw / audio_s:14.4f}")
    print("mean values: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in values.items()))

    c = np.random.default_rng(1).random((2000, 2000))
    t = time.perf_counter()
    dtw(c)
    print(f"DTW 2000 x 2000 (10 s vs 10 s at 5 ms): {time.perf_counter() - t:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
