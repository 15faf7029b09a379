"""Per-speaker F0 statistics for F0 normalisation (docs/reference.md §3.2-3.3).

The reference normalises voiced F0 frames per speaker, ``(f0 - mean) / std`` (unvoiced frames
stay 0), with statistics read from a ``torch.save``-d dict:

* LJSpeech ``f0_stats.pth``: global keys ``'f0_mean'``, ``'f0_std'``;
* VCTK ``f0_stats.th``: integer speaker ids -> ``{'f0_mean', 'f0_std'}``, no global keys.

The ids are positions in the sorted speaker names of whatever manifest the reference dataset
was given, so they are only meaningful together with a name -> id map. Our own format is JSON
and carries that map::

    {"format": "resyn-bench-f0-stats/1",
     "global": {"mean": .., "std": .., "n_frames": ..},
     "speakers": {"p225": {"mean": .., "std": .., "n_frames": ..}, ...},
     "speaker_ids": {"p225": 0, ...},
     "extractor": "yaapt", "sample_rate": 16000, ...}

Reference files are read through :func:`resyn_bench.safeload.safe_torch_load` (restricted
unpickler, numpy scalars allowed), never with a full ``torch.load``.

:func:`compute_f0_stats` builds the statistics for any harness dataset (the repo has no script
for this; users asked for one, speech-resynthesis issue #10): mean and population standard
deviation of the voiced F0 frames (Hz) pooled per speaker and over all speakers.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.errors import UserError

__all__ = ["SpeakerF0", "F0Stats", "F0StatsError", "load_f0_stats", "load_speaker_ids",
           "speaker_ids_from_names", "compute_f0_stats", "FORMAT"]

FORMAT = "resyn-bench-f0-stats/1"


class F0StatsError(UserError, ValueError):
    """F0 statistics are missing, malformed or do not cover a speaker."""


@dataclass(frozen=True)
class SpeakerF0:
    mean: float
    std: float
    n_frames: int | None = None  # voiced frames behind the numbers (None: unknown)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n_frames": self.n_frames}


def speaker_ids_from_names(names: Iterable[str]) -> dict[str, int]:
    """The reference convention: id = position in the sorted set of speaker names."""
    return {name: i for i, name in enumerate(sorted(set(map(str, names))))}


def load_speaker_ids(source: str | Path | Mapping[str, int] | None) -> dict[str, int] | None:
    """A name -> id map from a dict, a JSON file holding one (``{"p225": 0, ...}``) or our F0
    stats JSON (its ``speaker_ids``). ``None`` passes through."""
    if source is None:
        return None
    if isinstance(source, Mapping):
        data: Any = source
        where = "speaker_ids"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise F0StatsError(f"speaker id map not found: {path}")
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "speaker_ids" in data:
            data = data["speaker_ids"]
        where = str(path)
    out: dict[str, int] = {}
    for name, value in dict(data).items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise F0StatsError(f"{where}: speaker id of {name!r} must be a non-negative int, "
                               f"got {value!r}")
        out[str(name)] = int(value)
    if len(set(out.values())) != len(out):
        raise F0StatsError(f"{where}: several speakers share an id")
    return out


def _positive_std(std: float, what: str) -> float:
    if not math.isfinite(std) or std <= 0:
        raise F0StatsError(f"{what}: F0 std must be positive and finite, got {std!r}")
    return std


@dataclass
class F0Stats:
    """F0 mean/std in Hz: optional global values plus per-speaker values by name and/or by id.

    ``speakers`` is keyed by name (our files); ``by_id`` by the reference's integer ids
    (reference files). ``speaker_ids`` maps names to ids so either kind answers
    :meth:`lookup` by name."""

    global_stats: SpeakerF0 | None = None
    speakers: dict[str, SpeakerF0] = field(default_factory=dict)
    by_id: dict[int, SpeakerF0] = field(default_factory=dict)
    speaker_ids: dict[str, int] = field(default_factory=dict)
    extractor: str | None = None
    sample_rate: int | None = None
    source: str | None = None              # file it was read from
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- lookup / normalisation ------------------------------------------------------------

    def speaker_stats(self, speaker: str | int | None) -> SpeakerF0 | None:
        """Stats of exactly this speaker (name or integer id), or None when not listed."""
        if speaker is None:
            return None
        if isinstance(speaker, (int, np.integer)) and not isinstance(speaker, bool):
            sid = int(speaker)
            if sid in self.by_id:
                return self.by_id[sid]
            names = [n for n, i in self.speaker_ids.items() if i == sid]
            return self.speakers.get(names[0]) if names else None
        name = str(speaker)
        if name in self.speakers:
            return self.speakers[name]
        sid = self.speaker_ids.get(name)
        return self.by_id.get(sid) if sid is not None else None

    def lookup(self, speaker: str | int | None = None) -> tuple[float, float]:
        """(mean, std) in Hz for ``speaker`` (name or id); the global values when the speaker
        is not listed, as the reference does. Raises :class:`F0StatsError` when neither
        exists."""
        s = self.speaker_stats(speaker)
        if s is None:
            s = self.global_stats
        if s is None:
            hint = ""
            if self.by_id and not self.speaker_ids and isinstance(speaker, str):
                hint = (" (this file keys speakers by integer id: pass speaker_ids=, the "
                        "name -> id map used when it was made)")
            raise F0StatsError(f"no F0 statistics for speaker {speaker!r} and no global values "
                               f"in {self.source or 'these stats'}{hint}")
        return s.mean, s.std

    def normalize(self, f0: np.ndarray, speaker: str | int | None = None) -> np.ndarray:
        """``(f0 - mean) / std`` on voiced frames (f0 != 0); unvoiced frames stay 0."""
        mean, std = self.lookup(speaker)
        f0 = np.asarray(f0)
        out = np.zeros_like(f0, dtype=np.float32 if f0.dtype != np.float64 else np.float64)
        voiced = f0 != 0
        out[voiced] = (f0[voiced] - mean) / std
        return out

    def denormalize(self, f0_norm: np.ndarray, voiced: np.ndarray,
                    speaker: str | int | None = None) -> np.ndarray:
        """Inverse of :meth:`normalize` given the voicing mask (unvoiced -> 0 Hz)."""
        mean, std = self.lookup(speaker)
        f0_norm = np.asarray(f0_norm, dtype=np.float64)
        return np.where(np.asarray(voiced, bool), f0_norm * std + mean, 0.0)

    # ---- I/O --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        speakers = dict(self.speakers)
        # reference-style stats keyed by id become named entries where the map knows the name
        id_to_name = {i: n for n, i in self.speaker_ids.items()}
        for sid, s in self.by_id.items():
            if sid in id_to_name:
                speakers.setdefault(id_to_name[sid], s)
        out: dict[str, Any] = {
            "format": FORMAT,
            "global": self.global_stats.to_dict() if self.global_stats else None,
            "speakers": {n: speakers[n].to_dict() for n in sorted(speakers)},
            "speaker_ids": dict(sorted(self.speaker_ids.items(), key=lambda kv: kv[1])),
            "extractor": self.extractor, "sample_rate": self.sample_rate}
        unnamed = {sid: s for sid, s in self.by_id.items() if sid not in id_to_name}
        if unnamed:
            out["speakers_by_id"] = {str(k): v.to_dict() for k, v in sorted(unnamed.items())}
        out.update({k: v for k, v in self.meta.items() if k not in out})
        return out

    def save(self, path: str | Path) -> Path:
        """Write our JSON format atomically."""
        from resyn_bench.core.atomic import write_text_atomic

        return write_text_atomic(Path(path).expanduser(), json.dumps(self.to_dict(), indent=1) + "\n")

    def to_reference_dict(self) -> dict:
        """The reference layout (``torch.save`` it for the original code): integer speaker ids
        -> {'f0_mean', 'f0_std'} plus global 'f0_mean'/'f0_std' when known. Plain Python
        numbers, so it also loads with ``weights_only=True``."""
        out: dict[Any, Any] = {}
        for sid, s in self.by_id.items():
            out[sid] = {"f0_mean": s.mean, "f0_std": s.std}
        for name, s in self.speakers.items():
            if name in self.speaker_ids:
                out[self.speaker_ids[name]] = {"f0_mean": s.mean, "f0_std": s.std}
        if self.global_stats is not None:
            out["f0_mean"], out["f0_std"] = self.global_stats.mean, self.global_stats.std
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> F0Stats:
        where = source or "F0 stats"
        if data.get("format", FORMAT) != FORMAT:
            raise F0StatsError(f"{where}: unknown format {data.get('format')!r} "
                               f"(expected {FORMAT!r})")

        def entry(d: Any, what: str) -> SpeakerF0:
            if not isinstance(d, Mapping) or "mean" not in d or "std" not in d:
                raise F0StatsError(f"{where}: {what} needs 'mean' and 'std'")
            n = d.get("n_frames")
            return SpeakerF0(float(d["mean"]), _positive_std(float(d["std"]), f"{where} {what}"),
                             None if n is None else int(n))

        g = data.get("global")
        speakers = {str(n): entry(d, f"speaker {n!r}")
                    for n, d in (data.get("speakers") or {}).items()}
        by_id = {int(k): entry(d, f"speaker id {k}")
                 for k, d in (data.get("speakers_by_id") or {}).items()}
        known = {"format", "global", "speakers", "speakers_by_id", "speaker_ids", "extractor",
                 "sample_rate"}
        return cls(global_stats=entry(g, "global") if g is not None else None,
                   speakers=speakers, by_id=by_id,
                   speaker_ids=load_speaker_ids(data.get("speaker_ids") or {}) or {},
                   extractor=data.get("extractor"), sample_rate=data.get("sample_rate"),
                   source=source, meta={k: v for k, v in data.items() if k not in known})

    @classmethod
    def from_reference(cls, data: Mapping, speaker_ids: Mapping[str, int] | None = None,
                       source: str | None = None) -> F0Stats:
        """Stats from the reference dict (global 'f0_mean'/'f0_std' and/or int id keys)."""
        where = source or "reference F0 stats"
        g = None
        if "f0_mean" in data or "f0_std" in data:
            try:
                g = SpeakerF0(float(data["f0_mean"]),
                              _positive_std(float(data["f0_std"]), f"{where} global"))
            except KeyError as exc:
                raise F0StatsError(f"{where}: has {exc.args[0]!r} missing beside its "
                                   "global F0 key") from None
        by_id: dict[int, SpeakerF0] = {}
        for key, value in data.items():
            if isinstance(key, str) and key in ("f0_mean", "f0_std"):
                continue
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
                raise F0StatsError(f"{where}: unexpected key {key!r} (expected 'f0_mean', "
                                   "'f0_std' or integer speaker ids)")
            if not isinstance(value, Mapping) or "f0_mean" not in value or "f0_std" not in value:
                raise F0StatsError(f"{where}: speaker id {key} needs 'f0_mean' and 'f0_std'")
            by_id[int(key)] = SpeakerF0(float(value["f0_mean"]), _positive_std(
                float(value["f0_std"]), f"{where} speaker id {key}"))
        if g is None and not by_id:
            raise F0StatsError(f"{where}: holds no F0 statistics")
        return cls(global_stats=g, by_id=by_id, speaker_ids=dict(speaker_ids or {}),
                   source=source, meta={"format_read": "speech-resynthesis torch dict"})


def load_f0_stats(path: str | Path,
                  speaker_ids: str | Path | Mapping[str, int] | None = None) -> F0Stats:
    """Read our JSON stats or a reference ``f0_stats.pth/.th`` file (safely).

    ``speaker_ids`` (a dict, or a JSON file with one) names the reference file's integer ids;
    for our JSON files it overrides the stored map."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise F0StatsError(f"F0 stats file not found: {path}; make one with `resyn-bench "
                           "f0-stats --dataset ... --out FILE.json` or use the reference "
                           "datasets/*/f0_stats.* files")
    ids = load_speaker_ids(speaker_ids)
    head = path.read_bytes()[:64].lstrip()
    if head.startswith(b"{"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise F0StatsError(f"{path}: not valid JSON ({exc})") from None
        stats = F0Stats.from_dict(data, source=str(path))
        if ids is not None:
            stats.speaker_ids = ids
        return stats
    from resyn_bench.safeload import safe_torch_load

    data = safe_torch_load(path)
    if not isinstance(data, Mapping):
        raise F0StatsError(f"{path}: expected a dict of F0 statistics, got {type(data).__name__}")
    return F0Stats.from_reference(data, ids, source=str(path))


# --------------------------------------------------------------------------------------------
# Computing statistics
# --------------------------------------------------------------------------------------------

@dataclass
class _Moments:
    """Running count / mean / sum of squared deviations (Chan et al. parallel update)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        nb = x.size
        if nb == 0:
            return
        mb = float(x.mean())
        m2b = float(((x - mb) ** 2).sum())
        n = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.n = n

    def result(self) -> SpeakerF0 | None:
        if self.n == 0:
            return None
        return SpeakerF0(self.mean, math.sqrt(self.m2 / self.n), self.n)


def compute_f0_stats(dataset, extractor: str = "pyworld", *,
                     speaker_ids: Mapping[str, int] | None = None, cache_dir: str | Path | None = None,
                     progress: Callable[[int, int, str], None] | None = None,
                     min_voiced_frames: int = 1, jobs: int = 1) -> F0Stats:
    """Per-speaker and global mean / population std of voiced F0 (Hz) over ``dataset``
    (a :class:`resyn_bench.datasets.Dataset` or any iterable of utterances with ``utt_id``,
    ``speaker`` and ``path``).

    Audio is loaded as for vocoder training (16 kHz, peak-normalised x0.95) and F0 extracted
    with :func:`resyn_bench.systems.vocoder.data.extract_f0` (``"pyworld"`` or ``"yaapt"``);
    ``cache_dir`` shares the on-disk F0 cache with training; ``jobs`` > 1 extracts F0 in that
    many processes first (YAAPT is slow on large corpora). Unreadable files are skipped and
    listed in ``meta["failed"]``; speakers with fewer than ``min_voiced_frames`` voiced frames
    get no entry (lookups fall back to the global values). ``speaker_ids`` defaults to the
    sorted speaker names (the reference convention)."""
    from resyn_bench.audio import AudioError
    from resyn_bench.systems.vocoder.data import F0Cache, fill_f0_cache, load_training_audio

    utts = list(dataset)
    if not utts:
        raise F0StatsError("compute_f0_stats: the dataset has no utterances")
    cache = F0Cache(extractor, cache_dir=cache_dir)
    if jobs > 1:
        fill_f0_cache(cache, [u.path for u in utts], jobs,
                      progress=None if progress is None else
                      (lambda i, n: progress(i, n, "(extracting F0)")))
    per_spk: dict[str, _Moments] = {}
    total = _Moments()
    failed: dict[str, str] = {}
    n_utts = 0
    for i, utt in enumerate(utts):
        if progress is not None:
            progress(i, len(utts), utt.utt_id)
        f0 = cache.cached(str(utt.path))
        if f0 is None:
            try:
                wav = load_training_audio(utt.path)
            except AudioError as exc:
                failed[utt.utt_id] = str(exc)
                continue
            f0 = cache.get(wav, key=str(utt.path))
        voiced = f0[f0 > 0]
        per_spk.setdefault(str(utt.speaker), _Moments()).add(voiced)
        total.add(voiced)
        n_utts += 1
    if progress is not None:
        progress(len(utts), len(utts), "")
    g = total.result()
    if g is None:
        raise F0StatsError(f"compute_f0_stats: no voiced frames in {n_utts} utterances "
                           f"({len(failed)} unreadable) with extractor {extractor!r}")
    speakers = {}
    for name, mom in per_spk.items():
        s = mom.result()
        if s is not None and s.n_frames >= min_voiced_frames and s.std > 0:
            speakers[name] = s
    ids = dict(speaker_ids) if speaker_ids is not None else speaker_ids_from_names(per_spk)
    missing = sorted(set(per_spk) - set(ids))
    if missing:
        raise F0StatsError(f"speaker_ids has no id for speakers {missing[:5]}")
    info = getattr(dataset, "info", {}) or {}
    meta = {"dataset": info.get("dataset", getattr(dataset, "name", None)),
            "n_utterances": n_utts, "voiced_frames": total.n,
            "extractor_params": cache.params, "frame_hop": 80,
            "speakers_without_stats": sorted(set(per_spk) - set(speakers))}
    if failed:
        meta["failed"] = failed
    return F0Stats(global_stats=g, speakers=speakers, speaker_ids=ids, extractor=extractor,
                   sample_rate=16000, meta=meta)
