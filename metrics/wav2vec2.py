"""The paper's content measures: a wav2vec 2.0 CTC ASR backend and an acoustic phone recogniser.

``wav2vec2`` ASR backend (``-m asr.backend=wav2vec2``)
    Greedy CTC transcription with a Hugging Face ``Wav2Vec2ForCTC`` folder, run by the in-house
    model of :mod:`resyn_bench.nn.wav2vec2` (no ``transformers`` at run time).
    Options: ``model`` - a catalogue name (``wav2vec2-large-960h-lv60-self``, the default and
    the paper's ASR, or ``wav2vec2-base-960h``), the path of a local folder, or a fairseq
    fine-tuned CTC checkpoint file (``dict_path`` = its ``dict.ltr.txt``, default beside it;
    a full pickle, read only with ``trust_sha256`` = its sha256); ``device``
    (``cpu``, ``cuda``, ``cuda:1``; default cuda when available). The letters it emits are upper
    case with ``|`` between words; the transcript is lower-cased words, scored after the group's
    normaliser like any other backend. Its PER (``asr.per``) is phones of the *recognised
    words* (lexicon): a different quantity from ``phn.per`` below.

``phn`` metric group: ``phn.per`` "PER (phone CTC)"
    Phones recognised from the audio by ``facebook/wav2vec2-lv-60-espeak-cv-ft`` (espeak IPA
    vocabulary, greedy CTC) against espeak-ng phones of the reference text, as that model's
    tokenizer makes them: phonemizer's espeak backend, ``en-us``, no stress,
    ``language_switch="remove-flags"``, text lower-cased, one token per espeak phoneme (so
    ``aɪ``, ``tʃ``, ``iː`` are single symbols). Scored like every error rate here: (S + D + I)
    / N_ref phones per utterance, pooled from summed counts. Reference phones the model's
    vocabulary lacks cannot be recognised; their number is reported (``ref_oov_phones``).

Nothing is downloaded at run time: a catalogue model must be in the catalogue folder (``resyn-bench
fetch NAME``); otherwise the error names the URL of each missing file and where to put it. The
SHA-256 of the weight file is recorded with every number (computed once per file state; no hash
is documented for these Hugging Face files, so none is enforced).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.core.versions import package_version
from resyn_bench.distributed import resolve_device as _default_device
from resyn_bench.metrics.asr import ASRBackend, ModelMissingError, _as_16k_float
from resyn_bench.metrics.base import MetricError, MetricGroup, MetricSpec, Score

#: catalogue names of the Hugging Face CTC folders (weights entry; the other files are its
#: ``requires``)
CTC_MODELS = ("wav2vec2-large-960h-lv60-self", "wav2vec2-base-960h", "wav2vec2-lv-60-espeak-cv-ft")
DEFAULT_ASR_MODEL = "wav2vec2-large-960h-lv60-self"
DEFAULT_PHONE_MODEL = "wav2vec2-lv-60-espeak-cv-ft"


def resolve_ctc_folder(model: str | Path, what: str) -> tuple[Path, str]:
    """(folder, display name) of a catalogue name or a local folder; ModelMissingError naming
    every absent file's URL and target path."""
    from resyn_bench import catalogue

    p = Path(str(model)).expanduser()
    if p.is_dir():
        return p, f"dir:{p.name}"
    if p.is_file():  # a fairseq fine-tuned CTC checkpoint (dict.ltr.txt beside it)
        return p, f"file:{p.name}"
    try:
        name = catalogue.resolve_name(str(model))
    except catalogue.CatalogueError as exc:
        if "/" in str(model) or p.suffix:
            raise ModelMissingError(f"{what}: model folder not found: {p}", path=p) from None
        raise ModelMissingError(f"{what}: {exc}") from None
    entry = catalogue.get_entry(name)
    missing = [n for n in (name, *entry.requires) if not catalogue.is_present(n)]
    if missing:
        first = catalogue.get_entry(missing[0])
        lines = "; ".join(f"{catalogue.get_entry(n).url} -> {catalogue.catalogue_path(n)}"
                          for n in missing)
        raise ModelMissingError(
            f"{what} needs the Hugging Face folder {name!r}, and {len(missing)} of its files are "
            f"not on this machine (resyn-bench never downloads at run time). Run `resyn-bench "
            f"fetch {name}` (needs internet), or place by hand: {lines}",
            url=first.url, path=catalogue.catalogue_path(missing[0]))
    return catalogue.catalogue_path(name).parent, name


def _weights_file(folder: Path) -> Path | None:
    from resyn_bench.nn.wav2vec2 import WEIGHT_FILES

    if folder.is_file():
        return folder
    for n in WEIGHT_FILES:
        if (folder / n).is_file():
            return folder / n
    return None


_SHA: dict[tuple[str, int, int], str] = {}


def weights_sha256(folder: Path) -> str | None:
    """sha256 of the folder's weight file, computed once per (path, size, mtime)."""
    from resyn_bench.safeload import sha256_file

    w = _weights_file(folder)
    if w is None:
        return None
    st = w.stat()
    key = (str(w.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = sha256_file(w)
    return _SHA[key]



class _CTCHolder:
    """Lazily loaded recogniser of one folder (shared by the backend and the phone group)."""

    def __init__(self, model: str | Path, device: str | None, what: str,
                 trust_sha256: str | None = None, dict_path: str | None = None):
        self.model = str(model)
        self._device = device
        self.what = what
        self.trust_sha256 = trust_sha256
        self.dict_path = dict_path
        self.rec = None
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return _default_device(self._device)

    def folder(self) -> tuple[Path, str]:
        return resolve_ctc_folder(self.model, self.what)

    def describe(self) -> dict[str, Any]:
        try:
            folder, name = self.folder()
            sha = weights_sha256(folder)
            w = _weights_file(folder)
        except ModelMissingError:
            name, sha, w = self.model, None, None
        return {"model": name, "weights": w.name if w is not None else None,
                "weights_sha256": sha, "device": self.device,
                "implementation": "resyn-bench wav2vec2 (HuBERT transformer) + greedy CTC",
                "torch": package_version("torch")}

    def load(self):
        with self._lock:
            if self.rec is None:
                try:
                    import torch  # noqa: F401
                except ImportError as exc:
                    raise MetricError(f"{self.what} needs torch ({exc}); pip install "
                                      f"'resyn-bench[models]'") from None
                from resyn_bench.nn.wav2vec2 import load_wav2vec2_ctc

                folder, _ = self.folder()
                self.rec = load_wav2vec2_ctc(folder, device=self.device,
                                             trusted_sha256=self.trust_sha256 or (),
                                             dict_path=self.dict_path)
            return self.rec

    def release(self):
        with self._lock:
            self.rec = None


class Wav2Vec2Backend(ASRBackend):
    """Greedy-CTC word recognition with a wav2vec 2.0 letter model."""

    name = "wav2vec2"

    def __init__(self, model: str = DEFAULT_ASR_MODEL, device: str | None = None,
                 trust_sha256: str | None = None, dict_path: str | None = None):
        self._ctc = _CTCHolder(model, device, "the wav2vec2 ASR backend", trust_sha256,
                               dict_path)

    @property
    def device(self) -> str:
        return self._ctc.device

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, **self._ctc.describe(), "decoding": "greedy CTC",
                "input_normalisation": "zero mean, unit variance per utterance"}

    def load(self) -> None:
        rec = self._ctc.load()
        if rec.unit != "letters":
            self._ctc.release()
            raise ASRBackendUnitError(
                f"wav2vec2 ASR backend: {self._ctc.model!r} is a phone model (no '|' word "
                f"delimiter in its vocabulary); use it in the 'phn' metric group, and a letter "
                f"model ({DEFAULT_ASR_MODEL}, wav2vec2-base-960h) here")

    def release(self) -> None:
        self._ctc.release()

    def transcribe(self, samples_16k: np.ndarray) -> str:
        rec = self._ctc.rec or (self.load() or self._ctc.rec)
        return rec.transcribe(_as_16k_float(samples_16k)).lower()


class ASRBackendUnitError(ModelMissingError):
    """The folder holds a model of the wrong kind (phones where letters are needed)."""


# --------------------------------------------------------------------------------------------
# phone CTC PER

_PER_SPEC = MetricSpec(
    "phn.per", "PER (phone CTC)", higher_is_better=False, unit="%", percent=True,
    table_stat="pooled",
    description="Phone error rate of phones recognised from the output's audio by a wav2vec 2.0 "
                "phoneme CTC model (espeak IPA) against espeak-ng phones of the reference text; "
                "not the PER of phonemised ASR transcripts (asr.per)")


class EspeakIPA:
    """espeak-ng IPA phones of text, exactly as the espeak-cv-ft tokenizer phonemises it."""

    def __init__(self, language: str = "en-us"):
        self.language = language
        self._backend = None
        self._lock = threading.Lock()

    def _load(self):
        if self._backend is None:
            try:
                from phonemizer.backend import EspeakBackend
                from phonemizer.backend.espeak.wrapper import EspeakWrapper
            except ImportError as exc:
                raise MetricError(f"phn: phonemizer is not installed ({exc}); pip install "
                                  f"phonemizer espeakng-loader") from None
            try:
                import espeakng_loader
            except ImportError:
                espeakng_loader = None
            if espeakng_loader is not None:
                EspeakWrapper.set_library(espeakng_loader.get_library_path())
                EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
            import logging

            quiet = logging.getLogger("resyn_bench.phonemizer")
            quiet.setLevel(logging.ERROR)  # "words count mismatch": words are not separated
            self._backend = EspeakBackend(self.language, language_switch="remove-flags",
                                          logger=quiet)
        return self._backend

    def __call__(self, text: str) -> list[str]:
        from phonemizer.separator import Separator

        text = " ".join(str(text).lower().split())
        if not text:
            return []
        with self._lock:
            # strip=False (as the model's tokenizer): every phone keeps its trailing separator,
            # so the last phone of a word and the first of the next stay apart
            out = self._load().phonemize([text], separator=Separator(phone=" ", word="",
                                                                      syllable=""), strip=False)
        return out[0].split()

    def settings(self) -> dict[str, Any]:
        return {"g2p": f"phonemizer {package_version('phonemizer')} espeak {self.language} "
                       f"(espeakng-loader {package_version('espeakng-loader')})",
                "stress": False, "language_switch": "remove-flags", "lowercase": True}


class PhoneCTCMetrics(MetricGroup):
    """``phn.per``: PER of an acoustic phone recogniser (wav2vec 2.0 espeak phoneme CTC)."""

    name = "phn"
    sample_rate = 16000
    specs = (_PER_SPEC,)
    needs_text = True

    def __init__(self, model: str = DEFAULT_PHONE_MODEL, device: str | None = None,
                 language: str = "en-us"):
        self._ctc = _CTCHolder(model, device, "the phn metric group (phone CTC PER)")
        self.g2p = EspeakIPA(language)

    def settings(self) -> dict[str, Any]:
        return {"recognizer": {**self._ctc.describe(), "decoding": "greedy CTC"},
                "reference": self.g2p.settings(),
                "pooling": "sum of edits / sum of reference phones",
                "jiwer": package_version("jiwer")}

    def load(self) -> None:
        rec = self._ctc.load()
        if rec.unit != "phones":
            self._ctc.release()
            raise ASRBackendUnitError(
                f"phn: {self._ctc.model!r} is a letter (word) model; the phn group needs a "
                f"phone model such as {DEFAULT_PHONE_MODEL}")
        self.g2p("warm up")

    def release(self) -> None:
        self._ctc.release()

    def analyse_reference(self, audio) -> dict[str, np.ndarray]:
        return {}

    def score(self, reference, output, utterance) -> Score:
        from resyn_bench.metrics.intelligibility import edit_counts

        text = getattr(utterance, "text", None)
        if not text:
            raise MetricError("phn: needs the utterance transcript")
        rec = self._ctc.rec or self._ctc.load()
        hyp = rec.phones(_as_16k_float(self.samples_at_rate(output, "output")))
        ref = self.g2p(text)
        counts: dict[str, float] = dict(edit_counts(" ".join(ref), " ".join(hyp), "phone"))
        vocab = set(rec.vocab.tokens)
        oov = sorted({p for p in ref if p not in vocab})
        counts["ref_oov_phones"] = sum(p not in vocab for p in ref)
        value = (counts["phone_edits"] / counts["ref_phones"]) if counts["ref_phones"] else None
        extra = {"hyp_phones": " ".join(hyp), "ref_phones": " ".join(ref)}
        if oov:
            extra["ref_phones_not_in_vocab"] = oov
        return Score(values={"phn.per": value}, counts=counts, extra=extra)

    def pool(self, counts: dict[str, float]) -> dict[str, float | None]:
        n = counts.get("ref_phones")
        e = counts.get("phone_edits")
        return {"phn.per": (float(e) / float(n)) if (e is not None and n) else None}


__all__ = ["CTC_MODELS", "DEFAULT_ASR_MODEL", "DEFAULT_PHONE_MODEL", "EspeakIPA",
           "PhoneCTCMetrics", "Wav2Vec2Backend", "resolve_ctc_folder", "weights_sha256"]
