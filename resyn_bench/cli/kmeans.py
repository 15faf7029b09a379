"""``resyn-bench train kmeans``: fit our minibatch k-means on dense features of a corpus.

The ``.npz`` is a complete unit-encoder spec (it records the features it was trained on). The
work is :func:`resyn_bench.systems.encoders.pipeline.fit_kmeans`; this module reads the options
and prints the summary.
"""
from __future__ import annotations

import argparse
import sys

from resyn_bench.cli.args import add_dataset_args

EPILOG_TRAIN_KMEANS = """examples:
  resyn-bench train kmeans --encoder logmel --k 100 --dataset demo --out km/logmel100.npz
  resyn-bench train kmeans --encoder hubert --layer 6 --k 100 --dataset librispeech \\
      --data-root LibriSpeech/train-clean-100 --max-frames 1000000 --out km/hubert_l6_km100.npz
  resyn-bench train kmeans --encoder cpc --k 100 --dataset manifest --data-root corpus.tsv \\
      --checkpoint cpc_big_ll6kh_top_ctc.pt --trust-sha256 HASH --out km/cpc100.npz

Audio is resampled to 16 kHz where needed (counted in the summary). --max-frames keeps a
uniform random sample of that many frames (memory: frames x dim x 4 bytes; HuBERT: 3 KB per
frame). Use the result with `resyn-bench encode --units km/logmel100.npz ...`.
"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``resyn-bench train kmeans``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG_TRAIN_KMEANS
    from resyn_bench.systems.encoders.pipeline import FEATURE_ENCODERS

    p.add_argument("--encoder", required=True, choices=FEATURE_ENCODERS,
                   help="dense features to quantize")
    p.add_argument("--layer", type=int, help="model layer (hubert default 6, cpc default 2)")
    p.add_argument("--checkpoint", help="model checkpoint (default: the catalogue file, "
                                        "hubert-base-ls960 / cpc-big-ll6kh)")
    p.add_argument("--trust-sha256", action="append", default=[], metavar="HASH",
                   help="sha256 of a checkpoint pickle you trust (repeatable)")
    p.add_argument("--k", type=int, required=True, help="number of units (clusters)")
    add_dataset_args(p)
    p.add_argument("--max-frames", type=int,
                   help="train on a uniform random sample of at most N frames (default: all)")
    p.add_argument("--batch-size", type=int, default=10000, help="minibatch size (default 10000)")
    p.add_argument("--max-iter", type=int, default=100,
                   help="maximum passes over the frames (default 100; training usually stops "
                        "earlier when the inertia stops improving)")
    p.add_argument("--n-init", type=int, default=3, help="k-means++ seedings tried (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (frame sample and k-means)")
    p.add_argument("--device", default="cpu", help="device for hubert/cpc (default cpu)")
    p.add_argument("--out", required=True, help="output k-means file (.npz)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(train_subparsers) -> None:
    """Adds ``kmeans`` to the sub-commands of ``resyn-bench train``."""
    p = train_subparsers.add_parser("kmeans", help="train a k-means unit quantizer on encoder "
                                                   "features")
    configure_parser(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Extract features, fit k-means, save the .npz; returns the exit code."""
    from resyn_bench.datasets import load_dataset
    from resyn_bench.systems.encoders.pipeline import fit_kmeans

    dataset = load_dataset(args.dataset, args.data_root, args.split, args.limit,
                           **dict(args.dataset_options))
    fit = fit_kmeans(dataset, args.encoder, args.k, out=args.out, layer=args.layer,
                     checkpoint=args.checkpoint, trust_sha256=args.trust_sha256,
                     max_frames=args.max_frames, batch_size=args.batch_size,
                     max_iter=args.max_iter, n_init=args.n_init, seed=args.seed,
                     device=args.device, split=args.split, limit=args.limit, quiet=args.quiet,
                     say=print, log_training=None if args.quiet else _stderr)
    m = fit.model.meta
    print(f"k-means: k={args.k}, {m['steps']} steps ({m['epochs']} passes, stopped: "
          f"{m['stopped']}), inertia {m['inertia']:.6g} ({m['inertia_per_frame']:.6g} per "
          f"frame), {m['train_seconds']:.1f} s" + (f", {m['empty_clusters']} empty clusters"
                                                   if m["empty_clusters"] else ""))
    if fit.resampled:
        print("resampled: " + "; ".join(f"{k} x{v}" for k, v in fit.resampled.items()))
    print(f"wrote {fit.path} (use: resyn-bench encode --units {fit.path} ...)")
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)
