"""Evaluate audio another tool produced: ``outputs:DIR``.

Each utterance's output is found in DIR by a name pattern with the placeholders ``{utt_id}``,
``{speaker}`` and ``{stem}`` (the reference file's stem). The reference speech-resynthesis
repo writes ``<stem>_gen.wav``: use ``--outputs-pattern '{stem}_gen.wav'``. Without a pattern,
``{utt_id}.wav``, ``{utt_id}.flac``, ``{speaker}/{utt_id}.wav`` and ``{speaker}/{utt_id}.flac``
are tried in that order.
"""
from __future__ import annotations

from pathlib import Path

from resyn_bench.audio import Audio, AudioError, load_audio
from resyn_bench.systems.base import Streams, StreamSpec, System, SystemFailure

DEFAULT_PATTERNS = ("{utt_id}.wav", "{utt_id}.flac", "{speaker}/{utt_id}.wav",
                    "{speaker}/{utt_id}.flac")


class OutputsSystem(System):
    def __init__(self, directory: str, pattern: str | None = None):
        self.directory = Path(directory).expanduser()
        if not self.directory.is_dir():
            raise ValueError(f"outputs: {self.directory} is not a directory")
        if pattern is not None:
            try:
                pattern.format(utt_id="x", speaker="x", stem="x")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"outputs: bad --outputs-pattern {pattern!r} ({exc}); "
                                 "use the placeholders {utt_id}, {speaker}, {stem}") from None
        self.patterns = (pattern,) if pattern else DEFAULT_PATTERNS

    def stream_specs(self) -> list[StreamSpec]:
        return [StreamSpec("file", "waveform", frame_rate=None,
                           description="pre-computed output file")]

    def locate(self, utterance) -> Path:
        fields = dict(utt_id=utterance.utt_id, speaker=utterance.speaker,
                      stem=Path(utterance.path).stem)
        tried = []
        for pattern in self.patterns:
            candidate = self.directory / pattern.format(**fields)
            if candidate.is_file():
                return candidate
            tried.append(str(candidate))
        raise SystemFailure(f"no output file for {utterance.utt_id}; tried {', '.join(tried)}")

    def encode(self, audio: Audio, utterance) -> Streams:
        return Streams({"file": self.locate(utterance)}, sample_rate=audio.sample_rate)

    def decode(self, streams: Streams) -> Audio:
        try:
            return load_audio(streams["file"])
        except AudioError as exc:
            raise SystemFailure(f"output file {streams['file']}: {exc}") from None

    def describe(self) -> dict:
        d = super().describe()
        d.update(directory=str(self.directory.resolve()), patterns=list(self.patterns))
        return d
