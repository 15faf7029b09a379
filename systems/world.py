"""WORLD analysis/synthesis (pyworld): a weight-free vocoder baseline.

encode: F0 (harvest or dio+stonemask), spectral envelope (CheapTrick) and band aperiodicity
(D4C) every ``frame_period`` ms; decode: WORLD synthesis. With ``mcep_dims`` set, the spectral
envelope is transmitted as that many coded coefficients (pyworld's code/decode of the envelope),
which makes the baseline a lossy parametric codec rather than a near-perfect copy.
"""
from __future__ import annotations

import numpy as np

from resyn_bench.audio import Audio
from resyn_bench.systems.base import Streams, StreamSpec, System, SystemFailure, as_float32

F0_METHODS = ("harvest", "dio")


def _pyworld():
    from resyn_bench.metrics.pitch import import_pyworld

    return import_pyworld()


class WorldSystem(System):
    def __init__(self, f0_method: str = "harvest", frame_period: float = 5.0,
                 f0_floor: float = 71.0, f0_ceil: float = 800.0, mcep_dims: int | None = None):
        if f0_method not in F0_METHODS:
            raise ValueError(f"world: f0_method must be one of {F0_METHODS}, got {f0_method!r}")
        if frame_period <= 0:
            raise ValueError("world: frame_period must be > 0 ms")
        if mcep_dims is not None and mcep_dims < 2:
            raise ValueError("world: mcep_dims must be >= 2")
        self.f0_method = f0_method
        self.frame_period = float(frame_period)
        self.f0_floor = float(f0_floor)
        self.f0_ceil = float(f0_ceil)
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
        ap = pyworld.d4c(x, f0, t, fs, fft_size=fft_size)
        # Band aperiodicity is what WORLD transmits; decoding restores the full resolution.
        coded_ap = pyworld.code_aperiodicity(ap, fs)
        envelope = pyworld.code_spectral_envelope(sp, fs, self.mcep_dims) if self.mcep_dims else sp
        return Streams({"f0": f0, "envelope": envelope, "aperiodicity": coded_ap},
                       sample_rate=fs, meta={"fft_size": fft_size, "n_samples": len(x)})

    def decode(self, streams: Streams) -> Audio:
        pyworld = _pyworld()
        fs, fft_size = streams.sample_rate, streams.meta["fft_size"]
        f0 = np.ascontiguousarray(streams["f0"], dtype=np.float64)
        env = np.ascontiguousarray(streams["envelope"], dtype=np.float64)
        sp = pyworld.decode_spectral_envelope(env, fs, fft_size) if self.mcep_dims else env
        ap = pyworld.decode_aperiodicity(np.ascontiguousarray(streams["aperiodicity"]), fs, fft_size)
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
                 f0_floor=self.f0_floor, f0_ceil=self.f0_ceil, mcep_dims=self.mcep_dims)
        return d
