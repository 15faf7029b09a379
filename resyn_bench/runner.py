"""Evaluate one system on one dataset, writing a resumable run directory.

Phase 1 (synthesis), per utterance: load + validate the reference, run the system, validate and
store its output. Phase 2 (scoring), one metric group at a time: load the group's models once,
get reference-side analyses (cached by content hash + settings), fit a corpus model if the
group needs one (speaker-ID), score every stored output, release the models - so peak memory
does not grow with the number of metric groups selected.

Every step appends one part to the record log; any failure is recorded with its stage and
reason and the run goes on; a failed utterance is never given a score. A killed run resumes
with the parts that are missing.

The system and each metric group run in supervised worker processes (``jobs`` of them;
resyn_bench.supervisor), so a native crash or a hang costs one utterance, recorded with its
cause, never the run; only the parent process writes records, so the numbers do not depend on
the number of workers. ``isolate=False`` runs everything in this process (with ``jobs > 1``,
in an unsupervised process pool).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench import __version__
from resyn_bench.audio import (
    Audio,
    AudioError,
    ResampleLog,
    ensure_rate,
    header_duration,
    load_audio,
    validate,
    write_audio,
)
from resyn_bench.cache import AnalysisCache, audio_hash
from resyn_bench.core.allocator import keep_freed_memory
from resyn_bench.core.atomic import DiskFull, is_disk_full
from resyn_bench.core.threads import one_blas_thread, use_one_thread
from resyn_bench.errors import UserError
from resyn_bench.run_config import RunConfig, legacy_defaults
from resyn_bench.runfiles import SCHEMA_VERSION, RunFileError, check_schema_version
from resyn_bench.runfolder import (
    LOCK_FILE,
    RunFolderError,
    RunLock,
    SpaceReserve,
    check_unique_names,
    clear_run,
    id_problem,
    output_name,
    remove_leftovers,
)
from resyn_bench.store import (
    MANIFEST,
    OUTPUTS,
    QUARANTINE,
    RecordStore,
    RecordsWriteError,
    event_key,
    iter_events,
    manifest_metric_keys,
    metric_key,
    read_manifest,
    write_json_atomic,
)
from resyn_bench.systems.base import transmit

log_ = logging.getLogger("resyn_bench.runner")


class RunError(UserError, RuntimeError):
    """The run as a whole cannot start (bad configuration, incompatible existing run dir)."""


class RunStopped(RunError):
    """The run stopped cleanly part way (disk full, record log unwritable); resumable."""


def _metric_options(config: RunConfig, name: str) -> dict[str, Any]:
    options = dict(config.metric_options.get(name, {}))
    if name == "f0" and config.f0_preset:
        options["preset"] = config.f0_preset
    return options


def group_options(config: RunConfig, name: str) -> dict[str, Any]:
    """The options a metric group is built with: its ``-m`` options, plus ``device`` (from
    ``config.device`` or :func:`resolve_device`) when the group takes one and ``-m
    GROUP.device=`` was not given. Record keys use :func:`_metric_options` (without the device):
    a group whose numbers depend on the device says so in its ``settings()``."""
    from resyn_bench import registry

    options = _metric_options(config, name)
    if "device" not in options and name in registry.METRIC_GROUPS:
        factory = registry.METRIC_GROUPS[name].load()
        if registry.takes_option(factory, "device", options):
            from resyn_bench.distributed import resolve_device

            options["device"] = resolve_device(config.device)
    return options


def system_options(config: RunConfig) -> dict[str, Any]:
    """The options the system is built with: ``-o`` options, plus ``device`` when the system
    takes one (vocoders, unit encoders) and ``-o device=`` was not given."""
    from resyn_bench import registry

    options = dict(config.system_options)
    if "device" not in options:
        try:
            entry, _arg = registry.system_entry(config.system)
            factory, option_class = entry.load(), entry.option_class()
        except Exception:  # noqa: BLE001 - make_system reports a bad system itself
            return options
        if registry.takes_option(factory, "device", options, option_class):
            from resyn_bench.distributed import resolve_device

            options["device"] = resolve_device(config.device)
    return options


def metric_entry(config: RunConfig, group) -> dict[str, Any]:
    """A metric group's manifest entry (its record key is a hash of settings/options/rate)."""
    return {"settings": group.settings(), "specs": [s.to_dict() for s in group.specs],
            "options": _metric_options(config, group.name), "analysis_sample_rate": group.sample_rate}


def _resampler_id() -> str:
    from resyn_bench.core.versions import package_version

    v = package_version("soxr")
    return f"soxr-{v}-HQ" if v else "soxr-HQ"


def load_reference(path, limit: float | None) -> Audio:
    """The reference as the synthesis stage accepts it: AudioError (the part's stage
    "reference") when it lasts over ``limit`` seconds by its header (checked before decoding),
    cannot be read, or is not scorable. Sharded runs apply the same test to the utterances of
    the other shards, so the corpus models see the same recordings (resyn_bench.sharding)."""
    seconds = header_duration(path) if limit else None
    if seconds is not None and seconds > limit:
        raise AudioError("too_long", f"reference audio lasts {seconds:.1f} s, over "
                         f"--max-duration {limit:g} s (raise it, or split the file)")
    return validate(load_audio(path), what="reference audio")


class Synthesizer:
    """Phase 1, per utterance: load + validate the reference, run the system, validate and
    store the output. Holds the system only (no metric models)."""

    def __init__(self, config: RunConfig):
        from resyn_bench.registry import make_system

        self.config = config
        self.system = make_system(config.system, **system_options(config))
        self.outputs_dir = Path(config.out) / OUTPUTS

    def synthesize(self, utt) -> tuple[dict[str, Any], dict[str, int]]:
        log = ResampleLog()
        timings: dict[str, float] = {}
        record: dict[str, Any] = {"part": "synthesis", "utt_id": utt.utt_id, "speaker": utt.speaker,
                                  "text": utt.text, "reference_path": str(utt.path),
                                  "system": self.config.system, "dataset": self.config.dataset,
                                  "extra": {}, "timings": timings}

        def fail(stage: str, reason: str, kind: str | None = None):
            record.update(status="failed", stage=stage, reason=reason, error_kind=kind)
            return record, log.counts

        problem = id_problem(utt.utt_id)
        if problem:
            return fail("input", problem, "bad_id")
        if getattr(utt, "problem", None):   # a row of --conversions that cannot be evaluated
            record["target_speaker"] = str(utt.target_speaker)
            return fail("input", utt.problem, "bad_row")
        limit = self.config.max_duration
        t = time.perf_counter()
        try:
            ref = load_reference(utt.path, limit)
        except AudioError as exc:
            return fail("reference", str(exc), exc.kind)
        record["duration_s"] = ref.duration
        record["reference_sample_rate"] = ref.sample_rate
        # content hash: later passes find cached reference analyses without re-reading audio
        record["reference_hash"] = audio_hash(ref.samples, ref.sample_rate)
        timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        try:
            system_in = ensure_rate(ref, self.system.input_sample_rate, purpose="system input", log=log)
            out, bitstream = transmit(self.system, system_in, utt)
        except Exception as exc:
            if is_disk_full(exc):
                raise DiskFull(getattr(exc, "path", None) or getattr(exc, "filename", "?"),
                               exc) from exc
            return fail("system", f"{type(exc).__name__}: {exc}")
        timings["system"] = time.perf_counter() - t
        if bitstream:  # what the encoder actually produced (codecs): reports' measured bitrate
            record["bitstream"] = bitstream
        target = getattr(utt, "target_speaker", None) or getattr(self.system, "target_speaker", None)
        if target is not None:  # voice conversion: speaker metrics judge the output as this voice
            record["target_speaker"] = str(target)
        if getattr(utt, "f0_edit", None):  # a listed conversion's requested F0 edit
            record["f0_edit"] = str(utt.f0_edit)

        t = time.perf_counter()
        try:
            out = validate(out, what="system output")
        except AudioError as exc:
            return fail("output", str(exc), exc.kind)
        if limit and out.duration > limit:
            return fail("output", f"too_long: system output lasts {out.duration:.1f} s, over "
                        f"--max-duration {limit:g} s", "too_long")
        if out.path is not None:
            # The output already is a file (copy, outputs:DIR): point at it, don't duplicate it.
            record["output_path"] = str(Path(out.path).resolve())
        else:
            clipped = int((np.abs(out.samples) > 1.0).sum())
            if clipped:
                record["extra"]["clipped_samples"] = clipped
            # a safe, bounded, unique name derived from the id (the id itself is in the record)
            path = self.outputs_dir / output_name(utt.utt_id)
            try:
                write_audio(path, out)
            except DiskFull:
                raise  # the whole run stops (cleanly); this utterance is redone on resume
            except Exception as exc:  # this output cannot be stored: the utterance fails
                return fail("output", f"cannot write {path}: {type(exc).__name__}: {exc}",
                            "write_error")
            record["output_path"] = f"{OUTPUTS}/{path.name}"
        record["output_duration_s"] = out.duration
        record["output_sample_rate"] = out.sample_rate
        record["status"] = "ok"
        timings["save"] = time.perf_counter() - t
        return record, log.counts


class Scorer:
    """Phase 2, one metric group at a time: reference analyses (cached by content hash +
    settings), optional corpus fit, then scoring of every stored output.

    Outputs are scored as stored on disk, so re-scoring the saved files (outputs:DIR)
    reproduces a run's numbers exactly."""

    def __init__(self, config: RunConfig, group):
        self.config = config
        self.group = group
        self.cache = AnalysisCache(config.cache_dir, enabled=config.use_cache)
        self.resampler = _resampler_id()
        self.run_dir = Path(config.out)
        self.record_key = metric_key(group.name, metric_entry(config, group))

    def _key(self, content: str) -> str:
        g = self.group
        return self.cache.key(content, g.name, {"settings": g.settings(), "rate": g.sample_rate,
                                                "resampler": self.resampler})

    def reference(self, utt, content: str | None, log: ResampleLog) -> tuple[dict, str]:
        cached = self.cache.get(self._key(content)) if content else None
        if cached is not None:
            return cached, "hit"
        ref = load_audio(utt.path)
        content = content or audio_hash(ref.samples, ref.sample_rate)
        audio = ensure_rate(ref, self.group.sample_rate,
                            purpose=f"metric {self.group.name} (reference)", log=log)
        with one_blas_thread():   # numbers independent of --jobs and isolation
            analysis = self.group.analyse_reference(audio)
        self.cache.put(self._key(content), analysis)
        return analysis, "miss"

    def _event(self, utt) -> dict[str, Any]:
        return {"part": "metric", "group": self.group.name, "key": self.record_key,
                "utt_id": utt.utt_id}

    def _inputs(self, utt, synthesis: dict[str, Any], reference: dict | None,
                cache_use: str | None, log: ResampleLog):
        """What the group scores: (utterance, reference analysis, output audio, cache use)."""
        g = self.group
        if reference is None:
            reference, cache_use = self.reference(utt, synthesis.get("reference_hash"), log)
        out_path = Path(synthesis["output_path"])
        out = load_audio(out_path if out_path.is_absolute() else self.run_dir / out_path)
        out = ensure_rate(out, g.sample_rate, purpose=f"metric {g.name} (output)", log=log)
        if synthesis.get("target_speaker"):
            utt = dataclasses.replace(utt, target_speaker=synthesis["target_speaker"])
        return utt, reference, out, cache_use

    @staticmethod
    def _failed(event: dict[str, Any], exc: BaseException, t0: float,
                log: ResampleLog) -> tuple[dict[str, Any], dict[str, int]]:
        if is_disk_full(exc):  # not the utterance's fault: the run stops, resume redoes it
            raise DiskFull(getattr(exc, "filename", None) or "the analysis cache", exc) from exc
        event.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                     timings={"total": time.perf_counter() - t0})
        return event, log.counts

    def _skipped_without_text(self, utt) -> dict[str, Any] | None:
        g = self.group
        if g.needs_text and not utt.text:
            return {**self._event(utt), "status": "skipped",
                    "reason": f"{g.name} needs a transcript; this utterance has none"}
        return None

    def score(self, utt, synthesis: dict[str, Any], reference: dict | None = None,
              cache_use: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
        log = ResampleLog()
        skipped = self._skipped_without_text(utt)
        if skipped is not None:
            return skipped, log.counts
        event = self._event(utt)
        t0 = time.perf_counter()
        try:
            utt, reference, out, cache_use = self._inputs(utt, synthesis, reference, cache_use, log)
            event["cache"] = cache_use
            t1 = time.perf_counter()
            with one_blas_thread():
                score = self.group.score(reference, out, utt)
        except Exception as exc:  # this metric fails for this utterance: recorded, not scored
            return self._failed(event, exc, t0, log)
        event.update(status="ok", values=score.values, counts=score.counts, extra=score.extra,
                     timings={"reference": t1 - t0, "score": time.perf_counter() - t1})
        return event, log.counts

    def score_many(self, items: list[tuple]) -> list[tuple[dict[str, Any], dict[str, int]]]:
        """``score`` of several utterances (``items``: (utt, synthesis, reference or None,
        cache use or None)), their outputs given to the group's ``score_batch`` together. Each
        utterance's record is what ``score`` gives it, within the group's batching tolerance;
        ``timings`` carry the batch size and an equal share of the batch's scoring time."""
        results: list[Any] = [None] * len(items)
        ready = []
        for i, (utt, synthesis, reference, cache_use) in enumerate(items):
            log = ResampleLog()
            skipped = self._skipped_without_text(utt)
            if skipped is not None:
                results[i] = (skipped, log.counts)
                continue
            event = self._event(utt)
            t0 = time.perf_counter()
            try:
                inputs = self._inputs(utt, synthesis, reference, cache_use, log)
            except Exception as exc:
                results[i] = self._failed(event, exc, t0, log)
                continue
            event["cache"] = inputs[3]
            ready.append((i, event, log, t0, time.perf_counter(), inputs))
        if ready:
            t = time.perf_counter()
            try:
                with one_blas_thread():
                    scores = self.group.score_batch([r[5][1] for r in ready], [r[5][2] for r in ready],
                                                    [r[5][0] for r in ready])
                if len(scores) != len(ready):
                    raise RuntimeError(f"{self.group.name}.score_batch returned {len(scores)} "
                                       f"results for {len(ready)} utterances")
            except Exception:  # the batch as a whole failed: one at a time, so only the bad
                scores = []    # utterance fails, with its own reason
                for _, _, _, _, _, (utt, reference, out, _) in ready:
                    try:
                        with one_blas_thread():
                            scores.append(self.group.score(reference, out, utt))
                    except Exception as exc:
                        scores.append(exc)
            share = (time.perf_counter() - t) / len(ready)
            for (i, event, log, t0, t1, _), score in zip(ready, scores, strict=True):
                if isinstance(score, BaseException):
                    results[i] = self._failed(event, score, t0, log)
                    continue
                event.update(status="ok", values=score.values, counts=score.counts,
                             extra=score.extra, timings={"reference": t1 - t0, "score": share,
                                                         "batch": len(ready)})
                results[i] = (event, log.counts)
        return results


def batch_size_of(group) -> int:
    """The group's ``batch_size`` (1 for groups without one: plugins need not derive from
    MetricGroup)."""
    return max(1, int(getattr(group, "batch_size", 1) or 1))


def score_batches(todo: list, batch_size: int, seconds) -> list[list]:
    """``todo`` in batches of up to ``batch_size`` utterances of similar length (sorted by
    ``seconds(utt)``, longest first: padding inside a batch stays small)."""
    if batch_size <= 1:
        return [[u] for u in todo]
    ordered = sorted(todo, key=lambda u: -(seconds(u) or 0.0))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


# Worker-process state for jobs > 1 (built once per process).
_WORKER: Any = None


def _init_synth_worker(config: RunConfig) -> None:
    global _WORKER
    use_one_thread()
    keep_freed_memory()
    _WORKER = Synthesizer(config)


def _synth_task(utt):
    return _WORKER.synthesize(utt)


def _init_score_worker(config: RunConfig, group_name: str) -> None:
    global _WORKER
    from resyn_bench.registry import make_metric

    use_one_thread()
    keep_freed_memory()
    group = make_metric(group_name, **group_options(config, group_name))
    group.load()
    _WORKER = Scorer(config, group)


def _score_task(item):
    utt, synthesis = item
    return _WORKER.score(utt, synthesis)


def _score_many_task(batch):
    return _WORKER.score_many([(utt, synthesis, None, None) for utt, synthesis in batch])


@dataclass
class RunResult:
    run_dir: Path
    n_total: int
    n_done_before: int
    n_processed: int
    n_failed: int
    wall_s: float
    interrupted: bool = False
    # merged, every group, without per-utterance details (store.lean_part): read those from the run
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    work_ids: list[str] = field(default_factory=list)
    n_metric_parts: int = 0         # metric parts scored this session
    dataset_info: dict[str, Any] = field(default_factory=dict)


def _prepare_run_dir(config: RunConfig, store: RecordStore) -> dict[str, Any] | None:
    run_dir = Path(config.out)
    manifest_path = run_dir / MANIFEST
    if config.overwrite and run_dir.exists():
        # only a folder whose manifest marks it as a run; only the suite's own files
        kept = clear_run(run_dir, (MANIFEST, store.path.name, QUARANTINE), OUTPUTS)
        if kept:
            log_.warning("--overwrite kept %d files the run did not write: %s", len(kept),
                         ", ".join(kept[:5]))
        return None
    if not manifest_path.exists():
        if store.path.exists() and store.path.stat().st_size:
            raise RunError(f"{run_dir} has records but no manifest; refusing to mix runs "
                           "(use a new --out; --overwrite deletes only folders with a manifest)")
        return None
    if not config.resume:
        raise RunError(f"{run_dir} already holds a run; resume it (drop --no-resume), "
                       "choose a new --out, or pass --overwrite to start again")
    previous = read_manifest(run_dir)
    try:   # a run of a newer schema is refused, not rewritten in the old layout
        check_schema_version(previous, manifest_path)
    except RunFileError as exc:
        raise RunError(str(exc)) from None
    mine, theirs = config.identity(), previous.get("config", {}).get("identity", {})
    # runs written before a field existed hold its legacy value (declared on the field)
    defaults = legacy_defaults()
    diff = {k: (theirs.get(k, defaults.get(k)), v) for k, v in mine.items()
            if theirs.get(k, defaults.get(k)) != v}
    if diff:
        details = "; ".join(f"{k}: run has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise RunError(f"cannot resume {run_dir}: settings differ ({details}). "
                       "Use a new --out, or --overwrite")
    return previous


def _precheck(system, work) -> None:
    """A system that can tell up front that nothing will work (outputs:DIR matching no file)
    says so before any work, with what it tried."""
    check = getattr(system, "precheck", None)
    if check is not None and work:
        problem = check(work)
        if problem:
            raise RunError(problem)


def conversion_utterances(utterances, system, n_targets: int, seed: int = 0) -> list:
    """Voice conversion work list: every utterance once per target speaker (the paper converts
    each test utterance to 5 random targets). Targets are drawn from the system's speakers other
    than the source, without replacement, with a generator seeded by (seed, utterance id), so the
    choice does not depend on order, sharding or resuming. Ids become ``<utt_id>__to_<target>``."""
    import random

    if getattr(system, "target_speaker", None) is not None:
        # the system would render every output in its fixed voice while the records (and the
        # speaker metrics) carry the per-utterance targets: refuse rather than mis-score
        raise RunError(f"--vc-targets chooses a target voice per utterance; the system is fixed "
                       f"to speaker {system.target_speaker!r} (-o speaker=): use one or the other")
    voices = system.speakers()
    if not voices:
        raise RunError(f"voice conversion (--vc-targets) needs a system with a choice of speakers; "
                       f"{system.name or type(system).__name__} has none")
    out = []
    for utt in utterances:
        candidates = sorted(v for v in voices if v != utt.speaker)
        if not candidates:
            raise RunError(f"no target speaker other than {utt.speaker!r} for {utt.utt_id}")
        rng = random.Random(f"{seed}:{utt.utt_id}")
        for target in rng.sample(candidates, min(n_targets, len(candidates))):
            out.append(dataclasses.replace(utt, utt_id=f"{utt.utt_id}__to_{target}",
                                           target_speaker=target))
    return out


def _listed_conversions(config: RunConfig, utterances) -> list:
    """The work list of ``--conversions`` (:mod:`resyn_bench.conversions`); RunError for a list
    that cannot be used (before any work)."""
    from resyn_bench.conversions import ConversionListError, conversion_work, list_experiment

    if config.vc_targets:
        raise RunError("--conversions lists the conversions to evaluate; --vc-targets chooses "
                       "them: use one or the other")
    extra = any((opts or {}).get("enroll_dataset") for opts in config.metric_options.values())
    listing = config.system_options["conversions"]
    try:
        expected = list_experiment(listing)
        work = conversion_work(listing, utterances, extra_speakers=extra)
    except ConversionListError as exc:
        raise RunError(str(exc)) from None
    # the rows' F0 edits decide what the run measures; a run labelled otherwise would be
    # summarised as the wrong experiment (unedited rows may be a vc or a resynthesis run)
    edited = expected.startswith("f0_")
    if (edited and config.experiment != expected) or (not edited and config.experiment.startswith("f0_")):
        raise RunError(f"--conversions {listing}: its rows make a {expected} run, not "
                       f"--experiment {config.experiment}; give --experiment {expected}"
                       if edited else f"--conversions {listing}: its rows ask for no F0 edit, so "
                       f"it cannot be an {config.experiment} run (give f0_edit in the list)")
    return work


def _with_target_refs(config: RunConfig, work) -> RunConfig:
    """The config with the speaker metrics enrolling the targets given by reference recordings
    (``target_ref``), after logging how many seconds each target has (a warning under
    :data:`resyn_bench.conversions.MIN_ENROL_S`)."""
    from resyn_bench.conversions import MIN_ENROL_S, reference_seconds, target_references

    refs = target_references(work)
    if not refs:
        return config
    for target, seconds in sorted(reference_seconds(refs).items()):
        n = len(refs[target])
        if seconds < MIN_ENROL_S:
            log_.warning("target %s: %.1f s of reference audio in %d recording(s), under %.0f s: "
                         "its speaker embedding may be unstable; give more with target_ref",
                         target, seconds, n, MIN_ENROL_S)
        else:
            log_.info("target %s: %.1f s of reference audio in %d recording(s)", target, seconds, n)
    options = {**config.metric_options}
    options["spk"] = {**(options.get("spk") or {}), "enroll_refs": refs}
    return dataclasses.replace(config, metric_options=options)


def _stored_work(dataset, done_synth: dict[str, dict], conversion: bool) -> list:
    """Score-only work list: the dataset's utterances or (voice conversion) each stored
    ``<utt_id>__to_<target>`` output, rebuilt from the records without loading the system.
    Utterances without a stored output stay in the list (reported, not scored)."""
    by_id = {u.utt_id: u for u in dataset.utterances}
    if not conversion:
        return list(dataset.utterances)
    work = []
    for uid, rec in done_synth.items():
        source, sep, target = uid.rpartition("__to_")
        if sep and uid not in by_id and source in by_id:
            work.append(dataclasses.replace(by_id[source], utt_id=uid,
                                            target_speaker=rec.get("target_speaker") or target))
    return work


def run(config: RunConfig, progress: bool = True, score_only: bool = False) -> RunResult:
    """Evaluate ``config.system`` on the dataset into ``config.out`` (see the module notes),
    holding the run folder's lock for the run's lifetime (a second run on it gets RunError).

    Metric groups are additive: on an existing run directory, groups (or group settings) not
    scored yet are scored on the stored outputs, and the manifest lists every group/settings
    pair the records hold. ``score_only``: never run the system (``resyn-bench score``);
    utterances without a stored output are reported, not made."""
    run_dir = Path(config.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {config.out} is an existing file, not a run folder")
    existed = run_dir.exists()
    _check_outputs_dir(config)
    try:
        with RunLock(run_dir):
            return _run(config, progress, score_only)
    except RunFolderError as exc:
        raise RunError(str(exc)) from None
    except DiskFull as exc:  # no space to start (or not even for the final manifest)
        raise RunStopped(f"stopped: disk full ({exc.strerror}); finished utterances are saved "
                         "(nothing was evaluated if the run had not started). Free space and run "
                         "the same command again") from None
    finally:
        # a run that never started leaves no empty folder behind
        if not existed and run_dir.is_dir() and os.listdir(run_dir) == [LOCK_FILE]:
            try:
                (run_dir / LOCK_FILE).unlink()
                run_dir.rmdir()
            except OSError:
                pass


def _check_outputs_dir(config: RunConfig) -> None:
    """``outputs:DIR --overwrite`` must not delete the files it is about to score."""
    if not (config.overwrite and config.system.startswith("outputs:")):
        return
    src = Path(config.system.partition(":")[2]).expanduser().resolve()
    out = Path(config.out).expanduser().resolve()
    if src == out or out in src.parents:
        raise RunError(f"--overwrite refused: the outputs being scored ({src}) are inside --out "
                       f"{out}, which --overwrite would clear; choose another --out")


def _run(config: RunConfig, progress: bool, score_only: bool = False) -> RunResult:
    from resyn_bench.datasets import load_dataset
    from resyn_bench.provenance import environment
    from resyn_bench.registry import make_metric, resolve_metric_names

    if config.jobs < 1:
        raise RunError("--jobs must be >= 1")
    if config.vc_targets < 0:
        raise RunError("--vc-targets must be >= 0")
    dataset = load_dataset(config.dataset, config.data_root, config.split, config.limit,
                           **config.dataset_options)
    if score_only and (config.overwrite or not (Path(config.out) / MANIFEST).is_file()):
        raise RunError(f"{config.out} holds no run to score (no {MANIFEST}); "
                       "`resyn-bench run` makes one")
    listed = None
    if config.system_options.get("conversions"):   # another tool's conversions (a list)
        listed = _listed_conversions(config, dataset.utterances)
        config = _with_target_refs(config, listed)
    # build everything now, so configuration errors surface before any work
    synthesizer = None if score_only else Synthesizer(config)
    groups = [make_metric(n, **group_options(config, n)) for n in resolve_metric_names(config.metrics)]
    sharded = None   # config.shard: this shard of the work list (resyn_bench.sharding)
    if not score_only:
        # what the system is run on: the dataset's utterances, or (voice conversion) each of
        # them once per target speaker; corpus models (speaker ID) still fit on the real
        # recordings only
        work = conversion_utterances(dataset.utterances, synthesizer.system, config.vc_targets,
                                     config.vc_seed) if config.vc_targets else dataset.utterances
        if listed is not None:
            work = listed
        check_unique_names(u.utt_id for u in work)
        if config.shard:
            from resyn_bench.sharding import take_shard

            sharded = take_shard(config.shard, work, dataset.utterances)
            work = sharded.work
        _precheck(synthesizer.system, work)
    run_dir = Path(config.out)
    store = RecordStore(run_dir)
    previous = _prepare_run_dir(config, store)
    # under the lock: temporary files of a stopped or killed run are leftovers
    for name in remove_leftovers(run_dir, OUTPUTS):
        log_.info("removed the leftover temporary file %s", name)
    if store.repair():
        log_.warning("%s: cut a torn last line (a killed write); that part is redone", store.path)
    # read line by line; of a metric part only what says it is done (not its contours etc.):
    # memory does not grow with the parts' details
    events = [_synthesis_mark(e) if e.get("part", "synthesis") == "synthesis" else _done_mark(e)
              for e in iter_events(store.path)]
    done_synth = {e["utt_id"]: e for e in events if e.get("part", "synthesis") == "synthesis"}
    if score_only:   # the stored outputs, without the system
        work = _stored_work(dataset, done_synth, bool(config.vc_targets
                                                      or config.system_options.get("conversions")))
        check_unique_names(u.utt_id for u in work)
        if config.shard:
            from resyn_bench.sharding import take_shard

            sharded = take_shard(config.shard, work, dataset.utterances)
            work = sharded.work
    from resyn_bench.overlap import check_overlap

    overlap = None if score_only else check_overlap(synthesizer.system, dataset.utterances,
                                                    dataset.name)

    # metric groups are additive; each group's records carry the key of its settings
    entries = {g.name: metric_entry(config, g) for g in groups}
    for name, entry in entries.items():
        entry["key"] = metric_key(name, entry)
    before = dict((previous or {}).get("metrics") or {})
    legacy = dict((previous or {}).get("legacy_metric_keys") or {})
    for name, key in manifest_metric_keys(previous or {}).items():
        if not before[name].get("key"):  # written before records were keyed: its parts hold no key
            legacy.setdefault(name, key)
        before[name] = {**before[name], "key": key}
    metric_sets = dict((previous or {}).get("metric_sets") or {})
    for name, entry in [*before.items(), *entries.items()]:
        metric_sets.setdefault(entry["key"], {"group": name, **{k: entry.get(k) for k in (
            "settings", "options", "analysis_sample_rate")}})
    for name in entries:
        if name in before and before[name]["key"] != entries[name]["key"]:
            log_.warning("metric group %r: settings differ from the ones its records in %s were "
                         "scored with; scoring it again under the new settings (the earlier "
                         "records are kept apart, under %s)", name, run_dir, before[name]["key"])
    all_metrics = {**before, **entries}
    done_metric = {(e["utt_id"], event_key(e, legacy)) for e in events if e.get("part") == "metric"
                   and (e.get("status") != "failed" or not config.retry_failed)}
    del events   # what resuming needs is in done_synth and done_metric now
    if config.retry_failed and not score_only:
        done_synth = {k: e for k, e in done_synth.items() if e.get("status") == "ok"}
    pending = [] if score_only else [u for u in work if u.utt_id not in done_synth]

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log = ResampleLog(dict((previous or {}).get("resampling", {})))
    sessions = list((previous or {}).get("sessions", []))
    from resyn_bench.reports.collate import POOLING_VERSION

    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,        # the layout (resyn_bench.runfiles)
        "pooling_version": POOLING_VERSION,      # the pooling code the counts are meant for
        "resyn_bench_version": __version__,
        "created": (previous or {}).get("created", started),
        "config": {**dataclasses.asdict(config), "identity": config.identity()},
        "system": (previous or {}).get("system") if score_only else synthesizer.system.describe(),
        "dataset": {"name": dataset.name, "root": str(dataset.root) if dataset.root else None,
                    "n_utterances": len(work), "n_source_utterances": len(dataset.utterances),
                    **dataset.info},
        "metrics": all_metrics,
        "metric_sets": metric_sets,
        "environment": environment(),
        "resampling": log.counts,
        "sessions": sessions,
        "status": "running",
    }
    # the groups the run holds (this selection added to the earlier ones), not just this one
    manifest["config"]["metrics"] = ",".join(all_metrics)
    if legacy:
        manifest["legacy_metric_keys"] = legacy
    if sharded is not None:   # score-only keeps the full selection recorded by synthesis
        manifest["shard"] = ((previous or {}).get("shard") if score_only else None) \
            or sharded.manifest
    if overlap is not None:   # the system's training set holds evaluated utterances
        manifest["training_overlap"] = overlap
    elif score_only and "training_overlap" in (previous or {}):
        manifest["training_overlap"] = previous["training_overlap"]
    # a little space held back, so that a full disk can still be recorded in the manifest
    reserve = SpaceReserve(run_dir)
    try:
        reserve.create()
        write_json_atomic(run_dir / MANIFEST, manifest)
    except DiskFull:
        reserve.free()
        raise

    stats = _SessionStats()
    t0 = time.perf_counter()
    interrupted = False
    stopped: str | None = None
    try:
        # phase 1: the system, utterance by utterance
        bar = _progress(len(pending), f"{config.system} on {config.dataset}", progress)

        def accept_synthesis(record, counts):
            store.append(record)
            log.merge(counts)
            done_synth[record["utt_id"]] = _synthesis_mark(record)
            stats.add("synthesis", record)
            if bar is not None:
                bar.update(1)

        from resyn_bench.supervisor import synthesize_isolated

        t_synth = time.perf_counter()

        if config.isolate and synthesize_isolated(config, pending, accept_synthesis):
            pass  # done in supervised worker processes: a crash or a hang costs one utterance
        elif config.jobs == 1 or len(pending) <= 1:
            for utt in pending:
                accept_synthesis(*synthesizer.synthesize(utt))
        else:
            _run_parallel(config.jobs, pending, _init_synth_worker, (config,), _synth_task,
                          accept_synthesis)
        if bar is not None:
            bar.close()
        if pending:
            stats.group_wall_s["synthesis"] = time.perf_counter() - t_synth

        del synthesizer  # the system's models are not needed any more: free them first

        # phase 2: one metric group at a time (its models loaded once, then released)
        scorable = [u for u in work
                    if done_synth.get(u.utt_id, {}).get("status") == "ok"]
        corpus_view = None
        for group in groups:
            todo = [u for u in scorable if (u.utt_id, entries[group.name]["key"]) not in done_metric]
            if not todo:
                continue
            synthesis = done_synth
            if group.needs_corpus and sharded is not None and sharded.outside:
                # a shard's corpus model sees the recordings an unsharded run's would
                from resyn_bench.sharding import corpus_synthesis

                if corpus_view is None:
                    corpus_view = corpus_synthesis(sharded.outside, done_synth, config.max_duration)
                synthesis = corpus_view
            t_group = time.perf_counter()
            _score_group(config, group, dataset, synthesis, todo, store, log, stats, progress)
            stats.group_wall_s[group.name] = time.perf_counter() - t_group
    except KeyboardInterrupt:
        interrupted = True
    except DiskFull as exc:
        stopped, stop_reason = "disk full", exc.strerror
    except RecordsWriteError as exc:
        stopped, stop_reason = "cannot write the records", str(exc)
    finally:
        reserve.free()  # room for the manifest below, even on a full disk
        removed = remove_leftovers(run_dir, OUTPUTS) if stopped else []
        wall = time.perf_counter() - t0
        sessions.append({"started": started,
                         "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "n_pending": len(pending), "n_processed": stats.n_synth,
                         "n_skipped_done": len(work) - len(pending),
                         "n_failed": stats.n_synth_failed, "metric_parts": stats.n_metric,
                         "wall_s": round(wall, 3), "jobs": config.jobs,
                         "stage_s": {k: round(v, 3) for k, v in stats.stage_s.items()},
                         # wall seconds of the synthesis phase and of each metric group
                         "group_wall_s": {k: round(v, 3) for k, v in stats.group_wall_s.items()},
                         "reference_cache": {"hits": stats.hits, "misses": stats.misses},
                         "interrupted": interrupted,
                         **({"stopped": f"{stopped}: {stop_reason}"} if stopped else {})})
        manifest["resampling"] = log.counts
        manifest["status"] = ("interrupted" if interrupted
                              else f"stopped: {stopped}" if stopped else "complete")
        write_json_atomic(run_dir / MANIFEST, manifest)
    if interrupted:
        raise KeyboardInterrupt
    if stopped:
        raise RunStopped(f"stopped: {stopped} ({stop_reason}). {stats.n_synth} utterances were "
                         f"evaluated in this session and are saved"
                         f"{'; temporary files removed' if removed else ''}. "
                         + ("Free space on that device" if stopped == "disk full"
                            else f"Make {store.path} writable")
                         + " and run the same command again to resume")
    merged = store.load(list(all_metrics), lean=True)   # outcome counts: no per-utterance details
    n_failed = sum(merged[u.utt_id]["status"] == "failed" for u in work
                   if u.utt_id in merged)
    return RunResult(run_dir, len(work), len(work) - len(pending),
                     stats.n_synth, n_failed, wall, records=merged, work_ids=[u.utt_id for u in work],
                     n_metric_parts=stats.n_metric, dataset_info=manifest["dataset"])


#: what scoring needs of a synthesis part (the runner keeps one per utterance; the rest of the
#: part - texts, timings, bitstreams - stays in the record log)
_SYNTHESIS_FIELDS = ("part", "utt_id", "status", "stage", "reference_hash", "output_path",
                     "target_speaker", "duration_s", "output_duration_s")


def _synthesis_mark(part: dict[str, Any]) -> dict[str, Any]:
    return {k: part[k] for k in _SYNTHESIS_FIELDS if k in part}


def _done_mark(part: dict[str, Any]) -> dict[str, Any]:
    """What resuming needs of a metric part: whose, which group and settings, its status."""
    return {k: part[k] for k in ("part", "utt_id", "group", "key", "status") if k in part}


@dataclass
class _SessionStats:
    n_synth: int = 0
    n_synth_failed: int = 0
    n_metric: int = 0
    hits: int = 0
    misses: int = 0
    stage_s: dict[str, float] = field(default_factory=dict)
    group_wall_s: dict[str, float] = field(default_factory=dict)

    def add(self, prefix: str, record: dict[str, Any]) -> None:
        if record.get("part") == "synthesis":
            self.n_synth += 1
            self.n_synth_failed += record.get("status") == "failed"
        else:
            self.n_metric += 1
            self.hits += record.get("cache") == "hit"
            self.misses += record.get("cache") == "miss"
        for stage, seconds in (record.get("timings") or {}).items():
            key = f"{prefix}.{stage}"
            self.stage_s[key] = self.stage_s.get(key, 0.0) + seconds


def _score_group(config, group, dataset, synthesis, todo, store, log, stats, progress) -> None:
    scorer = Scorer(config, group)
    bar = _progress(len(todo), f"{group.name} metrics", progress)

    def accept(event, counts):
        store.append(event)
        log.merge(counts)
        stats.add(f"metric:{group.name}", event)
        if bar is not None:
            bar.update(1)

    def fail_all(stage: str, exc: Exception) -> None:
        # the group cannot run at all (model missing, one-speaker corpus): every utterance gets
        # the reason; other groups still run; --retry-failed tries failures again later
        from resyn_bench.metrics.base import NotApplicable
        from resyn_bench.supervisor import WorkerLost

        status = "skipped" if isinstance(exc, NotApplicable) else "failed"
        lost = isinstance(exc, WorkerLost)  # the worker crashed or hung: kind and cause
        reason = f"{stage}: {exc.reason}" if lost else f"{stage}: {type(exc).__name__}: {exc}"
        log_.warning("metric group %r %s for %d utterances: %s", group.name, status, len(todo), reason)
        for utt in todo:
            accept({"part": "metric", "group": group.name, "key": scorer.record_key,
                    "utt_id": utt.utt_id, "status": status, "reason": reason,
                    **({"error_kind": exc.kind} if lost else {})}, {})

    try:
        if config.isolate:
            from resyn_bench.supervisor import score_group_isolated

            if score_group_isolated(config, group, dataset, synthesis, todo, log, accept, fail_all):
                return
        if group.needs_corpus or config.jobs == 1 or len(todo) <= 1:
            try:
                group.load()
            except Exception as exc:
                return fail_all("loading the model", exc)
        if group.needs_corpus:
            # the corpus model sees every readable real utterance of the dataset selection
            refs, uses = {}, {}
            for utt in dataset.utterances:
                syn = synthesis.get(utt.utt_id, {})
                if syn.get("stage") == "reference":
                    continue
                try:
                    refs[utt.utt_id], uses[utt.utt_id] = scorer.reference(
                        utt, syn.get("reference_hash"), log)
                except Exception:
                    continue  # its own scoring attempt below records the reason
            try:
                with one_blas_thread():
                    group.fit_corpus([u for u in dataset.utterances if u.utt_id in refs], refs)
            except Exception as exc:
                return fail_all("fitting the corpus model", exc)
            score_in_process(scorer, todo, synthesis, refs, uses, accept)
        elif config.jobs == 1 or len(todo) <= 1:
            score_in_process(scorer, todo, synthesis, {}, {}, accept)
        elif batch_size_of(group) > 1:
            batches = [[(u, synthesis[u.utt_id]) for u in batch]
                       for batch in score_batches(todo, batch_size_of(group), seconds_of(synthesis))]
            _run_parallel(config.jobs, batches, _init_score_worker, (config, group.name),
                          _score_many_task, lambda *pairs: [accept(*p) for p in pairs])
        else:
            items = [(u, synthesis[u.utt_id]) for u in todo]
            _run_parallel(config.jobs, items, _init_score_worker, (config, group.name),
                          _score_task, accept)
    finally:
        group.release()
        if bar is not None:
            bar.close()


def seconds_of(synthesis: dict[str, dict]):
    """utt -> its longer side in seconds (reference or output; None when unknown)."""
    def seconds(utt) -> float | None:
        syn = synthesis.get(utt.utt_id, {})
        durations = [d for d in (syn.get("duration_s"), syn.get("output_duration_s")) if d]
        return max(durations) if durations else None
    return seconds


def score_in_process(scorer: Scorer, todo: list, synthesis: dict, refs: dict, uses: dict,
                     accept) -> None:
    """Score ``todo`` in this process, one at a time or in the group's batches."""
    def item(u):
        return u, synthesis[u.utt_id], refs.get(u.utt_id), uses.get(u.utt_id)

    if batch_size_of(scorer.group) <= 1:
        for u in todo:
            accept(*scorer.score(*item(u)))
        return
    for batch in score_batches(todo, batch_size_of(scorer.group), seconds_of(synthesis)):
        for event, counts in scorer.score_many([item(u) for u in batch]):
            accept(event, counts)


def _run_parallel(jobs: int, items, initializer, initargs, task, accept) -> None:
    window = jobs * 2  # bounded in-flight work: a kill loses at most this many
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=initializer, initargs=initargs)
    try:
        todo = iter(items)
        inflight = set()
        for item in todo:
            inflight.add(pool.submit(task, item))
            if len(inflight) >= window:
                break
        while inflight:
            finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in finished:
                accept(*fut.result())
            for item in todo:
                inflight.add(pool.submit(task, item))
                if len(inflight) >= window:
                    break
    except BaseException:
        # Ctrl-C (or an error): stop now instead of waiting for the utterances in flight, which
        # may take minutes; they are not recorded, so a resume redoes them
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="utt", dynamic_ncols=True)
