"""Intelligibility: word, character and phone error rates of an ASR system on the output.

Two modes:

``mode="text"`` (default; needs the utterance transcript, ``needs_text = True``)
    ``asr.wer``, ``asr.cer``, ``asr.per``: the recogniser's transcript of the output against
    the dataset's reference text. The reference side needs no audio analysis.

``mode="differential"`` (for data without text)
    ``asr.dwer``, ``asr.dcer``, ``asr.dper``: the output's transcript against the *same
    recogniser's* transcript of the reference recording (computed once per reference by
    ``analyse_reference`` and cached). It measures what resynthesis loses relative to the
    original, independent of the recogniser's own errors on the original; identical audio
    scores exactly 0.

Normalisation. Both sides go through the same normaliser before scoring: ``"whisper-en"``
(whisper's ``EnglishTextNormalizer``: lower case, contractions expanded, spelled numbers to
digits, British -> American spellings, fillers removed; brackets and parentheses become spaces
first, so spoken bracketed words are scored) when openai-whisper is installed,
else ``"basic"`` (lower case, punctuation -> space, apostrophes kept inside words). The one
used is recorded in ``settings()``.

Rates. Per utterance, with jiwer (``process_words`` / ``process_characters``)::

    WER = (S + D + I) / N_ref_words      CER: the same on characters of the normalised text
                                          (spaces between words count as characters)
    PER = (S + D + I) / N_ref_phones      jiwer process_words on space-separated ARPAbet

Corpus values (:meth:`IntelligibilityMetrics.pool`) are pooled from summed edit counts -
total edits / total reference units, exactly ``jiwer.wer(list_of_refs, list_of_hyps)`` - never
a mean of per-utterance rates (which over-weights short utterances).

Counts (group-local names; differential mode prefixes each with ``d``, e.g. ``dword_edits``):
``word_edits, ref_words, word_sub, word_del, word_ins``, the same for ``char`` and (with PER)
``phone``, plus ``oov_words`` / ``g2p_skipped_words`` (reference words missing from the
dictionary / left out for want of a G2P) and ``outliers`` (1 when the transcript has more
inserted words than the reference has words: a looping or hallucinating recogniser; the
utterance is still scored, and ``extra["outlier"]`` says why). ``Score.extra`` holds ``hyp``
and ``ref`` (normalised texts), ``recognizer`` (the recogniser's own statistics where it gives
them: Whisper's compression ratio, token count, cap, fallback temperature, ``loop_suspected``), ``hyp_raw`` (and ``ref_raw``, the reference recording's transcript, in differential
mode), ``hyp_phones`` / ``ref_phones`` (space-separated) and ``oov`` with PER.

Empty reference rule: when the normalised reference has no words (or characters / phones),
that utterance's rate is ``None`` (undefined, never 0 or infinity), but its counts are still
recorded honestly - every hypothesis unit is an insertion (``word_edits = word_ins`` = number
of hypothesis words, ``ref_words = 0``) - so the pooled WER charges those insertions, like
jiwer does on a list. A corpus whose references are all empty pools to ``None``.

Phones (``per=True``). The phone source is chosen by ``per_source``:

* ``"recognizer"`` (``"auto"`` with a backend that recognises phones, e.g. pocketsphinx's
  phone loop): the output's phones come from audio, not from its word transcript;
* ``"transcript"`` (``"auto"`` for whisper): phones of the recognised words, by the lexicon.

Reference phones in text mode come from the reference text through
:mod:`resyn_bench.metrics.phones` (cmudict, espeak-ng G2P for OOV words, reported in
``extra["oov"]``); in differential mode from the same source as the output's phones, applied
to the reference recording.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from resyn_bench.metrics.asr import NORMALIZER_RULES, ASRBackend, TextNormalizer, make_asr
from resyn_bench.metrics.base import MetricError, MetricGroup, MetricSpec, Score

MODES = ("text", "differential")
PER_SOURCES = ("auto", "recognizer", "transcript")


def _specs(mode: str, per: bool) -> tuple[MetricSpec, ...]:
    if mode == "text":
        specs = [
            MetricSpec("asr.wer", "WER", higher_is_better=False, unit="%", percent=True,
                       table_stat="pooled",
                       description="Word error rate of the ASR transcript of the output against "
                                   "the reference text (normalised), pooled over words"),
            MetricSpec("asr.cer", "CER", higher_is_better=False, unit="%", percent=True,
                       table_stat="pooled",
                       description="Character error rate of the ASR transcript against the "
                                   "reference text (normalised, spaces included)"),
        ]
        if per:
            specs.append(MetricSpec(
                "asr.per", "PER", higher_is_better=False, unit="%", percent=True,
                table_stat="pooled",
                description="Phone error rate: recognised ARPAbet phones of the output against "
                            "the reference text's dictionary phones"))
    else:
        specs = [
            MetricSpec("asr.dwer", "dWER", higher_is_better=False, unit="%", percent=True,
                       table_stat="pooled",
                       description="Differential WER: the output's ASR transcript against the "
                                   "same recogniser's transcript of the reference recording"),
            MetricSpec("asr.dcer", "dCER", higher_is_better=False, unit="%", percent=True,
                       table_stat="pooled",
                       description="Differential CER: characters of the output's transcript "
                                   "against the reference recording's transcript"),
        ]
        if per:
            specs.append(MetricSpec(
                "asr.dper", "dPER", higher_is_better=False, unit="%", percent=True,
                table_stat="pooled",
                description="Differential PER: phones recognised in the output against phones "
                            "recognised in the reference recording"))
    return tuple(specs)


def _prefix(mode: str) -> str:
    return "" if mode == "text" else "d"


def edit_counts(ref: str, hyp: str, unit: str) -> dict[str, int]:
    """jiwer counts for one pair: ``<unit>_edits, ref_<unit>s, <unit>_sub/_del/_ins``.

    ``unit`` is ``word``, ``char`` or ``phone`` (phones: space-separated symbols)."""
    import jiwer

    out = jiwer.process_characters(ref, hyp) if unit == "char" else jiwer.process_words(ref, hyp)
    s, d, i = int(out.substitutions), int(out.deletions), int(out.insertions)
    return {f"{unit}_edits": s + d + i, f"ref_{unit}s": int(out.hits) + s + d,
            f"{unit}_sub": s, f"{unit}_del": d, f"{unit}_ins": i}


def transcribe_detail(backend: ASRBackend, samples: np.ndarray) -> dict[str, Any]:
    """``{"text": ..., **statistics}`` from a backend with ``transcribe_detail`` (whisper:
    compression ratio, token count, loop flag), else ``{"text": backend.transcribe(...)}``."""
    fn = getattr(backend, "transcribe_detail", None)
    if fn is None:
        return {"text": backend.transcribe(samples)}
    return dict(fn(samples))


def _rate(edits: float | None, n: float | None) -> float | None:
    if edits is None or not n:
        return None
    return float(edits) / float(n)


class IntelligibilityMetrics(MetricGroup):
    """WER / CER / PER (text mode) or dWER / dCER / dPER (differential mode) of an ASR system."""

    name = "asr"
    sample_rate = 16000
    specs = _specs("text", True)
    needs_text = True

    @classmethod
    def option_names(cls, options: dict[str, Any]) -> list[str] | None:
        """The backend's own options (``-m asr.KEY``), for the registry's unknown-option check;
        None when they cannot be listed (the backend's constructor checks them then)."""
        import inspect

        from resyn_bench.metrics.asr import BACKENDS, default_backend

        backend = options.get("backend") or default_backend()
        factory = BACKENDS.get(backend) if isinstance(backend, str) else None
        if factory is None:
            return None
        listed = getattr(factory, "option_names", None)     # a factory that dispatches (whisper)
        if callable(listed):
            return list(listed())
        params = inspect.signature(factory).parameters.values()
        if any(p.kind == p.VAR_KEYWORD for p in params):
            return None
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def __init__(self, backend: str | ASRBackend | None = None, mode: str = "text",
                 per: bool = True, normalizer: str | None = None, per_source: str = "auto",
                 **backend_options: Any):
        if mode not in MODES:
            raise ValueError(f"asr: unknown mode {mode!r}; choose from {MODES}")
        if per_source not in PER_SOURCES:
            raise ValueError(f"asr: unknown per_source {per_source!r}; choose from {PER_SOURCES}")
        if isinstance(backend, ASRBackend):
            if backend_options:
                raise ValueError("asr: backend options cannot be combined with a backend instance")
            self.backend = backend
        else:
            self.backend = make_asr(backend, **backend_options)
        self.mode = mode
        self.per = bool(per)
        self.normalizer = TextNormalizer(normalizer)
        if per_source == "auto":
            per_source = "recognizer" if self.backend.supports_phones else "transcript"
        if per_source == "recognizer" and not self.backend.supports_phones:
            raise ValueError(f"asr: backend {self.backend.name!r} does not recognise phones; "
                             "use per_source='transcript'")
        self.per_source = per_source
        self.specs = _specs(mode, self.per)
        self.needs_text = mode == "text"
        self._p = _prefix(mode)
        self._lexicon = None
        self._versions: dict[str, str | None] | None = None
        self._phone_settings_cache: dict[str, Any] | None = None

    # -- settings --------------------------------------------------------------------------

    def _uses_lexicon(self) -> bool:
        return self.per and (self.mode == "text" or self.per_source == "transcript")

    def _phone_settings(self) -> dict[str, Any] | None:
        if not self.per:
            return None
        if self._phone_settings_cache is None:
            self._phone_settings_cache = self._describe_phones()
        return self._phone_settings_cache

    def _describe_phones(self) -> dict[str, Any]:
        from resyn_bench.metrics.phones import phone_source_settings

        hyp = ("recognizer: " + self.backend.name if self.per_source == "recognizer"
               else "lexicon of the recognised words")
        if self.mode == "text":
            ref = "lexicon of the reference text"
        else:
            ref = hyp + " (reference recording)"
        s: dict[str, Any] = {"output": hyp, "reference": ref, "source": self.per_source}
        if self._uses_lexicon():
            s.update(phone_source_settings())
        return s

    def versions(self) -> dict[str, str | None]:
        if self._versions is None:
            from resyn_bench.core.versions import package_versions

            self._versions = package_versions(("jiwer", "pocketsphinx", "openai-whisper",
                                               "faster-whisper", "ctranslate2",
                                               "phonemizer", "espeakng-loader"))
        return self._versions

    def settings(self) -> dict[str, Any]:
        return {"mode": self.mode, "backend": self.backend.settings(),
                "normalizer": self.normalizer.name,
                "normalizer_rules": NORMALIZER_RULES[self.normalizer.name], "per": self.per,
                "phones": self._phone_settings(),
                "cer_units": "characters of the normalised text, spaces included",
                "pooling": "sum of edits / sum of reference units",
                "outlier_rule": "flagged when word insertions exceed the reference word count "
                                "(a looping or hallucinating recogniser); still scored",
                "versions": self.versions()}

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def lexicon(self):
        if self._lexicon is None:
            from resyn_bench.metrics.phones import default_lexicon

            self._lexicon = default_lexicon()
        return self._lexicon

    def load(self) -> None:
        self.backend.load()
        self.normalizer("warm up")            # imports whisper's normaliser now, not mid-run
        if self._uses_lexicon():
            _ = self.lexicon.lexicon          # parse cmudict once

    def release(self) -> None:
        self.backend.release()

    # -- analysis ----------------------------------------------------------------------------

    def _phones_of(self, samples: np.ndarray, transcript: str) -> tuple[list[str], Any]:
        """(phones, lexicon conversion or None) for one side, by the configured source."""
        if self.per_source == "recognizer":
            return self.backend.phones(samples), None
        conv = self.lexicon.convert(transcript)
        return conv.phones, conv

    def analyse_reference(self, audio) -> dict[str, np.ndarray]:
        if self.mode == "text":
            return {}
        x = self.samples_at_rate(audio, "reference")
        text = self.backend.transcribe(x)
        out = {"transcript": np.array(text)}
        if self.per:
            phones, conv = self._phones_of(x, text)
            out["phones"] = np.array(" ".join(phones))
            if conv is not None:
                out["oov"] = np.array(" ".join(conv.oov_words))
                out["skipped"] = np.array(" ".join(conv.skipped))
        return out

    def score(self, reference: dict[str, np.ndarray], output, utterance) -> Score:
        x = self.samples_at_rate(output, "output")
        p = self._p
        if self.mode == "text":
            ref_raw = getattr(utterance, "text", None)
            if not ref_raw:
                raise MetricError("asr: text mode needs the utterance transcript")
        else:
            if "transcript" not in reference:
                raise MetricError("asr: the reference analysis has no transcript "
                                  "(analysed in another mode?)")
            ref_raw = str(reference["transcript"])
        detail = transcribe_detail(self.backend, x)
        hyp_raw = detail.pop("text")
        ref, hyp = self.normalizer(ref_raw), self.normalizer(hyp_raw)

        counts: dict[str, float] = {}
        counts.update(edit_counts(ref, hyp, "word"))
        counts.update(edit_counts(ref, hyp, "char"))
        extra: dict[str, Any] = {"hyp": hyp, "ref": ref, "hyp_raw": hyp_raw}
        if detail:
            extra["recognizer"] = detail   # loop statistics of the recogniser (whisper)
        outlier = counts["word_ins"] > counts["ref_words"]
        counts["outliers"] = int(outlier)
        if outlier:
            extra["outlier"] = (f"{counts['word_ins']} inserted words, more than the "
                                f"{counts['ref_words']} reference words")
        if self.mode == "differential":
            extra["ref_raw"] = ref_raw
        values = {f"asr.{p}wer": _rate(counts["word_edits"], counts["ref_words"]),
                  f"asr.{p}cer": _rate(counts["char_edits"], counts["ref_chars"])}

        if self.per:
            hyp_ph, hyp_conv = self._phones_of(x, hyp_raw)
            oov: list[str] = []
            skipped: list[str] = []
            if self.mode == "text":
                conv = self.lexicon.convert(ref_raw)
                ref_ph, oov, skipped = conv.phones, conv.oov_words, conv.skipped
            else:
                ref_ph = str(reference.get("phones", np.array(""))).split()
                if "oov" in reference:
                    oov = str(reference["oov"]).split()
                    skipped = str(reference.get("skipped", np.array(""))).split()
            ref_ps, hyp_ps = " ".join(ref_ph), " ".join(hyp_ph)
            counts.update(edit_counts(ref_ps, hyp_ps, "phone"))
            values[f"asr.{p}per"] = _rate(counts["phone_edits"], counts["ref_phones"])
            extra.update(hyp_phones=hyp_ps, ref_phones=ref_ps, oov=oov)
            if skipped:
                extra["g2p_skipped"] = skipped
            if hyp_conv is not None:
                extra["oov_hyp"] = hyp_conv.oov_words
                if hyp_conv.skipped:
                    extra["g2p_skipped_hyp"] = hyp_conv.skipped
            counts["oov_words"] = len(oov)
            counts["g2p_skipped_words"] = len(skipped)
        if p:
            counts = {p + k: v for k, v in counts.items()}
        return Score(values=values, counts=counts, extra=extra)

    # -- pooling -----------------------------------------------------------------------------

    def pool(self, counts: dict[str, float]) -> dict[str, float | None]:
        p = self._p
        out = {f"asr.{p}wer": _rate(counts.get(f"{p}word_edits"), counts.get(f"{p}ref_words")),
               f"asr.{p}cer": _rate(counts.get(f"{p}char_edits"), counts.get(f"{p}ref_chars"))}
        if self.per:
            out[f"asr.{p}per"] = _rate(counts.get(f"{p}phone_edits"), counts.get(f"{p}ref_phones"))
        return out


__all__ = ["IntelligibilityMetrics", "MODES", "PER_SOURCES", "edit_counts"]
