"""``resyn-bench encode --units SPEC --dataset D ... --out FILE``: write a unit file.

One entry per utterance (the speech-resynthesis dict-per-line format, or JSON lines); failures
are reported with their reason and the run goes on. The work is
:func:`resyn_bench.systems.encoders.pipeline.encode_dataset`; this module reads the options and
prints the summary.
"""
from __future__ import annotations

import argparse

from resyn_bench.cli.args import add_dataset_args

EPILOG_ENCODE = """examples:
  resyn-bench encode --units hubert-l6-km100 --dataset ljspeech --data-root LJSpeech-1.1 \\
      --split test.txt --out units/lj_test.txt
  resyn-bench encode --units km/logmel100.npz --dataset demo --out units/demo.jsonl --format jsonl
  resyn-bench encode --units cpc-km100 --dataset vctk --data-root VCTK-Corpus-0.92 \\
      --out units/vctk_cpc.txt --audio-root VCTK-Corpus-0.92

--units: a k-means .npz from `resyn-bench train kmeans`, or a catalogue name
(hubert-l6-km{50,100,200,500}, cpc-km{50,100,200,500}, logmel-km{50,100,200}; fetch the files
first). Units per utterance: the extractor's frame count, e.g. HuBERT floor((N - 400) / 320) + 1
for N samples at 16 kHz. Failed utterances are listed in OUT.failed.tsv; OUT.json describes the
encoder and the run.
"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``resyn-bench encode``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG_ENCODE
    p.add_argument("--units", required=True, metavar="SPEC",
                   help="k-means .npz file or catalogue name (e.g. hubert-l6-km100)")
    add_dataset_args(p)
    p.add_argument("--out", required=True, help="unit file to write")
    p.add_argument("--format", choices=("reference", "jsonl"), default="reference",
                   help="reference: speech-resynthesis dict per line (default); jsonl: ours "
                        "(adds utt_id, speaker, hop_size, vocab_size)")
    p.add_argument("--key", help="code key (default: cpc_km100 for CPC units, else hubert, as "
                                 "the reference files name them)")
    p.add_argument("--audio-root", help="write audio paths relative to this folder "
                                        "(default: absolute paths)")
    p.add_argument("--trust-sha256", action="append", default=[], metavar="HASH",
                   help="sha256 of a k-means/checkpoint pickle you trust (repeatable)")
    p.add_argument("--device", default="cpu", help="device for hubert/cpc (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser("encode", help="extract discrete units of a dataset into a unit file")
    configure_parser(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Encode every utterance of a dataset into units and write the unit file."""
    from resyn_bench.datasets import load_dataset
    from resyn_bench.systems.encoders.pipeline import encode_dataset, hms

    dataset = load_dataset(args.dataset, args.data_root, args.split, args.limit,
                           **dict(args.dataset_options))
    res = encode_dataset(dataset, args.units, out=args.out, fmt=args.format, key=args.key,
                         audio_root=args.audio_root, trust_sha256=args.trust_sha256,
                         device=args.device, quiet=args.quiet)
    enc = res.encoder
    rtf = res.seconds / res.audio_seconds if res.audio_seconds else float("nan")
    print(f"encoded {len(res.entries)} of {len(dataset)} utterances with {enc.name} "
          f"({enc.vocab_size} units, {enc.frame_rate:g} Hz): {res.n_units} units from "
          f"{hms(res.audio_seconds)} of audio in {res.seconds:.1f} s (real-time factor {rtf:.3f})")
    if res.resampled:
        print("resampled: " + "; ".join(f"{k} x{v}" for k, v in res.resampled.items()))
    if res.failed:
        print(f"{len(res.failed)} failed (reasons in {res.failed_path}), e.g. "
              f"{next(iter(res.failed))}: {next(iter(res.failed.values()))}")
    print(f"wrote {res.out} ({args.format}, key {res.key!r}) and {res.meta_path}")
    return 0
