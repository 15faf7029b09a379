"""The paper's codec baselines as weight-free systems: Codec2 and Opus.

Their bitrate is the one the encoder actually produced for each utterance, counted from its
output (:func:`~resyn_bench.systems.base.bitstream_record`, ``source="measured"``), not the
nominal mode: total payload bits over the seconds of input audio. The runner stores it in the
synthesis record (``record["bitstream"]``) and the reports' bitrate column and quality-vs-bitrate
plot use it (pooled over utterances: total bits / total seconds), labelled *measured*.

* ``codec2`` (``pycodec2``, which bundles libcodec2): 8 kHz, ``-o mode=3200|2400|1600|1400|1300|
  1200|700C``. Each frame (20 or 40 ms) carries ``bits_per_frame`` bits (e.g. 64 bits / 40 ms at
  1600); the last partial frame is zero-padded and counted. The bits counted are codec2's frame
  payload (``codec2_bits_per_frame``); storing frames byte-aligned (as ``c2enc`` does) would add
  the padding bits of 1300 (52 -> 56) and 700C (28 -> 32), which ``bytes`` in the record shows.
  The decoded speech lags the input (energy-envelope cross-correlation on synthetic speech-like
  signals here: about 18-25 ms, 700C about 30 ms; the estimate varies by +-4 ms between signals),
  which frame-aligned metrics (VDE/FFE, STOI) count as errors; ``-o delay_ms=N`` drops the first
  N ms of the output (and pads the end) to compensate. Default 0: the codec as it is.
* ``opus`` (PyAV's ``libopus``, bundled in the ``av`` wheel): wideband (16 kHz in and out),
  ``-o bitrate=6000|9000|12000|16000|24000`` (any 500..512000), ``-o vbr=on|off|constrained``
  (default ``on``: the paper's "Opus wideband VBR"), ``-o frame_ms=20``,
  ``-o application=voip|audio|lowdelay``. The bits counted are the Opus packets' sizes (no Ogg
  or RTP framing, no header packet); with VBR the achieved rate follows the signal.
"""
from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any

import numpy as np

from resyn_bench.audio import Audio
from resyn_bench.errors import MissingDependencyError
from resyn_bench.systems.base import Streams, StreamSpec, System, SystemFailure, as_float32, bitstream_record
from resyn_bench.systems.options import option, parse_options

CODEC2_MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C")
OPUS_RATES = (6000, 9000, 12000, 16000, 24000)      # the study's settings (any 500..512000 works)
OPUS_VBR = ("on", "off", "constrained")
OPUS_APPLICATIONS = ("voip", "audio", "lowdelay")


def _missing(package: str, extra: str = "codecs") -> ImportError:
    return MissingDependencyError(f"the {package!r} package is not installed: pip install {package} "
                       f"(or pip install 'resyn-bench[{extra}]')")


def _import_pycodec2():
    try:
        import pycodec2
    except ImportError:
        raise _missing("pycodec2") from None
    return pycodec2


def _import_av():
    try:
        import av
    except ImportError:
        raise _missing("av") from None
    try:
        av.codec.Codec("libopus", "w")
    except Exception as exc:  # a PyAV built against an FFmpeg without libopus
        raise MissingDependencyError(f"this PyAV ({av.__version__}) has no libopus encoder ({exc}); install "
                          "the PyPI wheel (pip install --force-reinstall av), which bundles "
                          "libopus") from None
    return av


def _to_int16(samples: np.ndarray) -> np.ndarray:
    return np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def _codec2_mode(mode: str) -> str:
    mode = str(mode).upper()
    return "700C" if mode == "700" else mode


@dataclass(frozen=True)
class Codec2Options:
    """The options of ``codec2`` (``-o key=value``)."""

    mode: str = option("1600", "Codec2 mode (its nominal bits per second; 700 = 700C)",
                       choices=CODEC2_MODES, normalize=_codec2_mode)
    delay_ms: float = option(0.0, "shift the decoded audio back by this many ms (0..200) before "
                             "scoring", type=float, metavar="MS")


@dataclass(frozen=True)
class OpusOptions:
    """The options of ``opus`` (``-o key=value``)."""

    bitrate: int = option(9000, "target bits per second (500..512000; the paper's range is "
                          "6000..24000)", type=int, metavar="BPS")
    vbr: str = option("on", "variable bitrate", choices=OPUS_VBR)
    frame_ms: float = option(20.0, "frame length in ms (2.5, 5, 10, 20, 40 or 60)", type=float,
                             metavar="MS")
    application: str = option("voip", "libopus application", choices=OPUS_APPLICATIONS)


class Codec2System(System):
    """Codec2 at 8 kHz (see the module notes)."""

    Options = Codec2Options
    input_sample_rate = 8000

    def __init__(self, options: Codec2Options | None = None, **values: Any):
        if options is None:
            options = parse_options(Codec2Options, values, "codec2")
        mode, delay_ms = options.mode, options.delay_ms
        if not 0.0 <= float(delay_ms) <= 200.0:
            raise ValueError(f"codec2: delay_ms must be 0..200 ms, got {delay_ms}")
        self.delay_ms = float(delay_ms)
        mode = _codec2_mode(mode)
        if mode not in CODEC2_MODES:
            raise ValueError(f"codec2: mode must be one of {', '.join(CODEC2_MODES)}, got {mode!r}")
        self.mode = mode
        self._pycodec2 = _import_pycodec2()  # fail at construction, not per utterance
        probe = self._codec()
        self.samples_per_frame = int(probe.samples_per_frame())
        self.bits_per_frame = int(probe.bits_per_frame())
        self.bytes_per_frame = int(probe.bytes_per_frame())

    def _codec(self):
        # pycodec2 keys its modes by the integer rate; 700 is codec2's 700C
        return self._pycodec2.Codec2(int(self.mode.rstrip("C")))

    @property
    def frame_rate(self) -> float:
        return self.input_sample_rate / self.samples_per_frame

    @property
    def nominal_bps(self) -> float:
        return self.bits_per_frame * self.frame_rate

    def stream_specs(self) -> list[StreamSpec]:
        return [StreamSpec("frames", "bitstream", self.frame_rate,
                           description=f"codec2 {self.mode} frames ({self.bits_per_frame} bits "
                                       f"every {1000 / self.frame_rate:g} ms; bitrate measured)")]

    def encode(self, audio: Audio, utterance) -> Streams:
        if audio.sample_rate != self.input_sample_rate:
            raise SystemFailure(f"codec2 needs {self.input_sample_rate} Hz input, got "
                                f"{audio.sample_rate} Hz")
        pcm = _to_int16(audio.samples)
        n = len(pcm)
        spf = self.samples_per_frame
        n_frames = -(-n // spf)
        pcm = np.pad(pcm, (0, n_frames * spf - n))
        codec = self._codec()
        # pycodec2's encode() codes one frame per call
        frames = [codec.encode(np.ascontiguousarray(pcm[i * spf:(i + 1) * spf]))
                  for i in range(n_frames)]
        bits = n_frames * self.bits_per_frame
        meta = {"n_samples": n,
                "bitstream": bitstream_record(bits, n / audio.sample_rate, "measured",
                                              codec="codec2", mode=self.mode, frames=n_frames,
                                              bytes=sum(len(f) for f in frames),
                                              nominal_bps=self.nominal_bps)}
        return Streams({"frames": frames}, sample_rate=audio.sample_rate, meta=meta)

    def decode(self, streams: Streams) -> Audio:
        codec = self._codec()
        pieces = [codec.decode(bytes(f)) for f in streams["frames"]]
        y = np.concatenate(pieces).astype(np.float32) / 32768.0 if pieces else np.zeros(0, np.float32)
        y = y[int(round(self.delay_ms * streams.sample_rate / 1000.0)):]   # optional alignment
        n = streams.meta["n_samples"]
        y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
        return Audio(as_float32(y), streams.sample_rate)

    def describe(self) -> dict:
        d = super().describe()
        d.update(codec="codec2", mode=self.mode, delay_ms=self.delay_ms,
                 bits_per_frame=self.bits_per_frame,
                 samples_per_frame=self.samples_per_frame, nominal_bps=self.nominal_bps,
                 bitrate="measured", library=f"pycodec2 {_version('pycodec2')}")
        return d


class OpusSystem(System):
    """Opus wideband (16 kHz) through PyAV's libopus (see the module notes)."""

    Options = OpusOptions
    input_sample_rate = 16000

    def __init__(self, options: OpusOptions | None = None, **values: Any):
        if options is None:
            options = parse_options(OpusOptions, values, "opus")
        bitrate, vbr = int(options.bitrate), options.vbr
        frame_ms, application = options.frame_ms, options.application
        if not 500 <= bitrate <= 512000:
            raise ValueError(f"opus: bitrate must be 500..512000 bits/s, got {bitrate}")
        if str(vbr) not in OPUS_VBR:
            raise ValueError(f"opus: vbr must be one of {OPUS_VBR}, got {vbr!r}")
        if float(frame_ms) not in (2.5, 5, 10, 20, 40, 60):
            raise ValueError(f"opus: frame_ms must be 2.5, 5, 10, 20, 40 or 60, got {frame_ms}")
        if application not in OPUS_APPLICATIONS:
            raise ValueError(f"opus: application must be one of {OPUS_APPLICATIONS}, got "
                             f"{application!r}")
        self.bitrate, self.vbr, self.application = bitrate, str(vbr), application
        self.frame_ms = float(frame_ms)
        self._av = _import_av()

    def stream_specs(self) -> list[StreamSpec]:
        return [StreamSpec("packets", "bitstream", 1000.0 / self.frame_ms,
                           description=f"Opus packets, nominal {self.bitrate} bit/s, VBR "
                                       f"{self.vbr} (bitrate measured)")]

    def _encoder(self):
        av = self._av
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = self.input_sample_rate
        ctx.bit_rate = self.bitrate
        ctx.format = "s16"
        ctx.layout = "mono"
        ctx.time_base = fractions.Fraction(1, self.input_sample_rate)
        ctx.options = {"vbr": self.vbr, "application": self.application,
                       "frame_duration": f"{self.frame_ms:g}"}
        ctx.open()
        return ctx

    def encode(self, audio: Audio, utterance) -> Streams:
        av = self._av
        if audio.sample_rate != self.input_sample_rate:
            raise SystemFailure(f"opus (wideband) needs {self.input_sample_rate} Hz input, got "
                                f"{audio.sample_rate} Hz")
        ctx = self._encoder()
        pcm = _to_int16(audio.samples)
        n = len(pcm)
        step = int(ctx.frame_size) or int(self.input_sample_rate * self.frame_ms / 1000)
        packets = []
        for start in range(0, n, step):
            chunk = pcm[start:start + step]
            if len(chunk) < step:
                chunk = np.pad(chunk, (0, step - len(chunk)))
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[None, :]), format="s16",
                                               layout="mono")
            frame.sample_rate = self.input_sample_rate
            frame.pts = start
            packets += [bytes(p) for p in ctx.encode(frame)]
        packets += [bytes(p) for p in ctx.encode(None)]   # flush
        header = bytes(ctx.extradata or b"")
        bits = 8 * sum(len(p) for p in packets)
        meta = {"n_samples": n, "header": header,
                "bitstream": bitstream_record(bits, n / audio.sample_rate, "measured",
                                              codec="opus", packets=len(packets),
                                              nominal_bps=self.bitrate, vbr=self.vbr)}
        return Streams({"packets": packets}, sample_rate=audio.sample_rate, meta=meta)

    def decode(self, streams: Streams) -> Audio:
        av = self._av
        import soxr

        dec = av.CodecContext.create("libopus", "r")
        if streams.meta.get("header"):
            dec.extradata = streams.meta["header"]     # OpusHead: pre-skip, input rate
        parts, rate = [], 48000
        for data in streams["packets"]:
            for frame in dec.decode(av.Packet(data)):
                rate = frame.sample_rate
                x = frame.to_ndarray()
                x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
                parts.append(x.reshape(x.shape[0], -1).mean(axis=0) if x.ndim > 1 else x)
        for frame in dec.decode(None):
            x = frame.to_ndarray()
            x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
            parts.append(x.reshape(x.shape[0], -1).mean(axis=0))
        y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        # the decoder runs at 48 kHz (pre-skip already removed); back to the input rate
        if rate != streams.sample_rate:
            y = soxr.resample(y, rate, streams.sample_rate, quality="HQ")
        n = streams.meta["n_samples"]
        y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
        if not np.all(np.isfinite(y)):
            raise SystemFailure("opus decoding produced NaN/inf samples")
        return Audio(as_float32(y), streams.sample_rate)

    def describe(self) -> dict:
        d = super().describe()
        d.update(codec="opus", nominal_bps=self.bitrate, vbr=self.vbr, frame_ms=self.frame_ms,
                 application=self.application, bandwidth="wideband (16 kHz)", bitrate="measured",
                 library=f"av {_version('av')} (libopus)")
        return d


def _version(package: str) -> str:
    from resyn_bench.core.versions import package_version

    return package_version(package, "?")
