"""Training data for the unit vocoder and the F0 quantizer (docs/reference.md §1, §3, §6 "data").

Grids (16 kHz): content units every ``code_hop`` samples (320 HuBERT, 160 CPC / VQ-VAE), F0
frames every 80 samples (5 ms), F0 codes every 1280 samples (16 F0 frames). The vocoder
segment of 8960 samples is 28 HuBERT frames = 56 CPC frames = 112 F0 frames = 7 F0 codes; the
F0-quantizer segment of 16640 samples is 208 F0 frames = 13 F0 codes.

Per utterance (:class:`VocoderDataset`):

1. audio read at 16 kHz, scaled like int16 / 32768 (soundfile's float read of 16-bit PCM is
   exactly that), peak-normalised to 0.95 (librosa ``util.normalize`` x 0.95 in the reference);
2. units from a unit file (matched by audio file stem) or computed by a ``UnitEncoder``;
3. audio and units trimmed to ``min(len // hop, #units)`` frames, then down to a whole
   number of alignment blocks (see below), so audio = units x hop = F0 frames x 80 exactly;
4. training crops: if shorter than the segment, audio, units and F0 are repeated by
   concatenation; then a random crop whose start is a multiple of the alignment block, so the
   three streams stay aligned. Validation (``segment_size=None``) returns the whole utterance
   trimmed to a multiple of lcm(hop, 1280) (whole F0 codes).

Alignment block: ``lcm(code_hop, 80)`` (320 for HuBERT, 160 for CPC), or ``lcm(code_hop, 1280)``
when ``align_f0_codes=True`` (F0 codes precomputed on the whole utterance must be sliced on
their own 1280-sample grid).

F0 deviates from the reference on purpose: the reference runs YAAPT on every random crop at
every step (the slowest part of its data loading); here F0 is extracted once per utterance
(whole file, same YAAPT settings) and cached in memory and optionally on disk (``cache_dir``,
keyed by the SHA-256 of the audio samples and the extractor settings); crops slice the cached
track on the 80-sample grid. YAAPT is not frame-local (it normalises over the file and runs
dynamic programming), so values near crop edges can differ slightly from per-crop extraction.

Randomness: crop offsets come from ``numpy.random.default_rng([seed, epoch, index])``, so an
item depends only on (seed, epoch, index) - not on the worker that loads it or the order.
Call :meth:`set_epoch` each epoch. Call :meth:`precompute` before building a multi-worker
``DataLoader`` so the workers inherit the filled F0 / unit caches instead of each computing
them again.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from resyn_bench.dsp.presets import training_names, training_preset
from resyn_bench.errors import UserError
from resyn_bench.systems.vocoder.f0_stats import (
    F0Stats,
    load_f0_stats,
    load_speaker_ids,
    speaker_ids_from_names,
)

__all__ = ["SAMPLE_RATE", "F0_HOP", "F0_CODE_HOP", "VOCODER_SEGMENT", "F0_SEGMENT",
           "F0_METHODS", "DataError", "peak_normalize", "load_training_audio", "extract_f0",
           "f0_method_params", "F0Cache", "fill_f0_cache", "FileUnits", "EncoderUnits", "make_unit_source",
           "alignment_block", "trim_aligned", "repeat_to", "VocoderDataset", "F0Dataset",
           "collate"]

SAMPLE_RATE = 16000
F0_HOP = 80                    # samples per F0 frame (5 ms)
F0_CODE_HOP = 16 * F0_HOP      # samples per F0 code (1280)
VOCODER_SEGMENT = 8960
F0_SEGMENT = 16640
PEAK = 0.95

#: hop by code key of the reference unit files
_KEY_HOPS = {"hubert": 320, "cpc_km100": 160, "cpc": 160, "vqvae256": 160}
_MIC_SUFFIX = re.compile(r"_mic\d$")


class DataError(UserError, ValueError):
    """Training data cannot be assembled (missing units, too-short audio, bad settings)."""


# --------------------------------------------------------------------------------------------
# Audio and F0
# --------------------------------------------------------------------------------------------

def peak_normalize(x: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """Scale so that max |x| = ``peak``; an all-zero signal is returned unchanged."""
    x = np.asarray(x, dtype=np.float32)
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m <= np.finfo(np.float32).tiny:
        return x.copy()
    return (x * (peak / m)).astype(np.float32)


def _load_raw(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    from resyn_bench.audio import AudioError, ensure_rate, load_audio

    audio = ensure_rate(load_audio(path), sample_rate, purpose="vocoder training")
    if not np.all(np.isfinite(audio.samples)):
        # peak normalisation would turn the whole file into NaN and poison the losses
        bad = int(np.count_nonzero(~np.isfinite(audio.samples)))
        raise AudioError("non_finite", f"{path} has {bad} NaN/inf samples")
    return np.ascontiguousarray(audio.samples, dtype=np.float32)


def load_training_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at ``sample_rate`` (soxr resampling where needed; the reference
    pre-resampled with resampy), peak-normalised to 0.95 as the reference's loader does."""
    return peak_normalize(_load_raw(path, sample_rate))


def _training_preset(method: str):
    try:
        return training_preset(method)
    except KeyError as exc:
        raise DataError(f"unknown F0 method {method!r}: {exc.args[0]}") from None


#: F0 extractors for training: name -> short description (the shared names table,
#: :mod:`resyn_bench.dsp.presets`, less the presets without a 5 ms hop)
F0_METHODS = {name: training_preset(name).description for name in training_names()}


def f0_method_params(method: str) -> dict[str, Any]:
    """The pitch preset behind ``method`` (for manifests and cache keys)."""
    return _training_preset(method).to_dict()


def extract_f0(wav16k: np.ndarray, method: str = "pyworld",
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """F0 (Hz, 0 = unvoiced) every 5 ms: float32 array of exactly ``len(wav) // hop`` frames,
    ``hop = sample_rate // 200`` (80 at 16 kHz). Frame ``k`` is centred on sample ``k * hop``.

    ``method``: "yaapt" (reference settings: signal zero-padded by 160 samples each side,
    20 ms frames, 5 ms hop, nccf_thresh1 0.25, tda_frame_length 25 ms, ``samp_values``; an
    all-zero track when YAAPT fails, as the reference does), "pyworld" (dio + stonemask,
    60-400 Hz), "harvest" (harvest, 60-400 Hz) or another name of the shared table
    (:mod:`resyn_bench.dsp.presets`) with a 5 ms hop. Extraction is delegated to
    :func:`resyn_bench.dsp.pitch.extract_f0`."""
    from resyn_bench.core.errors import MetricError
    from resyn_bench.dsp.pitch import extract_f0 as pitch_f0

    preset = _training_preset(method)
    x = np.asarray(wav16k, dtype=np.float64).reshape(-1)
    hop = sample_rate // 200
    n = x.size // hop
    if n == 0:
        return np.zeros(0, np.float32)
    try:
        f0 = pitch_f0(x, sample_rate, preset).f0
    except MetricError:
        # the reference replaces a failed YAAPT call by zeros (docs/reference.md §3.1); do the same for WORLD
        f0 = np.zeros(n)
    # YAAPT gives ceil(len / hop) frames, WORLD len // hop + 1: keep the first len // hop.
    out = np.zeros(n, np.float32)
    m = min(n, f0.size)
    out[:m] = f0[:m]
    return out


def audio_digest(samples: np.ndarray) -> str:
    """SHA-256 of the float32 samples (the on-disk cache key)."""
    x = np.ascontiguousarray(samples, dtype="<f4")
    return hashlib.sha256(x.tobytes()).hexdigest()


class F0Cache:
    """Whole-utterance F0 tracks, computed once.

    ``method``: an :data:`F0_METHODS` name, or any callable ``wav16k -> track`` (tests, custom
    extractors; memory cache only). Memory entries are keyed by ``key`` (e.g. the audio path)
    when given, else by the audio hash; disk entries (``cache_dir/<method>-<settings hash>/
    <audio sha256>.npy``, plain ``.npy`` without pickle, written atomically) by the audio hash,
    so a changed file is never served a stale track."""

    def __init__(self, method: str | Callable[[np.ndarray], np.ndarray] = "pyworld",
                 cache_dir: str | Path | None = None):
        self.method = method
        if callable(method):
            self.params: dict[str, Any] = {"callable": getattr(method, "__name__", repr(method))}
            self.folder = None
        else:
            self.params = f0_method_params(method)
            tag = hashlib.sha256(json.dumps(self.params, sort_keys=True).encode()).hexdigest()
            self.folder = (Path(cache_dir).expanduser() / f"{method}-{tag[:10]}"
                           if cache_dir is not None else None)
        self._memory: dict[str, np.ndarray] = {}
        self.computed = 0   # extractions actually run (not served from a cache)

    def __len__(self) -> int:
        return len(self._memory)

    def cached(self, key: str) -> np.ndarray | None:
        return self._memory.get(key)

    def _extract(self, wav: np.ndarray) -> np.ndarray:
        self.computed += 1
        if callable(self.method):
            track = np.asarray(self.method(wav), dtype=np.float32).reshape(-1)
        else:
            track = extract_f0(wav, self.method)
        n = len(wav) // F0_HOP
        if track.size != n:  # a custom callable may be off by a frame: same fix as extract_f0
            track = np.concatenate([track[:n], np.zeros(max(0, n - track.size), np.float32)])
        return track

    def get(self, wav: np.ndarray, key: str | None = None) -> np.ndarray:
        """F0 track (float32, ``len(wav) // 80`` frames) of the whole signal ``wav``."""
        if key is not None and key in self._memory:
            return self._memory[key]
        digest = audio_digest(wav) if (self.folder is not None or key is None) else None
        if digest is not None and digest in self._memory:
            return self._memory[digest]
        track = None
        file = self.folder / digest[:2] / f"{digest}.npy" if self.folder is not None else None
        if file is not None and file.is_file():
            try:
                track = np.load(file, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError):
                track = None  # truncated/corrupt cache file: recompute and overwrite
            if track is not None and track.shape != (len(wav) // F0_HOP,):
                track = None
        if track is None:
            track = self._extract(wav)
            if file is not None:
                from resyn_bench.core.atomic import atomic_open

                # a cache: not fsynced (a lost entry is recomputed, a torn one never visible)
                with atomic_open(file, fsync=False) as fh:  # a file object: no ".npy" added
                    np.save(fh, track, allow_pickle=False)
        self._memory[key if key is not None else digest] = track
        return track


def _f0_job(args: tuple[str, str, str | None]) -> tuple[str, np.ndarray | None, str | None]:
    """Worker of :func:`fill_f0_cache`: (path, method, cache_dir) -> (path, track, error)."""
    path, method, cache_dir = args
    from resyn_bench.audio import AudioError

    try:
        wav = load_training_audio(path)
    except AudioError as exc:
        return path, None, str(exc)
    return path, F0Cache(method, cache_dir=cache_dir).get(wav, key=path), None


def fill_f0_cache(cache: F0Cache, paths: Sequence[str | Path], jobs: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """Compute the F0 tracks of ``paths`` (whole files) into ``cache`` (memory, and disk when it
    has a folder), with ``jobs`` worker processes when the method is a named one (YAAPT takes
    ~0.1 s per second of audio: parallelise large corpora). Returns {path: error} for files
    that could not be read."""
    todo = [str(p) for p in paths if cache.cached(str(p)) is None]
    errors: dict[str, str] = {}
    if jobs <= 1 or callable(cache.method) or len(todo) < 2:
        from resyn_bench.audio import AudioError

        for i, path in enumerate(todo):
            if progress is not None:
                progress(i, len(todo))
            try:
                cache.get(load_training_audio(path), key=path)
            except AudioError as exc:
                errors[path] = str(exc)
        return errors
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    folder = str(cache.folder.parent) if cache.folder is not None else None
    # spawn: forking a process that holds torch / BLAS thread pools is not safe
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx) as pool:
        jobs_iter = pool.map(_f0_job, [(p, cache.method, folder) for p in todo], chunksize=4)
        for i, (path, track, error) in enumerate(jobs_iter):
            if progress is not None:
                progress(i, len(todo))
            if error is not None:
                errors[path] = error
            else:
                cache.computed += 1
                cache._memory[path] = track
    return errors


# --------------------------------------------------------------------------------------------
# Unit sources
# --------------------------------------------------------------------------------------------

class FileUnits:
    """Units from a unit file (:mod:`resyn_bench.unit_files`), matched to utterances by the
    audio file stem (also tried: the utt_id, and both with a VCTK ``_mic1``/``_mic2`` suffix
    dropped)."""

    def __init__(self, entries: str | Path | Sequence, hop_size: int | None = None):
        from resyn_bench.unit_files import read_unit_file

        self.path = None
        if isinstance(entries, (str, Path)):
            self.path = Path(entries)
            entries = read_unit_file(entries)
        entries = list(entries)
        if not entries:
            raise DataError(f"unit file {self.path or ''} lists no entries")
        self._index: dict[str, Any] = {}
        for e in entries:
            for k in (e.stem, _MIC_SUFFIX.sub("", e.stem), e.utt_id):
                self._index.setdefault(k, e)
        self.hop_size = int(hop_size) if hop_size else self._infer_hop(entries)
        self.name = f"unit file {self.path}" if self.path else "unit entries"

    def _infer_hop(self, entries) -> int:
        hops = {e.extra.get("hop_size") or _KEY_HOPS.get(e.key) for e in entries}
        if None in hops or len(hops) != 1:
            raise DataError(f"cannot tell the unit hop of {self.path or 'these entries'} (keys "
                            f"{sorted({e.key for e in entries})}); pass hop_size / code_hop "
                            "(320 for HuBERT, 160 for CPC / VQ-VAE)")
        return int(hops.pop())

    def entry_for(self, utt) -> Any | None:
        stem = Path(utt.path).stem
        for k in (stem, utt.utt_id, _MIC_SUFFIX.sub("", stem)):
            if k in self._index:
                return self._index[k]
        return None

    def has(self, utt) -> bool:
        return self.entry_for(utt) is not None

    def units(self, utt, raw_wav: Callable[[], np.ndarray]) -> np.ndarray:
        e = self.entry_for(utt)
        if e is None:
            raise DataError(f"no units for {utt.utt_id} ({utt.path}) in {self.name}")
        if e.units.size == 0 or e.units.min() < 0:
            raise DataError(f"{self.name}: entry {e.audio!r} has no usable codes "
                            f"({e.units[:3].tolist()}...; LibriLight lists use -1 placeholders)")
        return e.units


class EncoderUnits:
    """Units computed by a unit encoder (anything with ``hop_size`` and ``encode(wav16k) ->
    int array``, e.g. :func:`resyn_bench.systems.encoders.base.load_unit_encoder`), once per
    utterance, from the 16 kHz audio before peak normalisation, cached in memory."""

    def __init__(self, encoder: Any):
        if not hasattr(encoder, "encode") or not hasattr(encoder, "hop_size"):
            raise DataError(f"{type(encoder).__name__} is not a unit encoder (needs hop_size and "
                            "encode(wav))")
        self.encoder = encoder
        self.hop_size = int(encoder.hop_size)
        self.name = f"encoder {getattr(encoder, 'name', type(encoder).__name__)}"
        self._memory: dict[str, np.ndarray] = {}

    def has(self, utt) -> bool:
        return True

    def units(self, utt, raw_wav: Callable[[], np.ndarray]) -> np.ndarray:
        key = str(utt.path)
        if key not in self._memory:
            units = np.asarray(self.encoder.encode(raw_wav()), dtype=np.int64).reshape(-1)
            if units.size and units.min() < 0:
                raise DataError(f"{self.name} returned negative units for {utt.utt_id}")
            self._memory[key] = units
        return self._memory[key]


def make_unit_source(units: Any, code_hop: int | None = None):
    """A unit source from a unit-file path, a list of UnitEntry, a unit encoder, or a source."""
    if isinstance(units, (FileUnits, EncoderUnits)):
        return units
    if isinstance(units, (str, Path, list, tuple)):
        return FileUnits(units, hop_size=code_hop)
    if hasattr(units, "encode") and hasattr(units, "hop_size"):
        src = EncoderUnits(units)
        if code_hop is not None and int(code_hop) != src.hop_size:
            raise DataError(f"code_hop {code_hop} differs from the encoder's hop {src.hop_size}")
        return src
    raise DataError(f"units must be a unit file, a list of UnitEntry or a unit encoder, got "
                    f"{type(units).__name__}")


# --------------------------------------------------------------------------------------------
# Alignment helpers (pure functions, tested directly)
# --------------------------------------------------------------------------------------------

def alignment_block(code_hop: int, *, f0_codes: bool = False) -> int:
    """Samples in one alignment block: lcm(code_hop, 80), or lcm(code_hop, 1280) for F0 codes."""
    return math.lcm(int(code_hop), F0_CODE_HOP if f0_codes else F0_HOP)


def trim_aligned(audio: np.ndarray, units: np.ndarray, f0: np.ndarray | None, code_hop: int,
                 block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Cut to ``min(len(audio) // hop, len(units))`` unit frames, rounded down to whole
    blocks: returns audio of ``n * hop`` samples, ``n`` units and ``n * hop // 80`` F0 frames
    (zero-padded if the track is short). ``n`` may be 0."""
    per_block = block // code_hop
    n = min(len(audio) // code_hop, len(units))
    n -= n % per_block
    t = n * code_hop
    out_f0 = None
    if f0 is not None:
        nf = t // F0_HOP
        out_f0 = np.zeros(nf, np.float32)
        m = min(nf, len(f0))
        out_f0[:m] = f0[:m]
    return audio[:t], units[:n], out_f0


def repeat_to(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` concatenated with itself until it is at least ``n`` long (unchanged if it is)."""
    if len(x) >= n:
        return x
    return np.tile(x, -(-n // len(x)))


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------

class _Base(TorchDataset):
    """Shared by both datasets: utterances, F0 cache, F0 normalisation, speaker ids, RNG."""

    def __init__(self, utterances, *, f0_extractor, f0_stats, f0_normalize, speaker_ids,
                 cache_dir, seed, cache_audio):
        self.utterances = list(utterances)
        if not self.utterances:
            raise DataError("the dataset has no utterances")
        if isinstance(f0_stats, (str, Path)):
            f0_stats = load_f0_stats(f0_stats, speaker_ids)
        self.f0_stats: F0Stats | None = f0_stats
        self.f0_normalize = bool(f0_normalize)
        if self.f0_normalize and f0_extractor is not None and f0_stats is None:
            raise DataError("f0_normalize=True needs f0_stats (our JSON from `resyn-bench "
                            "f0-stats`, or a reference f0_stats.pth/.th file); or pass "
                            "f0_normalize=False to train on F0 in Hz")
        if (f0_stats is not None and self.f0_normalize and isinstance(f0_extractor, str)
                and f0_stats.extractor and f0_stats.extractor != f0_extractor):
            warnings.warn(f"F0 stats were computed with {f0_stats.extractor!r} but training F0 "
                          f"uses {f0_extractor!r}: the normalised F0 will be biased", stacklevel=3)
        ids = load_speaker_ids(speaker_ids)
        if ids is None and f0_stats is not None and f0_stats.speaker_ids:
            ids = dict(f0_stats.speaker_ids)   # the map the stats were made with
        if ids is None:
            ids = speaker_ids_from_names(u.speaker for u in self.utterances)  # reference rule
        missing = sorted({u.speaker for u in self.utterances} - set(ids))
        if missing:
            raise DataError(f"speaker id map has no id for {len(missing)} speakers, e.g. "
                            f"{missing[:5]}; pass speaker_ids= covering every speaker")
        self.speaker_ids: dict[str, int] = ids
        if self.f0_normalize and f0_stats is not None:
            for name in sorted({u.speaker for u in self.utterances}):
                f0_stats.lookup(self._stats_key(name))  # fail now, not in a loader worker
        self.f0_cache = (F0Cache(f0_extractor, cache_dir=cache_dir)
                         if f0_extractor is not None else None)
        self.seed = int(seed)
        self.epoch = 0
        self.cache_audio = bool(cache_audio)
        self._audio: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        """Crops of epoch ``e`` differ from those of other epochs, and repeat exactly."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def _raw(self, utt) -> np.ndarray:
        key = str(utt.path)
        if key in self._audio:
            return self._audio[key]
        x = _load_raw(utt.path)
        if self.cache_audio:
            self._audio[key] = x
        return x

    def _f0_track(self, utt, wav: np.ndarray | None) -> np.ndarray:
        key = str(utt.path)
        track = self.f0_cache.cached(key)
        if track is None:
            if wav is None:
                wav = peak_normalize(self._raw(utt))
            track = self.f0_cache.get(wav, key=key)
        return track

    def _fill_f0(self, jobs: int) -> None:
        errors = fill_f0_cache(self.f0_cache, [u.path for u in self.utterances], jobs)
        if errors:
            path, msg = next(iter(errors.items()))
            raise DataError(f"{len(errors)} files could not be read, e.g. {path}: {msg}")

    def _stats_key(self, speaker: str) -> str | int:
        """Name, or our integer id for reference stats keyed by id without names (the
        reference looks stats up by the id it assigned, i.e. the same map)."""
        stats = self.f0_stats
        if stats.speaker_stats(speaker) is None and stats.by_id:
            return self.speaker_ids[speaker]
        return speaker

    def _normalize_f0(self, f0: np.ndarray, speaker: str) -> np.ndarray:
        if self.f0_normalize:
            return self.f0_stats.normalize(f0, self._stats_key(speaker)).astype(np.float32)
        return f0.astype(np.float32)

    def _spkr(self, utt):
        return torch.tensor([self.speaker_ids[utt.speaker]], dtype=torch.long)


class VocoderDataset(_Base):
    """Aligned (units, F0, audio, speaker) examples for unit-vocoder training.

    ``units``: a unit file path / list of UnitEntry (matched by audio stem; utterances without
    an entry are dropped with a warning, an error if none match) or a unit encoder.
    ``segment_size``: samples per training crop (8960), or None for whole utterances
    (validation). ``f0_extractor``: "yaapt" | "pyworld" | "harvest" | callable | None (no F0).
    ``f0_stats``: :class:`F0Stats` or a stats file; ``speaker_ids``: name -> id map (dict or
    JSON file); default: the stats' map, else the sorted speaker names (reference rule).
    ``length_tolerance``: relative difference allowed between units x hop and the audio length
    (plus 2560 samples) before the pair is refused as coming from different audio; None = off.

    Items: ``{"code": LongTensor[T/hop], "f0": FloatTensor[1, T/80], "audio":
    FloatTensor[1, T], "spkr": LongTensor[1], "utt_id": str}`` (no "f0" when F0 is off)."""

    def __init__(self, dataset, units, *, code_hop: int | None = None,
                 segment_size: int | None = VOCODER_SEGMENT,
                 f0_extractor: str | Callable | None = "yaapt",
                 f0_stats: F0Stats | str | Path | None = None, f0_normalize: bool = True,
                 speaker_ids: Mapping[str, int] | str | Path | None = None,
                 align_f0_codes: bool = False, cache_dir: str | Path | None = None,
                 seed: int = 1234, cache_audio: bool = False,
                 length_tolerance: float | None = 0.05):
        self.unit_source = make_unit_source(units, code_hop)
        self.length_tolerance = length_tolerance
        utts = list(dataset)
        kept = [u for u in utts if self.unit_source.has(u)]
        if not kept:
            raise DataError(f"none of the {len(utts)} utterances has units in "
                            f"{self.unit_source.name} (matched by audio file stem, e.g. "
                            f"{[Path(u.path).stem for u in utts[:3]]})")
        self.dropped = [u.utt_id for u in utts if not self.unit_source.has(u)]
        if self.dropped:
            warnings.warn(f"{len(self.dropped)} of {len(utts)} utterances have no units in "
                          f"{self.unit_source.name} and are skipped, e.g. {self.dropped[:3]}",
                          stacklevel=2)
        super().__init__(kept, f0_extractor=f0_extractor, f0_stats=f0_stats,
                         f0_normalize=f0_normalize, speaker_ids=speaker_ids,
                         cache_dir=cache_dir, seed=seed, cache_audio=cache_audio)
        self.code_hop = self.unit_source.hop_size
        self.segment_size = None if segment_size is None else int(segment_size)
        self.align_f0_codes = bool(align_f0_codes)
        # whole utterances are trimmed to whole F0 codes (the reference pads files to 1280)
        self.block = alignment_block(self.code_hop,
                                     f0_codes=self.align_f0_codes or self.segment_size is None)
        if self.segment_size is not None and (self.segment_size <= 0
                                              or self.segment_size % self.block):
            raise DataError(f"segment_size {self.segment_size} must be a positive multiple of "
                            f"the alignment block {self.block} (lcm of code hop "
                            f"{self.code_hop}, F0 hop 80"
                            + (", F0-code hop 1280)" if self.align_f0_codes else ")"))

    def _example(self, index: int) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray | None]:
        """The trimmed whole utterance: (utt, audio, units, F0 track or None)."""
        utt = self.utterances[index]
        raw = self._raw(utt)
        units = self.unit_source.units(utt, lambda: raw)
        self._check_lengths(utt, len(raw), len(units))
        wav = peak_normalize(raw)
        track = self._f0_track(utt, wav) if self.f0_cache is not None else None
        audio, units, f0 = trim_aligned(wav, units, track, self.code_hop, self.block)
        if len(units) == 0:
            raise DataError(f"{utt.utt_id}: too short for one {self.block}-sample block "
                            f"({len(raw)} samples, {len(self.unit_source.units(utt, lambda: raw))}"
                            f" units at hop {self.code_hop})")
        if f0 is not None:
            f0 = self._normalize_f0(f0, utt.speaker)
        return utt, audio, units, f0

    def _check_lengths(self, utt, n_samples: int, n_units: int) -> None:
        """Units that cover a clearly different duration than the audio belong to other audio
        (e.g. VCTK trimmed differently from the copy the units were made from); the reference
        silently trims to the shorter one, which would train on misaligned pairs."""
        if self.length_tolerance is None:
            return
        covered = n_units * self.code_hop
        # + 2 F0 codes: HuBERT's 400-sample receptive field and the reference's padding of
        # every file to a multiple of 1280 samples
        if abs(covered - n_samples) > self.length_tolerance * n_samples + 2 * F0_CODE_HOP:
            raise DataError(
                f"{utt.utt_id}: {n_units} units x {self.code_hop} = {covered / 16000:.2f} s but "
                f"the audio {utt.path} lasts {n_samples / 16000:.2f} s; the units were made "
                f"from different audio (other trimming or corpus version?). Use the audio the "
                f"units came from, or pass length_tolerance=None to trim anyway")

    def precompute(self, progress: Callable[[int, int], None] | None = None,
                   jobs: int = 1) -> None:
        """Fill the F0 (and encoder unit) caches for every utterance now (F0 with ``jobs``
        processes), and check that units and audio lengths agree (raises :class:`DataError` on
        the first mismatch)."""
        if self.f0_cache is not None and jobs > 1:
            self._fill_f0(jobs)
        for i, utt in enumerate(self.utterances):
            if progress is not None:
                progress(i, len(self.utterances))
            raw = self._raw(utt)
            units = self.unit_source.units(utt, lambda raw=raw: raw)
            self._check_lengths(utt, len(raw), len(units))
            if self.f0_cache is not None:
                self._f0_track(utt, peak_normalize(raw))

    def crop_start(self, index: int, length: int) -> int:
        """Start sample of the training crop of item ``index`` in a (repeated) utterance of
        ``length`` samples: a multiple of the alignment block."""
        n_starts = (length - self.segment_size) // self.block + 1
        return int(self.rng(index).integers(0, n_starts)) * self.block

    def __getitem__(self, index: int) -> dict[str, Any]:
        utt, audio, units, f0 = self._example(index)
        hop = self.code_hop
        if self.segment_size is not None:
            seg = self.segment_size
            reps = -(-seg // len(audio))
            if reps > 1:   # short utterance: repeat every stream by concatenation
                audio, units = np.tile(audio, reps), np.tile(units, reps)
                f0 = np.tile(f0, reps) if f0 is not None else None
            start = self.crop_start(index, len(audio))
            audio = audio[start:start + seg]
            units = units[start // hop:(start + seg) // hop]
            if f0 is not None:
                f0 = f0[start // F0_HOP:(start + seg) // F0_HOP]
        item = {"code": torch.from_numpy(np.ascontiguousarray(units, dtype=np.int64)),
                "audio": torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None],
                "spkr": self._spkr(utt), "utt_id": utt.utt_id}
        if f0 is not None:
            item["f0"] = torch.from_numpy(np.ascontiguousarray(f0, np.float32))[None]
        return item


class F0Dataset(_Base):
    """Normalised F0 crops for F0-quantizer training: ``{"f0": FloatTensor[1, 208], "spkr",
    "utt_id"}`` for the 16640-sample segment (repeated by concatenation when shorter; any
    5 ms frame may start a crop). ``segment_size=None``: whole tracks cut to a multiple of 16
    frames (whole F0 codes)."""

    def __init__(self, dataset, *, segment_size: int | None = F0_SEGMENT,
                 f0_extractor: str | Callable = "yaapt",
                 f0_stats: F0Stats | str | Path | None = None, f0_normalize: bool = True,
                 speaker_ids: Mapping[str, int] | str | Path | None = None,
                 cache_dir: str | Path | None = None, seed: int = 1234):
        super().__init__(dataset, f0_extractor=f0_extractor, f0_stats=f0_stats,
                         f0_normalize=f0_normalize, speaker_ids=speaker_ids,
                         cache_dir=cache_dir, seed=seed, cache_audio=False)
        if segment_size is not None and (segment_size <= 0 or segment_size % F0_CODE_HOP):
            raise DataError(f"segment_size {segment_size} must be a positive multiple of "
                            f"{F0_CODE_HOP} (16 F0 frames of 80 samples)")
        self.segment_size = segment_size
        self.frames = None if segment_size is None else segment_size // F0_HOP

    def precompute(self, progress: Callable[[int, int], None] | None = None,
                   jobs: int = 1) -> None:
        """Compute every utterance's F0 track now (with ``jobs`` processes)."""
        if jobs > 1:
            self._fill_f0(jobs)
        for i, utt in enumerate(self.utterances):
            if progress is not None:
                progress(i, len(self.utterances))
            self._f0_track(utt, None)

    def __getitem__(self, index: int) -> dict[str, Any]:
        utt = self.utterances[index]
        track = self._f0_track(utt, None)
        if self.frames is None:
            track = track[:len(track) - len(track) % 16]
        else:
            if len(track) == 0:
                raise DataError(f"{utt.utt_id}: shorter than one F0 frame")
            track = repeat_to(track, self.frames)
            start = int(self.rng(index).integers(0, len(track) - self.frames + 1))
            track = track[start:start + self.frames]
        if len(track) == 0:
            raise DataError(f"{utt.utt_id}: shorter than one F0 code (1280 samples)")
        f0 = self._normalize_f0(track, utt.speaker)
        return {"f0": torch.from_numpy(np.ascontiguousarray(f0))[None], "spkr": self._spkr(utt),
                "utt_id": utt.utt_id}


def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch: tensors along a new first axis (code [B,T_c], f0 [B,1,T_f0],
    audio [B,1,T], spkr [B,1]); strings into lists. Tensors of unequal length (whole
    utterances) are zero-padded on the last axis and ``<key>_lengths`` (LongTensor[B]) is added."""
    if not batch:
        raise DataError("collate: empty batch")
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if not isinstance(values[0], torch.Tensor):
            out[key] = list(values)
            continue
        lengths = [v.shape[-1] for v in values]
        if len(set(lengths)) > 1:
            longest = max(lengths)
            values = [torch.nn.functional.pad(v, (0, longest - v.shape[-1])) for v in values]
            out[f"{key}_lengths"] = torch.tensor(lengths, dtype=torch.long)
        out[key] = torch.stack(values)
    return out
