"""Benchmark: render the HTML report of 3 systems x 1000 utterances (goal: under 10 s).

The runs are synthesised with the record store (f0 and asr parts with realistic extras: ~2-4 s
F0 contours at 50 Hz, transcripts with recognition errors, 1 % failed and 1 % partial
utterances, short real WAV files for the audio links), so no model runs. Prints, in seconds:

* ``summarize_run`` for the three runs, with 1000 bootstrap replicates (what ``resyn-bench
  report`` pays anyway) and without (``n_boot=0``);
* ``significance`` (paired bootstrap against the first run);
* ``write_html`` given the summaries and significance (the HTML step alone), linked audio;
* the total (summaries with CIs + significance + HTML), and the file size.

Usage: python tests/bench/bench_html.py [--utts 1000] [--systems 3] [--keep DIR]
(also imported by tests/reports/test_html_report.py for its synthetic runs)
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the birch canoe slid on smooth planks glue sheet to dark blue background it is easy "
         "tell depth of well these days chicken leg rare dish rice often served in round bowls "
         "juice lemons makes fine punch box was thrown beside parked truck hogs fed chopped "
         "corn garbage four hours steady work faced us").split()


def _hyp(ref: list[str], rng: random.Random, error_rate: float) -> list[str]:
    out = []
    for w in ref:
        r = rng.random()
        if r < error_rate / 3:
            continue                                   # deletion
        if r < 2 * error_rate / 3:
            out.append(rng.choice(WORDS))              # substitution (or a lucky match)
        else:
            out.append(w)
        if rng.random() < error_rate / 3:
            out.append(rng.choice(WORDS))              # insertion
    return out


def _phones(text: str) -> str:
    """Stand-in phone strings (letters as symbols), enough for display checks."""
    return " ".join(c.upper() for c in text if c.isalpha())


def synthetic_run(path: Path, system: str, n_utts: int, seed: int = 0, error_rate: float = 0.2,
                  audio_dir: Path | None = None, texts: dict[str, str] | None = None,
                  fail_every: int = 100, partial_every: int = 100) -> Path:
    """A run directory with ``n_utts`` utterances of 10 speakers scored by ``f0`` (dio) and
    ``asr`` (text mode): records as the runner writes them. ``audio_dir``: where short WAVs
    are written (references shared by every system) - None for no files. ``texts``: utt_id ->
    transcript overrides."""
    import numpy as np
    import soundfile as sf

    from resyn_bench.dsp.pitch import F0Track
    from resyn_bench.metrics.f0 import (
        F0Metrics,
        display_contour,
        f0_error_counts,
        values_from_counts,
    )
    from resyn_bench.metrics.intelligibility import IntelligibilityMetrics, edit_counts
    from resyn_bench.store import RecordStore, write_json_atomic

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    f0g = F0Metrics(preset="dio")
    asrg = IntelligibilityMetrics(per=False)
    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path / "manifest.json", {
        "resyn_bench_version": "bench", "created": "2026-01-01T00:00:00+00:00", "status": "complete",
        "config": {"system": system, "dataset": "synthetic", "data_root": str(audio_dir), "split": None,
                   "limit": None, "metrics": "f0,asr", "system_options": {}},
        "dataset": {"name": "synthetic", "root": str(audio_dir), "n_utterances": n_utts},
        "environment": {"python": sys.version.split()[0], "packages": {"numpy": np.__version__},
                        "git": {"commit": "0" * 40, "dirty": False}},
        "metrics": {"f0": {"settings": f0g.settings(), "specs": [s.to_dict() for s in f0g.specs],
                           "options": {"preset": "dio"}},
                    "asr": {"settings": {"mode": "text"}, "specs": [s.to_dict() for s in asrg.specs],
                            "options": {"per": False}}}})
    store = RecordStore(path)
    lines = []
    for i in range(n_utts):
        uid = f"spk{i % 10:02d}_{i:05d}"
        text = (texts or {}).get(uid) or " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14)))
        synth = {"part": "synthesis", "utt_id": uid, "speaker": f"spk{i % 10:02d}", "text": text,
                 "system": system, "dataset": "synthetic", "extra": {}}
        if audio_dir is not None:
            ref_wav = audio_dir / f"{uid}.wav"
            if not ref_wav.exists():
                sf.write(ref_wav, (0.1 * nrng.standard_normal(1600)).astype(np.float32), 8000)
            out_wav = path / "outputs" / f"{uid}.wav"
            out_wav.parent.mkdir(exist_ok=True)
            sf.write(out_wav, (0.1 * nrng.standard_normal(1600)).astype(np.float32), 8000)
            # the runner records the content hash of every reference it decoded; the report
            # embeds only audio the run decoded
            synth.update(reference_path=str(ref_wav), output_path=f"outputs/{uid}.wav",
                         reference_hash=f"bench-{uid}")
        else:
            synth.update(reference_path=f"/nonexistent/{uid}.wav", output_path=f"outputs/{uid}.wav")
        if fail_every and i % fail_every == fail_every - 1:
            synth.update(status="failed", stage="output", error_kind="silent",
                         reason="system output is silent (peak 0)")
            synth.pop("output_path")
            lines.append(synth)
            continue
        synth["status"] = "ok"
        lines.append(synth)
        # F0: a smooth contour with an unvoiced gap; the output follows it with some error
        n = rng.randint(400, 800)   # 5 ms frames: 2-4 s
        t = np.arange(n) * 0.005
        ref = 120 + 30 * np.sin(2 * np.pi * t / (1 + rng.random())) + 20 * (i % 3)
        ref[n // 3: n // 3 + 40] = 0
        out = np.where(ref > 0, ref * (1 + 0.05 * error_rate * nrng.standard_normal(n)), 0)
        out[nrng.random(n) < 0.02 * error_rate] = 0
        counts = f0_error_counts(ref, out)
        lines.append({"part": "metric", "group": "f0", "utt_id": uid, "status": "ok",
                      "values": values_from_counts(counts), "counts": counts,
                      "extra": {"contour": display_contour(F0Track(t, ref), out)}})
        if partial_every and i % partial_every == partial_every // 2:
            lines.append({"part": "metric", "group": "asr", "utt_id": uid, "status": "failed",
                          "reason": "RuntimeError: decoder crashed"})
            continue
        hyp = " ".join(_hyp(text.split(), rng, error_rate))
        counts = {**edit_counts(text, hyp, "word"), **edit_counts(text, hyp, "char")}
        lines.append({"part": "metric", "group": "asr", "utt_id": uid, "status": "ok",
                      "values": {"asr.wer": counts["word_edits"] / counts["ref_words"],
                                 "asr.cer": counts["char_edits"] / counts["ref_chars"]},
                      "counts": counts, "extra": {"hyp": hyp, "ref": text, "hyp_raw": hyp,
                                                  "ref_phones": _phones(text), "hyp_phones": _phones(hyp)}})
    if len(lines) < 100:
        for line in lines:
            store.append(line)
    else:  # one write instead of an fsync per part: the same lines, much faster to build
        with open(store.path, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utts", type=int, default=1000)
    ap.add_argument("--systems", type=int, default=3)
    ap.add_argument("--keep", default=None, help="write the runs and report here and keep them")
    args = ap.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="resyn-bench-html-"))
    try:
        from resyn_bench.reports.collate import summarize_run
        from resyn_bench.reports.html import write_html
        from resyn_bench.reports.tables import significance

        audio = work / "corpus"
        audio.mkdir(parents=True, exist_ok=True)
        names = ["copy", "world", "hubert"][:args.systems] + [f"sys{i}" for i in range(3, args.systems)]
        t = time.perf_counter()
        runs = [synthetic_run(work / name, name, args.utts, seed=i, error_rate=0.05 + 0.1 * i,
                              audio_dir=audio) for i, name in enumerate(names)]
        print(f"synthesising {len(runs)} runs x {args.utts} utterances: {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        [summarize_run(r, n_boot=0) for r in runs]
        t_plain = time.perf_counter() - t
        t = time.perf_counter()
        summaries = [summarize_run(r) for r in runs]
        t_sum = time.perf_counter() - t
        t = time.perf_counter()
        sig = significance(summaries, "auto")
        t_sig = time.perf_counter() - t
        t = time.perf_counter()
        out = write_html(summaries, work / "report" / "index.html", sig=sig)
        t_html = time.perf_counter() - t
        size = out.stat().st_size
        print(f"summarize_run x{len(runs)} without CIs (n_boot=0): {t_plain:6.2f} s")
        print(f"summarize_run x{len(runs)} with 1000-replicate CIs: {t_sum:6.2f} s")
        print(f"significance (paired bootstrap):           {t_sig:6.2f} s")
        print(f"write_html (linked audio):                 {t_html:6.2f} s   {size / 1e6:.2f} MB")
        total = t_sum + t_sig + t_html
        print(f"total (summaries + significance + HTML):   {total:6.2f} s   goal < 10 s: "
              f"{'met' if total < 10 else 'NOT met'}")
        print(f"report: {out}" if args.keep else "")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
