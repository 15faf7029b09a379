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
# as ``from conftest import ...`` and share fixtures by module name (``from test_training import
# make_corpus``) across the folders that mirror the packages (core/, systems/, metrics/,
# reports/, cli/), so put this folder and each of those on the path once. Test module names are
# unique across folders (tests/core/test_packaging.py checks).
TESTS = Path(__file__).resolve().parent
TEST_FOLDERS = ("core", "systems", "metrics", "reports", "cli")
for _folder in (TESTS, *(TESTS / name for name in TEST_FOLDERS)):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


def harmonic_tone(f0, duration: float = 1.0, sr: int = 16000, n_harmonics: int = 8,
                  amplitude: float = 0.3) -> np.ndarray:
    """A harmonic signal with a known F0 contour (scalar or callable of time in seconds)."""
    t = np.arange(int(round(duration * sr))) / sr
    f = np.full_like(t, float(f0)) if np.isscalar(f0) else np.asarray(f0(t), dtype=float)
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, n_harmonics + 1))
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


# --- speech-like harmonic signals with a known F0 contour (pitch and F0 metric tests) ---
SR = 16000
DUR = 1.5
# Voiced segments (start, end, f0 at start, f0 at end); silence elsewhere. The range stays in
# every preset's search range (yin-fairseq: 100-500 Hz, yaapt: 60-400 Hz), also doubled.
SEGMENTS = ((0.20, 0.70, 110.0, 190.0), (0.90, 1.30, 190.0, 130.0))


def contour(t: np.ndarray, mult: float = 1.0) -> np.ndarray:
    f = np.zeros_like(t, dtype=np.float64)
    for t0, t1, f0, f1 in SEGMENTS:
        m = (t >= t0) & (t < t1)
        f[m] = f0 + (f1 - f0) * (t[m] - t0) / (t1 - t0)
    return f * mult


def harmonic_signal(mult: float = 1.0, seed: int = 0, dur: float = DUR) -> np.ndarray:
    """Sum of harmonics (1/h amplitudes, random but fixed phases, below 4 kHz) following
    ``contour``, 10 ms fades, silent gaps with -80 dB noise.

    Random phases matter: pYAAPT halves F0 on zero-phase (sawtooth-like) harmonic stacks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(dur * SR)) / SR
    f = contour(t, mult)
    phase = 2 * np.pi * np.cumsum(f) / SR
    y = np.zeros_like(t)
    for h in range(1, 30):
        y += (1.0 / h) * (h * f < 4000) * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    fade = np.hanning(2 * int(0.01 * SR))
    env = np.convolve((f > 0).astype(float), fade / fade.sum(), "same")
    y = 0.3 * y * env / np.max(np.abs(y))
    y += 1e-4 * rng.standard_normal(len(y))
    return y.astype(np.float32)


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
