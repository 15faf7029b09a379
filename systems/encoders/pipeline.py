"""Dataset-level unit pipelines: fit a k-means on a corpus's features, encode a corpus into a
unit file. The Python API behind ``resyn-bench train kmeans`` and ``resyn-bench encode``::

    from resyn_bench.datasets import load_dataset
    from resyn_bench.systems.encoders.pipeline import encode_dataset, fit_kmeans

    data = load_dataset("manifest", "corpus/manifest.tsv")
    fit = fit_kmeans(data, "logmel", k=100, out="km/logmel100.npz")
    enc = encode_dataset(data, "km/logmel100.npz", out="units/corpus.txt")
    print(fit.model.meta["inertia"], enc.failed)

An utterance that cannot be read or encoded is listed with its reason (``failed``) and the
pipeline goes on; a problem with the inputs (bad option, missing model file) raises
:class:`PipelineError` (a :class:`~resyn_bench.errors.UserError`), nothing usable produced
raises :class:`PipelineFailed`.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resyn_bench.errors import UserError

__all__ = ["FEATURE_ENCODERS", "PipelineError", "PipelineFailed", "KMeansFit", "EncodeResult",
           "fit_kmeans", "encode_dataset", "iter_audio", "training_utterances"]

#: dense features a k-means can be fitted on
FEATURE_ENCODERS = ("logmel", "hubert", "cpc")
#: the model file a default hubert/cpc extractor reads (a catalogue name: portable)
DEFAULT_CHECKPOINTS = {"hubert": "hubert-base-ls960", "cpc": "cpc-big-ll6kh"}


class PipelineError(UserError, ValueError):
    """Bad inputs of a pipeline (an option, a model file): nothing was done."""


class PipelineFailed(PipelineError):
    """The pipeline ran but produced nothing usable (no utterance encoded, too few frames)."""

    exit_code = 1


Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def iter_audio(dataset, sample_rate: int, log, quiet: bool, what: str):
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


def training_utterances(utterances, dataset: str | None = None) -> dict:
    """``utterance_ids`` / ``utterance_paths`` (absolute) of a model's training set, as stored
    with k-means files and vocoder folders (see :mod:`resyn_bench.overlap`)."""
    from resyn_bench.overlap import describe_utterances

    return describe_utterances(utterances, dataset)


def hms(seconds: float) -> str:
    """Audio duration for summaries: "12.3 s", "4.5 min", "2.31 h"."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# ------------------------------------------------------------------------------------ k-means

@dataclass
class KMeansFit:
    model: Any                  # KMeansModel (saved to ``path`` when one was given)
    path: Path | None
    n_utterances: int
    failed: dict[str, str]      # utterance id -> reason
    audio_seconds: float
    frames_seen: int
    frames_used: int
    feature_seconds: float
    resampled: dict[str, int] = field(default_factory=dict)


def fit_kmeans(dataset, encoder: str, k: int, *, out: str | Path | None = None,
               layer: int | None = None, checkpoint: str | None = None,
               trust_sha256: Iterable[str] = (), max_frames: int | None = None,
               batch_size: int = 10000, max_iter: int = 100, n_init: int = 3, seed: int = 0,
               device: str = "cpu", split: str | None = None, limit: int | None = None,
               quiet: bool = True, say: Say | None = _stderr, log_training: Say | None = None,
               warn: Say | None = _stderr) -> KMeansFit:
    """Extract ``encoder`` features ("logmel", "hubert", "cpc") of every utterance of
    ``dataset`` (a :class:`resyn_bench.datasets.Dataset`), fit a k-means with ``k`` units and
    save it to ``out`` (``.npz``, a complete unit-encoder spec) when given.

    ``split``/``limit`` only describe how ``dataset`` was selected (they are recorded in the
    model's metadata). ``say`` gets the feature summary, ``log_training`` the k-means progress,
    ``warn`` one line per failed utterance.
    """
    from resyn_bench.audio import ResampleLog
    from resyn_bench.systems.encoders.base import resolve_extractor_checkpoint
    from resyn_bench.systems.encoders.features import make_feature_extractor
    from resyn_bench.systems.encoders.kmeans import FrameReservoir, KMeansError, train_kmeans

    if encoder not in FEATURE_ENCODERS:
        raise PipelineError(f"unknown feature encoder {encoder!r}; choose from "
                            f"{', '.join(FEATURE_ENCODERS)}")
    if k < 1:
        raise PipelineError("--k must be >= 1")
    if encoder == "logmel" and (layer is not None or checkpoint):
        raise PipelineError("logmel features have no --layer and no --checkpoint")
    if out is not None:
        out = Path(out).expanduser()
        if out.suffix != ".npz":
            raise PipelineError(f"--out must end in .npz (got {out})")
    # the k-means file records the catalogue name of a default checkpoint (portable between
    # machines) or the absolute path of a given one
    ckpt_ref = (str(Path(checkpoint).expanduser().resolve()) if checkpoint
                else DEFAULT_CHECKPOINTS.get(encoder))
    ckpt_path, hashes = resolve_extractor_checkpoint(ckpt_ref, f"{encoder} features",
                                                     list(trust_sha256))
    kwargs = {} if encoder == "logmel" else {"trusted_sha256": hashes, "device": device}
    try:
        extractor = make_feature_extractor(encoder, layer=layer, checkpoint=ckpt_path, **kwargs)
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, UserError):
            raise
        # a checkpoint or layer the model cannot take: the user's input, not a bug
        raise PipelineError(f"{encoder} features (checkpoint {ckpt_ref}, layer {layer}): "
                            f"{exc}") from exc

    t0 = time.perf_counter()
    log = ResampleLog()
    reservoir = FrameReservoir(max_frames, seed=seed)
    failed: dict[str, str] = {}
    audio_s = 0.0
    used = []   # the utterances fitted on: a run warns when it evaluates any of them
    for utt, samples, duration, error in iter_audio(dataset, extractor.sample_rate, log, quiet,
                                                    "features"):
        if error is None:
            try:
                reservoir.add(extractor.extract(samples))
                audio_s += duration
                used.append(utt)
                continue
            except (ValueError, RuntimeError) as exc:  # e.g. audio shorter than one frame
                error = f"{type(exc).__name__}: {exc}"
        failed[utt.utt_id] = error
        if warn:
            warn(f"warning: {utt.utt_id}: {error}")
    t_feat = time.perf_counter() - t0
    feats = reservoir.array()
    if say:
        say(f"features: {len(used)} utterances ({hms(audio_s)}), {reservoir.seen} frames of "
            f"{extractor.dim} dims, using {len(feats)}; {t_feat:.1f} s"
            + (f"; {len(failed)} failed" if failed else ""))
    if len(feats) < k:
        raise PipelineFailed(f"{len(feats)} frames are not enough for --k {k}")
    meta = {
        "extractor": encoder, "layer": getattr(extractor, "layer", layer),
        "checkpoint": ckpt_ref, "hop_size": int(extractor.hop_size),
        "sample_rate": int(extractor.sample_rate),
        "trained_on": (f"{dataset.name} {dataset.root or ''}".strip()
                       + (f" split={split}" if split else "")
                       + (f" limit={limit}" if limit else "")
                       + f": {len(used)} utterances, {len(feats)} of {reservoir.seen} frames"),
        "training_data": {"dataset": dataset.name, "root": str(dataset.root or ""),
                          "split": split, "limit": limit, "utterances": len(used),
                          "failed": len(failed), "audio_hours": round(audio_s / 3600, 4),
                          "frames_seen": reservoir.seen, "frames_used": len(feats),
                          "max_frames": max_frames, "resampled": dict(log.counts),
                          **training_utterances(used, dataset.name)},
        "feature_seconds": round(t_feat, 3),
    }
    if meta["layer"] is None:
        meta.pop("layer")
    try:
        model = train_kmeans(feats, k, batch_size=batch_size, max_iter=max_iter, seed=seed,
                             n_init=n_init, meta=meta, log=log_training)
    except KMeansError as exc:
        raise PipelineFailed(str(exc)) from exc
    if out is not None:
        model.save(out)
    return KMeansFit(model=model, path=out, n_utterances=len(used), failed=failed,
                     audio_seconds=audio_s, frames_seen=reservoir.seen, frames_used=len(feats),
                     feature_seconds=t_feat, resampled=dict(log.counts))


# ------------------------------------------------------------------------------------- encode

@dataclass
class EncodeResult:
    encoder: Any                # the UnitEncoder
    key: str                    # code key of the unit file
    entries: list               # UnitEntry per encoded utterance
    failed: dict[str, str]      # utterance id -> reason
    n_units: int
    audio_seconds: float
    seconds: float
    resampled: dict[str, int] = field(default_factory=dict)
    #: the files written: unit file, its description (.json), failures (.failed.tsv)
    out: Path | None = None
    meta_path: Path | None = None
    failed_path: Path | None = None


def _audio_field(path, audio_root) -> str:
    path = Path(path).resolve()
    if audio_root is None:
        return str(path)
    # os.path.relpath also handles files outside the root (../); the reference uses "/"
    return Path(os.path.relpath(path, Path(audio_root).expanduser().resolve())).as_posix()


def encode_dataset(dataset, units: str | Path | dict, *, out: str | Path | None = None,
                   fmt: str = "reference", key: str | None = None,
                   audio_root: str | Path | None = None, trust_sha256: Iterable[str] = (),
                   device: str = "cpu", quiet: bool = True,
                   warn: Say | None = _stderr) -> EncodeResult:
    """Encode every utterance of ``dataset`` with the unit encoder ``units`` (a k-means
    ``.npz``, a catalogue name such as ``hubert-l6-km100``, ``vqvae:DIR``, or a spec dict).

    With ``out``, writes the unit file (``fmt`` "reference": the speech-resynthesis dict per
    line; "jsonl": ours), ``OUT.json`` describing the encoder and the run, and
    ``OUT.failed.tsv`` listing failed utterances (removed when none failed). ``key`` is the
    code key (default: cpc_km100 for CPC units, vqvae256 for VQ-VAE, else hubert, as the
    reference files name them); ``audio_root`` makes audio paths relative to it.
    """
    from resyn_bench.audio import ResampleLog
    from resyn_bench.systems.encoders.base import load_unit_encoder
    from resyn_bench.unit_files import UnitEntry, write_unit_file

    if fmt not in ("reference", "jsonl"):
        raise PipelineError(f"unit file format {fmt!r}: choose reference or jsonl")
    extra = {"device": device} if device != "cpu" else {}
    try:
        encoder = load_unit_encoder(units, trusted_sha256=list(trust_sha256), **extra)
    except ValueError as exc:
        if isinstance(exc, UserError):
            raise
        raise PipelineError(f"--units {units}: {exc}") from exc
    extractor_name = encoder.kmeans.meta.get("extractor") or encoder.extractor.name
    key = key or {"cpc": "cpc_km100", "vqvae": "vqvae256"}.get(extractor_name, "hubert")

    t0 = time.perf_counter()
    log = ResampleLog()
    entries = []
    failed: dict[str, str] = {}
    audio_s = 0.0
    n_units = 0
    for utt, samples, duration, error in iter_audio(dataset, encoder.sample_rate, log, quiet,
                                                    "encode"):
        if error is None:
            try:
                codes = encoder.encode(samples)
                if codes.size == 0:
                    raise ValueError(f"no units: {len(samples)} samples are shorter than one "
                                     f"frame of the {extractor_name} features")
            except (ValueError, RuntimeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            failed[utt.utt_id] = error
            if warn:
                warn(f"warning: {utt.utt_id}: {error}")
            continue
        fields = {"utt_id": utt.utt_id, "speaker": utt.speaker} if fmt == "jsonl" else {}
        entries.append(UnitEntry(audio=_audio_field(utt.path, audio_root), units=codes,
                                 key=key, duration=round(float(duration), 6), extra=fields))
        audio_s += duration
        n_units += codes.size
    elapsed = time.perf_counter() - t0
    result = EncodeResult(encoder=encoder, key=key, entries=entries, failed=failed,
                          n_units=int(n_units), audio_seconds=audio_s, seconds=elapsed,
                          resampled=dict(log.counts))
    if not entries:
        raise PipelineFailed(f"no utterance could be encoded ({len(failed)} failed)"
                             + ("; nothing written" if out is not None else ""))
    if out is None:
        return result
    out = Path(out).expanduser()
    write_unit_file(out, entries, key=key, fmt=fmt, hop_size=encoder.hop_size,
                    vocab_size=encoder.vocab_size)
    failed_path = out.with_name(out.name + ".failed.tsv")
    if failed:
        failed_path.write_text("".join(f"{u}\t{r}\n" for u, r in failed.items()),
                               encoding="utf-8")
    elif failed_path.exists():
        failed_path.unlink()  # stale list from an earlier run of the same output
    info = {"units": units if isinstance(units, (str, dict)) else str(units),
            "encoder": encoder.describe(), "key": key, "format": fmt, "dataset": dataset.info,
            "utterances": len(entries), "failed": failed, "units_total": int(n_units),
            "audio_seconds": round(audio_s, 3), "seconds": round(elapsed, 3),
            "resampled": dict(log.counts)}
    meta_path = out.with_name(out.name + ".json")
    meta_path.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    result.out, result.meta_path, result.failed_path = out, meta_path, failed_path
    return result
