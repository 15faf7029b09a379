"""``resyn-bench train vocoder|f0-quantizer|kmeans``.

This module registers the ``train`` group with its ``vocoder`` and ``f0-quantizer`` commands
(``kmeans`` is :mod:`resyn_bench.cli.kmeans`). Under torchrun, run the whole command line::

    torchrun --nproc-per-node 2 -m resyn_bench.cli train vocoder --config tiny ...

Heavy imports (torch, models) happen inside the ``run_*`` functions only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

VOCODER_EPILOG = """\
examples:
  # 1. the F0 quantizer (the paper trains one, on VCTK, for every model)
  resyn-bench train f0-quantizer --config f0-vqvae-vctk --dataset vctk \\
      --data-root VCTK-Corpus-0.92 --out ckpt/vctk_f0_vq
  # 2. the paper's HuBERT-100 VCTK vocoder (units computed on the fly by the encoder)
  resyn-bench train vocoder --config hubert100-vctk --dataset vctk --data-root VCTK-Corpus-0.92 \\
      --units hubert-l6-km100 --f0-quantizer ckpt/vctk_f0_vq --out ckpt/hubert100_vctk
  # from a reference unit file (datasets/VCTK/hubert100/train.txt; audio paths inside it)
  resyn-bench train vocoder --config hubert100-vctk --units train.txt --data-root . \\
      --f0-quantizer ckpt/vctk_f0_vq --out ckpt/hubert100_vctk
  # a tiny model for a quick CPU check, with config overrides
  resyn-bench train vocoder --config tiny --dataset manifest --data-root corpus/ \\
      --units logmel100.npz --f0-quantizer ckpt/tiny_f0 --out ckpt/tiny --max-steps 500 \\
      --set batch_size=8 validation_interval=50
  # 8 GPUs (global batch_size is split across the processes)
  torchrun --nproc-per-node 8 -m resyn_bench.cli train vocoder --config hubert100-vctk ... --device cuda

A killed run resumes from its latest g_/do_ checkpoint pair when started again with the same
--out. Then evaluate it:  resyn-bench run --system ckpt:ckpt/hubert100_vctk --dataset vctk ...
"""

F0_EPILOG = """\
examples:
  resyn-bench train f0-quantizer --config f0-vqvae-vctk --dataset vctk \\
      --data-root VCTK-Corpus-0.92 --out ckpt/vctk_f0_vq
  resyn-bench train f0-quantizer --config tiny-f0 --dataset manifest --data-root corpus/ \\
      --out ckpt/tiny_f0 --max-steps 300 --set f0_extractor=yaapt

The F0 statistics (per-speaker mean/std of voiced F0) are computed from the training data
and written to OUT/f0_stats.json unless --f0-stats gives a file.
"""


def _f0_extractor(name: str) -> str:
    """argparse type of --f0-extractor: a name of the shared table, with a did-you-mean."""
    from resyn_bench.dsp.presets import training_preset

    try:
        training_preset(name)
    except KeyError as exc:
        raise argparse.ArgumentTypeError(exc.args[0]) from None
    return name


def _common_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    from resyn_bench.systems.vocoder.config import (  # pure data, cheap
        F0_EXTRACTORS,
        PRESETS,
    )

    names = ", ".join(n for n, f in PRESETS.items() if f().kind == kind)
    p.add_argument("--config", required=True, metavar="PRESET_OR_JSON",
                   help=f"a preset ({names}) or a config.json (reference format or ours)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="checkpoint folder (g_XXXXXXXX, do_XXXXXXXX, config.json, train_log.jsonl)")
    p.add_argument("--dataset", metavar="NAME",
                   help="dataset loader, as for `resyn-bench run` (vctk, ljspeech, librispeech, manifest, demo, synthetic)")
    p.add_argument("--data-root", metavar="DIR", help="the dataset's folder")
    p.add_argument("--split", metavar="FILE", help="split file: the training utterances")
    p.add_argument("--validation-split", metavar="FILE",
                   help="split file of held-out validation utterances (default: hold out "
                        "validation_size utterances of the training data, seeded)")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N utterances only")
    p.add_argument("--f0-stats", metavar="FILE",
                   help="F0 statistics (our JSON or a reference f0_stats.pth/.th); default: "
                        "computed from the training data")
    p.add_argument("--f0-extractor", type=_f0_extractor, metavar="NAME",
                   help=f"F0 extractor: {', '.join(F0_EXTRACTORS)} (the names of --f0-preset "
                        "with a 5 ms hop; default: the preset's; the paper's presets use yaapt)")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="stop this session at global step N (default: the config's training_steps)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides, values as JSON (batch_size=8 f0=false "
                        "upsample_rates=[5,4,2,2,2] f0_quantizer.f0_vq_params.l_bins=20)")
    p.add_argument("--device", choices=["cpu", "cuda"],
                   help="default: cuda when available (under torchrun: GPU LOCAL_RANK)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads per process (torch.set_num_threads)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="refuse an --out that already holds checkpoints instead of resuming")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as JSON and exit without training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def configure_train_vocoder_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("Train a unit HiFi-GAN vocoder (units + F0 codes + speaker -> 16 kHz audio) "
                     "with the reference recipe; resumable, DDP under torchrun.")
    p.epilog = VOCODER_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    _common_arguments(p, "vocoder")
    p.add_argument("--units", metavar="FILE_OR_ENCODER",
                   help="a unit file (reference train.txt dict lines, our JSONL, ...) or a unit "
                        "encoder spec (k-means .npz from `resyn-bench train kmeans`, or a "
                        "catalogue name such as hubert-l6-km100)")
    p.add_argument("--unit-key", metavar="KEY",
                   help="code key of the unit file (hubert, cpc_km100, vqvae256, codes)")
    p.add_argument("--validation-units", metavar="FILE",
                   help="unit file of validation utterances (reference val.txt)")
    p.add_argument("--f0-quantizer", metavar="CKPT",
                   help="trained F0 quantizer (folder or g_ file from `train f0-quantizer`)")


def configure_train_f0_quantizer_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("Train the F0 VQ-VAE (speaker-normalised F0 at 200 Hz -> 20 codes at "
                     "12.5 Hz) that every vocoder's F0 stream goes through.")
    p.epilog = F0_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    _common_arguments(p, "f0-quantizer")


def _is_unit_file(value: str) -> bool:
    """A unit file (vs a unit-encoder spec): an existing file that is not a k-means model."""
    path = Path(value).expanduser()
    return path.is_file() and path.suffix not in (".npz", ".bin")


def _overrides(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The flags' config keys; --set is applied after them, so it wins."""
    out: dict[str, Any] = {}
    flags = {"dataset": "dataset", "data_root": "data_root", "split": "split", "limit": "limit",
             "validation_split": "validation_split", "f0_stats": "f0_stats",
             "f0_extractor": "f0_extractor"}
    if kind == "vocoder":
        flags.update({"unit_key": "unit_key", "validation_units": "input_validation_file",
                      "f0_quantizer": "f0_quantizer_path"})
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = str(Path(value).expanduser().resolve()) if key in (
                "data_root", "split", "validation_split", "f0_stats", "input_validation_file",
                "f0_quantizer_path") else value
    units = getattr(args, "units", None)
    if units:
        if _is_unit_file(units):
            out["input_training_file"] = str(Path(units).expanduser().resolve())
            out["unit_encoder"] = None
        else:
            path = Path(units).expanduser()
            out["unit_encoder"] = str(path.resolve()) if path.exists() else units
            out["input_training_file"] = None
    return out


def _build_config(args: argparse.Namespace, kind: str):
    from resyn_bench.systems.vocoder.config import (
        apply_overrides,
        load_config,
        parse_override,
    )

    cfg = load_config(args.config, kind=kind)
    cfg = apply_overrides(cfg, _overrides(args, kind))
    return apply_overrides(cfg, dict(parse_override(o) for o in args.set))


def _run(args: argparse.Namespace, kind: str) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = _build_config(args, kind)
    if args.print_config:
        print(cfg.to_json())
        return 0
    import torch

    from resyn_bench.systems.vocoder.train import (
        TrainingInterrupted,
        train_f0_quantizer,
        train_vocoder,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    train = train_vocoder if kind == "vocoder" else train_f0_quantizer
    try:
        result = train(cfg, args.out, max_steps=args.max_steps, resume=args.resume,
                       device=args.device, progress=not args.quiet)
    except TrainingInterrupted as exc:
        saved = f"checkpoint {exc.checkpoint} saved" if exc.checkpoint else "no step finished, nothing saved"
        print(f"interrupted at step {exc.step}; {saved}. Run the same command again to resume "
              f"from step {exc.step}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume from the latest checkpoint "
              f"in {args.out}", file=sys.stderr)
        return 130
    if result.checkpoint is not None:  # rank 0
        print(training_summary(result, kind))
        print(f"next: {next_command(args, kind, result.out_dir)}")
    return 0


def training_summary(result, kind: str) -> str:
    """One line: steps done, mean s/step of this session, best validation loss, checkpoint."""
    from resyn_bench.systems.vocoder.train import best_validation

    n = result.step - result.start_step
    steps = (f"steps {result.start_step}->{result.step} ({n} this session)" if result.start_step
             else f"{result.step} step" + ("s" if result.step != 1 else ""))
    speed = (f", {result.mean_seconds_per_step:.3g} s/step" if result.mean_seconds_per_step
             else "")
    best = best_validation(result.out_dir)
    val = (f"; best validation {best[0].replace('_', ' ')} {best[1]:.4g} at step {best[2]}"
           if best else "; no validation")
    what = "vocoder" if kind == "vocoder" else "F0 quantizer"
    return f"trained {what}: {steps}{speed}{val}; checkpoint {result.checkpoint}"


def next_command(args: argparse.Namespace, kind: str, out_dir) -> str:
    """What to run with the trained model (the same data options as the training command)."""
    data = ""
    if getattr(args, "dataset", None):
        data = f" --dataset {args.dataset}" + (f" --data-root {args.data_root}" if args.data_root else "")
    else:
        data = " --dataset D --data-root R"
    if kind != "vocoder":
        return (f"resyn-bench train vocoder --config PRESET{data} --units SPEC "
                f"--f0-quantizer {out_dir} --out VOCODER_DIR")
    units = getattr(args, "units", None)
    from_file = bool(units and _is_unit_file(units))
    units_opt = " -o units=KMEANS" if from_file else ""
    note = f"  (KMEANS: the k-means that made {Path(units).name})" if from_file else ""
    return (f"resyn-bench run --system ckpt:{out_dir}{units_opt}{data} "
            f"--out runs/{Path(out_dir).name}{note}")


def run_train_vocoder(args: argparse.Namespace) -> int:
    return _run(args, "vocoder")


def run_train_f0_quantizer(args: argparse.Namespace) -> int:
    return _run(args, "f0-quantizer")


def register(subparsers) -> None:
    """The ``train`` group: vocoder, f0-quantizer, kmeans."""
    from resyn_bench.cli import kmeans

    g = subparsers.add_parser("train", help="train a vocoder, an F0 quantizer or a k-means",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    group = g.add_subparsers(dest="subcommand", required=True, metavar="WHAT")
    p = group.add_parser("vocoder", help="train a unit HiFi-GAN vocoder (presets: "
                                         "hubert100-vctk, ..., tiny)")
    configure_train_vocoder_parser(p)
    p.set_defaults(handler=run_train_vocoder)
    p = group.add_parser("f0-quantizer", help="train the F0 quantizer (VQ-VAE on "
                                              "speaker-normalised F0)")
    configure_train_f0_quantizer_parser(p)
    p.set_defaults(handler=run_train_f0_quantizer)
    kmeans.register(group)
