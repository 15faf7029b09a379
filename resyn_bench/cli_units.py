"""Unit commands (wired into ``resyn-bench`` by resyn_bench.cli):

``resyn-bench fetch NAME... | --list``
    download catalogue checkpoints (HuBERT, CPC, GSLM k-means, the public unit HiFi-GAN) into
    ``$RESYN_BENCH_HOME/checkpoints`` with a progress bar and a sha256 check.
``resyn-bench train kmeans --encoder logmel|hubert|cpc --k K --dataset D ... --out km.npz``
    fit our minibatch k-means on dense features of a corpus; the ``.npz`` is a complete unit
    encoder spec (it records the features it was trained on).
``resyn-bench encode --units SPEC --dataset D ... --out FILE``
    write a unit file (the speech-resynthesis dict-per-line format, or JSON lines), one entry
    per utterance; failures are reported with their reason and the run goes on.

Heavy imports (numpy, torch, models) happen inside the ``run_*`` functions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

EPILOG_FETCH = """examples:
  resyn-bench fetch --list
  resyn-bench fetch hubert-base-ls960 hubert-l6-km100
  resyn-bench fetch vocoder-hubert100-lj          # also fetches its config.json
  resyn-bench fetch hubert-l6-km100 --url file:///mnt/mirror/km.bin
  resyn-bench fetch librispeech-test-clean   # test sets: ljspeech-1.1, vctk-0.92, librispeech-test-clean

Files go to $RESYN_BENCH_HOME/checkpoints (default ~/.cache/resyn-bench/checkpoints). Nothing
is ever downloaded at run time: on an offline machine, copy each file to the path `--list`
shows. Where no sha256 is documented, the computed one is written to FILE.sha256; loading a
pickle from such a file needs --trust-sha256 HASH.

Test sets are downloaded into $RESYN_BENCH_HOME/datasets/.downloads (a stopped download resumes
with an HTTP Range request when run again), checked against their sha256, extracted into
$RESYN_BENCH_HOME/datasets/<name>/ and the archive deleted (--keep-archive keeps it).
"""

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

FEATURE_ENCODERS = ("logmel", "hubert", "cpc")


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    from resyn_bench.cli_args import add_dataset_args

    add_dataset_args(p)


def _hms(seconds: float) -> str:
    """Audio duration for summaries: "12.3 s", "4.5 min", "2.31 h"."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


# -------------------------------------------------------------------------------------- fetch

def configure_fetch_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``resyn-bench fetch``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG_FETCH
    p.add_argument("names", nargs="*", metavar="NAME", help="catalogue names (see --list)")
    p.add_argument("--list", action="store_true",
                   help="show every catalogue name, whether it is present, and its path")
    p.add_argument("--json", action="store_true", help="with --list: machine-readable output")
    p.add_argument("--verify", action="store_true",
                   help="with --list: also hash the present files against the documented sha256")
    p.add_argument("--url", help="download the (single) NAME from this URL instead (a mirror, "
                                 "or file:///path of a copy); the sha256 check is the same")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--keep-archive", action="store_true",
                   help="test sets: keep the downloaded archive after extracting it")


def _list_table(rows: list[dict]) -> str:
    table = [("name", "present", "sha256", "path")]
    for r in rows:
        if r["sha256"]:
            digest = "documented"
            if r.get("verified") is not None:
                digest += ", ok" if r["verified"] else ", MISMATCH"
        elif r["recorded_sha256"]:
            digest = "recorded " + r["recorded_sha256"][:12]
        else:
            digest = "none"
        shown = "yes" if r["present"] else ("converted" if r.get("converted") else "no")
        table.append((r["name"], shown, digest, r["path"]))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(row[:3], widths, strict=True)] + [row[3]]) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines)


def run_fetch(args: argparse.Namespace) -> int:
    """Download the named files, or list the catalogue; returns the exit code."""
    from resyn_bench import catalogue

    if args.list:
        rows = catalogue.list_entries()
        if getattr(args, "verify", False):
            for r in rows:
                ok, digest = catalogue.verify(r["name"]) if r["present"] else (None, None)
                r["verified"], r["computed_sha256"] = ok, digest
        if getattr(args, "json", False):
            print(json.dumps(rows + _test_set_rows(), indent=2))
        else:
            print(_list_table(rows))
            print(f"\nroot: {catalogue.checkpoints_root()} (set RESYN_BENCH_HOME to move it)")
            print("\n" + _test_set_table())
        return 0
    if not args.names:
        _err("name at least one file to fetch (see `resyn-bench fetch --list`)")
        return 2
    test_sets = [n for n in args.names if catalogue.dataset_archive_name(n)]
    if test_sets:  # speech test sets: resumable download + extraction (resyn_bench.downloads)
        if len(test_sets) != len(args.names):
            _err("fetch test sets and checkpoints in separate commands")
            return 2
        return _fetch_test_sets(test_sets, args)
    if args.url and len(args.names) != 1:
        _err("--url applies to a single NAME")
        return 2
    try:
        names = [catalogue.resolve_name(n) for n in args.names]
    except catalogue.CatalogueError as exc:
        _err(str(exc))
        return 2
    failed = 0
    for name in names:
        try:
            was_there = catalogue.is_present(name) and not args.force
            path = catalogue.fetch(name, progress=not args.quiet, url_override=args.url,
                                   force=args.force)
        except catalogue.CatalogueError as exc:
            _err(str(exc))
            failed += 1
            continue
        entry = catalogue.get_entry(name)
        if entry.sha256:
            note = "sha256 ok"
        else:
            recorded = catalogue.recorded_sha256(name)
            note = (f"no documented sha256; computed {recorded} (in {path}.sha256)" if recorded
                    else "no documented sha256")
        print(f"{name}: {'already present' if was_there else 'downloaded'} {path} ({note})")
    return 1 if failed else 0


def _test_set_rows() -> list[dict]:
    from resyn_bench import catalogue, downloads

    return [{"name": e.name, "kind": "test set", "present": downloads.is_fetched(e.name),
             "data_root": str(catalogue.dataset_data_root(e.name)), "dataset": e.loader,
             "url": e.url, "sha256": e.sha256, "size": e.size, "hash_source": e.hash_source,
             "description": e.description, "licence": e.licence}
            for e in catalogue.DATASET_ARCHIVES.values()]


def _test_set_table() -> str:
    from resyn_bench import catalogue

    rows = _test_set_rows()
    table = [("test set", "present", "check", "then use")]
    for r in rows:
        check = "sha256" if r["sha256"] else ("size only" if r["size"] else "none")
        table.append((r["name"], "yes" if r["present"] else "no", check,
                      f"--dataset {r['dataset']} --data-root {r['data_root']}"))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(row[:3], widths, strict=True)] + [row[3]]) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  --------")
    return "\n".join(lines) + (f"\n\ntest sets are extracted under {catalogue.datasets_root()}; "
                               "a stopped download resumes where it stopped")


def _fetch_test_sets(names: list[str], args: argparse.Namespace) -> int:
    from resyn_bench import catalogue, downloads

    if args.url and len(names) != 1:
        _err("--url applies to a single NAME")
        return 2
    failed = 0
    for name in names:
        entry = catalogue.get_dataset_archive(name)
        was_there = downloads.is_fetched(entry.name) and not args.force
        try:
            root = downloads.fetch_dataset(entry.name, progress=not args.quiet,
                                           url_override=args.url, force=args.force,
                                           keep_archive=getattr(args, "keep_archive", False))
        except catalogue.CatalogueError as exc:
            _err(f"{entry.name}: {exc}")
            failed += 1
            continue
        check = "sha256 ok" if entry.sha256 else "no documented sha256 (size-checked only)"
        print(f"{entry.name}: {'already present' if was_there else 'fetched'} ({check}); "
              f"use: --dataset {entry.loader} --data-root {root}")
    return 1 if failed else 0


# ------------------------------------------------------------------------------ train kmeans

def configure_train_kmeans_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``resyn-bench train kmeans``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG_TRAIN_KMEANS
    p.add_argument("--encoder", required=True, choices=FEATURE_ENCODERS,
                   help="dense features to quantize")
    p.add_argument("--layer", type=int, help="model layer (hubert default 6, cpc default 2)")
    p.add_argument("--checkpoint", help="model checkpoint (default: the catalogue file, "
                                        "hubert-base-ls960 / cpc-big-ll6kh)")
    p.add_argument("--trust-sha256", action="append", default=[], metavar="HASH",
                   help="sha256 of a checkpoint pickle you trust (repeatable)")
    p.add_argument("--k", type=int, required=True, help="number of units (clusters)")
    _add_dataset_args(p)
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


def _iter_audio(dataset, sample_rate: int, log, quiet: bool, what: str):
    """(utterance, samples at sample_rate, original duration s, error or None) per utterance."""
    import numpy as np
    from tqdm import tqdm

    from resyn_bench.audio import AudioError, ensure_rate, load_audio

    for utt in tqdm(dataset.utterances, desc=what, unit="utt", disable=quiet, file=sys.stderr):
        try:
            audio = load_audio(utt.path)
            duration = audio.duration
            if audio.samples.size == 0:
                raise AudioError("empty", f"{utt.path} has no samples")
            if not np.all(np.isfinite(audio.samples)):
                # NaN features would quantize silently to unit 0
                raise AudioError("non_finite", f"{utt.path} has NaN or infinite samples")
            audio = ensure_rate(audio, sample_rate, purpose=what, log=log)
        except AudioError as exc:
            yield utt, None, None, str(exc)
            continue
        yield utt, audio.samples, duration, None


def _default_checkpoint_name(encoder: str) -> str | None:
    return {"hubert": "hubert-base-ls960", "cpc": "cpc-big-ll6kh"}.get(encoder)


def training_utterances(utterances, dataset: str | None = None) -> dict:
    """``utterance_ids`` / ``utterance_paths`` (absolute) of a model's training set, as stored
    with k-means files and vocoder folders (see :mod:`resyn_bench.overlap`)."""
    from resyn_bench.overlap import describe_utterances

    return describe_utterances(utterances, dataset)


def run_train_kmeans(args: argparse.Namespace) -> int:
    """Extract features, fit k-means, save the .npz; returns the exit code."""
    from pathlib import Path

    from resyn_bench.audio import ResampleLog
    from resyn_bench.catalogue import CatalogueError
    from resyn_bench.datasets import DatasetError, load_dataset
    from resyn_bench.systems.encoders.base import resolve_extractor_checkpoint
    from resyn_bench.systems.encoders.features import make_feature_extractor
    from resyn_bench.systems.encoders.kmeans import FrameReservoir, KMeansError, train_kmeans

    if args.k < 1:
        _err("--k must be >= 1")
        return 2
    if args.encoder == "logmel" and (args.layer is not None or args.checkpoint):
        _err("logmel features have no --layer and no --checkpoint")
        return 2
    out = Path(args.out).expanduser()
    if out.suffix != ".npz":
        _err(f"--out must end in .npz (got {out})")
        return 2
    try:
        dataset = load_dataset(args.dataset, args.data_root, args.split, args.limit,
                               **dict(args.dataset_option))
    except DatasetError as exc:
        _err(str(exc))
        return 2
    # the k-means file records the catalogue name of a default checkpoint (portable between
    # machines) or the absolute path of a given one
    ckpt_ref = (str(Path(args.checkpoint).expanduser().resolve()) if args.checkpoint
                else _default_checkpoint_name(args.encoder))
    try:
        ckpt_path, hashes = resolve_extractor_checkpoint(ckpt_ref, f"{args.encoder} features",
                                                list(args.trust_sha256))
        kwargs = {} if args.encoder == "logmel" else {"trusted_sha256": hashes,
                                                     "device": args.device}
        extractor = make_feature_extractor(args.encoder, layer=args.layer, checkpoint=ckpt_path,
                                           **kwargs)
    except (CatalogueError, FileNotFoundError, ValueError, RuntimeError) as exc:
        _err(str(exc))
        return 2

    t0 = time.perf_counter()
    log = ResampleLog()
    reservoir = FrameReservoir(args.max_frames, seed=args.seed)
    failed: dict[str, str] = {}
    audio_s = 0.0
    n_ok = 0
    used = []   # the utterances fitted on: a run warns when it evaluates any of them
    for utt, samples, duration, error in _iter_audio(dataset, extractor.sample_rate, log,
                                                     args.quiet, "features"):
        if error is None:
            try:
                reservoir.add(extractor.extract(samples))
                audio_s += duration
                n_ok += 1
                used.append(utt)
                continue
            except (ValueError, RuntimeError) as exc:  # e.g. audio shorter than one frame
                error = f"{type(exc).__name__}: {exc}"
        failed[utt.utt_id] = error
        print(f"warning: {utt.utt_id}: {error}", file=sys.stderr)
    t_feat = time.perf_counter() - t0
    feats = reservoir.array()
    print(f"features: {n_ok} utterances ({_hms(audio_s)}), {reservoir.seen} frames of "
          f"{extractor.dim} dims, using {len(feats)}; {t_feat:.1f} s"
          + (f"; {len(failed)} failed" if failed else ""))
    if len(feats) < args.k:
        _err(f"{len(feats)} frames are not enough for --k {args.k}")
        return 1
    meta = {
        "extractor": args.encoder, "layer": getattr(extractor, "layer", args.layer),
        "checkpoint": ckpt_ref, "hop_size": int(extractor.hop_size),
        "sample_rate": int(extractor.sample_rate),
        "trained_on": (f"{dataset.name} {dataset.root or ''}".strip()
                       + (f" split={args.split}" if args.split else "")
                       + (f" limit={args.limit}" if args.limit else "")
                       + f": {n_ok} utterances, {len(feats)} of {reservoir.seen} frames"),
        "training_data": {"dataset": dataset.name, "root": str(dataset.root or ""),
                          "split": args.split, "limit": args.limit, "utterances": n_ok,
                          "failed": len(failed), "audio_hours": round(audio_s / 3600, 4),
                          "frames_seen": reservoir.seen, "frames_used": len(feats),
                          "max_frames": args.max_frames, "resampled": dict(log.counts),
                          **training_utterances(used, dataset.name)},
        "feature_seconds": round(t_feat, 3),
    }
    if meta["layer"] is None:
        meta.pop("layer")
    say = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    try:
        model = train_kmeans(feats, args.k, batch_size=args.batch_size, max_iter=args.max_iter,
                             seed=args.seed, n_init=args.n_init, meta=meta, log=say)
    except KMeansError as exc:
        _err(str(exc))
        return 1
    model.save(out)
    m = model.meta
    print(f"k-means: k={args.k}, {m['steps']} steps ({m['epochs']} passes, stopped: "
          f"{m['stopped']}), inertia {m['inertia']:.6g} ({m['inertia_per_frame']:.6g} per "
          f"frame), {m['train_seconds']:.1f} s" + (f", {m['empty_clusters']} empty clusters"
                                                   if m["empty_clusters"] else ""))
    if log.counts:
        print("resampled: " + "; ".join(f"{k} x{v}" for k, v in log.counts.items()))
    print(f"wrote {out} (use: resyn-bench encode --units {out} ...)")
    return 0


# ------------------------------------------------------------------------------------ encode

def configure_encode_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``resyn-bench encode``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG_ENCODE
    p.add_argument("--units", required=True, metavar="SPEC",
                   help="k-means .npz file or catalogue name (e.g. hubert-l6-km100)")
    _add_dataset_args(p)
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


def _audio_field(path, audio_root) -> str:
    import os
    from pathlib import Path

    path = Path(path).resolve()
    if audio_root is None:
        return str(path)
    # os.path.relpath also handles files outside the root (../); the reference uses "/"
    return Path(os.path.relpath(path, Path(audio_root).expanduser().resolve())).as_posix()


def run_encode(args: argparse.Namespace) -> int:
    """Encode every utterance of a dataset into units and write the unit file."""
    from pathlib import Path

    from resyn_bench.audio import ResampleLog
    from resyn_bench.catalogue import CatalogueError
    from resyn_bench.datasets import DatasetError, load_dataset
    from resyn_bench.safeload import UnsafeCheckpointError
    from resyn_bench.systems.encoders.base import UnitEncoderError, load_unit_encoder
    from resyn_bench.systems.encoders.kmeans import KMeansError
    from resyn_bench.unit_files import UnitEntry, write_unit_file

    try:
        dataset = load_dataset(args.dataset, args.data_root, args.split, args.limit,
                               **dict(args.dataset_option))
    except DatasetError as exc:
        _err(str(exc))
        return 2
    extra = {"device": args.device} if args.device != "cpu" else {}
    try:
        encoder = load_unit_encoder(args.units, trusted_sha256=args.trust_sha256, **extra)
    except (CatalogueError, UnsafeCheckpointError, UnitEncoderError, KMeansError,
            FileNotFoundError, ValueError) as exc:
        _err(str(exc))
        return 2
    extractor_name = encoder.kmeans.meta.get("extractor") or encoder.extractor.name
    # the code keys the reference unit files use per unit type
    key = args.key or {"cpc": "cpc_km100", "vqvae": "vqvae256"}.get(extractor_name, "hubert")

    t0 = time.perf_counter()
    log = ResampleLog()
    entries = []
    failed: dict[str, str] = {}
    audio_s = 0.0
    n_units = 0
    for utt, samples, duration, error in _iter_audio(dataset, encoder.sample_rate, log,
                                                     args.quiet, "encode"):
        if error is None:
            try:
                units = encoder.encode(samples)
                if units.size == 0:
                    raise ValueError(f"no units: {len(samples)} samples are shorter than one "
                                     f"frame of the {extractor_name} features")
            except (ValueError, RuntimeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            failed[utt.utt_id] = error
            print(f"warning: {utt.utt_id}: {error}", file=sys.stderr)
            continue
        fields = {"utt_id": utt.utt_id, "speaker": utt.speaker} if args.format == "jsonl" else {}
        entries.append(UnitEntry(audio=_audio_field(utt.path, args.audio_root), units=units,
                                 key=key, duration=round(float(duration), 6), extra=fields))
        audio_s += duration
        n_units += units.size
    elapsed = time.perf_counter() - t0
    out = Path(args.out).expanduser()
    if not entries:
        _err(f"no utterance could be encoded ({len(failed)} failed); nothing written")
        return 1
    write_unit_file(out, entries, key=key, fmt=args.format, hop_size=encoder.hop_size,
                    vocab_size=encoder.vocab_size)
    failed_path = out.with_name(out.name + ".failed.tsv")
    if failed:
        failed_path.write_text("".join(f"{u}\t{r}\n" for u, r in failed.items()),
                               encoding="utf-8")
    elif failed_path.exists():
        failed_path.unlink()  # stale list from an earlier run of the same output
    info = {"units": args.units, "encoder": encoder.describe(), "key": key,
            "format": args.format, "dataset": dataset.info, "utterances": len(entries),
            "failed": failed, "units_total": int(n_units), "audio_seconds": round(audio_s, 3),
            "seconds": round(elapsed, 3), "resampled": dict(log.counts)}
    meta_path = out.with_name(out.name + ".json")
    meta_path.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    rtf = elapsed / audio_s if audio_s else float("nan")
    print(f"encoded {len(entries)} of {len(dataset)} utterances with {encoder.name} "
          f"({encoder.vocab_size} units, {encoder.frame_rate:g} Hz): {n_units} units from "
          f"{_hms(audio_s)} of audio in {elapsed:.1f} s (real-time factor {rtf:.3f})")
    if log.counts:
        print("resampled: " + "; ".join(f"{k} x{v}" for k, v in log.counts.items()))
    if failed:
        print(f"{len(failed)} failed (reasons in {failed_path}), e.g. "
              f"{next(iter(failed))}: {next(iter(failed.values()))}")
    print(f"wrote {out} ({args.format}, key {key!r}) and {meta_path}")
    return 0
