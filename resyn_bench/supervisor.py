"""Crash isolation: the runner's work runs in supervised worker processes.

Native code (pesq, pyworld, pysptk, onnxruntime, ctranslate2, pocketsphinx, torch) can crash the
process that calls it (a segfault, an abort) or hang in C. So the system and every metric group
run in worker processes that the runner process supervises, one utterance at a time, even with
``--jobs 1`` (``--jobs N``: N workers):

- a worker that dies (a signal, an unexpected exit) costs the utterance it was working on: that
  utterance's synthesis, or that group's part, is recorded as failed with the cause, e.g.
  ``crashed: SIGSEGV in intrusive (pesq)``; the worker is restarted (its models reloaded: only
  after a crash) and the run goes on;
- an utterance that takes longer than its time limit (``--utt-timeout``, default
  :func:`time_limit`) is recorded as ``timed out after N s in GROUP (...)``, its worker killed
  and restarted;
- reference analyses and the corpus-model fit of a group (speaker ID) run in the group's worker
  too: a crash while analysing one reference fails that utterance for that group.

Failures keep ``error_kind`` ``crashed`` or ``timed_out``, so summaries can count them; resuming
does not retry them unless ``--retry-failed``.

The cause names the library when the worker's Python stack shows it: every worker writes a
:mod:`faulthandler` dump on a fatal signal (and on SIGUSR1, which the supervisor sends a hung
worker before killing it), and the innermost frame outside the standard library and this package
names the library. Code that calls a C extension straight from this package can name its step
with :func:`step` (free outside a worker).

Workers are forked from a ``forkserver`` (a clean process that has imported the runner once), so
they do not inherit the runner's threads or models, and start in a fraction of a second. Workers
do not import the runner's ``__main__`` (so scripts calling :func:`resyn_bench.runner.run` need
no ``if __name__ == "__main__":`` guard); a system or group whose factory cannot be rebuilt in a
worker (a lambda, a class defined in ``__main__``) runs in the runner process, with a warning. Audio
never travels between processes: workers read references and outputs from disk and write their
outputs there; only records, counts and (for corpus groups) reference analyses are sent back.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resyn_bench.core.allocator import keep_freed_memory
from resyn_bench.core.threads import use_one_thread

log_ = logging.getLogger("resyn_bench.runner")

#: default time limit per utterance and worker: max(MIN_LIMIT_S, LIMIT_FACTOR x duration)
MIN_LIMIT_S = 60.0
LIMIT_FACTOR = 10.0
#: limit for starting a worker (loading its models) and for the corpus fit
SETUP_LIMIT_S = 1800.0
_MARK_LEN = 240

# --- inside a worker -------------------------------------------------------------------------

_MARK = None  # shared buffer the supervisor reads after a crash


def step(label: str) -> None:
    """Name the step about to run (e.g. the C library about to be called): a crash or a hang
    report names it when the Python stack cannot. No-op outside a worker process."""
    if _MARK is not None:
        _MARK.value = label.encode("utf-8", "replace")[:_MARK_LEN - 1]


def time_limit(setting: float | None, duration_s: float | None) -> float | None:
    """Seconds one utterance may take in one worker. ``setting`` None: automatic,
    max(60 s, 10 x the audio duration); 0 or less: no limit; otherwise that many seconds."""
    if setting is None:
        return max(MIN_LIMIT_S, LIMIT_FACTOR * float(duration_s or 0.0))
    if setting <= 0:
        return None
    return float(setting)


class _SynthHandler:
    def __init__(self, config):
        from resyn_bench.runner import Synthesizer

        self.synthesizer = Synthesizer(config)

    def synthesize(self, utt):
        return self.synthesizer.synthesize(utt)


class _ScoreHandler:
    def __init__(self, config, group_name: str, options: dict[str, Any]):
        from resyn_bench.registry import make_metric
        from resyn_bench.runner import Scorer

        self.group = make_metric(group_name, **options)
        self.group.load()
        self.scorer = Scorer(config, self.group)

    def analyse(self, utt, content: str | None):
        """The reference analysis of one utterance (cached): ("ok", analysis, cache use,
        resampling counts) or ("error", reason, None, counts)."""
        from resyn_bench.audio import ResampleLog

        log = ResampleLog()
        try:
            analysis, use = self.scorer.reference(utt, content, log)
        except Exception as exc:  # recorded by the utterance's own scoring attempt
            return "error", f"{type(exc).__name__}: {exc}", None, log.counts
        return "ok", analysis, use, log.counts

    def fit(self, utterances, references):
        from resyn_bench.core.threads import one_blas_thread

        with one_blas_thread():
            self.group.fit_corpus(utterances, references)

    def score(self, utt, synthesis, reference=None, cache_use=None):
        return self.scorer.score(utt, synthesis, reference, cache_use)

    def score_many(self, items):
        return self.scorer.score_many(items)


@dataclass
class WorkerSpec:
    """What a worker builds (pickled for the worker): the registry entry travels with it, so
    systems and groups registered at run time (plugins, tests) exist in the worker too."""

    kind: str                   # "synth" | "score"
    config: Any                 # RunConfig
    name: str                   # system spec or group name
    entry: Any                  # registry.Entry
    options: dict[str, Any]

    def build(self):
        from resyn_bench import registry

        table = registry.SYSTEMS if self.kind == "synth" else registry.METRIC_GROUPS
        key = self.name.partition(":")[0] if self.kind == "synth" else self.name
        if self.entry is not None:
            table[key] = self.entry
        elif key not in (registry.all_systems() if self.kind == "synth" else table):
            raise _NotInWorker(f"{key!r} is registered only in the runner process")
        if self.kind == "synth":
            return _SynthHandler(self.config)
        return _ScoreHandler(self.config, self.name, self.options)

    def blob(self) -> bytes:
        """Pickled; an entry that cannot be pickled (a closure) is left to the worker's own
        registry, which has every built-in and plugin entry."""
        try:
            return pickle.dumps(self)
        except Exception:
            return pickle.dumps(dataclasses.replace(self, entry=None))


class _NotInWorker(RuntimeError):
    pass


class _LogToRunner(logging.Handler):
    """Worker log records go to the runner, which emits them through its own logging setup."""

    def __init__(self, conn):
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            _send(self.conn, ("log", {"name": record.name, "levelno": record.levelno,
                                      "levelname": record.levelname, "msg": message, "args": None,
                                      "pathname": record.pathname, "lineno": record.lineno,
                                      "funcName": record.funcName}))
        except Exception:
            self.handleError(record)


def _worker_main(conn, spec_blob: bytes, mark, fault_path: str, single_thread: bool,
                 environ: dict[str, str], log_level: int = logging.WARNING) -> None:
    global _MARK
    import faulthandler

    # the runner's environment now (the forkserver holds the one of its own start)
    os.environ.clear()
    os.environ.update(environ)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    _die_with_parent()
    _MARK = mark
    fault = open(fault_path, "w")
    faulthandler.enable(file=fault, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=fault, all_threads=True)
    if single_thread:
        use_one_thread()   # the pools numpy/scipy sized in the forkserver too (core/threads.py)
    keep_freed_memory()  # per-utterance buffers reused, not re-faulted (core/allocator.py)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_LogToRunner(conn))
    root.setLevel(log_level)
    try:
        spec = pickle.loads(spec_blob)
    except Exception as exc:
        _send(conn, ("unshippable", f"{type(exc).__name__}: {exc}"))
        return
    step("load")
    try:
        handler = spec.build()
    except _NotInWorker as exc:
        _send(conn, ("unshippable", str(exc)))
        return
    except Exception as exc:
        _send(conn, ("setup_error", _picklable(exc)))
        return
    _send(conn, ("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        what, method, args = msg
        step(method)
        try:
            value = getattr(handler, method)(*args)
        except Exception as exc:
            _send(conn, ("setup_error" if what == "setup" else "raise", _picklable(exc)))
            if what == "setup":
                return
            continue
        step("idle")
        if not _send(conn, ("result", value)):
            return


_SEND_LOCK = None


def _send(conn, message) -> bool:
    """Send to the supervisor; False when it is gone (a killed run: the worker just ends)."""
    global _SEND_LOCK
    if _SEND_LOCK is None:
        import threading

        _SEND_LOCK = threading.Lock()
    try:
        with _SEND_LOCK:  # library threads may log while the main thread sends a result
            conn.send(message)
        return True
    except (OSError, EOFError):
        return False
    except Exception as exc:  # the value does not pickle: the runner raises this
        return _send(conn, ("raise", RuntimeError(f"a worker's result could not be sent back: "
                                                  f"{type(exc).__name__}: {exc}")))


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent (the forkserver, which exits with the runner) dies, so
    a hung worker never outlives a killed run."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


# --- in the runner process -------------------------------------------------------------------


class WorkerLost(RuntimeError):
    """A worker died or was killed while working on one item."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind          # "crashed" | "timed_out"
        self.reason = reason


class SetupFailed(RuntimeError):
    """A worker could not be set up (its models, the corpus fit): the group cannot run."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


class Unshippable(RuntimeError):
    """The system or group cannot be rebuilt in a worker process (e.g. registered with a lambda)."""


_CONTEXT = None
#: imported once in the forkserver, so that every worker starts with them (about 0.6 s each)
_PRELOAD = ("resyn_bench.runner", "scipy.signal")
#: heavy first-use imports of built-in metric groups; preloaded too when two or more groups of
#: a run need them (each worker would import them again: ~1.8 s for librosa's spectral code)
_GROUP_IMPORTS = {"spk": ("librosa.feature.spectral",), "dnsmos": ("librosa.feature.spectral",)}


def _preload(config) -> list[str]:
    from collections import Counter

    from resyn_bench.registry import resolve_metric_names

    try:
        names = resolve_metric_names(config.metrics)
    except Exception:
        names = []
    shared = Counter(m for n in names for m in _GROUP_IMPORTS.get(n, ()))
    return list(_PRELOAD) + sorted(m for m, n in shared.items() if n >= 2)


def _context(config=None):
    """The start method's context; the forkserver starts once per runner process, with the
    preloads of the first run that needs it (a missing module is skipped)."""
    global _CONTEXT
    if _CONTEXT is None:
        import multiprocessing as mp

        if "forkserver" in mp.get_all_start_methods():
            _CONTEXT = mp.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(_preload(config) if config is not None else list(_PRELOAD))
        else:  # pragma: no cover - not POSIX
            _CONTEXT = mp.get_context("spawn")
    return _CONTEXT


@contextlib.contextmanager
def _main_module_not_imported():
    """Start a worker without re-importing the runner's ``__main__`` in it (multiprocessing does
    that by default outside ``fork``): a script calling run() needs no ``__main__`` guard, and
    workers start faster. A system or group defined in ``__main__`` then cannot be rebuilt in a
    worker and runs in the runner process (see :class:`Unshippable`)."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def preparation_data(name):
        data = original(name)
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
        return data

    spawn.get_preparation_data = preparation_data
    try:
        yield
    finally:
        spawn.get_preparation_data = original


def _own_dirs() -> list[str]:
    from importlib.util import find_spec

    dirs = []
    for name in ("resyn_bench", "resyn_bench.metrics", "resyn_bench.systems", "resyn_bench.reports"):
        try:
            spec = find_spec(name)
        except (ImportError, ValueError):
            continue
        dirs += [os.path.realpath(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return dirs


def _stdlib_dirs() -> list[str]:
    import sysconfig

    paths = sysconfig.get_paths()
    return sorted({os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if k in paths})


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _module_of(path: str) -> str:
    """Top-level module a source file belongs to, from the longest sys.path entry above it."""
    best = ""
    for entry in sys.path:
        root = os.path.realpath(entry or ".")
        if _under(path, [root]) and len(root) > len(best):
            best = root
    rel = os.path.relpath(path, best) if best else os.path.basename(path)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".py") else first


def culprit(dump: str) -> tuple[str | None, str | None]:
    """(library, own code location) of the innermost relevant frame of a faulthandler dump:
    the library when that frame is outside the standard library and this package, else the
    location in this package ("dsp/pitch.py:120 in extract")."""
    import re

    blocks, current = [], None
    for line in dump.splitlines():
        if line.startswith(("Current thread", "Thread ", "Stack (most recent")):
            current = [line.startswith("Current thread"), []]
            blocks.append(current)
        elif current is not None:
            m = re.match(r'\s+File "(.+)", line (\d+) in (.+)', line)
            if m:
                current[1].append((m.group(1), m.group(2), m.group(3).strip()))
    if not blocks:
        return None, None
    frames = next((b[1] for b in blocks if b[0]), blocks[0][1])
    own, std = _own_dirs(), _stdlib_dirs()
    for path, line, func in frames:  # innermost first
        real = os.path.realpath(path)
        if _under(real, std) and not any(p in real.split(os.sep) for p in ("site-packages",
                                                                           "dist-packages")):
            continue
        if _under(real, own):
            root = max((d for d in own if _under(real, [d])), key=len)
            rel = os.path.relpath(real, os.path.dirname(root))
            return None, f"{rel}:{line} in {func}"
        return _module_of(real), None
    return None, None


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None:
        return "killed"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


class _Worker:
    def __init__(self, sup: Supervisor, number: int):
        ctx = _context(sup.config)
        self.sup = sup
        self.conn, child = ctx.Pipe()
        self.mark = ctx.RawArray(ctypes.c_char, _MARK_LEN)
        self.fault_path = str(Path(sup.tmpdir) / f"worker{number}.txt")
        self.proc = ctx.Process(target=_worker_main, daemon=True, name=f"resyn-bench {sup.what}",
                                args=(child, sup.blob, self.mark, self.fault_path, sup.jobs > 1,
                                      dict(os.environ), logging.getLogger().getEffectiveLevel()))
        with _main_module_not_imported():
            self.proc.start()
        child.close()
        self.key: Any = None
        self.limit: float | None = None
        self.deadline: float | None = None

    def message(self, timeout: float | None = None):
        """The next message, or None if the worker died; raises TimeoutError. Log records the
        worker sends on the way are emitted here, through the runner's logging."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            if not self.conn.poll(left):
                if self.proc.exitcode is not None or not self.proc.is_alive():
                    return None
                raise TimeoutError
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return None
            if msg[0] != "log":
                return msg
            record = logging.makeLogRecord(msg[1])
            logging.getLogger(record.name).handle(record)

    def _detail(self, phase_default: str) -> str:
        try:
            dump = Path(self.fault_path).read_text(errors="replace")
        except OSError:
            dump = ""
        library, where = culprit(dump)
        mark = self.mark.value.decode("utf-8", "replace") or phase_default
        if library:
            return library
        if mark in ("load", "analyse", "fit", "score", "synthesize", "idle") and where:
            return f"{mark} at {where}"
        return mark

    def lost(self) -> WorkerLost:
        self.proc.join(5)
        return WorkerLost("crashed", f"crashed: {_signal_name(self.proc.exitcode)} in "
                                     f"{self.sup.what} ({self._detail('?')})")

    def timed_out(self, limit: float) -> WorkerLost:
        if self.proc.is_alive():
            try:  # the stack of the hung worker (faulthandler), then the kill
                os.kill(self.proc.pid, signal.SIGUSR1)
                end = time.monotonic() + 1.0
                size = -1
                while time.monotonic() < end:
                    time.sleep(0.05)
                    now = os.path.getsize(self.fault_path) if os.path.exists(self.fault_path) else 0
                    if now and now == size:
                        break
                    size = now
            except OSError:
                pass
        detail = self._detail("?")
        self.kill()
        return WorkerLost("timed_out", f"timed out after {limit:g} s in {self.sup.what} ({detail})")

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.close()

    def close(self) -> None:
        self.conn.close()
        try:
            os.unlink(self.fault_path)
        except OSError:
            pass


class Supervisor:
    """``jobs`` supervised workers built from one :class:`WorkerSpec`; items are sent one at a
    time, each with its own time limit; a lost worker is replaced when work is left."""

    def __init__(self, spec: WorkerSpec, what: str, jobs: int = 1,
                 setup_limit: float | None = SETUP_LIMIT_S):
        self.config = spec.config
        try:
            self.blob = spec.blob()
        except Exception as exc:
            raise Unshippable(f"{type(exc).__name__}: {exc}") from None
        self.what = what
        self.jobs = max(1, int(jobs))
        self.setup_limit = setup_limit
        self.setups: list[tuple[str, str, tuple]] = []   # (stage, method, args) for every worker
        self.tmpdir = tempfile.mkdtemp(prefix="resyn-bench-workers-")
        self.workers: list[_Worker] = []
        self.idle: list[_Worker] = []
        self.n_started = 0

    # -- lifecycle --

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(graceful=exc[0] is None)

    def close(self, graceful: bool = True) -> None:
        for w in self.workers:
            if graceful and w in self.idle:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self.workers:
            if graceful:
                w.proc.join(2)
            w.kill()
        self.workers, self.idle = [], []
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _await_setup(self, w: _Worker, stage: str) -> None:
        try:
            msg = w.message(self.setup_limit)
        except TimeoutError:
            lost = w.timed_out(self.setup_limit)
            self._drop(w)
            raise SetupFailed(stage, lost) from None
        if msg is None:
            lost = w.lost()
            self._drop(w)
            raise SetupFailed(stage, lost)
        kind, value = msg
        if kind == "unshippable":
            self._drop(w)
            raise Unshippable(value)
        if kind == "setup_error":
            self._drop(w)
            raise SetupFailed(stage, value)

    def _drop(self, w: _Worker) -> None:
        w.kill()
        if w in self.workers:
            self.workers.remove(w)
        if w in self.idle:
            self.idle.remove(w)

    def start(self, n: int) -> None:
        """Start workers until ``n`` are alive (in parallel), each loaded and set up."""
        fresh, t0 = [], time.perf_counter()
        while len(self.workers) < n:
            w = _Worker(self, self.n_started)
            self.n_started += 1
            self.workers.append(w)
            fresh.append(w)
        for w in fresh:
            self._await_setup(w, "loading the model")
        for stage, method, args in self.setups:
            for w in fresh:
                w.conn.send(("setup", method, args))
            for w in fresh:
                self._await_setup(w, stage)
        self.idle += fresh
        if fresh:
            log_.debug("%s: %d worker(s) started in %.2f s", self.what, len(fresh),
                       time.perf_counter() - t0)

    def setup(self, stage: str, method: str, *args) -> None:
        """Run ``method(*args)`` on every worker now and on every worker started later."""
        self.setups.append((stage, method, args))
        ready = list(self.idle)
        for w in ready:
            w.conn.send(("setup", method, args))
        for w in ready:
            self._await_setup(w, stage)

    # -- work --

    def run(self, items, on_result: Callable[[Any, Any], None],
            on_lost: Callable[[Any, WorkerLost], None]) -> None:
        """``items``: (key, method, args, limit_s or None). Calls ``on_result(key, value)`` or
        ``on_lost(key, WorkerLost)`` for each, in the runner process. An exception a worker's
        method raises is raised here. Raises :class:`SetupFailed` when a replacement worker
        cannot be set up (after the items in flight have finished)."""
        from multiprocessing.connection import wait

        pending = deque(items)
        busy: list[_Worker] = []
        broken: SetupFailed | None = None
        while (pending and broken is None) or busy:
            while pending and broken is None and len(busy) < self.jobs:
                if not self.idle:
                    try:
                        self.start(min(self.jobs, len(busy) + len(pending)))
                    except SetupFailed as exc:
                        broken = exc
                        break
                w = self.idle.pop(0)
                key, method, args, limit = pending[0]
                try:
                    w.conn.send(("item", method, args))
                except OSError:  # died while idle (e.g. the OOM killer): replace it
                    self._drop(w)
                    continue
                pending.popleft()
                w.key, w.limit = key, limit
                w.deadline = time.monotonic() + limit if limit else None
                busy.append(w)
            if not busy:
                break
            deadlines = [w.deadline for w in busy if w.deadline is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
            for w in list(busy):
                msg = False
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        msg = w.message(0)
                    except TimeoutError:  # only log records came
                        msg = False
                if msg is not False:
                    if msg is None:
                        busy.remove(w)
                        lost = w.lost()
                        self._drop(w)
                        on_lost(w.key, lost)
                        continue
                    kind, value = msg
                    busy.remove(w)
                    self.idle.append(w)
                    if kind == "raise":
                        raise value
                    on_result(w.key, value)
                elif w.deadline is not None and time.monotonic() >= w.deadline:
                    busy.remove(w)
                    lost = w.timed_out(w.limit)
                    self._drop(w)
                    on_lost(w.key, lost)
        if broken is not None:
            raise broken


# --- what the runner calls -------------------------------------------------------------------


def _setup_limit(config) -> float | None:
    """Starting a worker (loading models) and the corpus fit: SETUP_LIMIT_S, none with
    ``--utt-timeout 0``."""
    return None if config.utt_timeout is not None and config.utt_timeout <= 0 else SETUP_LIMIT_S


def _duration(path) -> float | None:
    try:
        import soundfile as sf

        return float(sf.info(str(path)).duration)
    except Exception:
        return None


def synthesize_isolated(config, pending, accept: Callable) -> bool:
    """Phase 1 in supervised workers. False (nothing done) if the system cannot be rebuilt in
    a worker: the caller then runs it in-process."""
    from resyn_bench import registry

    if not pending:
        return True
    entry, _arg = registry.system_entry(config.system)
    what = f"system {config.system}"
    try:
        sup = Supervisor(WorkerSpec("synth", config, config.system, entry, {}), what, config.jobs,
                         _setup_limit(config))
    except Unshippable as exc:
        return _unshippable(what, exc)
    by_id = {u.utt_id: u for u in pending}
    done: set[str] = set()

    def on_result(key, value):
        done.add(key)
        accept(*value)

    def on_lost(key, lost: WorkerLost):
        done.add(key)
        utt = by_id[key]
        accept({"part": "synthesis", "utt_id": utt.utt_id, "speaker": utt.speaker,
                "text": utt.text, "reference_path": str(utt.path), "system": config.system,
                "dataset": config.dataset, "extra": {}, "timings": {}, "status": "failed",
                "stage": "system", "reason": lost.reason, "error_kind": lost.kind}, {})

    items = ((u.utt_id, "synthesize", (u,), time_limit(config.utt_timeout, _duration(u.path)))
             for u in pending)
    with sup:
        try:
            sup.run(items, on_result, on_lost)
        except Unshippable as exc:
            return _unshippable(what, exc)
        except SetupFailed as exc:
            # the system cannot be built in a worker (it was built in the runner process, so
            # this is a crash or a hang while loading): every remaining utterance fails with it
            if not done and isinstance(exc.error, Exception) and not isinstance(exc.error, WorkerLost):
                raise exc.error from None  # as in the runner process: building the system failed
            for utt in pending:
                if utt.utt_id not in done:
                    on_lost(utt.utt_id, _as_lost(f"{exc.stage}", exc.error))
    return True


def _as_lost(stage: str, error: BaseException) -> WorkerLost:
    if isinstance(error, WorkerLost):
        return WorkerLost(error.kind, f"{stage}: {error.reason}")
    return WorkerLost("error", f"{stage}: {type(error).__name__}: {error}")


def _unshippable(what: str, exc: Exception) -> bool:
    log_.warning("%s cannot be rebuilt in a worker process (%s); it runs in the runner "
                 "process, where a native crash would end the run", what, exc)
    return False


def score_group_isolated(config, group, dataset, synthesis: dict, todo: list, log, accept,
                         fail_all) -> bool:
    """Phase 2 for one metric group in supervised workers (see the module docstring). False
    (nothing done) if the group cannot be rebuilt in a worker."""
    from resyn_bench import registry
    from resyn_bench.runner import Scorer, batch_size_of, group_options, score_batches

    what = group.name
    record_key = Scorer(config, group).record_key  # the key of the group's settings
    options = group_options(config, group.name)
    jobs = config.jobs
    try:
        sup = Supervisor(WorkerSpec("score", config, group.name, registry.METRIC_GROUPS[group.name],
                                    options), what, jobs, _setup_limit(config))
    except Unshippable as exc:
        return _unshippable(what, exc)
    done: set[str] = set()

    def seconds(uid: str) -> float | None:
        syn = synthesis.get(uid, {})
        durations = [d for d in (syn.get("duration_s"), syn.get("output_duration_s")) if d]
        return max(durations) if durations else None

    def limit_for(uid: str) -> float | None:
        return time_limit(config.utt_timeout, seconds(uid))

    def longest_first(utts: list) -> list:
        # several workers: the long utterances go first, so that the group ends on short ones
        # and no worker waits long for the last (ties and unknown lengths keep their order)
        if jobs <= 1:
            return utts
        return sorted(utts, key=lambda u: -(seconds(u.utt_id) or 0.0))

    def accept_one(event, counts):
        done.add(event["utt_id"])
        accept(event, counts)

    def lost_event(uid: str, lost: WorkerLost) -> dict[str, Any]:
        return {"part": "metric", "group": group.name, "key": record_key, "utt_id": uid,
                "status": "failed", "reason": lost.reason, "error_kind": lost.kind}

    with sup:
        try:
            sup.start(min(jobs, len(todo)) if not group.needs_corpus else min(jobs, len(dataset.utterances)))
            refs: dict[str, dict] = {}
            uses: dict[str, str] = {}
            crashed: dict[str, WorkerLost] = {}
            if group.needs_corpus:
                # the corpus model sees every readable real utterance of the dataset selection
                refs_any: dict[str, tuple] = {}
                corpus = [u for u in dataset.utterances
                          if synthesis.get(u.utt_id, {}).get("stage") != "reference"]

                def on_analysis(uid, value):
                    status, analysis, use, counts = value
                    log.merge(counts)
                    if status == "ok":
                        refs_any[uid] = (analysis, use)

                items = ((u.utt_id, "analyse", (u, synthesis.get(u.utt_id, {}).get("reference_hash")),
                          limit_for(u.utt_id)) for u in longest_first(corpus))
                sup.run(items, on_analysis, lambda uid, lost: crashed.__setitem__(uid, lost))
                for u in corpus:  # dataset order, whatever order the workers finished in
                    if u.utt_id in refs_any:
                        refs[u.utt_id], uses[u.utt_id] = refs_any[u.utt_id]
                fit_utts = [u for u in dataset.utterances if u.utt_id in refs]
                try:
                    sup.setup("fitting the corpus model", "fit", fit_utts, refs)
                except SetupFailed as exc:
                    fail_all(exc.stage, exc.error)
                    return True
                for uid, lost in crashed.items():
                    if any(u.utt_id == uid for u in todo):
                        accept_one(lost_event(uid, WorkerLost(
                            lost.kind, f"{lost.reason} (reference analysis)")), {})
            def item(u):
                return u, synthesis[u.utt_id], refs.get(u.utt_id), uses.get(u.utt_id)

            remaining = [u for u in todo if u.utt_id not in done]
            if batch_size_of(group) > 1 and len(remaining) > 1:
                # batches of similar length; a batch lost to a crash or a hang is redone one
                # utterance at a time below, so that only the culprit is lost
                lost_batches: set[str] = set()

                def batch_lost(key, lost):
                    if len(key) == 1:
                        accept_one(lost_event(key[0], lost), {})
                    else:
                        lost_batches.update(key)

                def batch_limit(batch) -> float | None:
                    limits = [limit_for(u.utt_id) for u in batch]
                    return None if any(v is None for v in limits) else sum(limits)

                batches = score_batches(remaining, batch_size_of(group), lambda u: seconds(u.utt_id))
                sup.run(((tuple(u.utt_id for u in b), "score_many", ([item(u) for u in b],),
                          batch_limit(b)) for b in batches),
                        lambda key, values: [accept_one(*v) for v in values], batch_lost)
                remaining = [u for u in remaining if u.utt_id in lost_batches]
            items = ((u.utt_id, "score", item(u), limit_for(u.utt_id))
                     for u in longest_first(remaining))
            sup.run(items, lambda uid, value: accept_one(*value),
                    lambda uid, lost: accept_one(lost_event(uid, lost), {}))
        except Unshippable as exc:
            if done:  # pragma: no cover - only the first start can find this
                raise RuntimeError(f"{what}: worker could not be rebuilt: {exc}") from None
            return _unshippable(what, exc)
        except SetupFailed as exc:
            remaining = [u for u in todo if u.utt_id not in done]
            if len(remaining) == len(todo):
                fail_all(exc.stage, exc.error)
            else:  # a replacement worker could not be set up after a crash
                for u in remaining:
                    lost = _as_lost(f"{exc.stage} (after a crash)", exc.error)
                    accept_one(lost_event(u.utt_id, lost), {})
    return True
