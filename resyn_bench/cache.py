"""Content-addressed cache of reference-side analyses.

A key is the sha256 of (audio content hash, metric group, its settings, the analysis rate and
the resampler version), so a second system evaluated on the same dataset reuses the reference F0
tracks (and later transcripts, embeddings) instead of recomputing them. Entries are ``.npz``
files written atomically (a temporary file named by host and process, then a rename), so the
shards of a sharded run may share one cache, on one host or several: a hit holds the arrays a
miss computes. A corrupt entry is treated as a miss and rewritten.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.core.atomic import atomic_open
from resyn_bench.paths import resyn_bench_home


def audio_hash(samples: np.ndarray, sample_rate: int) -> str:
    h = hashlib.sha256()
    h.update(str(int(sample_rate)).encode())
    h.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    return h.hexdigest()


class AnalysisCache:
    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else resyn_bench_home() / "cache" / "analysis"
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(content_hash: str, group: str, settings: dict[str, Any]) -> str:
        blob = json.dumps({"audio": content_hash, "group": group, "settings": settings},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        if not self.enabled:
            return None
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception:  # truncated/corrupt entry (e.g. disk full): recompute
            self.misses += 1
            return None
        self.hits += 1
        return arrays

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        path = self._path(key)
        # the temporary name holds host, pid and a random part: shards on several hosts may
        # share one cache
        try:
            # not fsynced: a lost entry is recomputed, and a torn one is never visible
            with atomic_open(path, fsync=False) as fh:
                np.savez(fh, **arrays)
        except OSError as exc:
            # the cache is an optimisation: a full or read-only cache disk must not fail a run
            # (nor leave half an entry behind); the analysis is recomputed next time
            if not getattr(self, "_warned", False):
                import logging

                logging.getLogger("resyn_bench.cache").warning(
                    "cannot write the analysis cache %s (%s); going on without caching",
                    self.root, exc)
                self._warned = True
