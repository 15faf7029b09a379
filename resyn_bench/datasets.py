"""Datasets: find the utterances of a corpus on disk, in a deterministic order.

``load_dataset(name, data_root, split=..., limit=...)`` returns a :class:`Dataset`: a list of
:class:`Utterance` (id, speaker, audio path, text or None) plus ``info``, a JSON-able
description (layout found, options, split file, limit, counts) for the run manifest.

Loaders (``resyn-bench ls datasets``):

* ``ljspeech``    LJSpeech-1.1: ``metadata.csv`` (id|text|normalized text) + ``wavs/<id>.wav``.
* ``vctk``        VCTK 0.92 (``wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac``), the older
                  VCTK-Corpus (``wav48/<spk>/<spk>_<nnn>.wav``) or a resampled copy
                  (``wav16/``, ``wavs/``, ...), transcripts from ``txt/<spk>/<spk>_<nnn>.txt``.
* ``librispeech`` ``<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac`` + ``*.trans.txt``, any depth.
* ``manifest``    a TSV with a header (utt_id, path, optional speaker and text).
* ``demo``        the embedded real-speech corpus, 30 VCTK + LJ Speech utterances shipped in the
                  package (:mod:`resyn_bench.demo_speech`).
* ``synthetic``   espeak-ng voices reading Harvard sentences, any number of utterances
                  (``utterances=N``), built and cached on first use (:mod:`resyn_bench.demo_corpus`).

Order: sorted by utt_id, except that a manifest keeps its own order and a split file imposes
its order. ``limit`` keeps the first N after ordering.

Split files (``split=``) list the utterances to keep, one per line, as plain ids, as audio paths
(the file stem is used; a trailing ``_mic1``/``_mic2`` may be dropped to match VCTK ids), as the
speech-resynthesis ``{'audio': ..., 'hubert': ...}`` dict lines, or as a fairseq/HuBERT tsv
manifest (a root folder line, then ``relpath<TAB>nframes``).
"""
from __future__ import annotations

import ast
import inspect
import json
import numbers
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

from resyn_bench.core.suggest import did_you_mean
from resyn_bench.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".sph")
#: How many example ids error messages and ``info`` lists show.
N_EXAMPLES = 5


class DatasetError(UserError, ValueError):
    """A dataset cannot be loaded as asked (unknown name, wrong layout, bad split file...)."""


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    path: Path
    text: str | None = None   # None when the transcript is unknown
    # voice conversion: the voice the output should have (scored as that speaker); None = own
    target_speaker: str | None = None


@dataclass
class Dataset:
    name: str
    root: Path | None
    utterances: list[Utterance]
    info: dict[str, Any] = field(default_factory=dict)

    def speakers(self) -> list[str]:
        """Distinct speakers, sorted."""
        return sorted({u.speaker for u in self.utterances})

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)


def _examples(items) -> list[str]:
    return [str(x) for x in list(items)[:N_EXAMPLES]]


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text


def _as_text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _walk_files(top: Path) -> Iterator[Path]:
    """Every file under ``top`` (following symlinked folders), in sorted order."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _require_dir(root: Path, expected: str) -> None:
    if not root.exists():
        raise DatasetError(f"data root {root} does not exist; {expected}")
    if not root.is_dir():
        raise DatasetError(f"data root {root} is not a folder; {expected}")


# --------------------------------------------------------------------------------------------
# Loaders: (root, **options) -> (utterances in their natural order, info)

LJSPEECH_LAYOUT = "expected metadata.csv (id|text|normalized_text) and wavs/<id>.wav under {root}"


def _load_ljspeech(root: Path, *, audio_dir: str = "wavs") -> tuple[list[Utterance], dict]:
    if root.is_file() and root.name == "metadata.csv":
        root = root.parent
    expected = LJSPEECH_LAYOUT.format(root=root)
    _require_dir(root, expected)
    meta, wavs = root / "metadata.csv", root / audio_dir
    if not meta.is_file() or not wavs.is_dir():
        missing = [n for n, ok in (("metadata.csv", meta.is_file()),
                                   (f"{audio_dir}/", wavs.is_dir())) if not ok]
        raise DatasetError(f"not an LJSpeech folder (no {' or '.join(missing)}): {expected}")
    utts: list[Utterance] = []
    missing_audio: list[str] = []
    n_normalized = 0
    for lineno, line in enumerate(_read_text(meta).splitlines(), 1):
        if not line.strip():
            continue
        # The real file has unbalanced '"' characters: split on '|' and never use csv quoting.
        parts = line.split("|")
        utt_id = parts[0].strip()
        if len(parts) < 2 or not utt_id:
            raise DatasetError(f"{meta} line {lineno}: expected id|text|normalized_text, "
                               f"got {line[:80]!r}")
        raw = parts[1]
        normalized = parts[2] if len(parts) > 2 else ""
        text = _as_text(normalized)
        if text is not None:
            n_normalized += 1
        else:
            text = _as_text(raw)
        path = wavs / f"{utt_id}.wav"
        if not path.is_file():
            # kept: the runner records it as failed ("missing"), so nothing listed is lost
            missing_audio.append(utt_id)
        utts.append(Utterance(utt_id, "LJ", path, text))
    if len(missing_audio) == len(utts):
        detail = (f" ({len(missing_audio)} listed ids have no {audio_dir}/<id>.wav, e.g. "
                  f"{_examples(missing_audio)})" if missing_audio else " (metadata.csv is empty)")
        raise DatasetError(f"no usable utterances in {root}{detail}; {expected}")
    utts.sort(key=lambda u: u.utt_id)
    info: dict[str, Any] = {"layout": "LJSpeech-1.1: metadata.csv + wavs/",
                            "audio_dir": audio_dir, "text": "normalized column where present",
                            "with_normalized_text": n_normalized}
    if missing_audio:
        info["missing_audio"] = {"count": len(missing_audio), "first": _examples(missing_audio)}
    return utts, info


VCTK_AUDIO_DIRS = ("wav48_silence_trimmed", "wav48", "wav16_silence_trimmed_padded",
                   "wav16_silence_trimmed", "wav16", "wav22", "wav24", "wavs")
VCTK_LAYOUT = ("expected wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac (VCTK 0.92) or "
               "wav48/<spk>/<spk>_<nnn>.wav (VCTK-Corpus), with txt/<spk>/<spk>_<nnn>.txt, under "
               "{root} (also accepted instead of wav48: " + ", ".join(VCTK_AUDIO_DIRS[2:]) + ")")
_VCTK_STEM = re.compile(r"^(?P<spk>[A-Za-z]+\d+)_(?P<num>\d+)(?:_(?P<mic>mic\d))?$")


def _vctk_mic(mic: str | int) -> str:
    value = str(mic).strip().lower()
    if value in ("1", "2"):
        value = "mic" + value
    if value not in ("mic1", "mic2"):
        raise DatasetError(f"vctk: mic must be 'mic1' or 'mic2', got {mic!r}")
    return value


def _load_vctk(root: Path, *, mic: str | int = "mic1",
               audio_dir: str | None = None) -> tuple[list[Utterance], dict]:
    mic = _vctk_mic(mic)
    expected = VCTK_LAYOUT.format(root=root)
    _require_dir(root, expected)
    if audio_dir is not None:
        audio = root / audio_dir
        if not audio.is_dir():
            raise DatasetError(f"vctk: no folder {audio_dir}/ under {root}")
    else:
        found = [root / d for d in VCTK_AUDIO_DIRS if (root / d).is_dir()]
        if not found:
            raise DatasetError(f"not a VCTK folder: {expected}")
        audio = found[0]
    txt = root / "txt"
    utts: list[Utterance] = []
    other_mic = ignored = 0
    for path in _walk_files(audio):
        if path.suffix.lower() not in (".wav", ".flac"):
            continue
        m = _VCTK_STEM.match(path.stem)
        if not m:
            ignored += 1
            continue
        if m["mic"] is not None and m["mic"].lower() != mic:
            other_mic += 1
            continue
        spk = m["spk"]
        utt_id = f"{spk}_{m['num']}"
        tpath = txt / spk / f"{utt_id}.txt"
        text = _as_text(_read_text(tpath)) if tpath.is_file() else None
        utts.append(Utterance(utt_id, spk, path, text))
    if not utts:
        raise DatasetError(f"no <spk>_<nnn>[_{mic}].wav/.flac files under {audio}; {expected}")
    utts.sort(key=lambda u: u.utt_id)
    info: dict[str, Any] = {
        "layout": {"wav48_silence_trimmed": "VCTK 0.92", "wav48": "VCTK-Corpus (0.80)"}.get(
            audio.name, "VCTK-style <spk>/<spk>_<nnn> audio"),
        "audio_dir": audio.name, "mic": mic, "transcripts": txt.is_dir(),
        "without_text": sum(u.text is None for u in utts)}
    if other_mic:
        info["skipped_other_mic"] = other_mic
    if ignored:
        info["ignored_files"] = ignored
    return utts, info


LIBRISPEECH_LAYOUT = ("expected <speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac files with "
                      "<speaker>-<chapter>.trans.txt transcripts under {root} (e.g. the "
                      "LibriSpeech/test-clean folder)")
_LIBRI_STEM = re.compile(r"^(?P<spk>\d+)-(?P<chapter>\d+)-(?P<num>\d+)$")


def _load_librispeech(root: Path, *, ext: str = "flac") -> tuple[list[Utterance], dict]:
    expected = LIBRISPEECH_LAYOUT.format(root=root)
    _require_dir(root, expected)
    suffix = "." + ext.lower().lstrip(".")
    texts: dict[str, str | None] = {}
    audio: list[tuple[str, str, Path]] = []
    n_trans = 0
    for path in _walk_files(root):
        name = path.name
        if name.endswith(".trans.txt"):
            n_trans += 1
            for line in _read_text(path).splitlines():
                parts = line.strip().split(maxsplit=1)
                if parts:
                    texts[parts[0]] = _as_text(parts[1]) if len(parts) > 1 else None
        elif path.suffix.lower() == suffix:
            m = _LIBRI_STEM.match(path.stem)
            if m:
                audio.append((path.stem, m["spk"], path))
    if not audio:
        raise DatasetError(f"no <speaker>-<chapter>-<nnnn>{suffix} files under {root}; "
                           f"{expected}")
    utts = [Utterance(utt_id, spk, path, texts.get(utt_id)) for utt_id, spk, path in audio]
    utts.sort(key=lambda u: u.utt_id)
    return utts, {"layout": "LibriSpeech: <spk>/<chapter>/*.flac + *.trans.txt",
                  "ext": suffix.lstrip("."), "transcript_files": n_trans,
                  "without_text": sum(u.text is None for u in utts)}


MANIFEST_LAYOUT = ("expected a manifest .tsv file, or a folder holding manifest.tsv, at {root} "
                   "(tab-separated with a header naming at least utt_id and path)")


def _load_manifest(root: Path) -> tuple[list[Utterance], dict]:
    expected = MANIFEST_LAYOUT.format(root=root)
    if not root.exists():
        raise DatasetError(f"data root {root} does not exist; {expected}")
    tsv = root if root.is_file() else root / "manifest.tsv"
    if not tsv.is_file():
        raise DatasetError(f"no manifest.tsv in {root}; {expected}")
    base = tsv.parent
    # plain tab splitting (no quoting, as csv.QUOTE_NONE did) and no field size limit: a long
    # transcript is data, not an error (csv stops at 128 kB per field)
    rows = [line.split("\t") for line in _read_text(tsv).splitlines()]
    rows = [(n, r) for n, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"{tsv} is empty; {expected}")
    header = [c.strip() for c in rows[0][1]]
    col = {name: i for i, name in enumerate(header)}
    if "utt_id" not in col or "path" not in col:
        raise DatasetError(f"{tsv}: the header must name utt_id and path columns, got {header}")
    utts: list[Utterance] = []
    missing: list[str] = []
    for lineno, row in rows[1:]:
        if len(row) > len(header):
            raise DatasetError(f"{tsv} line {lineno}: {len(row)} fields for {len(header)} "
                               "header columns")
        row = row + [""] * (len(header) - len(row))  # trailing empty fields may be cut off

        def get(name: str, row=row) -> str:
            return row[col[name]].strip() if name in col else ""

        utt_id, rel = get("utt_id"), get("path")
        if not utt_id or not rel:
            raise DatasetError(f"{tsv} line {lineno}: empty utt_id or path")
        path = Path(rel).expanduser()
        if not path.is_absolute():
            path = base / path
        if not path.is_file():
            missing.append(f"{utt_id} ({path})")
        text = row[col["text"]] if "text" in col else None
        utts.append(Utterance(utt_id, get("speaker") or "unknown", path, _as_text(text)))
    if not utts:
        raise DatasetError(f"{tsv} has a header but no utterances")
    if len(missing) == len(utts):
        raise DatasetError(f"{tsv}: none of the {len(utts)} audio files exist (paths are relative "
                           f"to the manifest's folder), e.g. {'; '.join(_examples(missing))}")
    info = {"layout": "manifest tsv", "manifest": str(tsv), "columns": header,
            "without_text": sum(u.text is None for u in utts), "order": "manifest"}
    if missing:
        # kept: the runner records each as failed ("missing"), so nothing listed is lost
        info["missing_audio"] = {"count": len(missing), "first": _examples(missing)}
    return utts, info


def _load_demo(root: Path | None) -> tuple[list[Utterance], dict]:
    from resyn_bench import demo_speech

    if root is not None and not (root / "manifest.tsv").is_file():
        raise DatasetError(f"dataset 'demo' is embedded in the package and takes no data root "
                           f"(got {root}); leave --data-root out, or point it at a copy of the "
                           f"corpus folder (one holding manifest.tsv)")
    try:
        folder = demo_speech.check_demo_dir(root)
    except demo_speech.DemoSpeechError as exc:
        raise DatasetError(str(exc)) from exc
    utts, info = _load_manifest(folder)
    if "missing_audio" in info:
        raise DatasetError(f"the demo corpus at {folder} lacks {info['missing_audio']['count']} "
                           f"audio files (e.g. {info['missing_audio']['first']}); reinstall "
                           "resyn-bench (its package data is incomplete)")
    info.update(layout="resyn-bench demo corpus: real speech (VCTK CC BY 4.0 + LJ Speech public "
                       "domain, 16 kHz FLAC; see ATTRIBUTION.md)",
                version=demo_speech.DEMO_VERSION, corpus_dir=str(folder),
                manifest_sha256=demo_speech.manifest_sha256(folder))
    return utts, info


def _load_synthetic(root: Path | None, *, utterances: int = 20) -> tuple[list[Utterance], dict]:
    from resyn_bench import demo_corpus

    if root is not None and (root / "manifest.tsv").is_file():
        folder = root  # pointed straight at a built corpus
    else:
        try:
            folder = demo_corpus.ensure_synthetic_corpus(root, utterances)
        except demo_corpus.DemoCorpusError as exc:
            raise DatasetError(f"the synthetic corpus is not available: {exc}") from exc
    try:
        utts, info = _load_manifest(folder)
    except DatasetError as exc:
        raise DatasetError(f"{exc} (delete {folder} to rebuild the synthetic corpus)") from exc
    info.update(layout="resyn-bench synthetic corpus (espeak-ng formant voices; ASR, MOS-proxy "
                       "and speaker figures are not meaningful on it)",
                version=demo_corpus.SYNTH_VERSION, corpus_dir=str(folder))
    return utts, info


class DatasetSpec(NamedTuple):
    loader: Callable[..., tuple[list[Utterance], dict]]
    description: str
    root_hint: str


#: name -> (loader, description, default root hint), in display order.
DATASETS: dict[str, DatasetSpec] = {
    "demo": DatasetSpec(_load_demo, "embedded real speech: 4 VCTK speakers (2 F, 2 M) + LJ Speech, "
                        "6 utterances each, 152 s, 16 kHz FLAC (CC BY 4.0 / public domain)",
                        "(none: shipped in the package)"),
    "synthetic": DatasetSpec(_load_synthetic, "espeak-ng formant voices x Harvard sentences for "
                             "scale tests, -d utterances=N (default 20; built on first use, "
                             "cached); ASR and MOS figures on it are not meaningful",
                             "$RESYN_BENCH_HOME/synthetic (default ~/.cache/resyn-bench/synthetic)"),
    "ljspeech": DatasetSpec(_load_ljspeech, "LJSpeech-1.1: metadata.csv + wavs/, one speaker",
                            "path/to/LJSpeech-1.1"),
    "vctk": DatasetSpec(_load_vctk, "VCTK 0.92 (wav48_silence_trimmed, mic1|mic2 flac) or "
                        "VCTK-Corpus (wav48 wav) with txt/ transcripts; option mic=",
                        "path/to/VCTK-Corpus-0.92 or path/to/VCTK-Corpus"),
    "librispeech": DatasetSpec(_load_librispeech, "LibriSpeech subset: <spk>/<chapter>/*.flac "
                               "+ *.trans.txt, searched recursively",
                               "path/to/LibriSpeech/test-clean"),
    "manifest": DatasetSpec(_load_manifest, "any corpus described by a TSV manifest (utt_id, "
                            "path, speaker, text)", "path/to/manifest.tsv or its folder"),
}


#: datasets that need no data root (shipped in the package, or built on first use)
EMBEDDED = frozenset({"demo", "synthetic"})


def list_datasets() -> list[tuple[str, str]]:
    """(name, description) for every dataset loader, for ``resyn-bench ls datasets``."""
    return [(name, spec.description) for name, spec in DATASETS.items()]


#: other spellings of dataset names
_ALIASES = {"espeak": "synthetic", "espeakdemo": "synthetic"}


def _resolve_name(name: str) -> str:
    key = str(name).strip().lower()
    if key in DATASETS:
        return key
    squashed = re.sub(r"[-_\s.]", "", key)
    if squashed in _ALIASES:
        return _ALIASES[squashed]
    for known in DATASETS:
        if squashed == known:
            return known
    hint = did_you_mean(squashed or key, DATASETS, cutoff=0.5)
    raise DatasetError(f"unknown dataset {name!r}.{hint} Valid names: {', '.join(DATASETS)}")


# --------------------------------------------------------------------------------------------
# Split files

_MIC_SUFFIX = re.compile(r"_mic\d$")


@dataclass
class SplitFile:
    path: Path
    format: str          # "lines" | "dict" | "fairseq_tsv"
    keys: list[str]      # one per entry, in file order (ids or file stems, as written)


def _looks_like_path(field: str) -> bool:
    return "/" in field or "\\" in field or field.lower().endswith(AUDIO_EXTENSIONS)


def _stem(path: str) -> str:
    pure = PureWindowsPath(path) if "\\" in path else PurePosixPath(path)
    return pure.stem if pure.suffix.lower() in AUDIO_EXTENSIONS else pure.name


def read_split(path: str | Path) -> SplitFile:
    """Parse a split file into its entries (ids or file stems, as written, in file order)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"split file {path} does not exist")
    lines = [(n, line.strip()) for n, line in enumerate(_read_text(path).splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise DatasetError(f"split file {path} lists no utterances")
    keys: list[str] = []
    if lines[0][1].startswith("{"):
        fmt = "dict"
        for n, line in lines:
            try:
                entry = ast.literal_eval(line)
            except (ValueError, SyntaxError, RecursionError, MemoryError):
                try:
                    entry = json.loads(line)
                except (ValueError, RecursionError):
                    raise DatasetError(f"split file {path} line {n}: not a dict literal (or "
                                       "nested too deeply)") from None
            if not isinstance(entry, dict):
                raise DatasetError(f"split file {path} line {n}: not a dict literal")
            for k in ("audio", "path", "wav", "audio_path", "file", "utt_id", "id"):
                if isinstance(entry.get(k), str) and entry[k].strip():
                    value = entry[k].strip()
                    keys.append(_stem(value) if k not in ("utt_id", "id") else value)
                    break
            else:
                raise DatasetError(f"split file {path} line {n}: no 'audio' (or path/utt_id) key")
    elif (len(lines) >= 2 and "\t" not in lines[0][1]
          and all(re.fullmatch(r"[^\t]+\t\d+", line) for _, line in lines[1:])):
        fmt = "fairseq_tsv"  # first line: root folder; then relpath<TAB>nframes
        keys = [_stem(line.split("\t")[0]) for _, line in lines[1:]]
    else:
        fmt = "lines"
        for _, line in lines:
            field = re.split(r"[|\t]", line, maxsplit=1)[0].strip()
            keys.append(_stem(field) if _looks_like_path(field) else field.split()[0])
    return SplitFile(path, fmt, keys)


def _apply_split(utts: list[Utterance], split: SplitFile) -> tuple[list[Utterance], dict]:
    by_id = {u.utt_id: u for u in utts}
    kept: list[Utterance] = []
    seen: set[str] = set()
    missing: list[str] = []
    duplicates = 0
    for key in split.keys:
        utt_id = key if key in by_id else _MIC_SUFFIX.sub("", key)
        if utt_id not in by_id:
            missing.append(key)
        elif utt_id in seen:
            duplicates += 1
        else:
            seen.add(utt_id)
            kept.append(by_id[utt_id])
    info = {"file": str(split.path), "format": split.format, "entries": len(split.keys),
            "matched": len(kept), "duplicates": duplicates}
    missing_info = {"count": len(missing), "first": _examples(missing)}
    if not kept:
        raise DatasetError(f"none of the {len(split.keys)} entries of split file {split.path} "
                           f"({split.format} format, e.g. {_examples(split.keys)[:3]}) match an "
                           f"utterance of this dataset (ids look like "
                           f"{_examples(u.utt_id for u in utts)[:3]})")
    return kept, {"split": info, "split_missing": missing_info}


# --------------------------------------------------------------------------------------------


def load_dataset(name: str, data_root: str | Path | None = None, split: str | Path | None = None,
                 limit: int | None = None, **options: Any) -> Dataset:
    """Load dataset ``name`` from ``data_root``; keep the ``split`` file's utterances (in its
    order) and then the first ``limit``. ``options`` go to the loader (e.g. ``mic="mic2"`` for
    vctk). Raises :class:`DatasetError` with what was expected when anything does not fit."""
    key = _resolve_name(name)
    spec = DATASETS[key]
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
            raise DatasetError(f"limit must be a positive integer, got {limit!r}")
        limit = int(limit)
    params = inspect.signature(spec.loader).parameters
    unknown = sorted(set(options) - {p for p in params if p != "root"})
    if unknown:
        accepted = [p for p in params if p != "root"]
        raise DatasetError(f"dataset {key!r} takes no option {', '.join(unknown)}"
                           + (f" (options: {', '.join(accepted)})" if accepted else ""))
    root = Path(data_root).expanduser().resolve() if data_root is not None else None
    if root is None and key not in EMBEDDED:
        raise DatasetError(f"dataset {key!r} needs a data root, e.g. {spec.root_hint}")
    utts, loader_info = spec.loader(root, **options)

    counts = Counter(u.utt_id for u in utts)
    dups = [i for i, c in counts.items() if c > 1]
    if dups:
        where = [str(u.path) for u in utts if u.utt_id == dups[0]]
        raise DatasetError(f"dataset {key!r} at {root}: {len(dups)} duplicate utt_ids, e.g. "
                           f"{_examples(dups)} ({dups[0]!r} at {where[:3]})")

    info: dict[str, Any] = {"dataset": key, "root": str(root) if root else None}
    info.update(loader_info)
    info["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    n_found = len(utts)
    if split is not None:
        utts, split_info = _apply_split(utts, read_split(split))
        info.update(split_info)
    else:
        info["split"] = None
    info["limit"] = limit
    if limit is not None:
        utts = utts[:limit]
    info["counts"] = {"found": n_found, "utterances": len(utts),
                      "speakers": len({u.speaker for u in utts}),
                      "with_text": sum(u.text is not None for u in utts)}
    if key in EMBEDDED:  # the root is wherever the corpus was found or built
        root = Path(info["corpus_dir"])
        info["root"] = str(root)
    return Dataset(key, root, utts, info)
