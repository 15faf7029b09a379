"""What a training session trains on: the utterances (a dataset, or the audio a unit file names;
the held-out validation set), the unit source (a unit file, a unit encoder, or the audio frame
grid of a content VQ-VAE), the F0 statistics and speaker map, and the datasets built from them
(:func:`build_vocoder_data`, :func:`build_f0_data`; the dataset classes are in
:mod:`resyn_bench.systems.vocoder.data`). Derived inputs are recorded in the returned config and,
on rank 0, as ``speakers.json`` and ``data.json`` beside the checkpoints."""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.distributed import DistInfo, barrier
from resyn_bench.systems.vocoder.config import F0QuantizerTrainConfig, TrainConfig
from resyn_bench.systems.vocoder.training.state import (
    F0_STATS_FILE,
    SPEAKERS_FILE,
    TrainingError,
    write_json,
)

__all__ = ["AudioFrameGrid", "F0Data", "VocoderData", "build_f0_data", "build_vocoder_data",
           "crop_item", "describe_training_utterances", "f0_cache_dir", "resolve_f0_stats",
           "select_utterances", "unit_source"]

log = logging.getLogger("resyn_bench.train")


@dataclass
class VocoderData:
    config: TrainConfig                   # resolved (stats file, speaker map, quantizer params)
    train: Any                            # map-style dataset of training crops
    validation: list[dict[str, Any]]      # whole (cropped) held-out utterances, batch of 1 each
    collate: Callable
    quantizer_state: dict | None
    speakers: dict[str, int]


def _speaker_of(stem: str, method: str | None) -> str:
    """Speaker name from a file stem by the reference ``multispkr`` rule ("_": the part before
    the first underscore, "single"/other: one speaker)."""
    if method == "_":
        return stem.split("_")[0]
    return "A"


def _one_speaker(cfg) -> bool:
    return not cfg.multispkr or cfg.multispkr == "single"


def _utterances_from_unit_file(path: str, cfg) -> list:
    """Utterances named by a unit file's audio paths (the reference way, no dataset loader):
    relative paths resolve against ``data_root`` (else the unit file's folder, else cwd)."""
    from resyn_bench.datasets import Utterance
    from resyn_bench.unit_files import read_unit_file

    entries = read_unit_file(path)
    root = Path(cfg.data_root).expanduser() if cfg.data_root else None
    utts, seen = [], set()
    for e in entries:
        audio = Path(e.audio).expanduser()
        if not audio.is_absolute():
            candidates = [c / audio for c in ([root] if root else []) + [Path(path).parent, Path.cwd()]]
            audio = next((c for c in candidates if c.is_file()), candidates[0])
        if e.utt_id in seen:
            continue
        seen.add(e.utt_id)
        speaker = _speaker_of(e.stem, None) if _one_speaker(cfg) else (
            e.speaker or _speaker_of(e.stem, cfg.multispkr))
        utts.append(Utterance(e.utt_id, speaker, audio))
    return utts


def select_utterances(cfg) -> tuple[list, list, dict[str, Any]]:
    """(training utterances, validation utterances, description) from the config's data keys."""
    from resyn_bench.datasets import load_dataset

    info: dict[str, Any] = {}
    if cfg.dataset:
        if not cfg.data_root and cfg.dataset not in ("demo", "synthetic"):
            raise TrainingError(f"dataset {cfg.dataset!r} needs a data root (--data-root DIR)")
        ds = load_dataset(cfg.dataset, cfg.data_root, cfg.split, cfg.limit)
        utts = list(ds.utterances)
        info["dataset"] = ds.info
        if _one_speaker(cfg):  # the reference's "single": every file is speaker 'A' (row 0)
            from dataclasses import replace

            utts = [replace(u, speaker="A") for u in utts]
    elif cfg.input_training_file:
        utts = _utterances_from_unit_file(cfg.input_training_file, cfg)
        if cfg.limit:
            utts = utts[:cfg.limit]
    else:
        raise TrainingError("no training data: give --dataset NAME --data-root DIR (and units "
                            "with --units), or a unit file listing the audio (--units FILE)")
    val: list = []
    if getattr(cfg, "validation_split", None):
        if not cfg.dataset:
            raise TrainingError("validation_split needs a dataset (--dataset)")
        val = list(load_dataset(cfg.dataset, cfg.data_root, cfg.validation_split).utterances)
        val_ids = {u.utt_id for u in val}
        utts = [u for u in utts if u.utt_id not in val_ids]
        info["validation"] = {"split": cfg.validation_split, "n": len(val)}
    elif getattr(cfg, "input_validation_file", None) and not cfg.dataset:
        val = _utterances_from_unit_file(cfg.input_validation_file, cfg)
        info["validation"] = {"file": cfg.input_validation_file, "n": len(val)}
    elif cfg.validation_size > 0:
        # a seeded held-out choice, so a resumed (or DDP) run holds out the same utterances
        k = min(cfg.validation_size, max(len(utts) - 1, 0))
        chosen = set(np.random.default_rng(cfg.seed).permutation(len(utts))[:k].tolist())
        val = [u for i, u in enumerate(utts) if i in chosen]
        utts = [u for i, u in enumerate(utts) if i not in chosen]
        info["validation"] = {"held_out": [u.utt_id for u in val]}
    if _one_speaker(cfg):
        from dataclasses import replace

        val = [replace(u, speaker="A") for u in val]
    if not utts:
        raise TrainingError("no training utterances left after holding out the validation set")
    return utts, val, info


def unit_source(cfg: TrainConfig, validation: bool = False):
    """A unit file path (reference format or ours) or a unit encoder, from the config."""
    if cfg.unit_encoder:
        from resyn_bench.systems.encoders.base import load_unit_encoder

        return load_unit_encoder(cfg.unit_encoder)
    path = cfg.input_validation_file if (validation and cfg.input_validation_file) \
        else cfg.input_training_file
    if not path:
        raise TrainingError("no unit source: give --units with a unit file (reference "
                            "train.txt format or ours) or a unit encoder spec (a k-means file "
                            "made by `resyn-bench train kmeans`, or a catalogue name such as "
                            "hubert-l6-km100)")
    return path


class AudioFrameGrid:
    """The unit source of a content VQ-VAE run: the model encodes the audio crop itself, so the
    data pipeline needs only the 160-sample frame grid to cut aligned crops (all-zero
    placeholder codes, one per frame; never fed to the model)."""

    sample_rate = 16000
    vocab_size = 1

    def __init__(self, hop_size: int):
        self.hop_size = int(hop_size)
        self.name = f"audio frames (content VQ-VAE, hop {self.hop_size})"

    def encode(self, wav: np.ndarray) -> np.ndarray:
        return np.zeros(len(np.asarray(wav).reshape(-1)) // self.hop_size, dtype=np.int64)


def f0_cache_dir(cfg, out_dir: Path) -> Path:
    return Path(cfg.f0_cache_dir).expanduser() if cfg.f0_cache_dir else out_dir / "f0_cache"


def resolve_f0_stats(cfg, train_utts, val_utts, out_dir: Path, dist: DistInfo) -> tuple[str, dict]:
    """The F0 statistics file (computed from the training utterances when the config has
    none; rank 0 computes and writes ``f0_stats.json``, the others wait and read it)."""
    from resyn_bench.systems.vocoder.f0_stats import (
        compute_f0_stats,
        load_f0_stats,
        speaker_ids_from_names,
    )

    names = [u.speaker for u in list(train_utts) + list(val_utts)]
    ids = dict(cfg.speaker_map) if getattr(cfg, "speaker_map", None) else speaker_ids_from_names(names)
    if cfg.f0_stats:
        stats = load_f0_stats(cfg.f0_stats, ids if Path(cfg.f0_stats).suffix != ".json" else None)
        if stats.speaker_ids:
            ids = dict(stats.speaker_ids)
        return str(Path(cfg.f0_stats).expanduser().resolve()), ids
    path = out_dir / F0_STATS_FILE
    if dist.is_main:
        log.info("computing F0 statistics (%s) of %d training utterances", cfg.f0_extractor,
                 len(train_utts))
        # YAAPT costs ~0.1 s per second of audio: extract with the data-loading workers
        compute_f0_stats(train_utts, cfg.f0_extractor, speaker_ids=ids,
                         cache_dir=f0_cache_dir(cfg, out_dir),
                         jobs=max(1, cfg.num_workers)).save(path)
    barrier(dist)
    return str(path.resolve()), ids


def crop_item(item: dict[str, Any], max_samples: int, block: int, hop: int) -> dict[str, Any]:
    n = (min(item["audio"].shape[-1], max_samples) // block) * block
    if n <= 0:
        return item
    out = dict(item)
    out["audio"] = item["audio"][..., :n]
    out["code"] = item["code"][..., :n // hop]
    if "f0" in item:
        out["f0"] = item["f0"][..., :n // 80]
    return out


def describe_training_utterances(utterances, dataset: str | None) -> dict[str, Any]:
    """The training utterances (ids, absolute paths) for data.json: a run evaluating any of
    them warns (resyn_bench.overlap)."""
    from resyn_bench.overlap import describe_utterances

    return describe_utterances(utterances, dataset)


def build_vocoder_data(cfg: TrainConfig, out_dir: Path, dist: DistInfo) -> VocoderData:
    """Datasets, F0 statistics, speaker map and F0 quantizer weights for :func:`train_vocoder`;
    returns the config with every derived input recorded (absolute paths, speaker map)."""
    from resyn_bench.systems.vocoder.data import (
        VocoderDataset,
        alignment_block,
        collate,
    )

    train_utts, val_utts, info = select_utterances(cfg)
    quantizer_state = None
    updates: dict[str, Any] = {}
    if cfg.f0:
        if not cfg.f0_quantizer_path:
            raise TrainingError(
                "this vocoder is conditioned on F0 codes and needs a trained F0 quantizer: "
                "train one first (resyn-bench train f0-quantizer --config tiny-f0|f0-vqvae-vctk "
                "--dataset ... --out DIR) and pass --f0-quantizer DIR (or --set f0=false "
                "model_in_dim=... for a model without F0)")
        from resyn_bench.systems.vocoder.f0_quantizer import load_f0_quantizer

        qpath = Path(cfg.f0_quantizer_path).expanduser().resolve()
        if not qpath.exists():
            raise TrainingError(f"F0 quantizer checkpoint {qpath} not found; train one with "
                                "`resyn-bench train f0-quantizer --config tiny-f0 ...`")
        quantizer, qcfg, qstep = load_f0_quantizer(qpath)
        quantizer_state = quantizer.state_dict()
        # the loaded model's own blocks: qcfg may be a vocoder's config (quantizer nested in it)
        updates["f0_quantizer"] = copy.deepcopy(quantizer.config)
        updates["f0_quantizer_path"] = str(qpath)
        updates["extra"] = {**cfg.extra, "f0_quantizer_step": qstep}
        stats_path, ids = resolve_f0_stats(cfg, train_utts, val_utts, out_dir, dist)
        updates["f0_stats"] = stats_path
    else:
        from resyn_bench.systems.vocoder.f0_stats import speaker_ids_from_names

        stats_path = None
        ids = dict(cfg.speaker_map) if cfg.speaker_map else speaker_ids_from_names(
            u.speaker for u in train_utts + val_utts)
    if cfg.multi_speaker and ids and max(ids.values()) >= cfg.num_speakers:
        raise TrainingError(f"{len(ids)} speakers do not fit the speaker LUT of {cfg.num_speakers} "
                            "rows; raise it with --set num_speakers=N")
    updates["speaker_map"] = ids
    for key, value in (("input_training_file", cfg.input_training_file),
                       ("input_validation_file", cfg.input_validation_file),
                       ("data_root", cfg.data_root)):
        if value:
            updates[key] = str(Path(value).expanduser().resolve())
    cfg = cfg.with_overrides(updates)

    if cfg.is_vqvae:
        # the model makes its own codes: record it as its unit encoder (CheckpointSystem and
        # `resyn-bench encode` then use vqvae:<out dir>); crops only need the 160-sample grid
        cfg = cfg.with_overrides({"unit_encoder": f"vqvae:{Path(out_dir).expanduser().resolve()}"})
        units = AudioFrameGrid(cfg.code_hop_size)
    else:
        units = unit_source(cfg)
    common = {"code_hop": cfg.code_hop_size, "f0_extractor": cfg.f0_extractor if cfg.f0 else None,
              "f0_stats": stats_path, "f0_normalize": cfg.f0_normalize, "speaker_ids": ids,
              "cache_dir": f0_cache_dir(cfg, out_dir), "seed": cfg.seed}
    # audio kept in memory for small corpora in the main process (workers re-read files)
    cache_audio = cfg.num_workers == 0 and len(train_utts) <= 5000
    train = VocoderDataset(train_utts, units, segment_size=cfg.segment_size,
                           align_f0_codes=cfg.f0, cache_audio=cache_audio, **common)
    if train.code_hop != cfg.code_hop_size:
        raise TrainingError(f"the units have a hop of {train.code_hop} samples but the config's "
                            f"code_hop_size is {cfg.code_hop_size}; pick a matching preset or set "
                            "code_hop_size/upsample_rates")
    train.precompute(jobs=max(1, cfg.num_workers))   # F0 extraction in worker processes
    validation: list[dict[str, Any]] = []
    if val_utts:
        val_units = unit_source(cfg, validation=True) if (cfg.input_validation_file
                                                           and not cfg.is_vqvae) else units
        val_ds = VocoderDataset(val_utts, val_units, segment_size=None, **common)
        block = alignment_block(cfg.code_hop_size, f0_codes=True)
        max_samples = int(cfg.validation_max_seconds * cfg.sampling_rate)
        for i in range(len(val_ds)):
            item = crop_item(val_ds[i], max_samples, block, cfg.code_hop_size)
            validation.append(collate([item]))
    if dist.is_main:
        write_json(out_dir / SPEAKERS_FILE, ids)
        write_json(out_dir / "data.json", {**info, "n_train": len(train),
                                            "dropped_without_units": train.dropped,
                                            "training_utterances": describe_training_utterances(train_utts, cfg.dataset)})
    return VocoderData(cfg, train, validation, collate, quantizer_state, ids)


@dataclass
class F0Data:
    config: F0QuantizerTrainConfig
    train: Any
    validation: list[dict[str, Any]]
    collate: Callable
    speakers: dict[str, int]


def build_f0_data(cfg: F0QuantizerTrainConfig, out_dir: Path, dist: DistInfo) -> F0Data:
    """F0 crops (training) and whole held-out tracks (validation) for :func:`train_f0_quantizer`."""
    from resyn_bench.systems.vocoder.data import F0Dataset, collate

    train_utts, val_utts, info = select_utterances(cfg)
    stats_path, ids = resolve_f0_stats(cfg, train_utts, val_utts, out_dir, dist)
    cfg = cfg.with_overrides({"f0_stats": stats_path, "speaker_map": ids})
    common = {"f0_extractor": cfg.f0_extractor, "f0_stats": stats_path, "f0_normalize": True,
              "speaker_ids": ids, "cache_dir": f0_cache_dir(cfg, out_dir), "seed": cfg.seed}
    train = F0Dataset(train_utts, segment_size=cfg.segment_size, **common)
    train.precompute(jobs=max(1, cfg.num_workers))   # F0 extraction in worker processes
    validation = []
    if val_utts:
        # fixed crops of the segment size (whole tracks would make the cost grow with the data)
        val_ds = F0Dataset(val_utts, segment_size=cfg.segment_size, **common)
        validation = [collate([val_ds[i]]) for i in range(len(val_ds))]
    if dist.is_main:
        write_json(out_dir / SPEAKERS_FILE, ids)
        write_json(out_dir / "data.json", {**info, "n_train": len(train),
                                            "training_utterances": describe_training_utterances(train_utts, cfg.dataset)})
    return F0Data(cfg, train, validation, collate, ids)
