"""Which model produced each column: a note for table captions (LaTeX, Markdown, HTML), built
from the metric-group settings stored in each run's manifest (no model code imported).

    Models: PER, WER: whisper-base (faster-whisper, beam 5, int8; Whisper English normaliser,
    bracketed words kept; PER from the transcript's lexicon phones); EER: resemblyzer ...

A backend may put a ``"label"`` in its settings; otherwise the label is derived here from the
known settings layouts, falling back to the backend / model name.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["asr_label", "group_label", "models_note"]


def _beam(settings: dict[str, Any]) -> str:
    beam = settings.get("beam_size")
    return "greedy" if beam in (None, 1) else f"beam {beam}"


def asr_label(group_settings: dict[str, Any], key: str = "asr.wer") -> str | None:
    """The recogniser behind an asr column, from the asr group's settings: for WER/CER
    ``whisper-base (faster-whisper, beam 5, int8), Whisper English normaliser, bracketed words
    kept``; for PER also where the phones come from."""
    b = group_settings.get("backend")
    if not isinstance(b, dict) or not b:
        return None
    name = b.get("backend")
    if b.get("label"):
        text = str(b["label"])
    elif b.get("loader") == "faster-whisper":
        text = (f"{b.get('model', 'whisper')} (faster-whisper, {_beam(b)}"
                f"{', ' + b['compute_type'] if b.get('compute_type') else ''})")
    elif name in ("openai-whisper", "whisper"):
        model = str(b.get("model", "?"))
        text = f"whisper {model.removeprefix('file:')} (openai-whisper, {_beam(b)})"
    elif name == "pocketsphinx":
        text = "pocketsphinx en-us (weak: for relative comparisons only)"
    else:
        text = str(b.get("model") or name or "?")
        if b.get("decoding"):
            text += f" ({b['decoding']})"          # e.g. wav2vec2 ... (greedy CTC)
    if key.endswith("per"):
        phones = group_settings.get("phones")
        src = str(phones.get("output", "")) if isinstance(phones, dict) else ""
        if src.startswith("lexicon"):
            return f"dictionary phones of the {text} transcript (not phones recognised from audio)"
        return f"phones recognised by {text}" if src else text
    normaliser = group_settings.get("normalizer")
    if normaliser == "whisper-en":
        text += ", Whisper English normaliser, bracketed words kept"
    elif normaliser:
        text += f", {normaliser} normaliser"
    return text


def group_label(group: str, settings: dict[str, Any], key: str = "") -> str | None:
    """The model behind a metric column ``key`` of ``group``, or None when the settings do not
    say (runs written before settings were stored) or the group uses no model."""
    if not isinstance(settings, dict) or not settings:
        return None
    if settings.get("label"):
        return str(settings["label"])
    if group == "asr":
        return asr_label(settings, key or "asr.wer")
    if group == "spk":
        enc = settings.get("encoder") if isinstance(settings.get("encoder"), dict) else {}
        name = enc.get("label") or settings.get("backend") or enc.get("backend")
        return f"{name} speaker embeddings" if name else None
    if group == "dnsmos":
        model = str(settings.get("model") or "")
        return "DNSMOS (speechmos)" if "DNSMOS" in model else (model or None)
    model = settings.get("model")
    return str(model) if isinstance(model, str) and model else None


def models_note(summaries: Sequence[Any], columns: Sequence[Any]) -> str:
    """``Models: <columns>: <model>; ...`` for the metric columns shown, from the runs' stored
    settings (bookkeeping columns left out). ``columns``: specs, or (label, spec) pairs when
    the table relabels them. Columns with the same model share an entry; runs that disagree
    are named."""
    entries: dict[str, list[str]] = {}
    for col in columns:
        label, spec = col if isinstance(col, tuple) else (getattr(col, "label", None), col)
        if spec is None or getattr(spec, "bookkeeping", False) or "." not in spec.key:
            continue
        group = spec.key.split(".", 1)[0]
        per_label: dict[str, list[str]] = {}
        for s in summaries:
            if spec.key not in getattr(s, "metrics", {}):
                continue
            text = group_label(group, (getattr(s, "settings", {}) or {}).get(group, {}), spec.key)
            if text:
                who = getattr(s, "system_label", None) or getattr(s, "system", "?")
                names = per_label.setdefault(text, [])
                if who not in names:
                    names.append(who)
        if not per_label:
            continue
        if len(per_label) == 1:
            text = next(iter(per_label))
        else:
            text = " / ".join(f"{t} for {', '.join(w)}" for t, w in per_label.items())
        names = entries.setdefault(text, [])
        if label not in names:
            names.append(str(label or spec.label))
    parts = [f"{', '.join(cols)}: {text}" for text, cols in entries.items()]
    return f"Models: {'; '.join(parts)}." if parts else ""
