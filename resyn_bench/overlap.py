"""Does a system's training set overlap the utterances a run evaluates?

Training commands record the utterances they used: ``resyn-bench train kmeans`` in the
k-means file's metadata (``training_data.utterance_ids`` / ``utterance_paths``), ``train
vocoder`` and ``train f0-quantizer`` in the checkpoint folder's ``data.json``
(``training_utterances``). A run compares them with its own utterances: the same audio file
(absolute path), or the same utterance id in a dataset of the same name, counts as overlap.
Scores on training data are optimistic (the k-means has seen those frames, the vocoder has
learnt to reproduce that very audio), so the run warns on the console, records the finding in
its manifest (``training_overlap``, with a one-line ``note`` reports can show) and goes on.

Published checkpoints (catalogue names) carry no such record and are not checked.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("resyn_bench.overlap")


#: dataset loaders whose ids mean nothing outside their folder: matched by audio path only
_LOCAL_IDS = {"manifest", "demo", None, ""}


def describe_utterances(utterances, dataset: str | None = None) -> dict[str, Any]:
    """The record a training command stores: ids and absolute audio paths, in order, and the
    dataset loader's name (ids of named corpora such as vctk also match across machines)."""
    utterances = list(utterances)
    return {"utterance_ids": [str(u.utt_id) for u in utterances],
            "utterance_paths": [_resolved(u.path) for u in utterances],
            "utterance_dataset": dataset}


def _resolved(path) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, RuntimeError):
        return str(path)


def _kmeans_record(spec: str) -> dict[str, Any] | None:
    path = Path(str(spec)).expanduser()
    if path.suffix != ".npz" or not path.is_file():
        return None
    try:
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
    except Exception:  # noqa: BLE001 - not our k-means file: nothing recorded, nothing to check
        return None
    data = meta.get("training_data") or {}
    if not data.get("utterance_ids") and not data.get("utterance_paths"):
        return None
    return {"what": f"k-means {path}", "dataset": data.get("utterance_dataset", data.get("dataset")),
            "ids": data.get("utterance_ids") or [], "paths": data.get("utterance_paths") or []}


def _folder_record(folder: Path, what: str) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / "data.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    used = info.get("training_utterances") or {}
    if not used.get("utterance_ids") and not used.get("utterance_paths"):
        return None
    return {"what": f"{what} {folder}", "dataset": used.get("utterance_dataset"),
            "ids": used.get("utterance_ids") or [], "paths": used.get("utterance_paths") or []}


def training_records(system) -> list[dict[str, Any]]:
    """The training sets a system's parts recorded (vocoder folder, its F0 quantizer, the
    k-means of its units); empty for systems without such parts."""
    records = []
    checkpoint = getattr(system, "checkpoint", None)
    if isinstance(checkpoint, dict) and checkpoint.get("path"):
        folder = Path(checkpoint["path"]).parent
        records.append(_folder_record(folder, "vocoder"))
        config = getattr(system, "config", None)
        f0_path = getattr(config, "f0_quantizer_path", None)
        if f0_path:
            f0 = Path(f0_path)
            records.append(_folder_record(f0 if f0.is_dir() else f0.parent, "F0 quantizer"))
    spec = getattr(system, "unit_spec", None)
    if spec:
        records.append(_kmeans_record(spec))
    return [r for r in records if r]


def find_overlap(system, utterances, dataset_name: str | None = None) -> dict[str, Any] | None:
    """{"parts": [...], "note": str} when any recorded training set holds evaluated utterances
    (same audio file, or same id in a dataset of the same name); None otherwise."""
    utterances = list(utterances)
    if not utterances:
        return None
    parts = []
    for record in training_records(system):
        paths, ids = set(record["paths"]), set(record["ids"])
        same_dataset = dataset_name not in _LOCAL_IDS and record.get("dataset") == dataset_name
        hits = [u.utt_id for u in utterances
                if _resolved(u.path) in paths or (same_dataset and u.utt_id in ids)]
        if hits:
            parts.append({"part": record["what"], "n_overlap": len(hits),
                          "n_evaluated": len(utterances), "n_training": len(ids or paths),
                          "examples": hits[:5]})
    if not parts:
        return None
    note = "; ".join(f"{p['part']} was trained on {p['n_overlap']} of the {p['n_evaluated']} "
                     "evaluated utterances" for p in parts)
    return {"parts": parts,
            "note": f"training-set overlap: {note} - scores on training data are optimistic"}


def check_overlap(system, utterances, dataset_name: str | None = None) -> dict[str, Any] | None:
    """:func:`find_overlap` plus the console warning; never fails a run."""
    try:
        found = find_overlap(system, utterances, dataset_name)
    except Exception as exc:  # noqa: BLE001 - a warning must never stop an evaluation
        log.debug("training-set overlap check skipped: %s", exc)
        return None
    if found:
        log.warning("warning: %s", found["note"])
    return found
