"""Read and write discrete-unit files (the speech-resynthesis ``{train,val,test}.txt`` format
and ours).

Formats read by :func:`read_unit_file` (decided line by line, so mixed files work):

``reference``
    One Python dict literal per line, e.g.
    ``{'audio': 'data/.../LJ001-0023.wav', 'hubert': '71 86 86 ...', 'duration': 8.48}``.
    The code key is one of ``hubert``, ``cpc_km100``, ``cpc``, ``vqvae256``, ``codes``; codes are
    space-separated decimal ints. The reference repo joins lines with ``\\n`` and writes no
    trailing newline. Lines are parsed with :func:`ast.literal_eval` (the reference uses ``eval``,
    which would run any code a downloaded file contains).
``jsonl``
    Ours: one JSON object per line with the same fields plus ``utt_id``, ``speaker``,
    ``hop_size``, ``vocab_size`` (kept in :attr:`UnitEntry.extra`). Codes may be a
    space-separated string (as written here) or a JSON list of ints.
``paths``
    A plain audio path per line (units unknown: ``UnitEntry.units`` is empty, ``key`` is "").
``name|codes``
    inference.py's ``--code_file`` lines: ``name|71 86 86 ...``.
``name<TAB>codes``
    fairseq CPC quantizer / infer_vqvae_codes.py output: ``stem_or_path<TAB>71,86,86,...``.

:func:`write_unit_file` writes ``reference`` (byte-compatible with the repo's files: same key
order, ``repr`` of the dict, no trailing newline unless asked) or ``jsonl``.
"""
from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from resyn_bench.errors import UserError

__all__ = ["CODE_KEYS", "UnitEntry", "UnitFileError", "read_unit_file", "parse_unit_line",
           "write_unit_file", "format_reference_line", "format_jsonl_line", "audio_stem",
           "index_by_stem"]

#: Code keys of the reference files, in the order they are looked for ("codes" = fallback).
CODE_KEYS = ("hubert", "cpc_km100", "cpc", "vqvae256", "codes")

_AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".sph")
_TAB_CODES = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*,?\s*$")
_SPACE_CODES = re.compile(r"^\s*(-?\d+(\s+-?\d+)*)?\s*$")


class UnitFileError(UserError, ValueError):
    """A unit file (or one of its lines) cannot be parsed; the message names file:line."""


@dataclass
class UnitEntry:
    """One utterance of a unit file."""

    audio: str                         # audio path (or name) as written in the file
    units: np.ndarray                  # int64 [T]; empty when the file gives paths only
    key: str = "hubert"                # code key it was read from ("" when there were no codes)
    duration: float | None = None      # seconds, as written (None when absent)
    extra: dict[str, Any] = field(default_factory=dict)  # other fields, in file order

    def __post_init__(self):
        self.units = np.asarray(self.units, dtype=np.int64).reshape(-1)

    @property
    def stem(self) -> str:
        """File name of ``audio`` without its audio extension (the key used to match audio)."""
        return audio_stem(self.audio)

    @property
    def utt_id(self) -> str:
        value = self.extra.get("utt_id")
        return str(value) if value not in (None, "") else self.stem

    @property
    def speaker(self) -> str | None:
        value = self.extra.get("speaker")
        return None if value is None else str(value)

    def __eq__(self, other) -> bool:  # dataclass eq would compare arrays elementwise
        if not isinstance(other, UnitEntry):
            return NotImplemented
        return (self.audio == other.audio and self.key == other.key
                and self.duration == other.duration and self.extra == other.extra
                and np.array_equal(self.units, other.units))


def audio_stem(path: str) -> str:
    """``'data/x/LJ001-0023.wav'`` -> ``'LJ001-0023'`` (Windows separators understood)."""
    pure = PureWindowsPath(path) if "\\" in path else PurePosixPath(path)
    return pure.stem if pure.suffix.lower() in _AUDIO_EXT else pure.name


def _parse_codes(value: Any, where: str) -> np.ndarray:
    if isinstance(value, str):
        if not _SPACE_CODES.match(value):
            raise UnitFileError(f"{where}: codes must be space-separated integers, got "
                                f"{value[:60]!r}")
        return np.array(value.split(), dtype=np.int64)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return np.array([value], dtype=np.int64)  # e.g. LibriLight's placeholder -1
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return np.array(value, dtype=np.int64)
    raise UnitFileError(f"{where}: codes must be a string of space-separated ints or a list of "
                        f"ints, got {type(value).__name__}")


def _entry_from_dict(d: dict, where: str) -> UnitEntry:
    audio = None
    for k in ("audio", "path", "wav"):
        if isinstance(d.get(k), str) and d[k].strip():
            audio = d[k]
            break
    if audio is None:
        raise UnitFileError(f"{where}: no 'audio' key (keys: {sorted(map(str, d))})")
    key = next((k for k in CODE_KEYS if k in d), None)
    if key is None:
        key = "units" if "units" in d else None
    units = _parse_codes(d[key], where) if key else np.zeros(0, np.int64)
    duration = d.get("duration")
    if duration is not None and (isinstance(duration, bool)
                                 or not isinstance(duration, (int, float))):
        raise UnitFileError(f"{where}: 'duration' must be a number, got {duration!r}")
    audio_key = next(k for k in ("audio", "path", "wav") if d.get(k) is audio)
    extra = {k: v for k, v in d.items() if k not in (audio_key, key, "duration")}
    return UnitEntry(audio=audio, units=units, key=key or "", duration=duration, extra=extra)


def parse_unit_line(line: str, where: str = "<line>") -> UnitEntry | None:
    """Parse one line of any supported format; ``None`` for blank lines.

    ``where`` (e.g. ``"test.txt:12"``) prefixes error messages."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            d = json.loads(text)  # ours (JSON); the reference's single quotes fail here
        except ValueError:
            try:
                d = ast.literal_eval(text)  # literals only: never evaluates code
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                raise UnitFileError(f"{where}: not a dict literal or JSON object "
                                    f"({type(exc).__name__}: {exc}): {text[:80]!r}") from None
        if not isinstance(d, dict):
            raise UnitFileError(f"{where}: expected a dict, got {type(d).__name__}")
        return _entry_from_dict(d, where)
    if "|" in text:
        name, _, codes = text.partition("|")
        if not name.strip():
            raise UnitFileError(f"{where}: empty name before '|'")
        return UnitEntry(audio=name.strip(), units=_parse_codes(codes, where), key="codes")
    if "\t" in text:
        name, _, codes = text.partition("\t")
        if _TAB_CODES.match(codes):
            units = np.array([c for c in codes.replace(" ", "").split(",") if c], dtype=np.int64)
            return UnitEntry(audio=name.strip(), units=units, key="codes")
        raise UnitFileError(f"{where}: expected 'name<TAB>comma-separated codes', got "
                            f"{text[:80]!r}")
    return UnitEntry(audio=text, units=np.zeros(0, np.int64), key="")


def read_unit_file(path: str | Path) -> list[UnitEntry]:
    """All entries of a unit file, in file order (blank lines skipped).

    Raises :class:`UnitFileError` naming ``file:line`` for a line that cannot be parsed and
    ``FileNotFoundError`` when the file does not exist."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"unit file not found: {path}")
    text = path.read_bytes().decode("utf-8-sig")
    entries = []
    for lineno, line in enumerate(text.split("\n"), 1):
        entry = parse_unit_line(line, f"{path}:{lineno}")
        if entry is not None:
            entries.append(entry)
    return entries


def _units_text(units: np.ndarray) -> str:
    return " ".join(str(int(u)) for u in np.asarray(units).reshape(-1))


def format_reference_line(entry: UnitEntry, key: str | None = None) -> str:
    """The reference line for ``entry``: ``repr`` of {'audio', <key>, 'duration', *extra}.

    ``repr`` of a dict of str/float is exactly how the reference files were produced, so a file
    read with :func:`read_unit_file` and written back is byte-identical."""
    key = key or entry.key or "codes"
    d: dict[str, Any] = {"audio": entry.audio, key: _units_text(entry.units)}
    if entry.duration is not None:
        d["duration"] = entry.duration
    for k, v in entry.extra.items():
        if k not in d:
            d[k] = v
    line = repr(d)
    if "\n" in line:
        raise UnitFileError(f"entry for {entry.audio!r} would span several lines")
    return line


def format_jsonl_line(entry: UnitEntry, key: str | None = None, *, hop_size: int | None = None,
                      vocab_size: int | None = None) -> str:
    """Our JSON line: utt_id, speaker, audio, <key>, duration, hop_size, vocab_size, *extra."""
    key = key or entry.key or "codes"
    d: dict[str, Any] = {"utt_id": entry.utt_id, "speaker": entry.speaker, "audio": entry.audio,
                         key: _units_text(entry.units), "duration": entry.duration,
                         "hop_size": entry.extra.get("hop_size", hop_size),
                         "vocab_size": entry.extra.get("vocab_size", vocab_size)}
    for k, v in entry.extra.items():
        if k not in d:
            d[k] = v
    return json.dumps(d, ensure_ascii=False)


def write_unit_file(path: str | Path, entries: Iterable[UnitEntry], key: str | None = "hubert",
                    fmt: str = "reference", *, trailing_newline: bool | None = None,
                    hop_size: int | None = None, vocab_size: int | None = None) -> Path:
    """Write ``entries`` atomically and return the path.

    ``key``: code key to write (None = each entry's own key). ``fmt``: "reference" (dict
    literals joined by newlines, no trailing newline by default, like the repo's files) or
    "jsonl" (one JSON object per line, newline-terminated; ``hop_size``/``vocab_size`` fill
    those fields where an entry's ``extra`` lacks them)."""
    if fmt not in ("reference", "jsonl"):
        raise ValueError(f"fmt must be 'reference' or 'jsonl', not {fmt!r}")
    entries = list(entries)
    if fmt == "reference":
        lines = [format_reference_line(e, key) for e in entries]
        newline_at_end = bool(trailing_newline)
    else:
        lines = [format_jsonl_line(e, key, hop_size=hop_size, vocab_size=vocab_size)
                 for e in entries]
        newline_at_end = True if trailing_newline is None else trailing_newline
    text = "\n".join(lines) + ("\n" if newline_at_end and lines else "")
    from resyn_bench.core.atomic import write_text_atomic

    return write_text_atomic(Path(path).expanduser(), text)


def index_by_stem(entries: Iterable[UnitEntry]) -> dict[str, UnitEntry]:
    """Entries keyed by audio file stem; a stem listed twice raises :class:`UnitFileError`."""
    out: dict[str, UnitEntry] = {}
    for e in entries:
        if e.stem in out:
            raise UnitFileError(f"two entries for audio stem {e.stem!r}: {out[e.stem].audio!r} "
                                f"and {e.audio!r}")
        out[e.stem] = e
    return out
