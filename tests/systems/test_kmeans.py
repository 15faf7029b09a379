"""Our minibatch k-means against scikit-learn, the safe .npz format, and the GSLM km.bin
converter (a km.bin made here with joblib + scikit-learn stands in for the official one)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from resyn_bench.systems.encoders.kmeans import (
    FrameReservoir,
    KMeansError,
    KMeansModel,
    convert_km_bin,
    converted_path,
    train_kmeans,
)


def blobs(seed=1, k=8, dim=16, n=8000, spread=10.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, size=(k, dim))
    labels = rng.integers(k, size=n)
    x = centres[labels] + rng.normal(size=(n, dim))
    return x.astype(np.float32), centres, labels


def nearest_true(model_centres, true_centres):
    d = ((model_centres[:, None, :] - true_centres[None]) ** 2).sum(-1)
    return np.sqrt(d.min(axis=0)), d.argmin(axis=1)


def test_predict_matches_brute_force():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(37, 24)).astype(np.float32)
    x = rng.normal(size=(1000, 24)).astype(np.float32)
    m = KMeansModel(c)
    # independent: explicit differences in float64
    d = ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1)
    labels = m.predict(x, chunk_size=77)  # several chunks, one ragged
    assert labels.dtype == np.int64 and labels.shape == (1000,)
    agree = labels == d.argmin(1)
    # float32 rounding may flip a near tie; never by more than a rounding error
    gap = d[np.arange(1000), labels] - d.min(1)
    assert agree.mean() > 0.995 and gap.max() < 1e-4
    assert m.inertia(x) == pytest.approx(d.min(1).sum(), rel=1e-5)
    assert m.predict(np.zeros((0, 24), np.float32)).shape == (0,)
    with pytest.raises(KMeansError, match=r"\[T, 24\]"):
        m.predict(np.zeros((5, 23), np.float32))


def test_train_recovers_blobs_like_sklearn():
    from sklearn.cluster import KMeans

    x, true, _ = blobs()
    m = train_kmeans(x, 8, batch_size=1000, seed=0)
    dist, match = nearest_true(m.centroids, true)
    assert dist.max() < 0.3                          # every true centre found ...
    assert sorted(match) == list(range(8))           # ... by exactly one learned centre
    sk = KMeans(8, n_init=3, random_state=0).fit(x)
    assert m.meta["inertia"] == pytest.approx(sk.inertia_, rel=0.03)
    assert m.meta["inertia"] == pytest.approx(m.inertia(x), rel=1e-6)
    assert m.meta["empty_clusters"] == 0 and m.meta["k"] == 8 and m.meta["dim"] == 16


def test_train_is_deterministic_for_a_seed():
    x, _, _ = blobs(seed=3, k=6, n=3000)
    a = train_kmeans(x, 6, batch_size=256, seed=5)
    b = train_kmeans(x, 6, batch_size=256, seed=5)
    c = train_kmeans(x, 6, batch_size=256, seed=6)
    assert np.array_equal(a.centroids, b.centroids)
    assert a.meta["steps"] == b.meta["steps"]
    assert not np.array_equal(a.centroids, c.centroids)


def test_empty_clusters_are_reassigned():
    x, true, _ = blobs()
    # four centres where no point will ever be nearest: they stay empty unless re-seeded
    init = np.vstack([true[:4], np.full((4, 16), 1000.0)])
    m = train_kmeans(x, 8, batch_size=500, seed=0, init=init)
    assert m.meta["reassigned"] >= 4 and m.meta["empty_clusters"] == 0
    dist, match = nearest_true(m.centroids, true)
    assert dist.max() < 1.0 and sorted(match) == list(range(8))


def test_train_accepts_batches_and_checks_input():
    x, _, _ = blobs(n=2000)
    parts = [x[:700], x[700:1500], x[1500:]]
    a = train_kmeans(parts, 8, batch_size=500, seed=0)
    b = train_kmeans(x, 8, batch_size=500, seed=0)
    assert np.array_equal(a.centroids, b.centroids)
    with pytest.raises(KMeansError, match="not enough"):
        train_kmeans(x[:5], 8)
    with pytest.raises(KMeansError, match="NaN"):
        train_kmeans(np.full((100, 2), np.nan, np.float32), 2)


def test_save_load_roundtrip_and_no_pickle(tmp_path):
    x, _, _ = blobs(n=2000)
    m = train_kmeans(x, 8, batch_size=500, seed=0,
                     meta={"extractor": "logmel", "hop_size": 160, "sample_rate": 16000,
                           "trained_on": "blobs"})
    path = m.save(tmp_path / "km.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["km.npz"]  # no temp file left
    back = KMeansModel.load(path)
    assert np.array_equal(back.centroids, m.centroids)
    assert back.meta == json.loads(json.dumps(m.meta))
    assert back.meta["extractor"] == "logmel" and back.meta["seed"] == 0
    assert np.array_equal(back.predict(x), m.predict(x))
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert sorted(data.files) == ["centroids", "meta"]
        assert json.loads(str(data["meta"][()]))["format"] == "resyn-bench-kmeans"
    # a file that would need pickle is refused, not unpickled
    bad = tmp_path / "bad.npz"
    np.savez(bad, centroids=m.centroids, meta=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(KMeansError, match="cannot read"):
        KMeansModel.load(bad)
    with pytest.raises(KMeansError, match="convert_km_bin"):
        KMeansModel.load(tmp_path / "km.bin")


def test_reservoir_is_uniform_and_bounded():
    ids = np.arange(1000, dtype=np.float32)[:, None]
    counts = np.zeros(1000)
    for seed in range(300):
        r = FrameReservoir(100, seed=seed)
        for a in range(0, 1000, 37):
            r.add(ids[a:a + 37])
        got = r.array()[:, 0].astype(int)
        assert len(got) == 100 and len(set(got)) == 100 and r.seen == 1000
        counts[got] += 1
    # each frame kept with probability 0.1: 30 +- 5.2 times in 300 runs; early and late alike
    assert abs(counts[:500].mean() - 30) < 1.5 and abs(counts[500:].mean() - 30) < 1.5
    assert counts.min() > 8 and counts.max() < 55
    everything = FrameReservoir(None)
    everything.add(ids[:10])
    everything.add(ids[10:25])
    assert np.array_equal(everything.array(), ids[:25])


# ---------------------------------------------------------------------------- GSLM km.bin

@pytest.fixture(scope="module")
def fitted_minibatch():
    from sklearn.cluster import MiniBatchKMeans

    x, _, _ = blobs(seed=7, k=10, dim=12, n=3000)
    return MiniBatchKMeans(n_clusters=10, batch_size=1000, n_init=1, random_state=0).fit(x), x


@pytest.fixture
def km_bin(tmp_path, fitted_minibatch):
    """A km.bin as GSLM made them: joblib.dump of a fitted sklearn MiniBatchKMeans."""
    import hashlib

    import joblib

    km, x = fitted_minibatch
    path = tmp_path / "km100" / "km.bin"
    path.parent.mkdir()
    joblib.dump(km, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), km, x


def test_convert_km_bin_matches_sklearn(km_bin):
    path, sha, km, x = km_bin
    model = convert_km_bin(path, sha, meta={"extractor": "hubert", "layer": 6})
    out = converted_path(path)
    assert out == path.with_name("km.npz") and out.is_file()
    assert np.array_equal(model.centroids, km.cluster_centers_)
    assert np.array_equal(model.predict(x), km.predict(x))
    rng = np.random.default_rng(0)
    y = (x + rng.normal(0, 5, size=x.shape)).astype(np.float32)  # near boundaries too
    assert (model.predict(y) == km.predict(y)).mean() > 0.999
    assert model.meta["source_sha256"] == sha and model.meta["layer"] == 6
    assert model.meta["source_type"].endswith("MiniBatchKMeans")
    # the safe copy is self-sufficient: later loads need neither the pickle nor its hash
    back = KMeansModel.load(out)
    assert np.array_equal(back.centroids, model.centroids) and back.meta["extractor"] == "hubert"


def test_convert_km_bin_reuses_the_npz(km_bin, monkeypatch):
    path, sha, _, _ = km_bin
    convert_km_bin(path, sha)
    from resyn_bench import safeload

    def boom(*a, **k):
        raise AssertionError("the pickle was read again")

    monkeypatch.setattr(safeload, "load_trusted_pickle", boom)
    assert convert_km_bin(path, sha).k == 10
    # same file, hash no longer passed: the .npz was made from exactly these bytes
    assert convert_km_bin(path, ()).k == 10


def test_convert_km_bin_refuses_an_untrusted_hash(km_bin):
    from resyn_bench.safeload import UnsafeCheckpointError

    path, sha, _, _ = km_bin
    wrong = "0" * 64
    with pytest.raises(UnsafeCheckpointError) as info:
        convert_km_bin(path, wrong)
    assert sha in str(info.value)              # names the file's actual hash ...
    assert wrong in str(info.value)            # ... and the ones it was told to trust
    assert not converted_path(path).exists()   # nothing converted


def test_stale_npz_from_another_file_is_not_used(km_bin, tmp_path):
    from resyn_bench.safeload import UnsafeCheckpointError

    path, sha, _, _ = km_bin
    convert_km_bin(path, sha)
    # the km.bin is replaced by different bytes: the .npz made from the old ones is used only
    # by a caller who trusts the old hash, never on the strength of the new file
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(UnsafeCheckpointError):
        convert_km_bin(path, ())
    assert convert_km_bin(path, sha).meta["source_sha256"] == sha
