"""Weight-free reference systems."""
from __future__ import annotations

from resyn_bench.audio import Audio
from resyn_bench.systems.base import Streams, StreamSpec, System


class CopySystem(System):
    """Ground truth: the decoded audio is the input audio, untouched (the topline of a table).

    Its single stream is the waveform itself, which the reports do not count: no bitrate (–).
    """

    def stream_specs(self) -> list[StreamSpec]:
        return [StreamSpec("waveform", "waveform", frame_rate=None,
                           description="the input samples (16-bit PCM bitrate)")]

    def encode(self, audio: Audio, utterance) -> Streams:
        return Streams({"waveform": audio.samples}, sample_rate=audio.sample_rate,
                       meta={"path": audio.path})

    def decode(self, streams: Streams) -> Audio:
        # the samples are the file's own, so the output keeps pointing at that file
        return Audio(streams["waveform"], streams.sample_rate, streams.meta.get("path"))
