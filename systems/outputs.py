"""Evaluate audio another tool produced: ``outputs:DIR``.

Each utterance's output is found in DIR by a name pattern with the placeholders ``{utt_id}``,
``{speaker}`` and ``{stem}`` (the reference file's stem). The reference speech-resynthesis
repo writes ``<stem>_gen.wav``: use ``--outputs-pattern '{stem}_gen.wav'``. Without a pattern,
every format soundfile reads is tried, lossless first: ``{utt_id}.wav``, ``{utt_id}.flac``,
``{utt_id}.ogg``, ``{utt_id}.mp3``, then the same four under ``{speaker}/`` (mp3 needs
libsndfile >= 1.1; the file is read like a dataset's: any sample rate, stereo averaged to mono).

Bitrate, so an external codec stands on the codec table and quality-vs-bitrate plot:
``-o bitrate=BPS`` declares the rate of every utterance (labelled *declared*);
``-o bitstreams=DIR`` counts the sizes of the files ``<utt_id>.*`` (or ``<speaker>/<utt_id>.*``)
in DIR, e.g. the ``.ecdc`` or ``.npy`` codes the codec wrote, as that utterance's bits (labelled
*measured*: the reports pool total bits / total seconds of the source audio); the column
``bytes`` of a ``--conversions`` list gives the same per row, and wins over both options. An utterance
without a bitstream file fails with that reason. With both, the measured rate is reported and the
declared one kept in the record as ``declared_bps``.

A pattern may use only those three named fields, bare (no format spec such as ``{utt_id:>9}``,
no conversion ``!r``, no attribute or index access ``{utt_id.__class__}``), must be relative and
must not climb out of DIR (``..``). A located file must lie inside DIR (an id such as
``../../x`` finds nothing rather than a file elsewhere).
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from resyn_bench.audio import Audio, AudioError, load_audio
from resyn_bench.systems.base import Streams, StreamSpec, System, SystemFailure, bitstream_record
from resyn_bench.systems.options import option, parse_options

#: extensions of the default lookup, in the order tried (lossless before lossy)
DEFAULT_EXTENSIONS = ("wav", "flac", "ogg", "mp3")
DEFAULT_PATTERNS = tuple(f"{folder}{{utt_id}}.{ext}" for folder in ("", "{speaker}/")
                         for ext in DEFAULT_EXTENSIONS)
PATTERN_FIELDS = ("utt_id", "speaker", "stem")


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a safe outputs pattern, else raise ValueError saying why."""
    def bad(why: str) -> ValueError:
        return ValueError(f"outputs: bad --outputs-pattern {pattern!r}: {why}; use only the "
                          "placeholders {utt_id}, {speaker}, {stem}, e.g. '{stem}_gen.wav'")

    if not isinstance(pattern, str) or not pattern.strip():
        raise bad("empty")
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise bad(str(exc)) from None
    fields = 0
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PATTERN_FIELDS:
            raise bad(f"unknown field {{{name}}}" if name else "an empty field {}")
        if spec or conversion:
            raise bad(f"field {{{name}}} has a format spec or conversion")
        fields += 1
    if not fields:
        raise bad("it names no field, so every utterance would get the same file")
    pure = PurePosixPath(pattern.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        raise bad("it must be relative to DIR and must not contain '..'")
    return pattern


def _some_files(directory: Path, limit: int) -> list[Path]:
    out = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            out.append(path)
            if len(out) >= limit:
                break
    return out


def guess_pattern(files: list[str], utterances) -> str | None:
    """A pattern that maps utterances to the given files (relative paths): the first file
    containing an utterance's id or reference stem, with that part (and its speaker folder)
    replaced by placeholders, kept when it matches at least one other listed file too or the
    corpus has a single utterance."""
    names = set(files)
    for utt in utterances[:200]:
        stem = Path(utt.path).stem
        for rel in files:
            for value, field in ((stem, "{stem}"), (utt.utt_id, "{utt_id}")):
                if value and value in Path(rel).name:
                    parent = Path(rel).parent.as_posix()
                    folder = "" if parent == "." else (
                        "{speaker}/" if parent == utt.speaker else parent + "/")
                    pattern = folder + Path(rel).name.replace(value, field, 1)
                    hits = sum(pattern.format(utt_id=u.utt_id, speaker=u.speaker,
                                              stem=Path(u.path).stem) in names
                               for u in utterances[:200])
                    if hits >= min(2, len(utterances)):
                        return pattern
    return None


@dataclass(frozen=True)
class OutputsOptions:
    """The options of ``outputs:DIR`` (``-o key=value``)."""

    pattern: str | None = option(
        None, "output file name pattern with {utt_id}, {speaker}, {stem} (also --outputs-pattern); "
        "default: the usual names, detected", metavar="PATTERN")
    bitrate: float | None = option(
        None, "the codec's declared bitrate, a positive number of bits per second, e.g. 6000",
        type=float, metavar="BPS")
    bitstreams: str | None = option(
        None, "folder holding one <utt_id>.* bitstream file per utterance: the bitrate is "
        "measured from their sizes", metavar="DIR")
    conversions: str | None = option(
        None, "a list of conversions made by another tool (set by --conversions)", metavar="FILE")


class OutputsSystem(System):
    Options = OutputsOptions

    def __init__(self, directory: str, options: OutputsOptions | None = None, **values: Any):
        if options is None:
            options = parse_options(OutputsOptions, values, "outputs")
        pattern, bitrate = options.pattern, options.bitrate
        bitstreams, conversions = options.bitstreams, options.conversions
        self.directory = Path(directory).expanduser()
        if not self.directory.is_dir():
            raise ValueError(f"outputs: {self.directory} is not a directory")
        # --conversions LIST: the runner builds the work list from it (resyn_bench.conversions);
        # each item names its output file
        self.conversions = str(conversions) if conversions else None
        self.bitrate = None
        if bitrate is not None and bitrate != "":
            try:
                self.bitrate = float(bitrate)
            except (TypeError, ValueError):
                self.bitrate = float("nan")
            if not (self.bitrate > 0 and self.bitrate != float("inf")):
                raise ValueError(f"outputs: -o bitrate={bitrate!r} is not a positive number of bits "
                                 "per second; give e.g. -o bitrate=6000")
        self.bitstreams = None
        if bitstreams:
            self.bitstreams = Path(bitstreams).expanduser()
            if not self.bitstreams.is_dir():
                raise ValueError(f"outputs: -o bitstreams={bitstreams}: {self.bitstreams} is not a "
                                 "directory; give the folder holding one <utt_id>.* file per "
                                 "utterance")
        if pattern is not None:
            check_pattern(pattern)
        self.patterns = (pattern,) if pattern else DEFAULT_PATTERNS

    def stream_specs(self) -> list[StreamSpec]:
        return [StreamSpec("file", "waveform", frame_rate=None,
                           description="pre-computed output file")]

    def _inside(self, candidate: Path) -> bool:
        top = os.path.normpath(os.path.abspath(self.directory))
        inside = os.path.normpath(os.path.abspath(candidate))
        return os.path.commonpath([top, inside]) == top

    def locate_listed(self, utterance, output: str) -> Path:
        """The file a --conversions row names: a path relative to DIR, else an id tried with
        the default extensions; it must lie inside DIR."""
        candidates = [self.directory / output]
        if not Path(output).suffix or not candidates[0].is_file():
            candidates += [self.directory / f"{output}.{ext}" for ext in DEFAULT_EXTENSIONS]
        tried = []
        for candidate in candidates:
            if not self._inside(candidate):
                tried.append(f"{candidate} (outside {self.directory}: not used)")
                continue
            if candidate.is_file():
                return candidate
            tried.append(str(candidate))
        raise SystemFailure(f"no output file for {utterance.utt_id} (line {getattr(utterance, 'row', '?')} "
                            f"of the conversion list); tried {', '.join(tried)}")

    def locate(self, utterance) -> Path:
        listed = getattr(utterance, "output", None)
        if listed:
            return self.locate_listed(utterance, listed)
        fields = dict(utt_id=utterance.utt_id, speaker=utterance.speaker,
                      stem=Path(utterance.path).stem)
        tried = []
        top = os.path.normpath(os.path.abspath(self.directory))
        for pattern in self.patterns:
            candidate = self.directory / pattern.format(**fields)
            inside = os.path.normpath(os.path.abspath(candidate))
            if os.path.commonpath([top, inside]) != top:  # an id like ../../x or /abs/x
                tried.append(f"{candidate} (outside {self.directory}: not used)")
                continue
            if candidate.is_file():
                return candidate
            tried.append(str(candidate))
        raise SystemFailure(f"no output file for {utterance.utt_id}; tried {', '.join(tried)}")

    def precheck(self, utterances) -> str | None:
        """None when some utterance has its output file; else a message with the patterns
        tried, a few files that are there and an ``--outputs-pattern`` that would match them."""
        utterances = list(utterances)
        for utt in utterances:
            try:
                self.locate(utt)
                return None
            except SystemFailure:
                continue
        present = sorted(p.relative_to(self.directory).as_posix()
                         for p in _some_files(self.directory, 2000))
        shown = ", ".join(present[:5]) + (f" ... ({len(present)} files)" if len(present) > 5 else "")
        guess = guess_pattern(present, utterances)
        first = utterances[0]
        fields = dict(utt_id=first.utt_id, speaker=first.speaker, stem=Path(first.path).stem)
        tried = "; ".join(f"{p!r} (e.g. {p.format(**fields)})" for p in self.patterns)
        hint = (f"--outputs-pattern {guess!r} matches the files there" if guess else
                "give the name pattern with --outputs-pattern (placeholders {utt_id}, {speaker}, "
                "{stem}), e.g. --outputs-pattern '{stem}_gen.wav'")
        return (f"outputs:{self.directory}: no output file matches any of the "
                f"{len(utterances)} utterances; patterns tried: {tried}; files there: "
                f"{shown or 'none'}. {hint}")

    def bitstream_files(self, utterance) -> list[Path]:
        """The files ``<utt_id>.*`` (else ``<speaker>/<utt_id>.*``) in the bitstreams folder."""
        speaker = str(utterance.speaker)
        plain = speaker not in ("", ".", "..") and "/" not in speaker and "\\" not in speaker
        for folder in (self.bitstreams, *([self.bitstreams / speaker] if plain else [])):
            if not folder.is_dir():
                continue
            found = sorted(p for p in folder.iterdir()
                           if p.is_file() and p.name.startswith(utterance.utt_id + "."))
            if found:
                return found
        return []

    def _bitstream(self, audio: Audio, utterance) -> dict | None:
        seconds = len(audio.samples) / float(audio.sample_rate)
        if not seconds > 0:
            return None
        listed = getattr(utterance, "bits", None)   # the size a --conversions row gives
        if listed is not None:
            extra = {"declared_bps": self.bitrate} if self.bitrate is not None else {}
            return bitstream_record(int(listed), seconds, "measured", **extra)
        if self.bitstreams is not None:
            files = self.bitstream_files(utterance)
            if not files:
                raise SystemFailure(f"no bitstream file for {utterance.utt_id} in "
                                    f"{self.bitstreams} (looked for {utterance.utt_id}.* and "
                                    f"{utterance.speaker}/{utterance.utt_id}.*)")
            bits = 8 * sum(p.stat().st_size for p in files)
            extra = {"files": [p.name for p in files]}
            if self.bitrate is not None:
                extra["declared_bps"] = self.bitrate
            return bitstream_record(bits, seconds, "measured", **extra)
        if self.bitrate is not None:
            return bitstream_record(round(self.bitrate * seconds), seconds, "declared",
                                    declared_bps=self.bitrate)
        return None

    def encode(self, audio: Audio, utterance) -> Streams:
        path = self.locate(utterance)
        bitstream = self._bitstream(audio, utterance)
        return Streams({"file": path}, sample_rate=audio.sample_rate,
                       meta={"bitstream": bitstream} if bitstream else {})

    def decode(self, streams: Streams) -> Audio:
        try:
            return load_audio(streams["file"])
        except AudioError as exc:
            raise SystemFailure(f"output file {streams['file']}: {exc}") from None

    def describe(self) -> dict:
        d = super().describe()
        d.update(directory=str(self.directory.resolve()), patterns=list(self.patterns))
        if self.bitrate is not None:
            d["declared_bitrate_bps"] = self.bitrate
        if self.conversions is not None:
            d["conversions"] = str(Path(self.conversions).expanduser().resolve())
        if self.bitstreams is not None:
            d["bitstreams"] = str(self.bitstreams.resolve())
        return d
