"""Conversions made by another tool, as a work list: ``resyn-bench run --system outputs:DIR
--conversions LIST``.

LIST is a TSV, CSV (by extension ``.tsv``/``.csv``, header row) or JSON-lines file (``.jsonl``,
one object per line) with the columns

``output``
    the converted file: a path relative to DIR (``p225_001_to_p226.wav``), or an id looked up as
    ``DIR/<id>.wav|.flac|.ogg|.mp3``; it must lie inside DIR.
``source``
    the utterance id (in the dataset's manifest) that was converted: its recording is the
    reference of the content and prosody metrics and its speaker the source speaker.
``target``
    the target speaker: a speaker of the dataset (enrolled from its recordings by the speaker
    metrics; ``-m spk.enroll_dataset=`` adds speakers of another dataset).
``target_ref`` (optional)
    reference recording(s) of a target that is in no dataset (e.g. VCTK speakers converted into
    an LJSpeech voice), ``;``-separated paths relative to the list's folder (a JSON list in
    JSONL). The speaker metrics enrol the target from them (the rows of one target pool their
    recordings); the run logs how many seconds each such target has and warns under
    :data:`MIN_ENROL_S`. A missing or unreadable reference fails the rows that name it.
``f0_edit`` (optional)
    the F0 edit the tool was asked for, in the vocabulary of ``-o f0_edit=``: ``flat``,
    ``shift:+N`` (semitones) or ``scale:X`` (range factor); empty = none. The records carry it
    and the disentanglement summary measures the achieved shift or range against it. One run
    holds one experiment (:func:`list_experiment`): a list mixing edit kinds, or edited and
    unedited rows, is split by ``resyn-bench disentangle --conversions LIST``, which runs each
    experiment on its rows.
``bytes`` (optional)
    the size in bytes of the bitstream the tool transmitted for this output: the record then
    carries a *measured* bitrate (8 x bytes over the source's seconds), as ``-o bitstreams=DIR``
    gives from files. A value that is not a whole number >= 0 fails that row.

Each row becomes one work item with the id ``<source>__to_<target>`` and ``target_speaker`` set,
exactly like the built-in conversions of ``--vc-targets``, so the speaker metrics judge the
output against its target (accuracy, similarity) and its source (leakage) and ``resyn-bench
disentangle --runs`` summarises it next to built-in systems. A row that cannot be evaluated (its
output missing or unreadable, an unknown source id, a target speaker with no audio) fails with its
reason and the run goes on; the same (source, target) pair twice, or a list without the required
columns, is an error before any work.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from resyn_bench.datasets import Utterance
from resyn_bench.errors import UserError

#: seconds of reference speech under which a target's embedding is called unstable
MIN_ENROL_S = 10.0
REQUIRED = ("output", "source", "target")
OPTIONAL = ("target_ref", "f0_edit", "bytes")
#: experiment of a run by the kind of its rows' F0 edit (None: no edit)
EDIT_EXPERIMENTS = {None: "vc", "flat": "f0_flat", "shift": "f0_shift", "scale": "f0_scale"}


class ConversionListError(UserError, ValueError):
    """The conversion list cannot be used at all (unreadable, columns missing, duplicates)."""


@dataclass(frozen=True)
class ConversionItem(Utterance):
    """A work item of an external conversion: the source utterance with the target speaker,
    the row's output file (resolved by the outputs system) and the row's problem, if any."""
    output: str | None = None
    row: int = 0
    problem: str | None = None
    target_ref: tuple[str, ...] = ()    # absolute paths of the target's reference recordings
    f0_edit: str | None = None          # the requested F0 edit (``shift:+2``), normalised
    bits: int | None = None             # the transmitted size of this output (column bytes)


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a conversion list (TSV, CSV or JSONL), each with its 1-based line number
    under ``_line``; ConversionListError for an unreadable file or missing columns."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConversionListError(f"--conversions {path}: no such file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionListError(f"--conversions {path}: cannot read it ({exc})") from None
    rows: list[dict[str, str]] = []
    if suffix in (".jsonl", ".ndjson"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConversionListError(f"--conversions {path}, line {i}: not JSON ({exc})") \
                    from None
            if not isinstance(obj, dict):
                raise ConversionListError(f"--conversions {path}, line {i}: expected an object "
                                          "with keys output, source, target")
            row = {k: ("" if v is None else ";".join(map(str, v)) if isinstance(v, list)
                       else str(v)) for k, v in obj.items()}
            # the line of the list the row came from (a list split by `resyn-bench disentangle
            # --conversions` keeps the original's numbers for its messages)
            row["_line"] = row.get("_line") or str(i)
            rows.append(row)
    elif suffix in (".tsv", ".csv", ".txt"):
        reader = csv.DictReader(text.splitlines(), delimiter="," if suffix == ".csv" else "\t")
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ConversionListError(
                f"--conversions {path}: the header lacks the column(s) {', '.join(missing)}; it "
                f"has {', '.join(header) or 'nothing'}. Columns: output, source, target "
                "(required), target_ref, f0_edit, bytes (optional)")
        for i, raw in enumerate(reader, 2):
            row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else ""
                   for k, v in raw.items()}
            if not any(row.values()):
                continue
            row["_line"] = str(i)
            rows.append(row)
    else:
        raise ConversionListError(f"--conversions {path}: unknown format {suffix!r}; give a "
                                  ".tsv, .csv or .jsonl file")
    if not rows:
        raise ConversionListError(f"--conversions {path}: no rows")
    for row in rows:
        missing = [c for c in REQUIRED if c not in row]
        if missing:
            raise ConversionListError(f"--conversions {path}, line {row['_line']}: no "
                                      f"{', '.join(missing)}")
    return rows


def conversion_work(path: str | Path, utterances, extra_speakers: bool = False
                    ) -> list[ConversionItem]:
    """One work item per row of the list (see the module notes); rows that cannot be evaluated
    carry their ``problem``. ConversionListError for duplicates or a list that cannot be used.
    ``extra_speakers``: the speaker metrics enrol another dataset too, so a target outside this
    dataset is not a problem here."""
    rows = read_rows(path)
    base = Path(path).expanduser().resolve().parent
    ref_problem: dict[str, str | None] = {}
    by_id = {u.utt_id: u for u in utterances}
    speakers = {u.speaker for u in utterances}
    seen: dict[str, str] = {}
    work = []
    for row in rows:
        line = row["_line"]
        source, target, output = row["source"].strip(), row["target"].strip(), row["output"].strip()
        if not source or not target:
            raise ConversionListError(f"--conversions {path}, line {line}: empty source or target")
        uid = f"{source}__to_{target}"
        if uid in seen:
            raise ConversionListError(
                f"--conversions {path}: line {line} repeats the conversion of {source!r} to "
                f"{target!r} of line {seen[uid]}; each (source, target) pair may appear once")
        seen[uid] = line
        problem = None
        refs = tuple(str((base / r.strip()).resolve()) for r in (row.get("target_ref") or "")
                     .split(";") if r.strip())
        utt = by_id.get(source)
        if utt is None:
            problem = (f"line {line}: unknown source utterance {source!r} (not in the dataset's "
                       "manifest)")
            utt = Utterance(utt_id=source, speaker="", path=Path(source))
        elif not output:
            problem = f"line {line}: no output given"
        elif target not in speakers and not extra_speakers and not refs:
            problem = (f"line {line}: target speaker {target!r} has no audio (not a speaker of the "
                       "dataset; give its recordings in the column target_ref, or enrol it "
                       "with -m spk.enroll_dataset=/enroll_root=)")
        for ref in refs:
            if problem is None:
                if ref not in ref_problem:
                    ref_problem[ref] = _ref_problem(ref)
                if ref_problem[ref]:
                    problem = f"line {line}: target_ref {ref_problem[ref]}"
        edit, edit_problem = row_edit(row)
        bits, size_problem = _row_bits(row)
        problem = problem or (f"line {line}: {edit_problem or size_problem}"
                              if edit_problem or size_problem else None)
        work.append(ConversionItem(**{f.name: getattr(utt, f.name)
                                      for f in dataclasses.fields(Utterance)} | {
            "utt_id": uid, "target_speaker": target, "output": output or None,
            "row": int(line), "problem": problem, "target_ref": refs, "f0_edit": edit,
            "bits": bits}))
    return work


def row_edit(row: dict[str, str]) -> tuple[str | None, str | None]:
    """The row's requested F0 edit, normalised (``shift:+2``), or its problem."""
    from resyn_bench.systems.vocoder.system import parse_f0_edit

    text = (row.get("f0_edit") or "").strip()
    try:
        parsed = parse_f0_edit(text)
    except ValueError as exc:
        return None, f"f0_edit: {exc}"
    return (None if parsed is None else format_edit(*parsed)), None


def format_edit(kind: str, value: float) -> str:
    """The canonical text of a parsed F0 edit: ``flat``, ``shift:+2``, ``scale:0.5``."""
    if kind == "flat":
        return "flat"
    return f"shift:{value:+g}" if kind == "shift" else f"scale:{value:g}"


def _row_bits(row: dict[str, str]) -> tuple[int | None, str | None]:
    text = (row.get("bytes") or "").strip()
    if not text:
        return None, None
    try:
        size = int(text)
    except ValueError:
        size = -1
    if size < 0:
        return None, f"bytes {text!r}: not a whole number of bytes >= 0"
    return 8 * size, None


def edit_kind(text: str | None) -> str | None:
    """``flat``/``shift``/``scale`` of a normalised edit text, None for none."""
    return None if not text else text.partition(":")[0]


def list_experiment(path: str | Path) -> str:
    """The experiment of a run over the whole list: ``vc`` without F0 edits, ``f0_<kind>`` when
    every row asks for an edit of one kind (an invalid edit counts as none here: its row fails
    with the reason). ConversionListError for a list mixing kinds, or edited and unedited
    rows: one run is one experiment (``resyn-bench disentangle --conversions`` splits it)."""
    kinds: dict[str | None, str] = {}
    for row in read_rows(path):
        edit, _ = row_edit(row)
        kinds.setdefault(edit_kind(edit), row["_line"])
    if len(kinds) > 1:
        found = ", ".join(f"{k or 'no edit'} (line {line})" for k, line in kinds.items())
        raise ConversionListError(
            f"--conversions {path}: one run evaluates one experiment, but the rows ask for "
            f"different F0 edits: {found}; split the list, or give it to `resyn-bench disentangle "
            "--conversions`, which runs each experiment on its rows")
    return EDIT_EXPERIMENTS[next(iter(kinds))]


def _ref_problem(path: str) -> str | None:
    import soundfile as sf

    if not Path(path).is_file():
        return f"{path}: no such file"
    try:
        info = sf.info(path)
    except Exception as exc:   # soundfile raises several types for undecodable files
        return f"{path}: cannot read it as audio ({exc})"
    if not info.frames or not info.samplerate:
        return f"{path}: no audio in it"
    return None


def target_references(work) -> dict[str, list[str]]:
    """``{target: [reference recordings]}`` of the usable rows (for the speaker metrics'
    enrolment, ``-m spk.enroll_refs``), each recording once, in list order."""
    refs: dict[str, list[str]] = {}
    for item in work:
        if getattr(item, "problem", None) or not getattr(item, "target_ref", ()):
            continue
        have = refs.setdefault(str(item.target_speaker), [])
        have += [r for r in item.target_ref if r not in have]
    return refs


def reference_seconds(refs: dict[str, list[str]]) -> dict[str, float]:
    """Seconds of reference audio per target (from the file headers)."""
    import soundfile as sf

    return {target: float(sum(sf.info(p).duration for p in paths))
            for target, paths in refs.items()}
