"""Rebuild the embedded real-speech demo corpus (resyn_bench/data/demo/) from ../shared/corpora.

The committed FLAC files are the product; this script documents exactly how they were made and
rebuilds them when the selection changes:

    python tests/tools/build_demo_speech.py                       # from ../shared/corpora
    python tests/tools/build_demo_speech.py --corpora DIR --out resyn_bench/data/demo

Sources (each folder's SOURCE.md names its origin and licence):

* ``vctk_againvc_48k``: original 48 kHz VCTK recordings (CC BY 4.0), speakers p225 (F), p226 (M),
  p227 (M), p228 (F), six sentences each (the elicitation paragraph and the Rainbow Passage;
  the same six for three speakers, four of them shared with p227), none clipped in the source.
* ``ljspeech_coqui_subset``: LJ Speech 1.1 (public domain), six sentences without numerals or
  abbreviations.

Processing, the same for every file: mono float, resampled to 16 kHz with soxr (quality HQ),
leading and trailing silence trimmed (20 ms frames, energy smoothed over 3 frames; kept from the
first to the last frame above max(loudest frame - 40 dB, 10th-percentile frame + 12 dB), plus
0.2 s on each side, clipped to the recording), written as 16-bit FLAC. No gain, filtering or other change.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 16000
FRAME_S = 0.02
THRESHOLD_DB = 40.0
FLOOR_MARGIN_DB = 12.0
PAD_S = 0.2

#: (source folder, utt_id) in manifest order. Texts come from the source manifests.
#: Sentences 002 and 003 are left out (clipped in the source for some speakers), as is p227_006
#: (clipped); the source has no p227_007.
VCTK_SENTENCES = {"p225": ("004", "005", "006", "007", "009", "010"),
                  "p226": ("004", "005", "006", "007", "009", "010"),
                  "p227": ("004", "005", "008", "009", "010", "011"),
                  "p228": ("004", "005", "006", "007", "009", "010")}
LJ_UTTERANCES = ("LJ001-0004", "LJ001-0006", "LJ001-0009", "LJ001-0011", "LJ001-0016",
                 "LJ001-0030")
SELECTION = ([("vctk_againvc_48k", f"{spk}_{n}") for spk, nums in VCTK_SENTENCES.items()
              for n in nums] + [("ljspeech_coqui_subset", u) for u in LJ_UTTERANCES])

#: speaker -> (sex, description) for the attribution file and the manifest
SPEAKERS = {"p225": ("F", "VCTK p225, 23, English, Southern England"),
            "p226": ("M", "VCTK p226, 22, English, Surrey"),
            "p227": ("M", "VCTK p227, 38, English, Cumbria"),
            "p228": ("F", "VCTK p228, 22, English, Southern England"),
            "LJ": ("F", "LJ Speech 1.1 reader (Linda Johnson)")}


def read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "manifest.tsv", encoding="utf-8", newline="") as fh:
        return {row["utt_id"]: row for row in csv.DictReader(fh, delimiter="\t",
                                                             quoting=csv.QUOTE_NONE)}


def trim(x: np.ndarray, sr: int) -> tuple[np.ndarray, float, float]:
    """Cut leading/trailing silence; returns (samples, seconds cut at start, at end)."""
    hop = int(round(FRAME_S * sr))
    n = len(x) // hop
    energy = np.array([np.mean(np.square(x[i * hop:(i + 1) * hop], dtype=np.float64))
                       for i in range(n)])
    energy = np.convolve(energy, np.ones(3) / 3, mode="same")  # 60 ms: ignore single clicks
    db = 10 * np.log10(energy + 1e-12)
    threshold = max(db.max() - THRESHOLD_DB, np.percentile(db, 10) + FLOOR_MARGIN_DB)
    voiced = np.flatnonzero(db >= threshold)
    pad = int(round(PAD_S * sr))
    start = max(0, voiced[0] * hop - pad)
    end = min(len(x), (voiced[-1] + 1) * hop + pad)
    return x[start:end], start / sr, (len(x) - end) / sr


def clean_text(text: str) -> str:
    return " ".join(text.replace(" ,", ",").split())


def build(corpora: Path, out: Path) -> list[dict]:
    import soundfile as sf
    import soxr

    manifests: dict[str, dict] = {}
    rows = []
    for folder, utt_id in SELECTION:
        if folder not in manifests:
            manifests[folder] = read_manifest(corpora / folder)
        src = manifests[folder][utt_id]
        speaker = src["speaker"]
        x, sr = sf.read(str(corpora / folder / src["path"]), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        y = soxr.resample(x, sr, SAMPLE_RATE, quality="HQ") if sr != SAMPLE_RATE else x
        y, cut_start, cut_end = trim(np.asarray(y, dtype=np.float32), SAMPLE_RATE)
        rel = f"flac/{speaker}/{utt_id}.flac"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out / rel), np.clip(y, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16",
                 format="FLAC")
        rows.append({"utt_id": utt_id, "speaker": speaker, "path": rel,
                     "text": clean_text(src["text"]), "sample_rate": str(SAMPLE_RATE),
                     "duration_s": format(round(len(y) / SAMPLE_RATE, 3), "g"),
                     "source": f"{folder}/{src['path']}", "source_sample_rate": str(sr),
                     "trimmed_s": f"{cut_start:.2f}+{cut_end:.2f}"})
    return rows


def write_manifest(out: Path, rows: list[dict]) -> None:
    cols = ["utt_id", "speaker", "path", "text", "sample_rate", "duration_s"]
    with open(out / "manifest.tsv", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\t".join(cols) + "\n")
        for r in rows:
            fh.write("\t".join(r[c] for c in cols) + "\n")
    with open(out / "PROVENANCE.tsv", "w", encoding="utf-8", newline="\n") as fh:
        cols = ["utt_id", "source", "source_sample_rate", "trimmed_s", "sha256"]
        fh.write("\t".join(cols) + "\n")
        for r in rows:
            digest = hashlib.sha256((out / r["path"]).read_bytes()).hexdigest()
            fh.write("\t".join([r["utt_id"], r["source"], r["source_sample_rate"],
                                r["trimmed_s"], digest]) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(REPO.parent / "shared" / "corpora"),
                    help="folder holding vctk_againvc_48k/ and ljspeech_coqui_subset/")
    ap.add_argument("--out", default=str(REPO / "resyn_bench" / "data" / "demo"),
                    help="where the corpus goes (replaced: flac/, manifest.tsv, PROVENANCE.tsv)")
    args = ap.parse_args(argv)
    corpora, out = Path(args.corpora), Path(args.out)
    for folder in ("vctk_againvc_48k", "ljspeech_coqui_subset"):
        if not (corpora / folder / "manifest.tsv").is_file():
            print(f"error: {corpora / folder}/manifest.tsv not found; pass --corpora DIR",
                  file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        rows = build(corpora, tmp)
        write_manifest(tmp, rows)
        shutil.rmtree(out / "flac", ignore_errors=True)
        os.replace(tmp / "flac", out / "flac")
        for name in ("manifest.tsv", "PROVENANCE.tsv"):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(p.stat().st_size for p in (out / "flac").rglob("*.flac"))
    seconds = sum(float(r["duration_s"]) for r in rows)
    print(f"{len(rows)} utterances, {len({r['speaker'] for r in rows})} speakers, "
          f"{seconds:.1f} s of audio, {total / 1e6:.2f} MB of FLAC in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
