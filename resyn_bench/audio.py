"""Audio I/O, validation and resampling.

Everything in the harness handles audio as :class:`Audio` (mono float32 in [-1, 1] plus its
sample rate). Resampling is never silent: callers pass a :class:`ResampleLog` (or read the
return of :func:`ensure_rate`) so every conversion ends up in the run manifest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resyn_bench.errors import UserError

#: Shortest audio the harness will score. Pitch trackers need several analysis windows and
#: the 20 ms YAAPT frame plus padding; anything under 100 ms is not speech worth scoring.
MIN_DURATION_S = 0.1
#: Peak amplitude below which a signal counts as silent (about -90 dBFS; 16-bit LSB is 3e-5).
SILENCE_PEAK = 3.0e-5


class AudioError(UserError, ValueError):
    """A problem with one audio file or signal. ``kind`` is a short machine-readable code
    (``unreadable``, ``empty``, ``silent``, ``too_short``, ``non_finite``, ``missing``)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass
class Audio:
    samples: np.ndarray  # 1-D float32
    sample_rate: int
    #: the file these exact samples were read from (None once they are changed or resampled)
    path: Path | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def load_audio(path: str | Path) -> Audio:
    """Read a wav/flac/ogg file with soundfile; multichannel audio is averaged to mono.

    Raises :class:`AudioError` when the file is missing or cannot be decoded."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError("missing", f"no such file: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError("unreadable", f"cannot decode {path}: {exc}") from None
    samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), int(sr), path)


def write_audio(path: str | Path, audio: Audio) -> None:
    """Write 16-bit PCM wav atomically (temp file + rename): a killed run never leaves half a file.

    The file is encoded in memory and written with checked writes
    (:func:`resyn_bench.core.atomic.write_file_atomic`): a short write is completed, a failure
    removes the temporary file and raises (:class:`~resyn_bench.core.atomic.DiskFull` for a full disk)."""
    import io

    import soundfile as sf

    from resyn_bench.core.atomic import write_file_atomic

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio.samples, -1.0, 1.0), audio.sample_rate, subtype="PCM_16",
             format="WAV")
    write_file_atomic(path, buf.getvalue())


def header_duration(path: str | Path) -> float | None:
    """Duration in seconds from the file header alone (no decoding); None when unreadable."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return None
    if not info.samplerate or info.frames < 0:
        return None
    return info.frames / float(info.samplerate)


def validate(audio: Audio, *, what: str = "audio", min_duration: float = MIN_DURATION_S) -> Audio:
    """Check that a signal is scorable; raise :class:`AudioError` naming the reason if not."""
    x = audio.samples
    if x.ndim != 1:
        raise AudioError("unreadable", f"{what} must be 1-D mono, got shape {x.shape}")
    if x.size == 0:
        raise AudioError("empty", f"{what} has no samples")
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise AudioError("non_finite", f"{what} has {bad} NaN/inf samples")
    if audio.duration < min_duration:
        raise AudioError("too_short", f"{what} lasts {audio.duration * 1000:.1f} ms "
                                      f"(< {min_duration * 1000:.0f} ms)")
    peak = float(np.max(np.abs(x)))
    if peak < SILENCE_PEAK:
        raise AudioError("silent", f"{what} is silent (peak {peak:.2e})")
    return audio


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling with soxr ('HQ'); identity when the rates match."""
    if sr_in == sr_out:
        return samples
    import soxr

    return soxr.resample(np.asarray(samples, dtype=np.float32), sr_in, sr_out, quality="HQ")


@dataclass
class ResampleLog:
    """Counts every resampling the run did, by purpose and rate pair, for the run manifest."""

    counts: dict[str, int] = field(default_factory=dict)

    def note(self, purpose: str, sr_in: int, sr_out: int) -> None:
        key = f"{purpose}: {sr_in} Hz -> {sr_out} Hz"
        self.counts[key] = self.counts.get(key, 0) + 1

    def merge(self, other: dict[str, int]) -> None:
        for key, n in other.items():
            self.counts[key] = self.counts.get(key, 0) + n


def ensure_rate(audio: Audio, sample_rate: int | None, *, purpose: str,
                log: ResampleLog | None = None) -> Audio:
    """Return ``audio`` at ``sample_rate`` (None = keep), recording any conversion in ``log``."""
    if sample_rate is None or audio.sample_rate == sample_rate:
        return audio
    if log is not None:
        log.note(purpose, audio.sample_rate, sample_rate)
    return Audio(resample(audio.samples, audio.sample_rate, sample_rate), sample_rate)
