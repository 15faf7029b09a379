"""Test-only fault injection: a system and metric groups that crash (SIGSEGV), hang or raise on
chosen utterances. tests/core/test_crash_isolation.py registers them; worker processes import this
module by name (tests/ is on the runner's sys.path, which workers inherit).

Setting CRASH_PLUGINS_DISARM=1 in the runner's environment turns every fault off (workers take
the runner's environment), which is how the tests show that ``--retry-failed`` redoes them.
"""
from __future__ import annotations

import errno
import os
import signal
import time

import numpy as np

from resyn_bench.metrics.base import MetricGroup, MetricSpec, Score
from resyn_bench.systems.baselines import CopySystem


def _fault(mode: str, where: str) -> None:
    if os.environ.get("CRASH_PLUGINS_DISARM"):
        return
    if mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif mode == "nullptr":  # a genuine invalid read in C code
        import ctypes

        ctypes.string_at(0)
    elif mode == "hang":
        time.sleep(3600)
    elif mode == "raise":
        raise RuntimeError(f"injected failure in {where}")
    elif mode == "exit":
        os._exit(3)
    else:
        raise ValueError(f"unknown fault mode {mode!r}")


class FaultGroup(MetricGroup):
    """Scores the RMS ratio output/reference (pooled: the ratio of summed energies), with faults:
    ``faults`` maps utt_id -> mode (in score), ``reference_faults`` maps a reference length in
    samples -> mode (in analyse_reference, which sees only the audio), ``load_fault`` a mode in
    load(). ``order_log``: a file each score() call appends "pid utt_id" to (the order in which
    each worker was given its utterances); ``threads_log``: a file each score() call appends
    "pid threads" to, the largest thread count of the process's BLAS pools."""

    sample_rate = 16000

    def __init__(self, name: str = "fault", faults: dict | None = None,
                 reference_faults: dict | None = None, load_fault: str | None = None,
                 corpus: bool = False, order_log: str | None = None,
                 threads_log: str | None = None, batch_size: int = 1,
                 broken_batches: bool = False):
        self.name = name
        self.specs = (MetricSpec(f"{name}.rms_ratio", "RMS ratio", True),)
        self.faults = dict(faults or {})
        self.reference_faults = {int(k): v for k, v in (reference_faults or {}).items()}
        self.load_fault = load_fault
        self.needs_corpus = corpus
        self.order_log = order_log
        self.threads_log = threads_log
        self.batch_size = int(batch_size)        # > 1: the runner calls score_batch
        self.broken_batches = broken_batches     # score_batch itself raises (the runner must
                                                 # then score the batch one at a time)
        self.n_fitted = None

    def settings(self):
        return {"faults": self.faults, "reference_faults": self.reference_faults,
                "load_fault": self.load_fault, "corpus": self.needs_corpus}

    def load(self):
        if self.load_fault:
            _fault(self.load_fault, "load")

    def analyse_reference(self, audio):
        x = np.asarray(audio.samples, dtype=np.float64)
        if len(x) in self.reference_faults:
            _fault(self.reference_faults[len(x)], "analyse_reference")
        return {"energy": np.array(float(np.sum(x * x))), "n": np.array(len(x))}

    def fit_corpus(self, utterances, references):
        self.n_fitted = len(references)

    def score(self, reference, output, utterance):
        if self.order_log:
            with open(self.order_log, "a") as fh:
                fh.write(f"{os.getpid()} {utterance.utt_id}\n")
        if self.threads_log:
            from threadpoolctl import threadpool_info

            most = max((pool["num_threads"] for pool in threadpool_info()
                        if pool.get("user_api") == "blas"), default=0)
            with open(self.threads_log, "a") as fh:
                fh.write(f"{os.getpid()} {most}\n")
        if utterance.utt_id in self.faults:
            _fault(self.faults[utterance.utt_id], "score")
        y = np.asarray(output.samples, dtype=np.float64)
        e_ref, e_out = float(reference["energy"]), float(np.sum(y * y))
        ratio = float(np.sqrt(e_out / len(y)) / np.sqrt(e_ref / int(reference["n"])))
        return Score({f"{self.name}.rms_ratio": ratio}, {"e_out": e_out, "e_ref": e_ref},
                     {"fitted": self.n_fitted})

    def score_batch(self, references, outputs, utterances):
        if self.broken_batches:
            raise RuntimeError("injected failure of a whole batch")
        return super().score_batch(references, outputs, utterances)

    def pool(self, counts):
        if not counts.get("e_ref"):
            return {}
        return {f"{self.name}.rms_ratio": float(np.sqrt(counts["e_out"] / counts["e_ref"]))}


def segv_group(**kw):
    return FaultGroup("segv", **kw)


def hang_group(**kw):
    return FaultGroup("hang", **kw)


def boom_group(**kw):
    return FaultGroup("boom", **kw)


def corpus_group(**kw):
    return FaultGroup("corpusfault", corpus=True, **kw)


class FaultSystem(CopySystem):
    """The copy system, with ``faults`` (utt_id -> mode) in resynthesize."""

    def __init__(self, faults: dict | None = None):
        self.faults = dict(faults or {})

    def resynthesize(self, audio, utterance):
        mode = self.faults.get(utterance.utt_id)
        if mode == "enospc":  # the disk is full when this output is written (in this process)
            from resyn_bench.audio import Audio
            from resyn_bench.core import atomic as safe_io

            if not os.environ.get("CRASH_PLUGINS_DISARM"):
                real = safe_io._write

                def full(fd, data):
                    safe_io._write = real
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                safe_io._write = full
            return Audio(0.5 * np.asarray(audio.samples), audio.sample_rate)
        if mode:
            _fault(mode, "resynthesize")
        return super().resynthesize(audio, utterance)
