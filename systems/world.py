"""WORLD analysis/synthesis (pyworld): a weight-free vocoder baseline.

encode: F0 (harvest or dio+stonemask), spectral envelope (CheapTrick) and band aperiodicity
(D4C) every ``frame_period`` ms; decode: WORLD synthesis. With ``mcep_dims`` set, the spectral
envelope is transmitted as that many coded coefficients (pyworld's code/decode of the envelope),
which makes the baseline a lossy parametric codec rather than a near-perfect copy.

Low sample rates (measured, pyworld 0.3.5): WORLD codes band aperiodicity in 3 kHz bands from
3 kHz up to ``fs/2 - 3 kHz``, so below 12 kHz there is no band at all (``code_aperiodicity``
indexes past its buffer), and D4C's voicing test ("LoveTrain") compares the power below 4 kHz
with the power below 7.9 kHz, a frequency above Nyquist under 15.8 kHz: there it marks every
frame aperiodic and the output is whispered noise (mean F0 error ~290 cents on a harmonic
tone at 8 kHz). Below :data:`D4C_VOICING_MIN_RATE` the voicing decision is therefore left to
the F0 tracker (D4C ``threshold=0``), and with no aperiodicity band the coded stream is empty:
D4C's aperiodicity is then a fixed function of frequency on voiced frames (the -60 dB to 0 dB
ramp WORLD interpolates between 0 Hz and Nyquist) and 1 on unvoiced frames, which decoding
rebuilds from F0 alone, exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from resyn_bench.audio import Audio
from resyn_bench.systems.base import Streams, StreamSpec, System, SystemFailure, as_float32
from resyn_bench.systems.options import option, parse_options

F0_METHODS = ("harvest", "dio")
#: below this rate D4C's voicing test reads above Nyquist (its upper band edge is 7.9 kHz)
D4C_VOICING_MIN_RATE = 15800
#: WORLD's aperiodicity safeguard: fully aperiodic bins are ``1 - 1e-12``, the floor is -60 dB
_WORLD_SAFEGUARD = 1e-12
_AP_FLOOR_DB = -60.0


def aperiodicity_bands(pyworld, fs: int) -> int:
    """Number of coded band-aperiodicity values WORLD uses at ``fs`` (0 below 12 kHz)."""
    return int(pyworld.get_num_aperiodicities(int(fs)))


def d4c_threshold(fs: int) -> float:
    """D4C's voicing threshold to use at ``fs``: WORLD's default 0.85 where its test is
    defined, 0 (voicing from the F0 track) below :data:`D4C_VOICING_MIN_RATE`."""
    return 0.85 if fs >= D4C_VOICING_MIN_RATE else 0.0


def decode_bandless_aperiodicity(f0: np.ndarray, fs: int, fft_size: int) -> np.ndarray:
    """D4C's aperiodicity at a rate with no coded band: on voiced frames the -60 dB (0 Hz) to
    0 dB (Nyquist) linear-in-dB ramp, on unvoiced frames ``1 - 1e-12`` (WORLD's own values)."""
    freq = np.arange(fft_size // 2 + 1) * (fs / fft_size)
    ramp_db = np.interp(freq, [0.0, fs / 2.0], [_AP_FLOOR_DB, -_WORLD_SAFEGUARD])
    voiced_ap = 10.0 ** (ramp_db / 20.0)
    ap = np.full((len(f0), len(freq)), 1.0 - _WORLD_SAFEGUARD)
    ap[np.asarray(f0) > 0] = voiced_ap
    return ap


def _pyworld():
    from resyn_bench.dsp.pitch import import_pyworld

    return import_pyworld()


@dataclass(frozen=True)
class WorldOptions:
    """The options of ``world`` (``-o key=value``)."""

    f0_method: str = option("harvest", "F0 tracker: harvest, or dio refined by stonemask",
                            choices=F0_METHODS)
    frame_period: float = option(5.0, "analysis frame period in ms", type=float, metavar="MS")
    f0_floor: float = option(71.0, "lowest F0 searched, Hz", type=float, metavar="HZ")
    f0_ceil: float = option(800.0, "highest F0 searched, Hz", type=float, metavar="HZ")
    mcep_dims: int | None = option(
        None, "code the spectral envelope into this many coefficients (a lossy parametric "
        "codec); default: the full CheapTrick envelope", type=int, metavar="N")


class WorldSystem(System):
    Options = WorldOptions

    def __init__(self, options: WorldOptions | None = None, **values: Any):
        if options is None:
            options = parse_options(WorldOptions, values, "world")
        f0_method, frame_period = options.f0_method, options.frame_period
        mcep_dims = options.mcep_dims
        if f0_method not in F0_METHODS:
            raise ValueError(f"world: f0_method must be one of {F0_METHODS}, got {f0_method!r}")
        if frame_period <= 0:
            raise ValueError("world: frame_period must be > 0 ms")
        if mcep_dims is not None and mcep_dims < 2:
            raise ValueError("world: mcep_dims must be >= 2")
        self.f0_method = f0_method
        self.frame_period = float(frame_period)
        self.f0_floor = float(options.f0_floor)
        self.f0_ceil = float(options.f0_ceil)
        self.mcep_dims = mcep_dims
        _pyworld()  # fail at construction, not on every utterance

    def stream_specs(self) -> list[StreamSpec]:
        rate = 1000.0 / self.frame_period
        env = (f"coded spectral envelope ({self.mcep_dims} dims)" if self.mcep_dims
               else "CheapTrick spectral envelope (fft_size/2+1 bins)")
        return [StreamSpec("f0", "continuous", rate, description=f"F0 in Hz ({self.f0_method})"),
                StreamSpec("envelope", "continuous", rate, description=env),
                StreamSpec("aperiodicity", "continuous", rate, description="coded D4C band aperiodicity")]

    def encode(self, audio: Audio, utterance) -> Streams:
        pyworld = _pyworld()
        x = np.ascontiguousarray(audio.samples, dtype=np.float64)
        fs = audio.sample_rate
        kw = dict(f0_floor=self.f0_floor, f0_ceil=self.f0_ceil, frame_period=self.frame_period)
        if self.f0_method == "harvest":
            f0, t = pyworld.harvest(x, fs, **kw)
        else:
            f0, t = pyworld.dio(x, fs, **kw)
            f0 = pyworld.stonemask(x, f0, t, fs)
        fft_size = pyworld.get_cheaptrick_fft_size(fs, self.f0_floor)
        sp = pyworld.cheaptrick(x, f0, t, fs, f0_floor=self.f0_floor, fft_size=fft_size)
        ap = pyworld.d4c(x, f0, t, fs, fft_size=fft_size, threshold=d4c_threshold(fs))
        # Band aperiodicity is what WORLD transmits; decoding restores the full resolution.
        # With no band (fs < 12 kHz) D4C's output is a function of F0 alone: nothing to send.
        if aperiodicity_bands(pyworld, fs) > 0:
            coded_ap = pyworld.code_aperiodicity(ap, fs)
        else:
            coded_ap = np.zeros((len(f0), 0))
        envelope = pyworld.code_spectral_envelope(sp, fs, self.mcep_dims) if self.mcep_dims else sp
        return Streams({"f0": f0, "envelope": envelope, "aperiodicity": coded_ap},
                       sample_rate=fs, meta={"fft_size": fft_size, "n_samples": len(x)})

    def decode(self, streams: Streams) -> Audio:
        pyworld = _pyworld()
        fs, fft_size = streams.sample_rate, streams.meta["fft_size"]
        f0 = np.ascontiguousarray(streams["f0"], dtype=np.float64)
        env = np.ascontiguousarray(streams["envelope"], dtype=np.float64)
        sp = pyworld.decode_spectral_envelope(env, fs, fft_size) if self.mcep_dims else env
        coded_ap = np.ascontiguousarray(streams["aperiodicity"], dtype=np.float64)
        if coded_ap.ndim == 2 and coded_ap.shape[1] == 0:
            ap = decode_bandless_aperiodicity(f0, fs, fft_size)
        else:
            ap = pyworld.decode_aperiodicity(coded_ap, fs, fft_size)
        y = pyworld.synthesize(f0, sp, ap, fs, self.frame_period)
        if not np.all(np.isfinite(y)):
            raise SystemFailure("WORLD synthesis produced NaN/inf samples")
        n = streams.meta.get("n_samples")
        if n is not None:  # WORLD pads to whole frames; keep the input's length
            y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
        return Audio(as_float32(y), fs)

    def describe(self) -> dict:
        d = super().describe()
        d.update(f0_method=self.f0_method, frame_period_ms=self.frame_period,
                 f0_floor=self.f0_floor, f0_ceil=self.f0_ceil, mcep_dims=self.mcep_dims,
                 d4c_threshold=(f"0.85 at >= {D4C_VOICING_MIN_RATE} Hz, 0 (voicing from the F0 "
                                "track) below"))
        return d
