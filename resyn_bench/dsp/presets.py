"""The names of the F0 extractors: ONE table, read by every option that takes one.

``--f0-preset`` / ``-m f0.preset=`` (the F0 metrics), ``--f0-extractor`` / ``--set
f0_extractor=`` (vocoder training) and ``-o f0_extractor=`` (a checkpoint system's F0 input)
accept the same names - :func:`preset_names` - and an unknown name gets the same "did you mean"
error everywhere. The extraction itself is :mod:`resyn_bench.dsp.pitch`.

Two contexts read a name differently, and say so here rather than in their own tables:

* training and checkpoint systems need F0 every 5 ms (:data:`TRAINING_HOP_S`: one frame per
  80 samples at 16 kHz, the grid of units and F0 codes), so a preset with another hop
  (``yin-fairseq``) is refused there with the list of usable names;
* in training, ``harvest`` keeps the meaning it had before the table was shared, Harvest over
  60-400 Hz (:data:`TRAINING_MEANING`), so checkpoints trained with it get the same F0 inputs;
  the metrics' ``harvest`` searches 50-800 Hz. ``pyworld-harvest-60-400`` names the 60-400 Hz
  Harvest in both places.

This module imports nothing heavy (the CLI reads it to build its help).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from resyn_bench.core.suggest import did_you_mean


@dataclass(frozen=True)
class PitchPreset:
    """A pitch extractor plus every parameter that affects its output."""

    name: str
    extractor: str                 # "yaapt" | "harvest" | "dio" | "yin"
    params: dict[str, Any] = field(default_factory=dict)
    hop_s: float = 0.005           # nominal frame hop (yin: at 16 kHz)
    description: str = ""

    def __post_init__(self):
        # read-only view: a preset's parameters are part of every cache key and manifest
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "extractor": self.extractor, "params": dict(self.params),
                "hop_s": self.hop_s, "description": self.description}


#: WORLD's search range and hop of the vocoder training extractors (YAAPT's default range)
_WORLD_60_400 = {"f0_floor": 60.0, "f0_ceil": 400.0, "frame_period": 5.0}

PRESETS: dict[str, PitchPreset] = {p.name: p for p in (
    PitchPreset(
        name="yaapt", extractor="yaapt",
        params={"frame_length": 20.0, "frame_space": 5.0, "nccf_thresh1": 0.25,
                "tda_frame_length": 25.0,
                # pYAAPT defaults, stated so the manifest shows the search range:
                "f0_min": 60.0, "f0_max": 400.0,
                # zero padding: int(pad_window_ms/1000 * sr) // 2 samples on each side
                "pad_window_ms": 20.0},
        hop_s=0.005,
        description="pYAAPT (AMFM-decompy) as in speech-resynthesis get_yaapt_f0: 20 ms frames, "
                    "5 ms hop, nccf_thresh1=0.25, tda_frame_length=25 ms, 60-400 Hz, "
                    "zero-padded by int(0.020*sr)//2 samples each side; samp_values"),
    PitchPreset(
        name="harvest", extractor="harvest",
        params={"f0_floor": 50.0, "f0_ceil": 800.0, "frame_period": 5.0},
        hop_s=0.005,
        description="WORLD Harvest (pyworld), 50-800 Hz, 5 ms frame period"),
    PitchPreset(
        name="dio", extractor="dio",
        params={"f0_floor": 50.0, "f0_ceil": 800.0, "frame_period": 5.0},
        hop_s=0.005,
        description="dio+stonemask (pyworld WORLD), 50-800 Hz, 5 ms frame period"),
    PitchPreset(
        name="yin-fairseq", extractor="yin",
        params={"w_len": 512, "w_step": 256, "f0_min": 100.0, "f0_max": 500.0,
                "harmo_thresh": 0.1},
        hop_s=256 / 16000,
        description="YIN as in fairseq eval_f0 (compute_yin): 512/256-sample window/step, "
                    "100-500 Hz, CMND threshold 0.1, frame time = frame start / sr, no "
                    "interpolation; numpy-vectorised re-implementation"),
)}

#: The vocoder training extractors: WORLD searching YAAPT's 60-400 Hz range, 5 ms hop. Measured
#: on unsilenced VCTK: dio calls low-level noise voiced near the 60 Hz floor (p225: std 53 Hz vs
#: 20 Hz with YAAPT); prefer yaapt for statistics.
TRAINING_PRESETS: dict[str, PitchPreset] = {p.name: p for p in (
    PitchPreset("pyworld-dio-60-400", "dio", _WORLD_60_400, 0.005,
                "dio + stonemask (pyworld), 60-400 Hz, 5 ms"),
    PitchPreset("pyworld-harvest-60-400", "harvest", _WORLD_60_400, 0.005,
                "harvest (pyworld), 60-400 Hz, 5 ms"),
)}

#: other accepted names: alias -> preset name
ALIASES: dict[str, str] = {"pyworld": "pyworld-dio-60-400"}

#: THE names table: every accepted name -> its preset (metric presets, training presets, aliases)
NAMES: dict[str, PitchPreset] = {**PRESETS, **TRAINING_PRESETS}
NAMES.update({alias: NAMES[name] for alias, name in ALIASES.items()})

#: names that mean another preset in training and checkpoint systems (see the module doc)
TRAINING_MEANING: dict[str, str] = {"harvest": "pyworld-harvest-60-400"}

#: the F0 frame hop training and checkpoint systems need (seconds)
TRAINING_HOP_S = 0.005


def preset_names() -> list[str]:
    """Every accepted name: the metric presets, the training presets, then the aliases."""
    return list(NAMES)


def _unknown(name: object, valid: list[str], what: str = "pitch preset") -> KeyError:
    hint = did_you_mean(name, valid, parenthesised=True)
    return KeyError(f"unknown {what} {name!r}{hint}; valid presets: {', '.join(sorted(valid))}")


def get_preset(name: str | PitchPreset) -> PitchPreset:
    """Look a preset up by name or alias; unknown names raise ``KeyError`` with a suggestion."""
    if isinstance(name, PitchPreset):
        return name
    try:
        return NAMES[name]
    except (KeyError, TypeError):
        raise _unknown(name, preset_names()) from None


def training_names() -> list[str]:
    """The names training and checkpoint systems accept (a 5 ms hop)."""
    return [n for n in preset_names()
            if abs(get_preset(TRAINING_MEANING.get(n, n)).hop_s - TRAINING_HOP_S) < 1e-9]


def training_preset(name: str) -> PitchPreset:
    """The preset training / a checkpoint system uses for ``name``; ``KeyError`` (with a
    suggestion, or why a known name does not fit) otherwise."""
    if name not in preset_names():
        raise _unknown(name, training_names(), "F0 extractor")
    preset = get_preset(TRAINING_MEANING.get(name, name))
    if abs(preset.hop_s - TRAINING_HOP_S) >= 1e-9:
        raise KeyError(f"F0 extractor {name!r} gives a frame every {preset.hop_s * 1000:g} ms; "
                       f"training and checkpoint systems need one every "
                       f"{TRAINING_HOP_S * 1000:g} ms: use one of {', '.join(training_names())}")
    return preset


__all__ = ["ALIASES", "NAMES", "PRESETS", "TRAINING_PRESETS", "TRAINING_HOP_S", "TRAINING_MEANING", "PitchPreset",
           "get_preset", "preset_names", "training_names", "training_preset"]
