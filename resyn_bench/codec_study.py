"""``resyn-bench codec``: how many bits per second each stream really needs.

Inputs (positional, any mix):

* a **unit file** in any format :func:`~resyn_bench.unit_files.read_unit_file` reads (the
  reference repo's ``{train,val,test}.txt`` dict lines, ours, ``name|codes``, ...);
* a **folder**: every ``*.txt`` unit file under it (e.g. ``../shared/units``: the paper's
  ``LJSpeech/hubert100/test.txt``, ...), one stream per folder; where a folder has
  ``train.txt`` beside ``test.txt`` the code is fitted on ``train.txt`` and measured on
  ``test.txt``; ``val``/``valid`` files are not used;
* a **run directory** (``manifest.json``): its bitrate as the reports compute it, measured
  from the encoder's output where the system records it (codec2, opus), else from the stream
  specs. The runner stores no unit streams, so a run adds a row, not a stream analysis.

Per unit stream (see :mod:`resyn_bench.metrics.bitrate`): raw rate (frame rate x ceil(log2 K)),
unigram and previous-unit conditional entropy, the run-length form (deduplicated units +
durations), and the bits canonical Huffman codes (memoryless, one per previous unit, and of the
run-length form) fitted on a training split achieve on the test split (decoded again and
checked). Where only one file exists (the published units are
test sets only) the split is by utterance id: ``sha256(utt_id)`` read as a number in [0, 1) below
``--train-fraction`` (default 0.5) goes to training; the rest is measured. Seconds are
``frames / frame rate``.

F0 codes are not in the published unit files: their row is the formula (12.5 Hz x ceil(log2 20)
= 62.5 bps) beside the paper's 65 bps, and the totals add the formula's F0 rate to every unit
rate. The speaker stream is one symbol per utterance, reported apart and not in the totals.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resyn_bench.core.bitrate import F0_CODE_RATE, F0_CODE_VOCAB
from resyn_bench.errors import UserError
from resyn_bench.metrics.bitrate import StreamRates, raw_bps, speaker_rates, stream_rates

#: (frame rate Hz, vocabulary, the paper's stated bps) of the published streams, by code key
PAPER_STREAMS = {
    "hubert": (50.0, 100, 350.0),
    "cpc": (100.0, 100, 700.0),
    "cpc_km100": (100.0, 100, 700.0),
    "vqvae256": (100.0, 256, 800.0),
}
#: the F0 codes: 12.5 Hz (F0 at 200 Hz, x16 down-sampling), K'=20; the paper states 65 bps
F0_RATE, F0_VOCAB, F0_PAPER_BPS = F0_CODE_RATE, F0_CODE_VOCAB, 65.0
F0_NOTE = ("F0 codes: not in the unit files; 12.5 Hz x ceil(log2 20) = 5 bits gives 62.5 bps by "
           "the formula, the paper states 65 bps; totals add 62.5.")
#: speaker ids in file names: VCTK p225_001 / s5_001, LJSpeech LJ001-0001 (one voice)
DEFAULT_SPEAKER_PATTERN = r"^(p\d+|s\d+)_|^(LJ)\d+-\d+"
STREAM_NAMES = {"hubert": "HuBERT", "cpc": "CPC", "cpc_km100": "CPC", "vqvae256": "VQ-VAE"}


class CodecStudyError(UserError, ValueError):
    """Bad input to the codec study (the message names the file or option)."""


@dataclass
class StreamStudy:
    label: str                      # e.g. "LJSpeech/hubert100"
    key: str                        # code key of the file
    path: str
    frame_rate: float
    vocab_size: int
    paper_bps: float | None
    split: str                      # how train/test were chosen
    rates: StreamRates
    speaker: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def best_achieved(self) -> float | None:
        got = [r for r in (self.rates.huffman, self.rates.huffman_conditional,
                           self.rates.huffman_run_length) if r is not None]
        return min(got) if got else None

    def to_dict(self) -> dict[str, Any]:
        d = {"label": self.label, "key": self.key, "path": self.path,
             "frame_rate": self.frame_rate, "vocab_size": self.vocab_size,
             "paper_bps": self.paper_bps, "split": self.split, "rates": self.rates.to_dict(),
             "best_achieved_bps": self.best_achieved, "speaker": self.speaker, "notes": self.notes}
        best = self.best_achieved
        d["saving"] = None if best is None else 1.0 - best / self.rates.raw
        d["total"] = {"raw": self.rates.raw + raw_bps(F0_RATE, F0_VOCAB),
                      "best_achieved": None if best is None else best + raw_bps(F0_RATE, F0_VOCAB),
                      "paper": None if self.paper_bps is None else self.paper_bps + F0_PAPER_BPS}
        return d


def utterance_fraction(utt_id: str) -> float:
    """``sha256(utt_id)`` as a number in [0, 1): a split that does not depend on file order."""
    return int(hashlib.sha256(utt_id.encode("utf-8")).hexdigest()[:15], 16) / float(16 ** 15)


def _speaker_of(entry, pattern: re.Pattern | None) -> str | None:
    if entry.speaker:
        return entry.speaker
    if pattern is None:
        return None
    m = pattern.search(entry.stem)
    if not m:
        return None
    groups = [g for g in m.groups() if g] if m.groups() else []
    return groups[0] if groups else m.group(0)


def _stream_params(entries, path: Path, frame_rate: float | None, vocab: int | None
                   ) -> tuple[float, int, list[str]]:
    notes = []
    key = entries[0].key
    paper = PAPER_STREAMS.get(key)
    extra = entries[0].extra
    if frame_rate is None:
        if extra.get("hop_size"):
            frame_rate = float(extra.get("sample_rate", 16000)) / float(extra["hop_size"])
        elif paper:
            frame_rate = paper[0]
        else:
            raise CodecStudyError(f"{path}: cannot tell the frame rate of code key {key!r}; "
                                  "pass --frame-rate HZ")
    if vocab is None:
        if extra.get("vocab_size"):
            vocab = int(extra["vocab_size"])
        elif paper:
            vocab = paper[1]
        else:
            m = re.search(r"(\d+)$", path.parent.name)
            vocab = int(m.group(1)) if m else None
            if vocab is None:
                vocab = int(max(int(e.units.max()) for e in entries if e.units.size)) + 1
                notes.append(f"vocabulary not declared: K = largest id + 1 = {vocab}")
    top = max((int(e.units.max()) for e in entries if e.units.size), default=-1)
    if top >= vocab:
        notes.append(f"ids up to {top} exceed the vocabulary {vocab}: escaped in the Huffman code")
    return float(frame_rate), int(vocab), notes


def study_unit_file(test_path: str | Path, *, train_path: str | Path | None = None,
                    label: str | None = None, train_fraction: float = 0.5,
                    frame_rate: float | None = None, vocab: int | None = None,
                    speaker_pattern: str | None = DEFAULT_SPEAKER_PATTERN,
                    n_speakers: int | None = None, alpha: float = 1.0,
                    verify: bool = True) -> StreamStudy:
    """Measure the stream of one unit file (see the module notes)."""
    from resyn_bench.unit_files import read_unit_file

    test_path = Path(test_path)
    entries = [e for e in read_unit_file(test_path) if e.units.size]
    if not entries:
        raise CodecStudyError(f"{test_path}: no unit sequences (a file of paths only?)")
    if any(e.units.min() < 0 for e in entries):
        raise CodecStudyError(f"{test_path}: negative unit ids (placeholders such as -1); "
                              "these files carry no units to measure")
    keys = {e.key for e in entries}
    if len(keys) > 1:
        raise CodecStudyError(f"{test_path}: mixes code keys {sorted(keys)}; one stream per file")
    rate, k, notes = _stream_params(entries, test_path, frame_rate, vocab)
    if train_path is not None:
        train = [e for e in read_unit_file(train_path) if e.units.size]
        if not train:
            raise CodecStudyError(f"{train_path}: no unit sequences to fit the code on")
        test = entries
        split = f"code fitted on {Path(train_path).name}, measured on {test_path.name}"
    else:
        if not 0.0 < train_fraction < 1.0:
            raise CodecStudyError(f"--train-fraction must be between 0 and 1, got {train_fraction}")
        train = [e for e in entries if utterance_fraction(e.utt_id) < train_fraction]
        test = [e for e in entries if utterance_fraction(e.utt_id) >= train_fraction]
        if not train or not test:
            raise CodecStudyError(f"{test_path}: {len(entries)} utterances are too few to split "
                                  f"{train_fraction:g}/{1 - train_fraction:g}")
        split = (f"by utterance-id hash: {len(train)} train / {len(test)} test utterances "
                 f"(sha256(id) < {train_fraction:g} -> train)")
    rates = stream_rates([e.units for e in test], rate, k, train=[e.units for e in train],
                         alpha=alpha, verify=verify)
    pattern = re.compile(speaker_pattern) if speaker_pattern else None
    test_spk = [_speaker_of(e, pattern) for e in test]
    speaker = None
    if all(s is not None for s in test_spk):
        train_spk = [_speaker_of(e, pattern) for e in train]
        speaker = speaker_rates(test_spk, rates.seconds, n_speakers,
                                train_spk if all(s is not None for s in train_spk) else None)
    else:
        notes.append("speaker unknown for some utterances (no 'speaker' field and no match of "
                     "--speaker-pattern): no speaker row")
    paper = PAPER_STREAMS.get(entries[0].key)
    return StreamStudy(label=label or _file_label(test_path),
                       key=entries[0].key, path=str(test_path), frame_rate=rate, vocab_size=k,
                       paper_bps=paper[2] if paper else None, split=split, rates=rates,
                       speaker=speaker, notes=notes)


def _file_label(path: Path) -> str:
    """``LJSpeech/hubert100`` for ``.../LJSpeech/hubert100/test.txt``; ``dir/stem`` otherwise."""
    if path.stem.lower() in ("test", "train", "val", "valid", "dev"):
        return f"{path.parent.parent.name}/{path.parent.name}".lstrip("/")
    return f"{path.parent.name}/{path.stem}".lstrip("/")


def discover(paths: list[str | Path]) -> tuple[list[tuple[Path, Path | None, str]], list[Path]]:
    """``([(test file, train file or None, label)], [run dirs])`` from the command's paths."""
    files: list[tuple[Path, Path | None, str]] = []
    runs: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise CodecStudyError(f"{p}: no such file or folder (give unit files, folders of "
                                  "them, or run directories)")
        if p.is_dir() and (p / "manifest.json").is_file():
            runs.append(p)
            continue
        if p.is_file():
            files.append((p, None, _file_label(p)))
            continue
        found = sorted(q for q in p.rglob("*.txt") if q.is_file() and not q.name.startswith("."))
        by_dir: dict[Path, dict[str, Path]] = {}
        for q in found:
            by_dir.setdefault(q.parent, {})[q.stem.lower()] = q
        for d, named in sorted(by_dir.items()):
            rel = d.relative_to(p).as_posix() if d != p else d.name
            if "/" not in rel and d != p:   # keep the corpus in the label: VCTK/hubert100
                rel = f"{p.resolve().name}/{rel}"
            if "test" in named:
                files.append((named["test"], named.get("train"), rel))
            else:
                for stem, q in sorted(named.items()):
                    if stem in ("train", "val", "valid", "readme", "source"):
                        continue
                    files.append((q, None, f"{rel}/{q.stem}"))
        if not any(str(f[0]).startswith(str(p)) for f in files):
            raise CodecStudyError(f"{p}: no unit files (*.txt) found under it")
    return files, runs


def run_rows(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per run directory: its bitrate as the reports compute it, with the source."""
    from resyn_bench.reports.collate import dataset_label, measured_bitrate, run_bitrate
    from resyn_bench.reports.labels import run_label
    from resyn_bench.runfiles import iter_records, read_manifest

    rows = []
    for d in run_dirs:
        manifest = read_manifest(d)
        records = [r.to_dict() for r in iter_records(d)]
        bps, source = run_bitrate(manifest, records)
        measured = measured_bitrate(records)
        nominal = sorted({r["bitstream"].get("nominal_bps") for r in records
                          if isinstance(r.get("bitstream"), dict)
                          and isinstance(r["bitstream"].get("nominal_bps"), (int, float))})
        rows.append({"run_dir": str(d), "system": run_label(manifest),
                     "dataset": dataset_label(manifest), "bitrate": bps, "source": source,
                     "nominal_bps": nominal[0] if len(nominal) == 1 else (nominal or None),
                     "n_utterances": measured[2]["n_utterances"] if measured else None,
                     "seconds": measured[2]["seconds"] if measured else None})
    return rows


def study(paths: list[str | Path], **options) -> dict[str, Any]:
    """The whole study as a JSON-able dict (see :func:`render`)."""
    files, run_dirs = discover(paths)
    streams = [study_unit_file(test, train_path=train, label=label, **options)
               for test, train, label in files]
    return {"streams": [s.to_dict() for s in streams],
            "f0_codes": _f0_dict(),
            "runs": run_rows(run_dirs)}


# ---------------------------------------------------------------------------------------------
# Rendering: plain text, Markdown, LaTeX, CSV
# ---------------------------------------------------------------------------------------------

def _f(v: float | None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if not float(v).is_integer() else f"{v:.0f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


STREAM_HEAD = ["Stream", "Hz", "K", "Paper", "Raw", "H(x)", "H(x|prev)", "Run-length H",
               "Huffman", "Huffman|prev", "Huffman RL", "Best coded", "Saving"]
SPEAKER_HEAD = ["Speaker stream", "Utterances", "Speakers", "Bits/utt", "Raw", "H", "Huffman"]
RUN_HEAD = ["Run", "Data", "Bitrate", "Source", "Nominal", "Utterances"]


def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the study's tables, every number in bits per second."""
    out = []
    rows = []
    for s in result["streams"]:
        r = s["rates"]
        name = f"{s['label']} ({STREAM_NAMES.get(s['key'], s['key'])})"
        rows.append([name, _f(s["frame_rate"]), str(s["vocab_size"]), _f(s["paper_bps"]),
                     _f(r["raw"]), _f(r["unigram"]), _f(r["conditional"]), _f(r["run_length"]),
                     _f(r["huffman"]), _f(r["huffman_conditional"]), _f(r["huffman_run_length"]),
                     _f(s["best_achieved_bps"]),
                     _pct(s["saving"])])
    f0 = result["f0_codes"]
    if result["streams"]:
        rows.append(["F0 codes (formula; not in the files)", _f(f0["frame_rate"]),
                     str(f0["vocab_size"]), _f(f0["paper_bps"]), _f(f0["formula_bps"]),
                     "–", "–", "–", "–", "–", "–", "–", "–"])
        for s in result["streams"]:
            t = s["total"]
            saving = None if t["best_achieved"] is None else 1 - t["best_achieved"] / t["raw"]
            rows.append([f"total: {s['label']} + F0", "", "", _f(t["paper"]), _f(t["raw"]),
                         "", "", "", "", "", "", _f(t["best_achieved"]), _pct(saving)])
        out.append(("Streams (bits/s)", STREAM_HEAD, rows))
    spk = []
    for s in result["streams"]:
        sp = s.get("speaker")
        if sp:
            spk.append([s["label"], str(sp["n_utterances"]), str(sp["n_speakers"]),
                        str(sp["bits_per_utterance_raw"]), _f(sp["raw"], 2), _f(sp["entropy"], 2),
                        _f(sp["huffman"], 2)])
    if spk:
        out.append(("Speaker (once per utterance; not in the totals; bits/s)", SPEAKER_HEAD, spk))
    if result["runs"]:
        out.append(("Runs (bits/s)", RUN_HEAD,
                    [[r["system"], r["dataset"], _f(r["bitrate"]), r["source"] or "–",
                      _f(r["nominal_bps"]) if isinstance(r["nominal_bps"], (int, float, type(None)))
                      else ", ".join(_f(v) for v in r["nominal_bps"]),
                      "–" if r["n_utterances"] is None else str(r["n_utterances"])]
                     for r in result["runs"]]))
    return out


def notes(result: dict[str, Any]) -> list[str]:
    out = []
    if result["streams"]:
        out.append("Raw: frame rate x ceil(log2 K). H(x), H(x|prev): plug-in entropies of the "
                   "test split. Run-length H: deduplicated units + run durations (unigram "
                   "entropies). Huffman, Huffman|prev, Huffman RL: bits canonical Huffman codes "
                   "(of the units; one per previous unit; of the deduplicated units + durations) "
                   "fitted on the training split achieve on the test split (add-one smoothing "
                   "over the vocabulary, escape + Elias gamma for anything else; every test "
                   "sequence decoded and checked). Saving: 1 - best coded / raw. Seconds = "
                   "frames / frame rate.")
        out.append(F0_NOTE)
        hashed = [s for s in result["streams"] if s["split"].startswith("by utterance-id hash")]
        if hashed:
            fraction = re.search(r"< ([0-9.]+) ->", hashed[0]["split"])
            out.append("No training files: code fitted on the utterances whose sha256(id) is below "
                       f"{fraction.group(1) if fraction else '?'}, measured on the others "
                       "(train/test utterances: " + ", ".join(
                           f"{s['label']} {s['rates']['n_train_sequences']}/"
                           f"{s['rates']['n_sequences']}" for s in hashed) + ").")
        out += [f"{s['label']}: {s['split']}." for s in result["streams"] if s not in hashed]
        for s in result["streams"]:
            if not s["rates"].get("round_trip", True):
                out.append(f"{s['label']}: Huffman round trip FAILED")
            out += [f"{s['label']}: {n}" for n in s["notes"]]
    if result["runs"]:
        out.append("Runs: 'measured' = total bits the encoder produced / total seconds of audio; "
                   "'streams' = frame rate x ceil(log2 K) of the system's discrete streams.")
    return out


def render(result: dict[str, Any], fmt: str = "text") -> str:
    from resyn_bench.reports.tables import csv_text, latex_escape, markdown_escape

    parts = []
    for title, head, rows in tables(result):
        if fmt == "md":
            parts.append(f"**{markdown_escape(title)}**\n")
            parts.append("| " + " | ".join(markdown_escape(h) for h in head) + " |")
            parts.append("|" + "|".join([":--"] + ["--:"] * (len(head) - 1)) + "|")
            parts += ["| " + " | ".join(markdown_escape(c) for c in r) + " |" for r in rows]
            parts.append("")
        elif fmt == "tex":
            parts += [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"  \centering",
                      r"  \begin{tabular}{l" + "r" * (len(head) - 1) + "}", r"    \toprule",
                      "    " + " & ".join(latex_escape(h) for h in head) + r" \\", r"    \midrule"]
            parts += ["    " + " & ".join(latex_escape(c) for c in r) + r" \\" for r in rows]
            parts += [r"    \bottomrule", r"  \end{tabular}",
                      f"  \\caption{{{latex_escape(title)}. {latex_escape(' '.join(notes(result)))}}}",
                      r"\end{table}", ""]
        elif fmt == "csv":
            import csv
            import io

            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["table"] + head)
            for r in rows:
                w.writerow([csv_text(title)] + [csv_text(c) for c in r])
            parts.append(buf.getvalue().rstrip("\n"))
        else:
            widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
            line = lambda cells, widths=widths: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                           for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
            parts += [title, line(head), "-" * len(line(head))] + [line(r) for r in rows] + [""]
    if fmt == "md":
        parts.append("\n\n".join("_" + markdown_escape(n) + "_" for n in notes(result)))
    elif fmt == "text":
        parts += ["- " + n for n in notes(result)]
    return "\n".join(parts).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

EPILOG = """examples:
  resyn-bench codec ../shared/units                      # the paper's LJSpeech and VCTK streams
  resyn-bench codec ../shared/units/VCTK/hubert100/test.txt --format md
  resyn-bench codec units/test.txt --train units/train.txt --json
  resyn-bench codec ../shared/units runs/vctk-opus9k runs/vctk-codec2-1600   # + measured codecs

Unit files in the reference repo's format (or ours); folders are searched for *.txt (train.txt
beside test.txt fits the code on it); a run directory adds its (measured) bitrate as a row.
"""


def configure_codec_parser(p) -> None:
    p.epilog = EPILOG
    p.description = ("Bitrate of discrete unit streams measured on the streams: raw, entropy, "
                     "run-length and an actual Huffman code; plus the measured bitrate of runs.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="unit files, folders of unit files, or run directories")
    p.add_argument("--train", help="fit the codes on this unit file (one PATH only) instead of "
                                   "splitting by utterance-id hash")
    p.add_argument("--train-fraction", type=float, default=0.5,
                   help="share of utterances (by sha256 of the id) fitting the code when there "
                        "is no train file (default 0.5)")
    p.add_argument("--frame-rate", type=float, help="frames per second (default: from the code "
                   "key: hubert 50, cpc/vqvae256 100, or hop_size in our files)")
    p.add_argument("--vocab", type=int, help="vocabulary size K (default: from the code key / "
                   "file / folder name such as hubert100)")
    p.add_argument("--speaker-pattern", default=DEFAULT_SPEAKER_PATTERN,
                   help="regex whose first group is the speaker in an utterance id (default: "
                        "VCTK p225_001 and LJSpeech LJ001-0001); '' = no speaker stream")
    p.add_argument("--n-speakers", type=int,
                   help="speaker vocabulary for the raw speaker rate (default: speakers seen)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="Huffman smoothing: pseudo-count added to every symbol (default 1)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip decoding every encoded sequence (decode(encode(x)) == x)")
    p.add_argument("--format", choices=("text", "md", "tex", "csv"), default="text",
                   help="table format (default: text)")
    p.add_argument("--json", action="store_true", help="everything as JSON")
    p.add_argument("--out", help="also write the output to this file")


def run_codec(args) -> int:
    if args.train and len(args.paths) != 1:
        raise CodecStudyError("--train goes with exactly one unit file PATH")
    options = dict(train_fraction=args.train_fraction, frame_rate=args.frame_rate,
                   vocab=args.vocab, speaker_pattern=args.speaker_pattern or None,
                   n_speakers=args.n_speakers, alpha=args.alpha, verify=args.verify)
    if args.train:
        path = Path(args.paths[0])
        if not path.is_file():
            raise CodecStudyError(f"{path}: --train needs a unit FILE as PATH")
        s = study_unit_file(path, train_path=args.train, **options)
        result = {"streams": [s.to_dict()], "runs": [],
                  "f0_codes": _f0_dict()}
    else:
        result = study(args.paths, **options)
    text = json.dumps(result, indent=2) + "\n" if args.json else render(result, args.format)
    print(text, end="")
    if args.out:
        from resyn_bench.core.atomic import write_file_atomic

        write_file_atomic(args.out, text.encode("utf-8"))
    bad = [s["label"] for s in result["streams"] if s["rates"].get("round_trip") is False]
    if bad:
        print(f"resyn-bench codec: error: Huffman round trip failed for {', '.join(bad)}")
        return 1
    return 0


def _f0_dict() -> dict[str, Any]:
    return {"frame_rate": F0_RATE, "vocab_size": F0_VOCAB, "formula_bps": raw_bps(F0_RATE, F0_VOCAB),
            "paper_bps": F0_PAPER_BPS, "note": F0_NOTE}
