"""Speech recognisers for the intelligibility metrics, behind one small interface.

``make_asr(name, **options)`` builds a backend; construction is cheap (no model is loaded
before :meth:`ASRBackend.load`). Every backend takes mono float32 samples at 16 kHz.

Backends
--------
``whisper`` (default when faster-whisper is installed, i.e. with the ``asr`` extra)
    OpenAI's Whisper on faster-whisper (CTranslate2). ``model``: ``base`` (default; embedded,
    assembled from two pinned wheels and sha256-checked, see
    :mod:`resyn_bench.metrics.whisper_models`), ``small`` / ``large-v3`` / ``distil-large-v3``
    (catalogued: ``resyn-bench fetch whisper-<name>``), or a local CTranslate2 folder. A
    ``.pt`` file (or one of openai-whisper's names that is not a CTranslate2 name, e.g.
    ``base.en``) is loaded by openai-whisper instead (``openai-whisper`` below).

    Protocol (recorded in settings()): English, transcribe, temperature 0, beam
    ``beam_size=5``, no conditioning on previous text, no VAD, no timestamps, each utterance
    decoded on its own. ``compute_type="auto"`` is int8 on CPU (its ground-truth WER is within
    0.3 points of float32 on the shared VCTK and LJSpeech subsets; docs/metrics.md "asr") and float16 on
    CUDA; ``device="auto"``; ``cpu_threads`` (0 = CTranslate2's default; not part of the
    result).

    Loop guard (``guard=``), chosen by measurement on real and degraded audio (docs/metrics.md "asr"):
    ``"length+fallback"`` (default): faster-whisper's temperature fallback, triggered only by a
    transcript whose zlib compression ratio exceeds 2.4 (Whisper's loop statistic; never
    reached on the ground truth, WORLD or codec-like outputs measured, max 1.53), re-decoded
    at temperatures 0.2 ... 1.0 with a fixed ``seed`` (reproducible), plus a hard cap on the
    decoded tokens of ``ceil(max_tokens_per_s x duration) + max_tokens_margin`` (8 tokens/s
    + 8; read speech measured at most 4.75 tokens/s; loops ran at 8-33). ``"length"``: the cap
    alone (deterministic, temperature 0 throughout); ``"fallback"``: the fallback alone;
    ``"none"``. Every transcript's compression ratio and token count are returned by
    :meth:`FasterWhisperBackend.transcribe_detail`, with ``loop_suspected`` when the cap was
    reached or the final ratio still exceeds 2.4, and ``temperature`` when a fallback was used.

``pocketsphinx`` (the fallback: default only without faster-whisper; fully offline, CPU)
    Word decoding with the US-English model, LM and dictionary shipped in the pocketsphinx
    wheel (``Decoder(samprate=16000)``), phone recognition with the shipped phone LM
    (``allphone=en-us/en-us-phone.lm.bin``, ``lw=2.0, pip=0.3, beam=1e-200, pbeam=1e-20``, the
    values of pocketsphinx's own phoneme test). Whole utterances are decoded in one
    ``process_raw(..., full_utt=True)`` call, which makes pocketsphinx normalise cepstra over
    the whole utterance, so a result does not depend on what was decoded before. Accuracy on
    synthetic or degraded speech is low: use it for relative comparisons (and the
    differential mode), not as an absolute intelligibility figure.

    Options: ``word_options`` / ``phone_options`` (dicts of extra ``Decoder`` settings, e.g.
    ``{"lw": 7.0}``; they replace the defaults above and are recorded in settings()).

``openai-whisper`` (also ``whisper`` with a ``.pt`` model)
    Options: ``model`` (a name such as ``"base.en"``, or the path of a local ``.pt``
    checkpoint holding ``dims`` and ``model_state_dict``), ``download_root`` (default
    ``$RESYN_BENCH_HOME/models/whisper``), ``language="en"``, ``device`` (default: cuda when
    available, else cpu), ``fp16`` (default: True on cuda only), ``beam_size`` (None = greedy),
    ``sample_len`` (maximum tokens decoded per 30 s window; None = whisper's default of
    n_text_ctx // 2 = 224; tests cap it for random models that never emit end-of-text).

    Decoding is deterministic: temperature 0 only (no temperature fallback),
    ``condition_on_previous_text=False``, fixed language. Audio is passed as a numpy array, so
    no ffmpeg is needed.

    **Nothing is ever downloaded.** A named model must already be at
    ``<download_root>/<name>.pt``; otherwise :class:`ModelMissingError` names the URL to fetch
    it from and the exact file to put it at. Its SHA-256 (from the URL) is checked before
    whisper's loader sees the file (a mismatching file would make whisper re-download).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.core.hashing import sha256_file, sha256_file_cached
from resyn_bench.core.versions import package_version
from resyn_bench.metrics.base import MetricError

SAMPLE_RATE = 16000


class ASRError(MetricError):
    """A recogniser could not be set up or run."""


class ModelMissingError(ASRError):
    """Model weights are not on this machine (and the suite never downloads)."""

    def __init__(self, message: str, url: str | None = None, path: str | Path | None = None):
        super().__init__(message)
        self.url = url
        self.path = Path(path) if path is not None else None


def _as_16k_float(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ASRError(f"ASR input must be 1-D mono, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ASRError("ASR input contains NaN/inf samples")
    return np.ascontiguousarray(x)


class ASRBackend:
    """One recogniser. ``load()`` before ``transcribe``/``phones``; ``release()`` frees it."""

    name: str = ""
    sample_rate: int = SAMPLE_RATE
    #: True when :meth:`phones` is implemented (phone recognition from audio)
    supports_phones: bool = False

    def settings(self) -> dict[str, Any]:
        """JSON-able settings that determine the output (part of the metric cache key)."""
        raise NotImplementedError

    def load(self) -> None:
        """Load models (idempotent)."""

    def release(self) -> None:
        """Free models."""

    def transcribe(self, samples_16k: np.ndarray) -> str:
        """Words recognised in 16 kHz mono float audio."""
        raise NotImplementedError

    def phones(self, samples_16k: np.ndarray) -> list[str]:
        """ARPAbet phones recognised in the audio (fillers and silence removed)."""
        raise NotImplementedError(f"ASR backend {self.name!r} does not recognise phones")


# --------------------------------------------------------------------------------------------
# pocketsphinx
# --------------------------------------------------------------------------------------------

#: phone-loop decoding parameters from pocketsphinx's cython/test/phoneme_test.py
PHONE_DECODER_DEFAULTS: dict[str, Any] = {"lw": 2.0, "pip": 0.3, "beam": 1e-200, "pbeam": 1e-20}
PHONE_LM_SUBPATH = "en-us/en-us-phone.lm.bin"


def _is_filler(token: str) -> bool:
    """Silence, sentence markers and noise/filler tokens (<s>, </s>, <sil>, SIL, +NSN+, [NOISE])."""
    t = token.strip()
    return (not t or t.upper() == "SIL" or t[0] in "<[+" or t[-1] in ">]+")


def _strip_alternate(token: str) -> str:
    """``on(2)`` -> ``on`` (pocketsphinx marks alternate pronunciations in segments)."""
    if token.endswith(")") and "(" in token:
        return token[:token.index("(")]
    return token


class PocketsphinxBackend(ASRBackend):
    name = "pocketsphinx"
    supports_phones = True

    def __init__(self, word_options: dict[str, Any] | None = None,
                 phone_options: dict[str, Any] | None = None):
        self.word_options = dict(word_options or {})
        self.phone_options = {**PHONE_DECODER_DEFAULTS, **(phone_options or {})}
        self._words = None
        self._phones = None
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "pocketsphinx": package_version("pocketsphinx"),
                "acoustic_model": "en-us (pocketsphinx wheel)",
                "word_decoder": {"lm": "en-us/en-us.lm.bin", "dict": "en-us/cmudict-en-us.dict",
                                 **self.word_options},
                "phone_decoder": {"allphone": PHONE_LM_SUBPATH, **self.phone_options},
                "samprate": self.sample_rate, "full_utt": True}

    def _decoder(self, kind: str):
        from pocketsphinx import Decoder, get_model_path

        if kind == "words":
            return Decoder(samprate=self.sample_rate, **self.word_options)
        return Decoder(samprate=self.sample_rate, allphone=get_model_path(PHONE_LM_SUBPATH),
                       **self.phone_options)

    def load(self) -> None:
        try:
            import pocketsphinx  # noqa: F401
        except ImportError as exc:
            raise ASRError(f"pocketsphinx is not installed ({exc}); "
                           "pip install pocketsphinx") from None
        with self._lock:
            if self._words is None:
                self._words = self._decoder("words")
            if self._phones is None:
                self._phones = self._decoder("phones")

    def release(self) -> None:
        with self._lock:
            self._words = None
            self._phones = None

    @staticmethod
    def _pcm(samples_16k: np.ndarray) -> bytes:
        x = _as_16k_float(samples_16k)
        return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()

    def _run(self, decoder, samples_16k: np.ndarray):
        # pocketsphinx carries its cepstral-mean estimate from one utterance to the next, so a
        # result would depend on what was decoded before (measured: the same audio gave
        # different phones after a different utterance). Start every utterance from the
        # decoder's initial state (reinit_feat): results depend on the audio alone.
        decoder.reinit_feat()
        decoder.start_utt()
        decoder.process_raw(self._pcm(samples_16k), no_search=False, full_utt=True)
        decoder.end_utt()

    def transcribe(self, samples_16k: np.ndarray) -> str:
        if self._words is None:
            self.load()
        with self._lock:
            self._run(self._words, samples_16k)
            hyp = self._words.hyp()
            text = hyp.hypstr if hyp is not None else ""
        return " ".join(_strip_alternate(w) for w in text.split() if not _is_filler(w))

    def phones(self, samples_16k: np.ndarray) -> list[str]:
        if self._phones is None:
            self.load()
        with self._lock:
            self._run(self._phones, samples_16k)
            words = [seg.word for seg in self._phones.seg()]
        return [_strip_alternate(w).upper() for w in words if not _is_filler(w)]


# --------------------------------------------------------------------------------------------
# whisper
# --------------------------------------------------------------------------------------------

def default_whisper_root() -> Path:
    from resyn_bench.paths import resyn_bench_home

    return resyn_bench_home() / "models" / "whisper"


#: (re-exported under the names this module always had)
file_sha256 = sha256_file
_cached_sha256 = sha256_file_cached


class OpenAIWhisperBackend(ASRBackend):
    """openai-whisper on a ``.pt`` checkpoint (the second loader of the ``whisper`` backend)."""

    name = "openai-whisper"

    def __init__(self, model: str = "base.en", download_root: str | Path | None = None,
                 language: str = "en", device: str | None = None, fp16: bool | None = None,
                 beam_size: int | None = None, sample_len: int | None = None):
        self.model_name = str(model)
        self.download_root = (Path(download_root).expanduser() if download_root is not None
                              else default_whisper_root())
        self.language = language
        self._device = device
        self._fp16 = fp16
        self.beam_size = beam_size
        self.sample_len = sample_len
        self._model = None
        self._lock = threading.Lock()

    # -- resolution of the checkpoint (no network) --

    def _is_path(self) -> bool:
        return (os.path.isfile(os.path.expanduser(self.model_name))
                or self.model_name.endswith(".pt") or os.sep in self.model_name)

    @staticmethod
    def _urls() -> dict[str, str]:
        import whisper

        return dict(whisper._MODELS)

    def _named_target(self) -> tuple[str, Path, str]:
        """(url, local file, expected sha256) of a named model."""
        urls = self._urls()
        if self.model_name not in urls:
            raise ModelMissingError(
                f"whisper model {self.model_name!r} is neither a local checkpoint file nor a "
                f"known model name ({', '.join(urls)})")
        url = urls[self.model_name]
        return url, self.download_root / os.path.basename(url), url.split("/")[-2]

    def checkpoint(self) -> Path:
        """The local checkpoint file to load; :class:`ModelMissingError` if it is not here."""
        if self._is_path():
            path = Path(self.model_name).expanduser()
            if not path.is_file():
                raise ModelMissingError(f"whisper checkpoint not found: {path}", path=path)
            return path
        url, target, expected = self._named_target()
        if not target.is_file():
            raise ModelMissingError(
                f"whisper model {self.model_name!r} is not on this machine and resyn-bench "
                f"never downloads weights. Download {url} and save it as {target} (the "
                f"SHA-256 must be {expected}), or pass model=<path to a .pt checkpoint>.",
                url=url, path=target)
        actual = _cached_sha256(target)
        if actual != expected:
            raise ModelMissingError(
                f"{target} has SHA-256 {actual}, expected {expected} for whisper model "
                f"{self.model_name!r}; replace it with the file from {url}", url=url,
                path=target)
        return target

    # -- interface --

    @property
    def device(self) -> str:
        from resyn_bench.distributed import resolve_device

        return resolve_device(self._device)

    @property
    def fp16(self) -> bool:
        return bool(self._fp16) if self._fp16 is not None else self.device.startswith("cuda")

    def decode_options(self) -> dict[str, Any]:
        return {"temperature": 0.0, "condition_on_previous_text": False,
                "language": self.language, "fp16": self.fp16, "beam_size": self.beam_size,
                "sample_len": self.sample_len, "compression_ratio_threshold": 2.4,
                "logprob_threshold": -1.0, "no_speech_threshold": 0.6}

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {"backend": self.name, "loader": "openai-whisper",
                             "whisper": package_version("openai-whisper")}
        if self._is_path():
            path = Path(self.model_name).expanduser()
            s["model"] = f"file:{path.name}"
            s["checkpoint_sha256"] = _cached_sha256(path) if path.is_file() else None
        else:
            s["model"] = self.model_name
            try:
                s["checkpoint_sha256"] = self._named_target()[2]
            except (ModelMissingError, ImportError):
                s["checkpoint_sha256"] = None
        s["device"] = self.device
        s.update(self.decode_options())
        return s

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                import whisper
            except ImportError as exc:
                raise ASRError(f"openai-whisper is not installed ({exc}); "
                               "pip install openai-whisper") from None
            path = self.checkpoint()
            if self._is_path():
                self._model = whisper.load_model(str(path), device=self.device)
            else:
                # The file is there with the right hash: whisper's loader verifies it offline.
                self._model = whisper.load_model(self.model_name, device=self.device,
                                                 download_root=str(self.download_root))
            self._model.eval()

    def release(self) -> None:
        with self._lock:
            self._model = None

    def transcribe(self, samples_16k: np.ndarray) -> str:
        if self._model is None:
            self.load()
        import whisper

        x = _as_16k_float(samples_16k)
        with self._lock:
            result = whisper.transcribe(self._model, x, verbose=None, **self.decode_options())
        return str(result.get("text", "")).strip()


# --------------------------------------------------------------------------------------------
# whisper on faster-whisper (CTranslate2): the default
# --------------------------------------------------------------------------------------------

#: loop guards (see FasterWhisperBackend); measured on real and degraded audio, docs/metrics.md "asr"
GUARDS = ("length", "fallback", "length+fallback", "none")
#: temperatures of faster-whisper's fallback (openai-whisper's schedule)
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: compute types by device when compute_type="auto" (chosen by measurement: docs/metrics.md "asr")
AUTO_COMPUTE_TYPE = {"cpu": "int8", "cuda": "float16"}


def compression_ratio(text: str) -> float:
    """zlib compression ratio of the text (Whisper's loop statistic: >2.4 means repetitive)."""
    import zlib

    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


class FasterWhisperBackend(ASRBackend):
    """Whisper on faster-whisper (CTranslate2). See the module docstring for the protocol."""

    name = "whisper"

    def __init__(self, model: str = "base", device: str = "auto", compute_type: str = "auto",
                 beam_size: int = 5, language: str = "en", guard: str = "length+fallback",
                 max_tokens_per_s: float = 8.0, max_tokens_margin: int = 8,
                 compression_ratio_threshold: float = 2.4, cpu_threads: int = 0, seed: int = 0):
        if guard not in GUARDS:
            raise ValueError(f"unknown guard {guard!r}; choose from {GUARDS}")
        if int(beam_size) < 1:
            raise ValueError(f"beam_size must be >= 1 (1 = greedy), got {beam_size}")
        self.model_name = str(model)
        self._device = str(device)
        self._compute_type = str(compute_type)
        self.beam_size = int(beam_size)
        self.language = language
        self.guard = guard
        self.max_tokens_per_s = float(max_tokens_per_s)
        self.max_tokens_margin = int(max_tokens_margin)
        self.compression_ratio_threshold = float(compression_ratio_threshold)
        self.cpu_threads = int(cpu_threads)
        self.seed = int(seed)
        self._model = None
        self._folder: Path | None = None
        self._sha256: str | None = None
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        if self._device != "auto":
            return self._device
        try:
            import ctranslate2

            return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        except Exception:
            return "cpu"

    @property
    def compute_type(self) -> str:
        if self._compute_type != "auto":
            return self._compute_type
        return AUTO_COMPUTE_TYPE.get(self.device.split(":")[0], "float32")

    def _uses_cap(self) -> bool:
        return self.guard in ("length", "length+fallback")

    def _uses_fallback(self) -> bool:
        return self.guard in ("fallback", "length+fallback")

    def protocol(self) -> dict[str, Any]:
        """The decoding protocol, as recorded with every number."""
        guard: dict[str, Any] = {"kind": self.guard}
        if self._uses_cap():
            guard["max_new_tokens"] = (f"ceil({self.max_tokens_per_s:g} x duration_s) + "
                                       f"{self.max_tokens_margin}")
        if self._uses_fallback():
            guard.update(temperatures=list(FALLBACK_TEMPERATURES),
                         compression_ratio_threshold=self.compression_ratio_threshold,
                         trigger="compression ratio only (no log-prob or no-speech trigger)",
                         seed=self.seed)
        guard["flag"] = (f"compression ratio > {self.compression_ratio_threshold:g} or the "
                         "token cap reached")
        return {"language": self.language, "task": "transcribe", "temperature": 0.0,
                "beam_size": self.beam_size, "condition_on_previous_text": False,
                "vad_filter": False, "without_timestamps": True, "guard": guard}

    def settings(self) -> dict[str, Any]:
        from resyn_bench.metrics.whisper_models import describe_model

        s: dict[str, Any] = {"backend": self.name, "loader": "faster-whisper",
                             "faster_whisper": package_version("faster-whisper"),
                             "ctranslate2": package_version("ctranslate2")}
        s.update(describe_model(self.model_name))
        if self._sha256 is not None:
            s["model_sha256"] = self._sha256
        s.update(device=self.device, compute_type=self.compute_type, **self.protocol())
        return s

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ASRError(f"faster-whisper is not installed ({exc}); pip install "
                               "'resyn-bench[asr]', or use -m asr.backend=pocketsphinx") from None
            from resyn_bench.catalogue import CatalogueError
            from resyn_bench.metrics.whisper_models import WhisperModelError, ensure_model

            try:
                folder, digest = ensure_model(self.model_name)
            except CatalogueError as exc:
                raise ModelMissingError(str(exc)) from None
            except WhisperModelError as exc:
                raise ModelMissingError(str(exc), path=embedded_or_none(self.model_name)) from None
            import logging

            # faster-whisper logs every utterance's duration at INFO: keep the progress bar clean
            logging.getLogger("faster_whisper").setLevel(logging.WARNING)
            try:
                self._model = WhisperModel(str(folder), device=self.device,
                                           compute_type=self.compute_type,
                                           cpu_threads=self.cpu_threads, local_files_only=True)
            except Exception as exc:
                raise ASRError(f"faster-whisper could not load {folder} "
                               f"({type(exc).__name__}: {exc})") from None
            self._folder, self._sha256 = folder, digest

    def release(self) -> None:
        with self._lock:
            self._model = None

    def max_new_tokens(self, n_samples: int) -> int | None:
        if not self._uses_cap():
            return None
        import math

        cap = math.ceil(self.max_tokens_per_s * n_samples / SAMPLE_RATE) + self.max_tokens_margin
        return max(1, min(cap, 440))      # Whisper's decoder holds 448 positions, prompt included

    def transcribe_detail(self, samples_16k: np.ndarray) -> dict[str, Any]:
        """The transcript and the loop statistics of one utterance."""
        if self._model is None:
            self.load()
        x = _as_16k_float(samples_16k)
        cap = self.max_new_tokens(len(x))
        fallback = self._uses_fallback()
        options: dict[str, Any] = dict(
            language=self.language, task="transcribe", beam_size=self.beam_size,
            best_of=5, condition_on_previous_text=False, vad_filter=False,
            without_timestamps=True, max_new_tokens=cap,
            temperature=list(FALLBACK_TEMPERATURES) if fallback else 0.0,
            compression_ratio_threshold=self.compression_ratio_threshold if fallback else None,
            log_prob_threshold=None, no_speech_threshold=None)
        with self._lock:
            if fallback:
                import ctranslate2

                ctranslate2.set_random_seed(self.seed)   # sampled fallbacks are reproducible
            segments, _ = self._model.transcribe(x, **options)
            segments = list(segments)
        text = " ".join(seg.text.strip() for seg in segments).strip()
        n_tokens = sum(len(seg.tokens) for seg in segments)
        ratio = compression_ratio(text)
        temps = sorted({float(seg.temperature) for seg in segments if seg.temperature is not None})
        capped = cap is not None and any(len(seg.tokens) >= cap for seg in segments)
        detail: dict[str, Any] = {"text": text, "n_tokens": n_tokens,
                                  "compression_ratio": round(ratio, 3)}
        if cap is not None:
            detail["max_new_tokens"] = cap
        if temps and temps != [0.0]:
            detail["temperature"] = temps[-1]
        if capped or ratio > self.compression_ratio_threshold:
            detail["loop_suspected"] = ("token cap reached" if capped else
                                        f"compression ratio {ratio:.2f} > "
                                        f"{self.compression_ratio_threshold:g}")
        return detail

    def transcribe(self, samples_16k: np.ndarray) -> str:
        return self.transcribe_detail(samples_16k)["text"]


def embedded_or_none(model: str) -> Path | None:
    from resyn_bench.metrics.whisper_models import EMBEDDED, embedded_folder

    return embedded_folder(model) if model in EMBEDDED else None


#: openai-whisper's model names (its ``whisper._MODELS``; listed here so that choosing the loader
#: does not import whisper and torch). The names that are also CTranslate2 names go to
#: faster-whisper; openai-whisper checks its own table when it loads.
OPENAI_WHISPER_NAMES = frozenset({"tiny.en", "tiny", "base.en", "base", "small.en", "small",
                                  "medium.en", "medium", "large-v1", "large-v2", "large-v3",
                                  "large", "large-v3-turbo", "turbo"})


def _openai_names() -> frozenset[str]:
    return OPENAI_WHISPER_NAMES


def make_whisper(model: str = "base", **options: Any) -> ASRBackend:
    """The ``whisper`` backend: faster-whisper for CTranslate2 models (names of
    :data:`whisper_models.MODEL_NAMES`, local folders), openai-whisper for ``.pt`` files and
    openai-whisper's own names that are not CTranslate2 names (``base.en``, ``tiny``...)."""
    from resyn_bench.metrics.whisper_models import MODEL_NAMES

    m = str(model)
    path = Path(m).expanduser()
    if m not in MODEL_NAMES and not path.is_dir() and (
            m.endswith(".pt") or path.is_file() or m in _openai_names()):
        return OpenAIWhisperBackend(model=m, **options)
    return FasterWhisperBackend(model=m, **options)


def _whisper_option_names() -> list[str]:
    """Options of either loader of the ``whisper`` backend (for the registry's check)."""
    import inspect

    names: list[str] = []
    for cls in (FasterWhisperBackend, OpenAIWhisperBackend):
        names += [n for n, p in inspect.signature(cls).parameters.items()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in names]
    return names


make_whisper.option_names = _whisper_option_names  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------

#: backend name -> factory (a class or a function returning an ASRBackend). To add a backend,
#: add one line here; its constructor's keyword arguments are its -m asr.<option> settings.
BACKENDS: dict[str, Any] = {"whisper": make_whisper,
                            "openai-whisper": OpenAIWhisperBackend,
                            "pocketsphinx": PocketsphinxBackend}


def _wav2vec2_backend(**options: Any) -> ASRBackend:
    """The wav2vec 2.0 CTC backend (imported on use: metrics.wav2vec2 imports this module)."""
    from resyn_bench.metrics.wav2vec2 import Wav2Vec2Backend

    return Wav2Vec2Backend(**options)


BACKENDS["wav2vec2"] = _wav2vec2_backend  # type: ignore[assignment]


def default_backend() -> str:
    """``whisper`` (embedded Whisper base on faster-whisper) when faster-whisper is installed,
    else ``pocketsphinx``."""
    import importlib.util

    return "whisper" if importlib.util.find_spec("faster_whisper") else "pocketsphinx"


def make_asr(name: str | None = None, **options: Any) -> ASRBackend:
    """Build a backend by name (cheap: nothing is loaded); None = :func:`default_backend`."""
    name = name or default_backend()
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown ASR backend {name!r}; choose from {sorted(BACKENDS)}") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ValueError(f"ASR backend {name!r}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Text normalisation for scoring
# --------------------------------------------------------------------------------------------

NORMALIZERS = ("whisper-en", "basic")


def basic_normalize(text: str) -> str:
    """Lower-case, punctuation -> space (apostrophes kept inside words), collapse spaces."""
    import re
    import unicodedata

    text = unicodedata.normalize("NFC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    words = re.split(r"[^\w']+", text.replace("_", " "))
    return " ".join(w.strip("'") for w in words if w.strip("'"))


_BRACKETS = str.maketrans({c: " " for c in "()[]{}<>"})

#: recorded in the group settings with the normaliser's name
NORMALIZER_RULES = {
    "whisper-en": "brackets and parentheses to spaces (bracketed words are kept), then "
                  "openai-whisper's EnglishTextNormalizer",
    "basic": "lower case, punctuation to spaces, apostrophes kept inside words",
}


def keep_bracketed_words(text: str) -> str:
    """Brackets, parentheses, braces and angle brackets -> spaces (their content stays)."""
    return (text or "").translate(_BRACKETS)


def default_normalizer() -> str:
    """``whisper-en`` when openai-whisper (and its ``regex`` dependency) is importable."""
    import importlib.util

    if importlib.util.find_spec("whisper") and importlib.util.find_spec("regex"):
        return "whisper-en"
    return "basic"


#: private package name under which whisper's ``normalizers`` sub-package is loaded alone
_WHISPER_NORMALIZERS = "resyn_bench._whisper_normalizers"


def whisper_english_normalizer_class():
    """openai-whisper's ``EnglishTextNormalizer`` class without importing ``whisper`` itself.

    ``import whisper.normalizers`` runs ``whisper/__init__.py``, which imports torch and numba
    (about 5 s in a fresh worker process, for a text normaliser). The ``normalizers`` sub-package
    only needs ``regex`` and ``more_itertools``, so its files are loaded here as a package of
    their own: the same code, the same output. Where whisper is already imported its class is
    used. ImportError when openai-whisper is not installed."""
    import importlib.util
    import sys

    loaded = sys.modules.get("whisper.normalizers")
    if loaded is not None:
        return loaded.EnglishTextNormalizer
    module = sys.modules.get(_WHISPER_NORMALIZERS)
    if module is None:
        spec = importlib.util.find_spec("whisper")   # locates the package; does not run it
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("No module named 'whisper'")
        folder = Path(list(spec.submodule_search_locations)[0]) / "normalizers"
        init = folder / "__init__.py"
        if not init.is_file():
            raise ImportError(f"openai-whisper has no normalizers package at {folder}")
        pkg_spec = importlib.util.spec_from_file_location(
            _WHISPER_NORMALIZERS, init, submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(pkg_spec)
        sys.modules[_WHISPER_NORMALIZERS] = module
        try:
            pkg_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_WHISPER_NORMALIZERS]
            raise
    return module.EnglishTextNormalizer


class TextNormalizer:
    """Callable ``str -> str``; ``whisper-en`` is loaded on first use (whisper's normaliser
    files only: :func:`whisper_english_normalizer_class`)."""

    def __init__(self, name: str | None = None):
        name = name or default_normalizer()
        if name not in NORMALIZERS:
            raise ValueError(f"unknown normalizer {name!r}; choose from {NORMALIZERS}")
        self.name = name
        self._fn = None

    def __call__(self, text: str) -> str:
        if self._fn is None:
            if self.name == "whisper-en":
                try:
                    EnglishTextNormalizer = whisper_english_normalizer_class()
                except ImportError as exc:
                    raise ASRError(f"normalizer 'whisper-en' needs openai-whisper ({exc}); "
                                   "use normalizer='basic'") from None
                english = EnglishTextNormalizer()
                # whisper's normaliser deletes what is inside brackets and parentheses; in read
                # speech those words are spoken (LJSpeech: "(which also was printed at Maintz
                # ...)"), so brackets become spaces first and the words are scored
                self._fn = lambda s: " ".join(english(keep_bracketed_words(s)).split())
            else:
                self._fn = basic_normalize
        return self._fn(text or "")


__all__ = ["ASRBackend", "ASRError", "ModelMissingError", "PocketsphinxBackend",
           "FasterWhisperBackend", "OpenAIWhisperBackend", "BACKENDS", "make_asr", "make_whisper",
           "default_backend", "compression_ratio", "GUARDS", "NORMALIZERS", "TextNormalizer",
           "basic_normalize", "default_normalizer", "default_whisper_root", "file_sha256",
           "PHONE_DECODER_DEFAULTS", "keep_bracketed_words", "NORMALIZER_RULES"]
