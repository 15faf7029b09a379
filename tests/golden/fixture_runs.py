"""Stored runs with fixed numbers, written directly with the store API (no audio, no models).

:func:`build_golden_runs` writes 2 datasets x 3 systems of resynthesis runs, plus voice
conversion (``vc``) and F0-manipulation (``f0_flat``) runs of the two unit systems on the
multi-speaker dataset. Names carry LaTeX/Markdown specials (``vctk_&_x``, ``cpc_#50%``,
speaker ``p225_&_x``) so escaping is part of what the golden files pin down. Every number comes
from ``numpy.random.default_rng`` with fixed seeds, so the runs (and the tables) are the same on
every machine. :func:`build_bench_runs` writes larger runs of the same shape for timing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from resyn_bench.metrics.f0 import COUNT_KEYS, values_from_counts
from resyn_bench.reports.collate import metric_group
from resyn_bench.store import RecordStore, write_json_atomic

GROUPS = ("f0", "asr", "spk", "dnsmos")
HUBERT_STREAMS = [
    {"name": "units", "kind": "discrete", "frame_rate": 50.0, "vocab_size": 100, "description": ""},
    {"name": "f0_codes", "kind": "discrete", "frame_rate": 12.5, "vocab_size": 20, "description": ""},
    {"name": "speaker", "kind": "speaker", "frame_rate": None, "vocab_size": 200, "description": ""}]
CPC_STREAMS = [
    {"name": "units", "kind": "discrete", "frame_rate": 100.0, "vocab_size": 100, "description": ""},
    {"name": "speaker", "kind": "speaker", "frame_rate": None, "vocab_size": 200, "description": ""}]
COPY_STREAMS = [{"name": "waveform", "kind": "waveform", "frame_rate": 16000.0, "vocab_size": None,
                 "description": ""}]

#: system -> (streams, quality offset: how much worse than the ground truth it is)
SYSTEMS = {"copy": (COPY_STREAMS, 0.0), "hubert100": (HUBERT_STREAMS, 1.0),
           "cpc_#50%": (CPC_STREAMS, 1.6)}
DATASETS = {   # label-giving root -> (speakers, utterances per speaker)
    "/data/vctk_&_x/manifest.tsv": (["p225_&_x", "p226", "p227", "p228"], 6),
    "/data/lj/manifest.tsv": (["LJ"], 12),
}


#: stored settings of the model-backed groups (what the table notes name)
SETTINGS = {
    "f0": {"preset": "dio"},
    "asr": {"backend": {"backend": "whisper", "loader": "faster-whisper", "model": "whisper-base",
                        "beam_size": 5, "compute_type": "int8"},
            "normalizer": "whisper-en", "per": True,
            "phones": {"output": "lexicon of the recognised words"}},
    "spk": {"backend": "resemblyzer", "encoder": {"backend": "resemblyzer"}},
    "dnsmos": {"model": "DNSMOS P.835 sig_bak_ovr.onnx + P.808 model_v8.onnx (speechmos)"},
}


def _manifest(system: str, root: str, n: int, experiment: str | None, groups=GROUPS) -> dict:
    config = {"system": system, "dataset": "manifest", "data_root": root, "split": None,
              "limit": None, "system_options": {}}
    if experiment is not None:
        config["experiment"] = experiment
    metrics = {}
    for g in groups:
        options = {"preset": "dio"} if g == "f0" else {}
        obj = metric_group(g, options)
        metrics[g] = {"settings": SETTINGS.get(g, {}),
                      "specs": [s.to_dict() for s in obj.specs], "options": options}
    return {"config": config, "dataset": {"root": root, "n_utterances": n},
            "system": {"name": system, "streams": SYSTEMS[system][0]}, "metrics": metrics}


def _write_run(path: Path, system: str, root: str, experiment: str | None, seed: int,
               per_speaker: int | None = None, groups=GROUPS) -> Path:
    speakers, n_per = DATASETS[root]
    n_per = per_speaker or n_per
    _, badness = SYSTEMS[system]
    flat = experiment == "f0_flat"
    vc = experiment == "vc"
    rng = np.random.default_rng(seed)
    utts = [(f"{spk}_{i:03d}", spk) for spk in speakers for i in range(n_per)]
    write_json_atomic(path / "manifest.json", _manifest(system, root, len(utts), experiment, groups))
    store = RecordStore(path)
    for k, (uid, spk) in enumerate(utts):
        target = speakers[(speakers.index(spk) + 1 + k % max(1, len(speakers) - 1)) % len(speakers)] \
            if vc and len(speakers) > 1 else spk
        synth = {"part": "synthesis", "utt_id": uid, "speaker": spk, "status": "ok",
                 "reference_path": f"/nonexistent/{uid}.wav", "output_path": f"outputs/{uid}.wav"}
        if vc:
            synth["target_speaker"] = target
        store.append(synth)
        if "f0" in groups:
            n_frames = int(rng.integers(200, 400))
            n_vb = int(n_frames * rng.uniform(0.4, 0.6))
            scale = 6.0 if flat else 1.0
            n_gross = min(n_vb, int(rng.integers(0, 3 + 4 * badness * scale)))
            n_verr = min(n_frames - n_vb, int(rng.integers(0, 2 + 10 * badness * scale)))
            rms = float(rng.uniform(10.0, 30.0 + 60.0 * badness * scale))   # cents
            local = {"n_frames": n_frames, "n_voiced_both": n_vb, "n_gross": n_gross,
                     "n_voicing_err": n_verr, "sum_sq_cents": round(n_vb * rms * rms, 3)}
            values = values_from_counts({**dict.fromkeys(COUNT_KEYS, 0), **local})
            store.append({"part": "metric", "group": "f0", "utt_id": uid, "status": "ok",
                          "values": values, "counts": local})
        if "asr" in groups:
            words, chars, phones = (int(rng.integers(8, 14)), int(rng.integers(40, 70)),
                                    int(rng.integers(30, 50)))
            c = {"word_edits": int(rng.integers(0, 1 + 2 * badness + 2 * vc)), "ref_words": words,
                 "char_edits": int(rng.integers(0, 2 + 5 * badness)), "ref_chars": chars,
                 "phone_edits": int(rng.integers(1, 3 + 6 * badness + 3 * vc)), "ref_phones": phones}
            values = {"asr.wer": c["word_edits"] / words, "asr.cer": c["char_edits"] / chars,
                      "asr.per": c["phone_edits"] / phones}
            store.append({"part": "metric", "group": "asr", "utt_id": uid, "status": "ok",
                          "values": values, "counts": c})
        if "spk" in groups:
            if len(speakers) < 2:
                store.append({"part": "metric", "group": "spk", "utt_id": uid, "status": "skipped",
                              "reason": "spk: speaker identification needs >= 2 speakers"})
            else:
                trials = {s: round(float(rng.uniform(0.3, 0.6)), 6) for s in speakers}
                trials[target] = round(float(rng.uniform(0.55 - 0.1 * badness, 0.9)), 6)
                predicted = max(trials, key=trials.get)
                correct = float(predicted == target)
                values = {"spk.acc": correct, "spk.cos_ref": round(float(rng.uniform(0.6, 0.95)), 6),
                          "spk.cos_centroid": trials[target]}
                store.append({"part": "metric", "group": "spk", "utt_id": uid, "status": "ok",
                              "values": values, "counts": {"correct": correct, "trials": 1.0},
                              "extra": {"target": target, "predicted": predicted, "trials": trials}})
        if "dnsmos" in groups:
            base = 4.1 - 0.35 * badness
            values = {f"dnsmos.{k2}": round(float(base + rng.normal(0, 0.15)), 6)
                      for k2 in ("ovrl", "sig", "bak", "p808")}
            store.append({"part": "metric", "group": "dnsmos", "utt_id": uid, "status": "ok",
                          "values": values, "counts": {}})
    return path


def build_golden_runs(root: str | Path) -> list[Path]:
    """The golden set, in report order: per dataset copy, hubert100, cpc_#50% (resynthesis),
    then the VC and F0-flat runs of hubert100 and cpc_#50% on vctk_&_x."""
    root = Path(root)
    runs, seed = [], 100
    vctk, lj = list(DATASETS)
    for data, short in ((vctk, "vctk"), (lj, "lj")):
        for system in SYSTEMS:
            seed += 1
            runs.append(_write_run(root / f"{short}-{system.replace('#', '').replace('%', '')}",
                                   system, data, None, seed))
    for experiment in ("vc", "f0_flat"):
        for system in ("hubert100", "cpc_#50%"):
            seed += 1
            runs.append(_write_run(root / f"vctk-{experiment}-{system.replace('#', '').replace('%', '')}",
                                   system, vctk, experiment, seed))
    return runs


def build_bench_runs(root: str | Path, n_utts: int = 1000, groups=GROUPS) -> list[Path]:
    """3 systems x ``n_utts`` utterances (4 speakers) of resynthesis, for timing the report."""
    root = Path(root)
    vctk = next(iter(DATASETS))
    per = max(1, n_utts // len(DATASETS[vctk][0]))
    return [_write_run(root / f"bench-{i}", system, vctk, None, 7 + i, per_speaker=per, groups=groups)
            for i, system in enumerate(SYSTEMS)]
