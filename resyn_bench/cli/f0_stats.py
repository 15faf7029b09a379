"""Data preparation for the vocoder.

``resyn-bench f0-stats --dataset D --data-root R [--split S] [--limit N]
[--extractor yaapt|pyworld|harvest] --out FILE.json``
    per-speaker and global mean/std of voiced F0 (Hz), the statistics the vocoder and the F0
    quantizer normalise F0 with (speech-resynthesis ships them only for LJSpeech and VCTK and
    has no script to make them: issue #10). Prints a table; writes our JSON format (and,
    with ``--torch-out``, the reference's torch dict keyed by integer speaker id).

Heavy imports (numpy, torch, pitch trackers) happen inside :func:`run`.
"""
from __future__ import annotations

import argparse
import sys

EPILOG_F0_STATS = """examples:
  resyn-bench f0-stats --dataset vctk --data-root VCTK-Corpus-0.92 --extractor yaapt \\
      --out stats/vctk_f0_stats.json
  resyn-bench f0-stats --dataset manifest --data-root corpus/manifest.tsv --limit 200 \\
      --out f0.json --torch-out f0_stats.th

The JSON keeps the speaker name -> id map (ids = sorted speaker names unless --speaker-ids
gives one); use the same map for training and inference. --cache-dir shares the F0 tracks with
vocoder training (same key: audio hash + extractor).
"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``resyn-bench f0-stats``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG_F0_STATS
    from resyn_bench.cli.args import add_dataset_args

    add_dataset_args(p, split_help="file listing the utterances to use (ids, paths, or a unit "
                                   "file such as the reference train.txt)")
    p.add_argument("--extractor", default="yaapt", choices=("yaapt", "pyworld", "harvest"),
                   help="F0 tracker (default yaapt: the reference's; pyworld = dio, much faster)")
    p.add_argument("--speaker-ids", help="JSON name -> id map to store (default: sorted names)")
    p.add_argument("--cache-dir", help="folder for cached F0 tracks (reused by training)")
    p.add_argument("--jobs", type=int, default=1, help="F0 extraction processes (default 1)")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--torch-out", help="also write the reference torch dict (int speaker ids)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _table(stats) -> str:
    rows = [("speaker", "id", "mean_hz", "std_hz", "voiced_frames")]
    for name in sorted(stats.speakers):
        s = stats.speakers[name]
        rows.append((name, str(stats.speaker_ids.get(name, "")), f"{s.mean:.2f}",
                     f"{s.std:.2f}", str(s.n_frames)))
    g = stats.global_stats
    rows.append(("(global)", "", f"{g.mean:.2f}", f"{g.std:.2f}", str(g.n_frames)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Compute, print and save F0 statistics; returns the exit code."""
    from resyn_bench.datasets import load_dataset
    from resyn_bench.systems.vocoder.f0_stats import F0StatsError, compute_f0_stats, load_speaker_ids

    dataset = load_dataset(args.dataset, args.data_root, args.split, args.limit,
                           **dict(args.dataset_options))
    ids = load_speaker_ids(args.speaker_ids)

    def progress(i: int, n: int, utt_id: str) -> None:
        if not args.quiet and (i == n or i % 50 == 0):
            print(f"\r[{i}/{n}] {utt_id:<30}", end="" if i < n else "\n", file=sys.stderr,
                  flush=True)

    try:
        stats = compute_f0_stats(dataset, args.extractor, speaker_ids=ids,
                                 cache_dir=args.cache_dir, progress=progress,
                                 jobs=max(1, args.jobs))
    except F0StatsError as exc:   # nothing to compute statistics from: exit 1, not 2
        print(f"resyn-bench f0-stats: error: {exc}", file=sys.stderr)
        return 1
    path = stats.save(args.out)
    print(_table(stats))
    failed = stats.meta.get("failed") or {}
    if failed:
        print(f"warning: {len(failed)} unreadable files skipped, e.g. "
              f"{next(iter(failed.items()))}", file=sys.stderr)
    if stats.meta.get("speakers_without_stats"):
        print(f"warning: no voiced frames for {stats.meta['speakers_without_stats'][:5]}; "
              "they will use the global values", file=sys.stderr)
    print(f"{len(stats.speakers)} speakers, {stats.meta['n_utterances']} utterances, "
          f"extractor {args.extractor}: wrote {path}")
    if args.torch_out:
        from pathlib import Path

        import torch

        out = Path(args.torch_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(stats.to_reference_dict(), out)
        print(f"wrote {out} (reference layout, integer speaker ids)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("f0-stats", help="per-speaker F0 mean/std (for F0 normalisation) "
                                               "of a dataset")
    configure_parser(p)
    p.set_defaults(handler=run)
