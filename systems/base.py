"""The system contract: encode audio into streams, decode the streams back to audio.

A system is built by the registry (``make_system(spec, **options)``; ``-o key=value`` on the
command line) and then, per utterance, in the runner's synthesis phase (through
:func:`transmit`)::

    reference --(resampled to system.input_sample_rate when set; logged in the manifest)-->
        system.encode(audio, utterance) -> Streams
        system.decode(streams)          -> Audio (the output, validated and stored)

A system that overrides ``resynthesize`` (or a plugin object with only that method) is called
through it instead, without a bitstream. There is no transform step between ``encode`` and ``decode`` in
the runner: voice conversion and F0 edits are the system's own business. The runner gives the
conversion target as ``utterance.target_speaker`` (``--vc-targets``, ``--conversions``) and a
speaker-conditioned system decodes in that voice; F0 edits are system options (``ckpt:DIR``'s
``-o f0_edit=flat|shift:N|scale:X``, applied in ``encode``). A system that can produce several
voices lists them in :meth:`System.speakers` (``--vc-targets`` draws from that list).

``Streams`` carries named arrays; each is described by a :class:`StreamSpec`. The reports
compute the bitrate from the specs recorded in the run manifest (``describe()["streams"]``):
frame rate x ceil(log2 vocabulary size) summed over the *discrete* streams (speaker,
continuous and waveform streams are not counted). A system whose encoder output can be counted
(a codec) puts a :func:`bitstream_record` into ``Streams.meta["bitstream"]``; the runner stores
it in the synthesis record and the reports use that measured rate instead.

A failure on one utterance raises :class:`SystemFailure` (or any exception): the runner records
the utterance as failed with the reason and goes on. How to add a system: docs/adding_a_system.md.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resyn_bench.audio import Audio


@dataclass(frozen=True)
class StreamSpec:
    name: str                   # "units", "f0_codes", "speaker", "waveform", ...
    kind: str                   # "discrete" | "continuous" | "speaker" | "waveform"
    frame_rate: float | None    # symbols per second (None: once per utterance / variable)
    vocab_size: int | None = None   # discrete streams only
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "frame_rate": self.frame_rate,
                "vocab_size": self.vocab_size, "description": self.description}


@dataclass
class Streams:
    data: dict[str, Any]
    sample_rate: int                        # rate of the audio that was encoded
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


class SystemFailure(RuntimeError):
    """A system failed on one utterance (recorded with its reason; the run continues)."""


class System(ABC):
    #: registry name, set by the registry when instantiated
    name: str = ""
    #: rate encode() needs; None = any (the runner resamples and logs it)
    input_sample_rate: int | None = None

    @abstractmethod
    def stream_specs(self) -> list[StreamSpec]:
        """Describe the streams encode() produces."""

    @abstractmethod
    def encode(self, audio: Audio, utterance) -> Streams:
        ...

    @abstractmethod
    def decode(self, streams: Streams) -> Audio:
        ...

    def resynthesize(self, audio: Audio, utterance) -> Audio:
        return self.decode(self.encode(audio, utterance))


    def speakers(self) -> list[str] | None:
        """Speakers the decoder can produce (None: any / not speaker-conditioned)."""
        return None

    def describe(self) -> dict[str, Any]:
        """JSON-able description for the run manifest (settings, checkpoints, checksums)."""
        return {"name": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "input_sample_rate": self.input_sample_rate,
                "streams": [s.to_dict() for s in self.stream_specs()]}


def transmit(system, audio: Audio, utterance) -> tuple[Audio, dict[str, Any] | None]:
    """``system.resynthesize`` plus what was transmitted: the output and the bitstream record
    (:func:`bitstream_record`) that ``encode`` left in ``Streams.meta["bitstream"]`` (None when
    it left none). A system that overrides ``resynthesize``, or is not a :class:`System`
    (a plugin with only ``resynthesize``), is called as it is, without a bitstream."""
    if (not isinstance(system, System) or type(system).resynthesize is not System.resynthesize
            or "resynthesize" in vars(system)):
        return system.resynthesize(audio, utterance), None
    streams = system.encode(audio, utterance)
    bitstream = streams.meta.get("bitstream") if isinstance(streams.meta, dict) else None
    return system.decode(streams), bitstream


def bitstream_record(bits: int, seconds: float, source: str = "measured",
                     **detail: Any) -> dict[str, Any]:
    """What one utterance cost to transmit, for the run record (``record["bitstream"]``) and the
    reports' bitrate: ``bits`` (total payload bits the encoder produced, e.g. the sum of its
    packet sizes), ``seconds`` (duration of the audio they carry), ``bps`` = bits / seconds,
    ``source``: ``measured`` (counted from the encoder's output) or ``declared`` (a rate a user
    states for outputs of another tool). ``detail``: anything else worth keeping (packets,
    nominal rate, mode). Reports pool utterances as total bits / total seconds."""
    if source not in ("measured", "declared"):
        raise ValueError(f"bitstream source must be 'measured' or 'declared', got {source!r}")
    if bits < 0 or not seconds > 0:
        raise ValueError(f"bitstream needs bits >= 0 and seconds > 0 (got {bits}, {seconds})")
    return {"bits": int(bits), "seconds": float(seconds), "bps": float(bits) / float(seconds),
            "source": source, **detail}


def as_float32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)
