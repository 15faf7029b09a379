"""The ``demo`` dataset: real human speech shipped inside the package (no build, no download).

``resyn_bench/data/demo/`` holds 30 utterances, 152 s of speech as 16 kHz 16-bit FLAC (2.8 MB):

* VCTK (CC BY 4.0): speakers p225 (F), p226 (M), p227 (M), p228 (F), six sentences each from
  the elicitation paragraph and the Rainbow Passage (p225, p226 and p228 read the same six;
  p227 shares four of them);
* LJ Speech 1.1 (public domain): six sentences of its one reader (speaker ``LJ``).

Five speakers with six utterances each, so the speaker-ID metric's 5-fold cross-validation
holds out one or two utterances per speaker and fold and enrols every speaker in every fold.
``ATTRIBUTION.md`` beside the audio gives the origin, licences, speakers and the changes made
(resampled to 16 kHz, leading/trailing silence trimmed, FLAC); ``PROVENANCE.tsv`` lists each
file's source recording, the seconds trimmed and its sha256. ``tests/tools/build_demo_speech.py``
rebuilds the files from ``../shared/corpora``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from resyn_bench.errors import UserError

#: Bump when the selection or processing changes (recorded in every run's dataset info).
DEMO_VERSION = "speech-v1"
#: The files that make the corpus besides the audio.
METADATA_FILES = ("manifest.tsv", "ATTRIBUTION.md", "PROVENANCE.tsv")


class DemoSpeechError(UserError, RuntimeError):
    """The embedded demo corpus is missing or damaged in this installation."""


def demo_dir() -> Path:
    """The folder of the embedded corpus inside the installed package."""
    return Path(__file__).resolve().parent / "data" / "demo"


def manifest_sha256(folder: Path | None = None) -> str:
    """sha256 of the manifest (identifies the selection and texts in run records)."""
    folder = demo_dir() if folder is None else folder
    return hashlib.sha256((folder / "manifest.tsv").read_bytes()).hexdigest()


def check_demo_dir(folder: Path | None = None) -> Path:
    """The corpus folder, or DemoSpeechError naming what is missing and what to do."""
    folder = demo_dir() if folder is None else folder
    missing = [name for name in METADATA_FILES if not (folder / name).is_file()]
    if missing:
        raise DemoSpeechError(
            f"the embedded demo corpus is incomplete at {folder} (missing {', '.join(missing)}); "
            "this installation of resyn-bench lacks its package data: reinstall it "
            "(pip install --force-reinstall resyn-bench, or from a checkout: pip install .)")
    return folder


def wer_by_speaker(run_dir: str | Path) -> dict[str, float]:
    """Pooled WER (word edits / reference words, in %) per speaker of a run's scored records:
    the demo prints it for the ground-truth row. Speakers without ASR counts are left out."""
    from resyn_bench.store import read_records

    edits: dict[str, float] = {}
    words: dict[str, float] = {}
    for rec in read_records(Path(run_dir), ["asr"]):
        counts = rec.get("counts") or {}
        if "asr.word_edits" not in counts or not counts.get("asr.ref_words"):
            continue
        spk = str(rec.get("speaker"))
        edits[spk] = edits.get(spk, 0.0) + float(counts["asr.word_edits"])
        words[spk] = words.get(spk, 0.0) + float(counts["asr.ref_words"])
    return {spk: 100.0 * edits[spk] / words[spk] for spk in sorted(words)}
