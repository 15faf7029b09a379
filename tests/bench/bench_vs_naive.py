"""Benchmark: resyn-bench against the plain script it replaces, side by side.

    python tests/bench/bench_vs_naive.py [--limit N] [--dataset-root DIR] [--jobs J] [--skip-naive]

The *naive script* is what an evaluation script usually is: one process, one utterance at a
time, each library called directly with its own defaults - pyworld Harvest F0 of reference and
output + GPE/VDE/FFE, faster-whisper (the embedded Whisper base, beam 5) + jiwer WER of the
output against the text, resemblyzer cosine similarity of output and reference, speechmos
DNSMOS of the output, PESQ (wb) and STOI of the pair.

The *suite* is ``resyn_bench.runner.run`` with the same metric groups (f0 with the harvest
preset, asr, spk, dnsmos, intrusive) and the command line's DEFAULT settings (``--jobs auto``;
``--jobs N`` here to compare). It
computes more than the script (CER and PER, speaker-ID accuracy and EER, ESTOI and MCD, the
reference cache, crash isolation): that is part of its value, and part of its cost.

* cold: the first system on the dataset (empty reference cache);
* warm: a second system on the same dataset (the reference analyses come from the cache).

Both systems score the same WORLD resynthesis outputs (made once, untimed, in two folders), so
naive, cold and warm do the same output-side work. Each of the three runs in its own process;
printed: wall seconds, ratio to the naive script, CPU seconds of the process tree, peak RSS
(the largest sum over the process tree, sampled from /proc every 0.2 s, and the largest single
process) and the per-group seconds of each (the suite's group wall times from its manifest).

Data: ../shared/corpora/vctk_autovc_16k when present (40 utterances), else the demo corpus.
On a shared machine the wall times depend on the other processes' load: compare the ratios of
runs made together, and the CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proctree import TreeSampler  # tests/bench/, beside this script

REPO = Path(__file__).resolve().parents[2]
SHARED_VCTK = REPO.parent / "shared" / "corpora" / "vctk_autovc_16k"
GROUPS = "f0,asr,spk,dnsmos,intrusive"
HARVEST = {"f0_floor": 50.0, "f0_ceil": 800.0, "frame_period": 5.0}


# ------------------------------------------------------------------------------------------
# the naive script (what runs in its own process for --phase naive)
# ------------------------------------------------------------------------------------------

def naive(utterances: list[dict], outputs: Path) -> dict:
    import re

    import jiwer
    import numpy as np
    import pyworld
    import soundfile as sf
    from faster_whisper import WhisperModel
    from pesq import pesq
    from pystoi import stoi
    from resemblyzer import VoiceEncoder, preprocess_wav
    from speechmos import dnsmos

    from resyn_bench.metrics.whisper_models import ensure_model

    seconds = {g: 0.0 for g in GROUPS.split(",")}
    t = time.perf_counter()
    folder, _ = ensure_model("base")          # the embedded Whisper base (where it lies)
    asr = WhisperModel(str(folder), device="cpu", compute_type="int8")
    seconds["asr"] += time.perf_counter() - t
    t = time.perf_counter()
    encoder = VoiceEncoder("cpu", verbose=False)
    seconds["spk"] += time.perf_counter() - t

    def norm(s: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9' ]", " ", s.lower()).split())

    rows, refs, hyps = [], [], []
    for u in utterances:
        ref, sr = sf.read(u["path"], dtype="float32")
        out, sr2 = sf.read(outputs / f"{u['utt_id']}.wav", dtype="float32")
        assert sr == sr2 == 16000, (sr, sr2)
        row = {"utt_id": u["utt_id"]}

        t = time.perf_counter()
        f0r, tr = pyworld.harvest(ref.astype(np.float64), sr, **HARVEST)
        f0o, to = pyworld.harvest(out.astype(np.float64), sr, **HARVEST)
        idx = np.clip(np.searchsorted((to[1:] + to[:-1]) / 2, tr), 0, len(to) - 1)
        syn = np.where(tr <= to[-1], f0o[idx], 0.0)
        both = (f0r > 0) & (syn > 0)
        gross = both & (np.abs(syn / np.where(f0r > 0, f0r, 1) - 1) > 0.2)
        verr = (f0r > 0) ^ (syn > 0)
        row.update(gpe=gross.sum() / max(both.sum(), 1), vde=verr.mean(),
                   ffe=(gross.sum() + verr.sum()) / len(f0r))
        seconds["f0"] += time.perf_counter() - t

        t = time.perf_counter()
        segments, _ = asr.transcribe(out, language="en", beam_size=5)
        hyp = " ".join(s.text.strip() for s in segments)
        refs.append(norm(u["text"]))
        hyps.append(norm(hyp))
        row["wer"] = jiwer.wer(refs[-1], hyps[-1])
        seconds["asr"] += time.perf_counter() - t

        t = time.perf_counter()
        e_ref = encoder.embed_utterance(preprocess_wav(ref, source_sr=sr))
        e_out = encoder.embed_utterance(preprocess_wav(out, source_sr=sr))
        row["spk_cos"] = float(np.dot(e_ref, e_out) / np.linalg.norm(e_ref) / np.linalg.norm(e_out))
        seconds["spk"] += time.perf_counter() - t

        t = time.perf_counter()
        mos = dnsmos.run(np.clip(out, -1, 1), sr=sr)
        row["ovrl"] = float(mos["ovrl_mos"])
        seconds["dnsmos"] += time.perf_counter() - t

        t = time.perf_counter()
        n = min(len(ref), len(out))
        row["pesq"] = pesq(sr, ref, out, "wb")
        row["stoi"] = stoi(ref[:n], out[:n], sr)
        seconds["intrusive"] += time.perf_counter() - t
        rows.append(row)
    return {"group_s": seconds, "corpus_wer": jiwer.wer(refs, hyps),
            "mean_ovrl": float(np.mean([r["ovrl"] for r in rows]))}


# ------------------------------------------------------------------------------------------
# the suite (--phase suite)
# ------------------------------------------------------------------------------------------

def suite(args, outputs: Path, out: Path, cache: Path) -> dict:
    from resyn_bench.run_config import default_jobs
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_manifest

    # the command line's default (--jobs auto) unless --jobs is given
    kwargs = {"jobs": args.jobs if args.jobs is not None else default_jobs()}
    dataset = "manifest" if args.dataset_root else "demo"
    cfg = RunConfig(system=f"outputs:{outputs}", dataset=dataset, data_root=args.dataset_root,
                    out=str(out), limit=args.limit, metrics=GROUPS, f0_preset="harvest",
                    cache_dir=str(cache), **kwargs)
    result = run(cfg, progress=False)
    session = read_manifest(out)["sessions"][-1]
    group_s = dict(session.get("group_wall_s") or {})
    if not group_s:   # an older runner: sums of the per-utterance stage times
        for key, v in session["stage_s"].items():
            g = key.split(".")[0].removeprefix("metric:")
            group_s[g] = group_s.get(g, 0.0) + v
    return {"group_s": group_s, "jobs": session.get("jobs"), "n_failed": result.n_failed,
            "cache": session.get("reference_cache")}


# ------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------

def prepare(args, work: Path) -> list[dict]:
    """The utterance list and the WORLD outputs (two copies: two "systems"), untimed."""
    from resyn_bench.audio import load_audio, write_audio
    from resyn_bench.datasets import load_dataset
    from resyn_bench.registry import make_system
    from resyn_bench.systems.base import transmit

    dataset = load_dataset("manifest" if args.dataset_root else "demo", args.dataset_root,
                           None, args.limit)
    world = make_system("world")
    utts = []
    for u in dataset.utterances:
        ref = load_audio(u.path)
        out, _ = transmit(world, ref, u)
        for folder in ("outputs_a", "outputs_b"):
            write_audio(work / folder / f"{u.utt_id}.wav", out)
        utts.append({"utt_id": u.utt_id, "path": str(u.path), "text": u.text,
                     "seconds": ref.duration})
    (work / "utts.json").write_text(json.dumps(utts))
    return utts


def run_phase(args, work: Path, phase: str, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--work", str(work)]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    if args.dataset_root:
        cmd += ["--dataset-root", args.dataset_root]
    if args.jobs is not None:
        cmd += ["--jobs", str(args.jobs)]
    cmd += list(extra)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd)
    with TreeSampler(proc.pid) as sampler:
        rc = proc.wait()
    wall = time.perf_counter() - t
    if rc:
        raise SystemExit(f"phase {phase} failed (exit {rc})")
    info = json.loads((work / f"{phase}-{'-'.join(extra) or 'x'}.json").read_text())
    info.update(wall=wall, cpu=sum(sampler.cpu.values()), rss_sum=sampler.peak_sum,
                rss_one=sampler.peak_one)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset-root", default=str(SHARED_VCTK) if SHARED_VCTK.exists() else None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=None, help="suite --jobs (default: auto, the CLI's default)")
    ap.add_argument("--skip-naive", action="store_true", help="suite rows only (ratios omitted)")
    ap.add_argument("--also-jobs", type=int, default=None, metavar="N",
                    help="also run the suite cold and warm with --jobs N (its own cache), e.g. 1")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("tag", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.phase:                      # one timed phase, in its own process
        work = Path(args.work)
        utts = json.loads((work / "utts.json").read_text())
        if args.phase == "naive":
            info = naive(utts, work / "outputs_a")
        else:
            folder, cache = args.tag[0], args.tag[1] if len(args.tag) > 1 else "cache"
            info = suite(args, work / folder, work / f"run_{folder}_{cache}", work / cache)
        (work / f"{args.phase}-{'-'.join(args.tag) or 'x'}.json").write_text(json.dumps(info))
        return 0

    work = Path(tempfile.mkdtemp(prefix="resyn-bench-naive-"))
    os.environ.setdefault("RESYN_BENCH_HOME", str(work / "home"))
    try:
        load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
        utts = prepare(args, work)
        audio_s = sum(u["seconds"] for u in utts)
        # warm-up (numba caches, imports) so that neither side pays a first-use cost
        subprocess.run([sys.executable, "-c", "import librosa, numpy as np; "
                        "librosa.feature.melspectrogram(y=np.zeros(16000, 'float32'), sr=16000)"],
                       check=False)
        rows = []
        if not args.skip_naive:
            rows.append(("naive script (one utterance at a time)", run_phase(args, work, "naive")))
        rows.append(("resyn-bench, first system (cold)", run_phase(args, work, "suite", "outputs_a")))
        rows.append(("resyn-bench, second system (warm)", run_phase(args, work, "suite", "outputs_b")))
        if args.also_jobs:
            other = argparse.Namespace(**{**vars(args), "jobs": args.also_jobs})
            tag = f"cache{args.also_jobs}"
            rows.append((f"resyn-bench --jobs {args.also_jobs}, cold",
                         run_phase(other, work, "suite", "outputs_a", tag)))
            rows.append((f"resyn-bench --jobs {args.also_jobs}, warm",
                         run_phase(other, work, "suite", "outputs_b", tag)))
        base = rows[0][1]["wall"] if not args.skip_naive else None
        print(f"\n{len(utts)} utterances, {audio_s:.1f} s of audio, {os.cpu_count()} CPUs, "
              f"groups {GROUPS} (f0 harvest); suite jobs (default auto): "
              f"{rows[1 if not args.skip_naive else 0][1].get('jobs')}; load average before: "
              f"{load_before}")
        print(f"{'run':<42}{'wall s':>8}{'vs naive':>10}{'CPU s':>8}{'peak RSS sum':>14}{'largest':>9}")
        for name, r in rows:
            ratio = f"{base / r['wall']:.2f}x" if base else "-"
            print(f"{name:<42}{r['wall']:>8.1f}{ratio:>10}{r['cpu']:>8.1f}"
                  f"{r['rss_sum'] / 2**30:>12.2f}GB{r['rss_one'] / 2**30:>7.2f}GB")
        print("\nper group (seconds):")
        labels = ["naive"] * (not args.skip_naive) + ["cold", "warm"] + (
            [f"cold -j{args.also_jobs}", f"warm -j{args.also_jobs}"] if args.also_jobs else [])
        print(f"  {'group':<12}" + "".join(f"{label:>14}" for label in labels))
        groups = list(dict.fromkeys([g for _, r in rows for g in r["group_s"]]))
        for g in groups:
            print(f"  {g:<12}" + "".join(f"{r['group_s'].get(g, 0.0):>14.1f}" for _, r in rows))
        if not args.skip_naive:
            print(f"\nnaive corpus WER {rows[0][1]['corpus_wer']:.3f}, mean DNSMOS OVRL "
                  f"{rows[0][1]['mean_ovrl']:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
