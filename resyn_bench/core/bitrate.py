"""The bitrate of what a unit system transmits: the one formula every part of the project uses
(the reports' bitrate column, ``resyn-bench ls systems``, the unit encoders' ``describe()``, the
codec study's "raw" rate, :mod:`resyn_bench.metrics.bitrate`).

The paper's definition (Polyak et al. 2021, Sec. 4 and Fig. 2): each discrete stream is sent
with a fixed-length code, so a stream of ``K`` symbols at ``f`` frames per second costs

    ``f x ceil(log2 K)``  bits per second (K = 1 carries 0 bits),

and a system's bitrate is the sum over its frame-rate discrete streams: the content units plus
the F0 codes. The speaker identity is sent once per utterance, not per frame, and is *not*
counted (the paper: "unit bitrate + F0 bitrate, speaker embedding not counted"); nor are
continuous streams or waveforms (no fixed-length code: no bitrate by this formula).

Checked against the rates the paper states: HuBERT K=100 at 50 Hz -> 50 x 7 = 350 bps; CPC
K=100 at 100 Hz -> 700 bps; VQ-VAE K=256 at 100 Hz -> 800 bps; HuBERT K=50 at 50 Hz -> 300
bps. The F0 codes (K'=20 at 12.5 Hz: one code per 1280 samples at 16 kHz) give 12.5 x 5 =
62.5 bps, where the paper states 65 bps (so its "HuBERT-50 + F0 = 365 bps" is 362.5 here).

Units: frame rates in Hz (frames per second), vocabulary sizes in symbols, results in bits per
second. Standard library only.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["F0_CODE_RATE", "F0_CODE_VOCAB", "bits_per_symbol", "stream_bps", "bitrate_bps"]

#: the paper's F0 code stream: 16000 / 1280 = 12.5 codes per second, codebook K' = 20
F0_CODE_RATE = 12.5
F0_CODE_VOCAB = 20


def bits_per_symbol(vocab_size: int) -> int:
    """``ceil(log2 K)``: bits of a fixed-length code for K symbols (K = 1 carries 0 bits)."""
    if isinstance(vocab_size, bool) or int(vocab_size) != vocab_size or vocab_size < 1:
        raise ValueError(f"vocabulary size must be a whole number >= 1, got {vocab_size!r}")
    return math.ceil(math.log2(int(vocab_size)))


def stream_bps(frame_rate: float, vocab_size: int) -> float:
    """One discrete stream: ``frame_rate x ceil(log2 vocab_size)`` bits per second."""
    if not (isinstance(frame_rate, (int, float)) and math.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame rate must be a positive number of frames per second, got "
                         f"{frame_rate!r}")
    return float(frame_rate) * bits_per_symbol(vocab_size)


def _field(stream: Any, key: str) -> Any:
    return stream.get(key) if isinstance(stream, Mapping) else getattr(stream, key, None)


def bitrate_bps(streams: Iterable[Any] | None) -> float | None:
    """A system's bitrate from its stream specs (``StreamSpec`` objects, or their dicts as a run
    manifest stores them under ``system.streams``): :func:`stream_bps` summed over every
    ``discrete`` stream with a frame rate and a vocabulary. Speaker streams (one identity per
    utterance), continuous streams and waveforms are not counted; with no countable stream
    the system has no bitrate by this formula (None)."""
    total, counted = 0.0, False
    for s in streams or []:
        if _field(s, "kind") != "discrete":
            continue
        rate, vocab = _field(s, "frame_rate"), _field(s, "vocab_size")
        if not rate or not vocab or vocab < 1:
            continue
        total += stream_bps(rate, vocab)
        counted = True
    return total if counted else None
