"""Evaluate one system on one dataset, writing a resumable run directory.

For each utterance: load + validate the reference, get reference-side analyses (cached by content
hash + settings), run the system, validate and save its output, score every metric group, then
append one record. Any failure is recorded with its stage and reason and the run goes on; a
failed utterance is never given a score.

With ``jobs > 1`` utterances are evaluated in worker processes, each holding its own system and
metric objects; only the parent process writes records, so the store stays append-only and the
numbers do not depend on the number of workers.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from resyn_bench import __version__
from resyn_bench.audio import (Audio, AudioError, ResampleLog, ensure_rate, load_audio, validate,
                               write_audio)
from resyn_bench.cache import AnalysisCache, audio_hash
from resyn_bench.store import MANIFEST, OUTPUTS, RecordStore, read_manifest, write_json_atomic


class RunError(RuntimeError):
    """The run as a whole cannot start (bad configuration, incompatible existing run dir)."""


@dataclass
class RunConfig:
    system: str
    dataset: str
    out: str
    data_root: str | None = None
    split: str | None = None
    limit: int | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    metrics: str = "fast"
    f0_preset: str | None = None
    system_options: dict[str, Any] = field(default_factory=dict)
    resume: bool = True
    overwrite: bool = False
    retry_failed: bool = False
    save_audio: bool = True
    use_cache: bool = True
    cache_dir: str | None = None
    jobs: int = 1

    def identity(self) -> dict[str, Any]:
        """Fields that must match for a run directory to be resumed."""
        return {k: getattr(self, k) for k in ("system", "dataset", "data_root", "split",
                                              "dataset_options", "metrics", "f0_preset",
                                              "system_options")}


def _metric_options(config: RunConfig, name: str) -> dict[str, Any]:
    if name == "f0" and config.f0_preset:
        return {"preset": config.f0_preset}
    return {}


def _resampler_id() -> str:
    try:
        from importlib.metadata import version

        return f"soxr-{version('soxr')}-HQ"
    except Exception:
        return "soxr-HQ"


class Evaluator:
    """Holds one system and its metric groups; evaluates one utterance at a time."""

    def __init__(self, config: RunConfig):
        from resyn_bench.registry import make_metric, make_system, resolve_metric_names

        self.config = config
        self.system = make_system(config.system, **config.system_options)
        self.groups = [make_metric(n, **_metric_options(config, n))
                       for n in resolve_metric_names(config.metrics)]
        self.cache = AnalysisCache(config.cache_dir, enabled=config.use_cache)
        self.outputs_dir = Path(config.out) / OUTPUTS if config.save_audio else None
        self.resampler = _resampler_id()

    # -- reference side -------------------------------------------------------------------
    def _reference_analysis(self, group, ref: Audio, content: str, log: ResampleLog, cache_use: dict):
        key = self.cache.key(content, group.name, {"settings": group.settings(),
                                                   "rate": group.sample_rate,
                                                   "resampler": self.resampler})
        cached = self.cache.get(key)
        if cached is not None:
            cache_use[group.name] = "hit"
            return cached
        cache_use[group.name] = "miss"
        audio = ensure_rate(ref, group.sample_rate, purpose=f"metric {group.name} (reference)", log=log)
        analysis = group.analyse_reference(audio)
        self.cache.put(key, analysis)
        return analysis

    # -- one utterance ----------------------------------------------------------------------
    def evaluate(self, utt) -> tuple[dict[str, Any], dict[str, int]]:
        log = ResampleLog()
        timings: dict[str, float] = {}
        record: dict[str, Any] = {"utt_id": utt.utt_id, "speaker": utt.speaker, "text": utt.text,
                                  "reference_path": str(utt.path), "system": self.config.system,
                                  "dataset": self.config.dataset, "metrics": {}, "counts": {},
                                  "extra": {}, "errors": {}, "timings": timings}

        def fail(stage: str, reason: str, kind: str | None = None):
            record.update(status="failed", stage=stage, reason=reason, error_kind=kind)
            return record, log.counts

        t = time.perf_counter()
        try:
            ref = validate(load_audio(utt.path), what="reference audio")
        except AudioError as exc:
            return fail("reference", str(exc), exc.kind)
        record["duration_s"] = ref.duration
        record["reference_sample_rate"] = ref.sample_rate
        timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        content = audio_hash(ref.samples, ref.sample_rate)
        references, cache_use = {}, {}
        for group in self.groups:
            try:
                references[group.name] = self._reference_analysis(group, ref, content, log, cache_use)
            except Exception as exc:  # a metric's own failure on this reference
                record["errors"][group.name] = f"reference analysis: {type(exc).__name__}: {exc}"
        record["cache"] = cache_use
        timings["reference"] = time.perf_counter() - t

        t = time.perf_counter()
        try:
            system_in = ensure_rate(ref, self.system.input_sample_rate, purpose="system input", log=log)
            out = self.system.resynthesize(system_in, utt)
        except Exception as exc:
            return fail("system", f"{type(exc).__name__}: {exc}")
        timings["system"] = time.perf_counter() - t

        t = time.perf_counter()
        try:
            out = validate(out, what="system output")
        except AudioError as exc:
            return fail("output", str(exc), exc.kind)
        if out.path is not None:
            # The output already is a file (copy, outputs:DIR): point at it, don't duplicate it.
            record["output_path"] = str(Path(out.path).resolve())
        elif self.outputs_dir is not None:
            # Score exactly what is stored, so re-scoring the saved files (outputs:DIR)
            # reproduces this run's numbers.
            clipped = int((abs(out.samples) > 1.0).sum())
            if clipped:
                record["extra"]["clipped_samples"] = clipped
            path = self.outputs_dir / f"{utt.utt_id}.wav"
            write_audio(path, out)
            out = load_audio(path)
            record["output_path"] = f"{OUTPUTS}/{path.name}"
        record["output_duration_s"] = out.duration
        record["output_sample_rate"] = out.sample_rate
        timings["save"] = time.perf_counter() - t

        t = time.perf_counter()
        for group in self.groups:
            if group.name in record["errors"]:
                continue
            try:
                scored = ensure_rate(out, group.sample_rate, purpose=f"metric {group.name} (output)",
                                     log=log)
                score = group.score(references[group.name], scored, utt)
            except Exception as exc:
                record["errors"][group.name] = f"{type(exc).__name__}: {exc}"
                continue
            record["metrics"].update(score.values)
            # counts are group-local names; records namespace them ("f0.n_frames")
            record["counts"].update({f"{group.name}.{k}": v for k, v in score.counts.items()})
            if score.extra:
                record["extra"][group.name] = score.extra
        timings["score"] = time.perf_counter() - t

        if not record["errors"]:
            record["status"] = "ok"
        elif len(record["errors"]) == len(self.groups):
            record.update(status="failed", stage="metrics",
                          reason="; ".join(f"{k}: {v}" for k, v in record["errors"].items()))
        else:
            record["status"] = "partial"
        return record, log.counts


# Worker-process state for jobs > 1 (one Evaluator per process, built once).
_WORKER: Evaluator | None = None


def _worker_init(config: RunConfig) -> None:
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER = Evaluator(config)


def _worker_evaluate(utt):
    assert _WORKER is not None
    return _WORKER.evaluate(utt)


@dataclass
class RunResult:
    run_dir: Path
    n_total: int
    n_done_before: int
    n_processed: int
    n_failed: int
    wall_s: float
    interrupted: bool = False


def _prepare_run_dir(config: RunConfig, store: RecordStore) -> dict[str, Any] | None:
    run_dir = Path(config.out)
    manifest_path = run_dir / MANIFEST
    if config.overwrite and run_dir.exists():
        for name in (MANIFEST, store.path.name):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / OUTPUTS, ignore_errors=True)
        return None
    if not manifest_path.exists():
        if store.path.exists() and store.path.stat().st_size:
            raise RunError(f"{run_dir} has records but no manifest; refusing to mix runs "
                           "(use a new --out, or --overwrite)")
        return None
    if not config.resume:
        raise RunError(f"{run_dir} already holds a run; resume it (drop --no-resume), "
                       "choose a new --out, or pass --overwrite to start again")
    previous = read_manifest(run_dir)
    mine, theirs = config.identity(), previous.get("config", {}).get("identity", {})
    diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
    if diff:
        details = "; ".join(f"{k}: run has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise RunError(f"cannot resume {run_dir}: settings differ ({details}). "
                       "Use a new --out, or --overwrite")
    return previous


def run(config: RunConfig, progress: bool = True) -> RunResult:
    from resyn_bench.datasets import load_dataset
    from resyn_bench.provenance import environment

    if config.jobs < 1:
        raise RunError("--jobs must be >= 1")
    dataset = load_dataset(config.dataset, config.data_root, config.split, config.limit,
                           **config.dataset_options)
    evaluator = Evaluator(config)  # builds system + metrics now: configuration errors surface early

    run_dir = Path(config.out)
    store = RecordStore(run_dir)
    previous = _prepare_run_dir(config, store)
    store.repair()
    done = store.load()
    if config.retry_failed:
        done = {k: r for k, r in done.items() if r.get("status") == "ok"}
    pending = [u for u in dataset.utterances if u.utt_id not in done]

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log = ResampleLog(dict((previous or {}).get("resampling", {})))
    sessions = list((previous or {}).get("sessions", []))
    manifest: dict[str, Any] = {
        "resyn_bench_version": __version__,
        "created": (previous or {}).get("created", started),
        "config": {**dataclasses.asdict(config), "identity": config.identity()},
        "system": evaluator.system.describe(),
        "dataset": {"name": dataset.name, "root": str(dataset.root) if dataset.root else None,
                    "n_utterances": len(dataset.utterances), **dataset.info},
        "metrics": {g.name: {"settings": g.settings(), "specs": [s.to_dict() for s in g.specs],
                             "analysis_sample_rate": g.sample_rate} for g in evaluator.groups},
        "environment": environment(),
        "resampling": log.counts,
        "sessions": sessions,
        "status": "running",
    }
    write_json_atomic(run_dir / MANIFEST, manifest)

    stage_s: dict[str, float] = {}
    n_processed = n_failed = 0
    cache_hits = cache_misses = 0
    t0 = time.perf_counter()
    interrupted = False
    bar = _progress(len(pending), f"{config.system} on {config.dataset}", progress)

    def accept(record, counts):
        nonlocal n_processed, n_failed, cache_hits, cache_misses
        store.append(record)
        log.merge(counts)
        n_processed += 1
        n_failed += record["status"] == "failed"
        for stage, seconds in record.get("timings", {}).items():
            stage_s[stage] = stage_s.get(stage, 0.0) + seconds
        for use in record.get("cache", {}).values():
            cache_hits += use == "hit"
            cache_misses += use == "miss"
        if bar is not None:
            bar.update(1)

    try:
        if config.jobs == 1 or len(pending) <= 1:
            for utt in pending:
                accept(*evaluator.evaluate(utt))
        else:
            _run_parallel(config, pending, accept)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t0
        sessions.append({"started": started,
                         "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "n_pending": len(pending), "n_processed": n_processed,
                         "n_skipped_done": len(dataset.utterances) - len(pending),
                         "n_failed": n_failed, "wall_s": round(wall, 3), "jobs": config.jobs,
                         "stage_s": {k: round(v, 3) for k, v in stage_s.items()},
                         "reference_cache": {"hits": cache_hits, "misses": cache_misses},
                         "interrupted": interrupted})
        manifest["resampling"] = log.counts
        manifest["status"] = "interrupted" if interrupted else "complete"
        write_json_atomic(run_dir / MANIFEST, manifest)
    if interrupted:
        raise KeyboardInterrupt
    return RunResult(run_dir, len(dataset.utterances), len(dataset.utterances) - len(pending),
                     n_processed, n_failed, wall)


def _run_parallel(config: RunConfig, pending, accept) -> None:
    window = config.jobs * 2  # bounded in-flight work: a kill loses at most this many
    with ProcessPoolExecutor(max_workers=config.jobs, initializer=_worker_init,
                             initargs=(config,)) as pool:
        todo = iter(pending)
        inflight = set()
        for utt in todo:
            inflight.add(pool.submit(_worker_evaluate, utt))
            if len(inflight) >= window:
                break
        while inflight:
            finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in finished:
                accept(*fut.result())
            for utt in todo:
                inflight.add(pool.submit(_worker_evaluate, utt))
                if len(inflight) >= window:
                    break


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="utt", dynamic_ncols=True)
