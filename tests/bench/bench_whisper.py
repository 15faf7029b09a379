"""Real-time factor of Whisper: faster-whisper (CTranslate2) vs openai-whisper, same utterances.

    python tests/bench/bench_whisper.py [--utterances N] [--threads T] [--model NAME|DIR]
                                        [--openai-model PATH.pt] [--batch B]

Prints, per loader and compute type, the seconds of compute per second of audio (RTF; lower is
faster) and the transcripts' pooled WER on the same utterances, so a speed-up that costs
accuracy shows. faster-whisper runs the default protocol (English, temperature 0, beam 5, no
VAD, the length loop guard) in float32 and int8; ``--batch B`` adds faster-whisper's batched
pipeline (``BatchedInferencePipeline``, B utterances per batch, temperature 0 only).

openai-whisper needs a ``.pt`` checkpoint of the *same* model (Whisper base: ``base.pt``),
which cannot be made from the CTranslate2 weights and is never downloaded here: pass
``--openai-model PATH`` or place it at ``$RESYN_BENCH_HOME/models/whisper/base.pt``; without
it the openai-whisper line says why it is missing and the ratio is not printed.

Speech: the first N utterances of ``../shared/corpora/vctk_autovc_16k`` when present, else the
real-speech demo corpus or the espeak demo sentences. Thread pools are capped at
``--threads`` (default 1: per-core figures). Every configuration is warmed up on one
utterance before timing.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpora" / "vctk_autovc_16k"
SR = 16000


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="base", help="faster-whisper model (default: embedded base)")
    ap.add_argument("--openai-model", default="", help="openai-whisper .pt of the same model")
    ap.add_argument("--batch", type=int, default=0, help="also time the batched pipeline")
    return ap.parse_args(argv)


def utterances(n: int):
    import numpy as np
    import soundfile as sf

    if (CORPUS / "manifest.tsv").is_file():
        rows = list(csv.DictReader(open(CORPUS / "manifest.tsv", encoding="utf-8"),
                                   delimiter="\t"))[:n]
        out = []
        for r in rows:
            x, sr = sf.read(CORPUS / r["path"], dtype="float32")
            if sr != SR:
                from resyn_bench.audio import resample
                x = np.asarray(resample(x, sr, SR), dtype=np.float32)
            out.append((r["text"], x))
        return out, f"{CORPUS.name} (first {len(out)})"
    from resyn_bench.audio import resample
    from resyn_bench.demo_corpus import synthesize

    texts = ["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
             "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish."][:n]
    out = []
    for t in texts:
        a = synthesize(t, voice="en-us+m3")
        out.append((t, np.asarray(resample(a.samples, a.sample_rate, SR), dtype=np.float32)))
    return out, "espeak demo sentences (synthetic: WER not meaningful)"


def pooled_wer(refs, hyps) -> float:
    from resyn_bench.metrics.asr import TextNormalizer
    from resyn_bench.metrics.intelligibility import edit_counts

    norm = TextNormalizer()
    e = n = 0
    for r, h in zip(refs, hyps, strict=True):
        c = edit_counts(norm(r), norm(h), "word")
        e, n = e + c["word_edits"], n + c["ref_words"]
    return e / max(n, 1)


def timed(fn, items):
    fn(items[0][1])                                  # warm-up
    t = time.perf_counter()
    hyps = [fn(x) for _, x in items]
    return time.perf_counter() - t, hyps


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    items, source = utterances(args.utterances)
    audio_s = sum(len(x) for _, x in items) / SR
    refs = [t for t, _ in items]
    print(f"Whisper RTF (compute s per audio s; {args.threads} thread(s)) on {source}, "
          f"{audio_s:.1f} s of audio")
    results = {}
    try:
        import faster_whisper  # noqa: F401
    except ImportError as exc:
        print(f"  faster-whisper: not installed ({exc})")
        return 0
    from resyn_bench.metrics.asr import make_asr

    for ct in ("float32", "int8"):
        asr = make_asr("whisper", model=args.model, compute_type=ct, cpu_threads=args.threads,
                       device="cpu")
        asr.load()
        sec, hyps = timed(asr.transcribe, items)
        results[ct] = sec / audio_s
        print(f"  faster-whisper {args.model:>6} {ct:<8} beam 5: RTF {sec / audio_s:6.3f}   "
              f"WER {100 * pooled_wer(refs, hyps):5.2f} %")
        if args.batch and ct == "int8":
            import numpy as np
            from faster_whisper import BatchedInferencePipeline

            pipe = BatchedInferencePipeline(asr._model)
            gap = np.zeros(SR // 10, np.float32)
            chunks, clips, pos = [], [], 0
            for _, x in items:
                clips.append({"start": pos / SR, "end": (pos + len(x)) / SR})
                chunks += [x, gap]
                pos += len(x) + len(gap)
            joined = np.concatenate(chunks)
            t = time.perf_counter()
            segs, _ = pipe.transcribe(joined, clip_timestamps=clips, batch_size=args.batch,
                                      language="en", beam_size=5, temperature=0.0,
                                      without_timestamps=True, vad_filter=False)
            bhyps = [s.text for s in segs]
            sec = time.perf_counter() - t
            print(f"  faster-whisper {args.model:>6} int8 batched x{args.batch}: RTF "
                  f"{sec / audio_s:6.3f}   WER {100 * pooled_wer(refs, bhyps):5.2f} %")
        asr.release()

    pt = Path(args.openai_model) if args.openai_model else None
    if pt is None:
        from resyn_bench.metrics.asr import default_whisper_root

        pt = default_whisper_root() / f"{args.model}.pt"
    if not pt.is_file():
        print(f"  openai-whisper {args.model}: not timed: no .pt checkpoint of the same model at "
              f"{pt} (openai-whisper cannot load the CTranslate2 weights and nothing is "
              "downloaded here; pass --openai-model PATH)")
        return 0
    try:
        asr = make_asr("openai-whisper", model=str(pt), device="cpu", beam_size=5)
        asr.load()
    except Exception as exc:
        print(f"  openai-whisper: could not load {pt}: {exc}")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    sec, hyps = timed(asr.transcribe, items)
    rtf = sec / audio_s
    print(f"  openai-whisper {pt.name:>10} float32 beam 5: RTF {rtf:6.3f}   "
          f"WER {100 * pooled_wer(refs, hyps):5.2f} %")
    for ct, r in results.items():
        print(f"  speed-up of faster-whisper {ct}: {rtf / r:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
