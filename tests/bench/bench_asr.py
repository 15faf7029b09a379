"""Cost of the intelligibility backends, in seconds of compute per second of audio.

    python tests/bench/bench_asr.py [--utterances N] [--threads T] [--whisper-model PATH]

Times pocketsphinx word decoding, pocketsphinx phone recognition, the reference-phone G2P
(cmudict + espeak-ng fallback; per second of the audio the text belongs to) and whisper.
Without ``--whisper-model`` whisper runs a **tiny random checkpoint** (1 layer, 64 wide; built
here, garbage output, sample_len capped at 32 tokens), so that figure is only the pipeline's
overhead (log-mel, 30 s padding, decoding loop), not the cost of a real model.

Speech: the first N utterances of ``../shared/corpora/vctk_autovc_16k`` (relative to the
repository root) when present, else sentences from the demo synthesiser (espeak-ng).
BLAS/OpenMP/torch thread pools are capped at ``--threads`` (default 1: per-core figures)
before numpy/torch are imported. Each backend is warmed up once before timing.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
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
    ap.add_argument("--utterances", type=int, default=4, help="utterances to time (default 4)")
    ap.add_argument("--threads", type=int, default=1, help="thread cap (default 1)")
    ap.add_argument("--whisper-model", default="",
                    help="a real whisper checkpoint (.pt path) instead of the tiny random one")
    ap.add_argument("--skip", default="", help="comma-separated: words,phones,g2p,whisper")
    return ap.parse_args(argv)


def load_speech(n: int):
    """[(samples at 16 kHz, text, label)]"""
    import numpy as np

    from resyn_bench.audio import load_audio, resample

    manifest = CORPUS / "manifest.tsv"
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))[:n]
        out = []
        for r in rows:
            a = load_audio(CORPUS / r["path"])
            out.append((np.asarray(resample(a.samples, a.sample_rate, SR), dtype=np.float32),
                        r["text"], r["utt_id"]))
        print(f"speech: {len(out)} utterances from {CORPUS}")
        return out
    from resyn_bench.demo_corpus import SENTENCES, synthesize

    print(f"corpus not found at {CORPUS}: using the demo synthesiser (espeak-ng en-us)")
    out = []
    for sid, text in SENTENCES[:n]:
        a = synthesize(text, voice="en-us+m3")
        out.append((np.asarray(resample(a.samples, a.sample_rate, SR), dtype=np.float32),
                    text, sid))
    return out


def tiny_whisper_checkpoint(folder: Path) -> Path:
    from dataclasses import asdict

    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=1,
                           n_audio_layer=1, n_vocab=51864, n_text_ctx=448, n_text_state=64,
                           n_text_head=1, n_text_layer=1)
    path = folder / "tiny-random.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    return path


def timed(label: str, fn, clips, audio_s: float) -> None:
    fn(clips[0])                                   # warm-up
    t0 = time.perf_counter()
    for c in clips:
        fn(c)
    dt = time.perf_counter() - t0
    print(f"{label:<44s} {dt / audio_s:8.4f} s/s   ({dt:.2f} s for {audio_s:.1f} s of audio, "
          f"{audio_s / dt:.1f}x real time)")


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(REPO))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    clips = load_speech(args.utterances)
    audio_s = sum(len(x) for x, _, _ in clips) / SR
    print(f"{audio_s:.1f} s of audio, threads={args.threads}\n")

    from resyn_bench.metrics.asr import make_asr

    if not {"words", "phones"} <= skip:
        t0 = time.perf_counter()
        ps = make_asr("pocketsphinx")
        ps.load()
        print(f"pocketsphinx load (both decoders): {time.perf_counter() - t0:.2f} s")
        if "words" not in skip:
            timed("pocketsphinx words", lambda c: ps.transcribe(c[0]), clips, audio_s)
        if "phones" not in skip:
            timed("pocketsphinx phones (allphone)", lambda c: ps.phones(c[0]), clips, audio_s)
        print("  e.g. REF:", clips[0][1])
        print("       HYP:", ps.transcribe(clips[0][0]))
        ps.release()

    if "g2p" not in skip:
        from resyn_bench.metrics.phones import PhoneLexicon

        t0 = time.perf_counter()
        lex = PhoneLexicon()
        _ = lex.lexicon
        print(f"cmudict load: {time.perf_counter() - t0:.2f} s")
        # every word through the G2P (worst case), fresh lexicon per pass: no memoised words
        words_only = [" ".join(f"{w}x" for w in text.split()) for _, text, _ in clips]
        fresh = PhoneLexicon()
        _ = fresh.lexicon

        def g2p_all(text):
            fresh._g2p._cache.clear()          # no memoised words
            fresh.convert(text)

        timed("reference phones (cmudict + G2P for OOV)", lambda c: lex.convert(c[1]),
              clips, audio_s)
        timed("G2P only (every word made OOV, no memo)", g2p_all, words_only, audio_s)

    if "whisper" not in skip:
        try:
            import torch
        except ImportError:
            print("whisper: torch not installed, skipped")
            return 0
        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            if args.whisper_model:
                path, what = Path(args.whisper_model), f"whisper {Path(args.whisper_model).name}"
                opts = {}
            else:
                path, what = tiny_whisper_checkpoint(Path(tmp)), "whisper TINY RANDOM ckpt"
                opts = {"sample_len": 32}
            w = make_asr("whisper", model=str(path), device="cpu", **opts)
            t0 = time.perf_counter()
            w.load()
            print(f"{what} load: {time.perf_counter() - t0:.2f} s")
            timed(what, lambda c: w.transcribe(c[0]), clips, audio_s)
            w.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
