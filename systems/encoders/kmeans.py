"""k-means quantizers for dense speech features: a safe on-disk format, our own minibatch
k-means, and a one-time converter for the official GSLM ``km.bin`` files.

File format (``.npz``, read with ``allow_pickle=False``, so loading runs no code):

* ``centroids``  float [K, D]
* ``meta``       a 0-d unicode array holding a JSON object: ``format`` ("resyn-bench-kmeans"),
  ``version``, ``k``, ``dim`` and what the units were trained on - ``extractor`` (feature
  extractor name for ``make_feature_extractor``), ``layer``, ``checkpoint``, ``hop_size``,
  ``sample_rate``, ``trained_on``, ``seed``, ``inertia`` ... - so a k-means file is a complete
  unit-encoder spec (:func:`resyn_bench.systems.encoders.base.load_unit_encoder`).

Training (:func:`train_kmeans`) is minibatch k-means after Sculley (2010, "Web-scale k-means
clustering"): k-means++ seeding on a sample, then each minibatch is assigned to its nearest
centres and every centre moves towards the mean of its points with a per-centre learning rate
1/(points it has absorbed so far), which equals the running mean of all points ever assigned to
it. Centres that attract no points for a while are re-seeded on far-away points of the current
batch (empty-cluster reassignment). The features are held in memory: bound them by
subsampling frames (``resyn-bench train kmeans --max-frames``).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.errors import UserError

__all__ = ["KMeansModel", "KMeansError", "FrameReservoir", "train_kmeans", "convert_km_bin",
           "converted_path", "FORMAT", "FORMAT_VERSION"]

FORMAT = "resyn-bench-kmeans"
FORMAT_VERSION = 1
#: frames per distance block: bounds the [chunk, K] distance matrix (4096 x 1000 x 8 B = 33 MB)
PREDICT_CHUNK = 4096


class KMeansError(UserError, ValueError):
    """A k-means file or model cannot be used as asked (wrong format, shape mismatch...)."""


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for numpy scalars/arrays and paths in the metadata."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"k-means metadata value {value!r} ({type(value).__name__}) is not JSON-able")


def _sq_distances(x: np.ndarray, centroids: np.ndarray, c_sqnorm: np.ndarray,
                  with_x_norm: bool = True) -> np.ndarray:
    """Squared Euclidean distances [n, K] as ||x||^2 - 2 x.c + ||c||^2 (one matrix product
    instead of an [n, K, D] difference tensor). Rounding can make tiny values negative, so they
    are clamped at 0."""
    d = x @ centroids.T
    d *= -2.0
    d += c_sqnorm[None, :]
    if with_x_norm:
        d += np.einsum("ij,ij->i", x, x)[:, None]
        np.maximum(d, 0.0, out=d)
    return d


class KMeansModel:
    """Nearest-centroid quantizer: ``predict(feats [T, D]) -> int64 [T]`` in 0..K-1."""

    def __init__(self, centroids: np.ndarray, meta: dict | None = None):
        c = np.asarray(centroids)
        if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
            raise KMeansError(f"centroids must be a [K, D] array, got shape {c.shape}")
        if not np.issubdtype(c.dtype, np.floating):
            c = c.astype(np.float32)
        if not np.all(np.isfinite(c)):
            raise KMeansError("centroids contain NaN or inf")
        self.centroids = np.ascontiguousarray(c)
        # distances are computed in the centroids' precision (float32 files stay fast)
        self._sqnorm = np.einsum("ij,ij->i", self.centroids, self.centroids)
        self.meta: dict[str, Any] = dict(meta or {})
        self.meta["k"], self.meta["dim"] = int(c.shape[0]), int(c.shape[1])

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def __repr__(self) -> str:
        what = self.meta.get("extractor")
        return f"KMeansModel(k={self.k}, dim={self.dim}{', ' + what if what else ''})"

    def _check(self, feats: np.ndarray) -> np.ndarray:
        x = np.asarray(feats)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise KMeansError(f"features must be [T, {self.dim}] for this k-means "
                              f"({self.meta.get('extractor') or 'unknown'} features), got "
                              f"shape {x.shape}")
        return x.astype(self.centroids.dtype, copy=False)

    def _blocks(self, feats: np.ndarray, chunk_size: int):
        x = self._check(feats)
        for start in range(0, x.shape[0], chunk_size):
            yield start, x[start:start + chunk_size]

    def predict(self, feats: np.ndarray, chunk_size: int = PREDICT_CHUNK) -> np.ndarray:
        """Index of the nearest centroid (squared Euclidean; ties -> lowest index) per frame."""
        x = self._check(feats)
        out = np.empty(x.shape[0], dtype=np.int64)
        for start, block in self._blocks(x, chunk_size):
            # ||x||^2 is the same for every centroid: not needed for the argmin
            d = _sq_distances(block, self.centroids, self._sqnorm, with_x_norm=False)
            out[start:start + block.shape[0]] = np.argmin(d, axis=1)
        return out

    def assign(self, feats: np.ndarray, chunk_size: int = PREDICT_CHUNK
               ) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 [T], squared distance to the chosen centroid float64 [T])."""
        x = self._check(feats)
        labels = np.empty(x.shape[0], dtype=np.int64)
        dist = np.empty(x.shape[0], dtype=np.float64)
        for start, block in self._blocks(x, chunk_size):
            d = _sq_distances(block, self.centroids, self._sqnorm)
            lab = np.argmin(d, axis=1)
            labels[start:start + len(lab)] = lab
            dist[start:start + len(lab)] = d[np.arange(len(lab)), lab]
        return labels, dist

    def inertia(self, feats: np.ndarray) -> float:
        """Sum of squared distances of the frames to their nearest centroid (sklearn's
        ``inertia_`` convention: a sum, not a mean)."""
        return float(self.assign(feats)[1].sum())

    # ---------------------------------------------------------------------------- files

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` atomically (temp file + rename); returns the path."""
        from resyn_bench.core.atomic import atomic_open

        path = Path(path)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, **self.meta}
        blob = json.dumps(meta, sort_keys=True, default=_jsonable)
        with atomic_open(path) as fh:  # a file object: numpy does not append ".npz"
            np.savez(fh, centroids=self.centroids, meta=np.array(blob))
        return path

    @classmethod
    def load(cls, path: str | Path) -> KMeansModel:
        """Read a file written by :meth:`save` (never unpickles anything)."""
        path = Path(path)
        if path.suffix == ".bin":
            raise KMeansError(
                f"{path} looks like a GSLM km.bin (a pickle); convert it once with "
                "convert_km_bin(path, trusted_sha256) or use a catalogue name such as "
                "hubert-l6-km100, which converts it for you")
        if not path.is_file():
            raise FileNotFoundError(f"k-means file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                files = set(data.files)
                if not {"centroids", "meta"} <= files:
                    raise KMeansError(f"{path} is not a resyn-bench k-means file (arrays "
                                      f"{sorted(files)}; expected centroids and meta)")
                centroids = data["centroids"]
                meta = json.loads(str(data["meta"][()]))
        except KMeansError:
            raise
        except (ValueError, OSError, json.JSONDecodeError) as exc:
            # object arrays (which would need pickle) land here too
            raise KMeansError(f"cannot read k-means file {path}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise KMeansError(f"{path} is not a resyn-bench k-means file (meta format "
                              f"{meta.get('format') if isinstance(meta, dict) else meta!r})")
        if meta.get("version", 0) > FORMAT_VERSION:
            raise KMeansError(f"{path} has k-means format version {meta['version']}; this "
                              f"resyn-bench reads up to {FORMAT_VERSION}: upgrade it")
        meta.pop("format", None)
        meta.pop("version", None)
        model = cls(centroids, meta)
        if meta.get("k") not in (None, model.k) or meta.get("dim") not in (None, model.dim):
            raise KMeansError(f"{path}: meta says k={meta.get('k')}, dim={meta.get('dim')} but "
                              f"the centroids are {model.centroids.shape}")
        return model


# -------------------------------------------------------------------------------- training

class FrameReservoir:
    """A uniform random sample of at most ``max_frames`` feature frames from a stream of
    utterances (reservoir sampling, Vitter's algorithm R), so k-means training data is bounded
    in memory however large the corpus. ``max_frames=None`` keeps every frame."""

    def __init__(self, max_frames: int | None = None, seed: int = 0):
        if max_frames is not None and max_frames < 1:
            raise KMeansError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = max_frames
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self._parts: list[np.ndarray] = []
        self._buf: np.ndarray | None = None
        self._filled = 0

    def add(self, feats: np.ndarray) -> None:
        x = np.asarray(feats, dtype=np.float32)
        if x.ndim != 2:
            raise KMeansError(f"features must be [T, D], got shape {x.shape}")
        if x.shape[0] == 0:
            return
        if self.max_frames is None:
            self._parts.append(np.ascontiguousarray(x))
            self.seen += x.shape[0]
            return
        if self._buf is None:
            self._buf = np.empty((self.max_frames, x.shape[1]), dtype=np.float32)
        elif x.shape[1] != self._buf.shape[1]:
            raise KMeansError(f"features of dimension {x.shape[1]} after {self._buf.shape[1]}")
        take = min(self.max_frames - self._filled, x.shape[0])
        if take:
            self._buf[self._filled:self._filled + take] = x[:take]
            self._filled += take
        rest = x[take:]
        if rest.shape[0]:
            # frame number t (0-based, over the whole stream) replaces slot j ~ U{0..t} if j < M;
            # a later frame overwriting the same slot wins, as in the sequential algorithm
            t = self.seen + take + np.arange(rest.shape[0])
            j = (self.rng.random(rest.shape[0]) * (t + 1)).astype(np.int64)
            keep = np.flatnonzero(j < self.max_frames)
            if keep.size:
                slots = j[keep]
                # keep only the last write per slot (numpy leaves repeated-index order unspecified)
                last = np.unique(slots[::-1], return_index=True)[1]
                pick = keep[::-1][last]
                self._buf[j[pick]] = rest[pick]
        self.seen += x.shape[0]

    def __len__(self) -> int:
        return self.seen if self.max_frames is None else self._filled

    def array(self) -> np.ndarray:
        """The sampled frames [n, D] (float32)."""
        if self.max_frames is None:
            if not self._parts:
                return np.zeros((0, 0), dtype=np.float32)
            return np.concatenate(self._parts, axis=0)
        if self._buf is None:
            return np.zeros((0, 0), dtype=np.float32)
        return self._buf[:self._filled]


def _stack(feature_batches) -> np.ndarray:
    if isinstance(feature_batches, np.ndarray):
        x = feature_batches
    else:
        parts = [np.asarray(b) for b in feature_batches]
        parts = [p for p in parts if p.size]
        if not parts:
            raise KMeansError("no features to train k-means on")
        dims = {p.shape[1] if p.ndim == 2 else None for p in parts}
        if len(dims) != 1 or None in dims:
            raise KMeansError(f"feature batches must all be [n, D] with one D, got shapes "
                              f"{sorted({p.shape for p in parts})[:5]}")
        x = np.concatenate(parts, axis=0)
    if x.ndim != 2:
        raise KMeansError(f"features must be [N, D], got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise KMeansError("features contain NaN or inf")
    return x


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre is the best of
    2 + log(k) candidates drawn with probability proportional to the squared distance to the
    nearest centre so far. Returns (centres float64 [k, D], their inertia on x)."""
    n = x.shape[0]
    x_sq = np.einsum("ij,ij->i", x, x)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, x.shape[1]), dtype=np.float64)
    first = int(rng.integers(n))
    centres[0] = x[first]
    closest = np.maximum(x_sq - 2.0 * (x @ x[first]) + x_sq[first], 0.0)
    for c in range(1, k):
        total = closest.sum()
        if total <= 0.0:  # fewer distinct points than centres: any point will do
            cand = rng.integers(n, size=trials)
        else:
            cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
            cand = np.minimum(cand, n - 1)
        # (x @ c.T).T: BLAS streams the big matrix row-major (3x faster than c @ x.T)
        d = np.maximum(x_sq[None, :] - 2.0 * (x @ x[cand].T).T + x_sq[cand][:, None], 0.0)
        d = np.minimum(d, closest[None, :])
        best = int(np.argmin(d.sum(axis=1)))
        centres[c] = x[cand[best]]
        closest = d[best]
    return centres, float(closest.sum())


def _reseed(xb: np.ndarray, dist: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m new centres from the batch, k-means++ style: each drawn with probability proportional
    to its squared distance to the nearest centre so far (the new ones included), so several
    empty centres do not land in the same poorly covered region."""
    dist = np.maximum(np.asarray(dist, dtype=np.float64), 0.0).copy()
    picks = np.empty((m, xb.shape[1]), dtype=np.float64)
    for i in range(m):
        total = dist.sum()
        j = int(rng.integers(len(dist))) if total <= 0.0 else int(min(
            np.searchsorted(np.cumsum(dist), rng.random() * total), len(dist) - 1))
        picks[i] = xb[j]
        diff = xb - xb[j]
        np.minimum(dist, np.einsum("ij,ij->i", diff, diff), out=dist)
    return picks


def train_kmeans(feature_batches: np.ndarray | Iterable[np.ndarray], k: int, *,
                 batch_size: int = 10000, max_iter: int = 100, seed: int = 0,
                 init: str | np.ndarray = "k-means++", tol: float = 0.0,
                 max_no_improvement: int | None = 10, n_init: int = 3,
                 init_size: int | None = None, reassign_every: int = 10,
                 meta: dict | None = None,
                 log: Callable[[str], None] | None = None) -> KMeansModel:
    """Minibatch k-means (Sculley 2010) in numpy; returns a :class:`KMeansModel` whose meta
    records the settings and the final inertia over all frames.

    ``feature_batches``: one [N, D] array or an iterable of [n_i, D] arrays (concatenated; held
    in memory as float32). ``max_iter``: passes over the data, i.e. at most
    ``ceil(max_iter * N / batch_size)`` minibatch steps (sklearn's meaning). Stops earlier when
    the smoothed minibatch inertia has not improved for ``max_no_improvement`` steps, or when
    ``tol > 0`` and the mean squared centre shift of a step falls below ``tol`` times the mean
    per-dimension feature variance. ``init``: "k-means++" (best of ``n_init`` seedings on a
    sample of ``init_size`` frames, default max(3 * batch_size, 3 * k)), "random", or a [k, D]
    array. Deterministic for a given ``seed`` and data (on one machine: BLAS sums may round
    differently elsewhere).
    """
    t0 = time.perf_counter()
    x = _stack(feature_batches)
    n, dim = x.shape
    k = int(k)
    if k < 1:
        raise KMeansError(f"k must be >= 1, got {k}")
    if n < k:
        raise KMeansError(f"{n} frames are not enough for k={k} clusters")
    if batch_size < 1 or max_iter < 1 or n_init < 1:
        raise KMeansError("batch_size, max_iter and n_init must be >= 1")
    rng = np.random.default_rng(seed)
    say = log or (lambda msg: None)

    # ---- seeding on a sample
    if init_size is None:
        init_size = max(3 * batch_size, 3 * k)
    init_size = max(min(int(init_size), n), k)
    sample = x[np.sort(rng.choice(n, size=init_size, replace=False))] if init_size < n else x
    if isinstance(init, np.ndarray) or not isinstance(init, str):
        centres = np.array(init, dtype=np.float64)
        if centres.shape != (k, dim):
            raise KMeansError(f"init array must be [{k}, {dim}], got {centres.shape}")
        init_name = "array"
    elif init in ("k-means++", "kmeans++"):
        best = None
        for _ in range(n_init):
            cand, inertia = _kmeans_pp(sample, k, rng)
            if best is None or inertia < best[1]:
                best = (cand, inertia)
        centres = best[0]
        init_name = "k-means++"
    elif init == "random":
        best = None
        for _ in range(n_init):
            cand = sample[rng.choice(sample.shape[0], size=k, replace=False)].astype(np.float64)
            inertia = KMeansModel(cand).inertia(sample)
            if best is None or inertia < best[1]:
                best = (cand, inertia)
        centres = best[0]
        init_name = "random"
    else:
        raise KMeansError(f"init must be 'k-means++', 'random' or a [k, D] array, not {init!r}")
    say(f"k-means: {n} frames x {dim} dims, k={k}, seeded ({init_name}, sample of "
        f"{sample.shape[0]}) in {time.perf_counter() - t0:.1f} s")

    # ---- minibatch updates
    b = min(int(batch_size), n)
    n_steps = max(1, math.ceil(max_iter * n / b))
    tol_abs = float(tol) * float(np.mean(np.var(sample, axis=0, dtype=np.float64)))
    counts = np.zeros(k, dtype=np.float64)     # points absorbed per centre (Sculley's v[c])
    window = np.zeros(k, dtype=np.int64)       # points per centre since the last empty check
    alpha = min(1.0, 2.0 * b / (n + 1))        # EWA weight of one batch ~ 2 / batches per epoch
    ewa = best_ewa = math.inf
    since_best = 0
    reassigned = 0
    stop = "max_iter"
    perm = rng.permutation(n)
    cursor = 0
    step = 0
    for step in range(1, n_steps + 1):
        if cursor + b > n:  # a fresh permutation per pass: every frame once per epoch
            perm, cursor = rng.permutation(n), 0
        xb = x[perm[cursor:cursor + b]]
        cursor += b
        # assignment in float32 (the costly part, as fast as prediction); updates in float64
        c32 = centres.astype(np.float32)
        d = _sq_distances(xb, c32, np.einsum("ij,ij->i", c32, c32))
        labels = np.argmin(d, axis=1)
        mind = d[np.arange(b), labels].astype(np.float64)
        xb = xb.astype(np.float64)
        batch_inertia = float(mind.mean())

        # Sculley's per-centre learning rate 1/v[c], applied to all of a centre's batch points
        # at once: c <- c + (sum(x) - n_c c) / (v[c] + n_c), i.e. the running mean.
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        hit = sorted_labels[starts]
        n_hit = np.diff(np.r_[starts, b]).astype(np.float64)
        sums = np.add.reduceat(xb[order], starts, axis=0)
        counts[hit] += n_hit
        delta = (sums - n_hit[:, None] * centres[hit]) / counts[hit][:, None]
        centres[hit] += delta
        shift = float(np.einsum("ij,ij->", delta, delta)) / k
        window[hit] += n_hit.astype(np.int64)

        # empty-cluster reassignment: a centre that won no point among the last few batches
        # (and enough points were seen for that to mean something) is re-seeded on a far point
        if (step == 1 or step % reassign_every == 0) and window.sum() >= 5 * k:
            empty = np.flatnonzero(window == 0)
            if empty.size:
                centres[empty] = _reseed(xb, mind, empty.size, rng)
                # The partition changed: points absorbed under the old one would keep the
                # other centres from moving (rate 1/count), so each centre keeps only what it
                # absorbed in the last window.
                np.minimum(counts, window, out=counts)
                counts[empty] = 0.0
                reassigned += int(empty.size)
            window[:] = 0

        # convergence: smoothed minibatch inertia stalls, or the centres barely move
        ewa = batch_inertia if not math.isfinite(ewa) else (1 - alpha) * ewa + alpha * batch_inertia
        if ewa < best_ewa:
            best_ewa, since_best = ewa, 0
        else:
            since_best += 1
        if max_no_improvement and since_best >= max_no_improvement:
            stop = "no_improvement"
            break
        if tol_abs > 0 and shift <= tol_abs:
            stop = "tol"
            break

    model = KMeansModel(centres.astype(np.float32))
    labels, dist = model.assign(x)
    sizes = np.bincount(labels, minlength=k)
    elapsed = time.perf_counter() - t0
    model.meta.update(meta or {})
    model.meta.update({
        "k": k, "dim": dim, "seed": seed, "batch_size": b, "init": init_name, "n_init": n_init,
        "steps": step, "epochs": round(step * b / n, 3), "stopped": stop,
        "n_frames": n, "inertia": float(dist.sum()), "inertia_per_frame": float(dist.mean()),
        "empty_clusters": int(np.count_nonzero(sizes == 0)), "reassigned": reassigned,
        "train_seconds": round(elapsed, 3), "algorithm": "minibatch k-means (Sculley 2010), numpy",
    })
    say(f"k-means: {step} steps ({model.meta['epochs']} passes, stopped: {stop}), inertia "
        f"{model.meta['inertia']:.6g} ({model.meta['inertia_per_frame']:.6g} per frame), "
        f"{elapsed:.1f} s")
    return model


# ----------------------------------------------------------------------- GSLM km.bin files

def converted_path(path: str | Path) -> Path:
    """Where :func:`convert_km_bin` keeps the safe copy of ``path`` (``km.bin`` -> ``km.npz``)."""
    return Path(path).with_suffix(".npz")


def convert_km_bin(path: str | Path, trusted_sha256: str | Iterable[str], *,
                   meta: dict | None = None, out: str | Path | None = None) -> KMeansModel:
    """Read a GSLM ``km.bin`` (a joblib pickle of a scikit-learn (MiniBatch)KMeans) once and
    keep its centroids as a safe ``.npz`` beside it (or at ``out``).

    The pickle is loaded only through ``load_trusted_pickle`` and only if the file's sha256 is
    in ``trusted_sha256`` (else ``UnsafeCheckpointError`` naming the file's hash). A ``.npz``
    already converted from a file with a trusted hash, or from this very file, is reused
    without touching the pickle. ``meta`` (extractor, layer, checkpoint, hop_size ...) is
    stored with the centroids."""
    from resyn_bench.safeload import load_trusted_pickle, sha256_file

    path = Path(path)
    out = Path(out) if out is not None else converted_path(path)
    from resyn_bench.safeload import _normalise_hashes  # the same rules as the loader's check

    trusted = _normalise_hashes(trusted_sha256)
    if out.is_file():
        try:
            cached = KMeansModel.load(out)
        except KMeansError:
            cached = None  # unreadable: convert again
        if cached is not None:
            source = cached.meta.get("source_sha256")
            if source in trusted or (path.is_file() and source == sha256_file(path)):
                return cached
    if not path.is_file():
        raise FileNotFoundError(f"k-means file not found: {path}")
    try:
        obj = load_trusted_pickle(path, sorted(trusted), loader="joblib")
    except (ImportError, AttributeError, ModuleNotFoundError, TypeError, ValueError) as exc:
        try:
            import sklearn

            have = f"scikit-learn {sklearn.__version__}"
        except ImportError:  # the pickle needs it: pip install 'resyn-bench[units]'
            have = "scikit-learn (not installed: pip install 'resyn-bench[units]')"
        raise KMeansError(
            f"{path} passed the hash check but could not be unpickled with {have} "
            f"({type(exc).__name__}: {exc}); install the scikit-learn "
            "version the file was written with, convert once, and the .npz is used "
            "afterwards") from None
    centres = getattr(obj, "cluster_centers_", obj)
    centres = np.asarray(centres)
    if centres.ndim != 2 or not np.issubdtype(centres.dtype, np.floating):
        raise KMeansError(f"{path} holds a {type(obj).__name__} without a [K, D] "
                          "cluster_centers_ array; not a k-means model")
    info = dict(meta or {})
    info.update({
        "source": str(path), "source_sha256": sha256_file(path),
        "source_type": f"{type(obj).__module__}.{type(obj).__qualname__}",
    })
    if getattr(obj, "_sklearn_version", None):
        info["source_sklearn_version"] = str(obj._sklearn_version)
    if getattr(obj, "inertia_", None) is not None:
        info.setdefault("inertia", float(obj.inertia_))
    model = KMeansModel(centres, info)
    model.save(out)
    return model
