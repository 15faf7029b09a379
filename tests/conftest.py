"""Shared fixtures: synthetic signals with known answers and small corpora built on the fly."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
# the real-speech corpora and units live beside the checkout (override: RESYN_BENCH_SHARED)
SHARED = Path(os.environ.get("RESYN_BENCH_SHARED", REPO.parent / "shared"))
# --import-mode=importlib keeps tests/ off sys.path; test modules import these helpers
# as ``from conftest import ...``, so put this folder on the path once.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


def harmonic_tone(f0, duration: float = 1.0, sr: int = 16000, n_harmonics: int = 8,
                  amplitude: float = 0.3) -> np.ndarray:
    """A harmonic signal with a known F0 contour (scalar or callable of time in seconds)."""
    t = np.arange(int(round(duration * sr))) / sr
    f = np.full_like(t, float(f0)) if np.isscalar(f0) else np.asarray(f0(t), dtype=float)
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, n_harmonics + 1))
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def write_manifest(folder: Path, rows: list[dict]) -> Path:
    path = folder / "manifest.tsv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["utt_id", "speaker", "path", "text"])
        for r in rows:
            w.writerow([r["utt_id"], r["speaker"], r["path"], r.get("text", "")])
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated RESYN_BENCH_HOME (cache, demo corpus)."""
    h = tmp_path / "home"
    monkeypatch.setenv("RESYN_BENCH_HOME", str(h))
    return h


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """Six short harmonic utterances (two speakers, rising/falling contours) + manifest.tsv."""
    root = tmp_path / "corpus"
    (root / "wavs").mkdir(parents=True)
    rows = []
    contours = [lambda t: 120 + 60 * t, lambda t: 220 - 50 * t, lambda t: 150 + 20 * np.sin(6 * t)]
    for spk_i, spk in enumerate(["spkA", "spkB"]):
        for j, contour in enumerate(contours):
            uid = f"{spk}_{j:03d}"
            scale = 1.0 if spk_i == 0 else 1.5
            x = harmonic_tone(lambda t, c=contour, s=scale: s * c(t), duration=0.8)
            # a silent gap in the middle: known unvoiced frames
            x[int(0.35 * 16000):int(0.45 * 16000)] = 0.0
            sf.write(root / "wavs" / f"{uid}.wav", x, 16000, subtype="PCM_16")
            rows.append({"utt_id": uid, "speaker": spk, "path": f"wavs/{uid}.wav", "text": f"utt {j}"})
    write_manifest(root, rows)
    return root / "manifest.tsv"
