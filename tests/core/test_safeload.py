"""resyn_bench.safeload: numpy-scalar statistics load safely, arbitrary objects are refused,
full unpickling only for an explicitly trusted hash."""
from __future__ import annotations

import argparse
import hashlib
import pickle

import numpy as np
import pytest
import torch

from resyn_bench.safeload import UnsafeCheckpointError, load_trusted_pickle, safe_torch_load, sha256_file


class _Payload:
    """An arbitrary class: loading it requires importing code named by the file."""

    def __init__(self, x):
        self.x = x


def _f0_stats():
    # the shape of the reference VCTK/LJ f0_stats files: numpy scalars, numpy int keys
    return {"f0_mean": np.float64(209.04119886766213), "f0_std": np.float64(58.75603900262766),
            np.int64(18): {"f0_mean": np.float32(90.63), "f0_std": np.float32(10.38)}}


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "blob.bin"
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # spans several read chunks
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_numpy_scalar_dict_loads_safely(tmp_path):
    p = tmp_path / "f0_stats.th"
    torch.save(_f0_stats(), p)
    d = safe_torch_load(p)
    assert d["f0_mean"] == np.float64(209.04119886766213) and isinstance(d["f0_mean"], np.float64)
    assert d[18]["f0_std"] == np.float32(10.38) and isinstance(d[18]["f0_std"], np.float32)
    assert isinstance(next(k for k in d if not isinstance(k, str)), np.int64)


def test_numpy1_names_and_arrays_load(tmp_path):
    # files written with numpy 1.x name numpy.core.multiarray.scalar; emulate one with the legacy
    # (non-zip) torch format, where the pickle stream can be edited in place
    p = tmp_path / "old.pt"
    torch.save({"m": np.float64(1.25), "arr": np.arange(4), "t": torch.ones(2)}, p,
               _use_new_zipfile_serialization=False)
    raw = p.read_bytes()
    if b"numpy._core." in raw:
        p.write_bytes(raw.replace(b"numpy._core.", b"numpy.core."))
        assert b"numpy.core.multiarray" in p.read_bytes()
    d = safe_torch_load(p)
    assert d["m"] == 1.25 and list(d["arr"]) == [0, 1, 2, 3] and torch.equal(d["t"], torch.ones(2))


def test_arbitrary_class_is_refused_with_helpful_message(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"generator": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=1e-3)}, p)
    digest = sha256_file(p)
    with pytest.raises(UnsafeCheckpointError) as ei:
        safe_torch_load(p)
    msg = str(ei.value)
    assert str(p) in msg and digest in msg and "trusted_sha256" in msg
    assert "argparse.Namespace" in msg
    assert ei.value.sha256 == digest and ei.value.path == str(p)
    assert isinstance(ei.value, RuntimeError)


def test_plain_pickle_is_refused(tmp_path):
    p = tmp_path / "model.pkl"
    p.write_bytes(pickle.dumps({"x": _Payload(1)}))
    with pytest.raises(UnsafeCheckpointError, match="sha256"):
        safe_torch_load(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        safe_torch_load(tmp_path / "nope.pt")


def test_load_trusted_pickle_only_with_matching_hash(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"args": argparse.Namespace(lr=1e-3)}, p)
    digest = sha256_file(p)
    with pytest.raises(UnsafeCheckpointError) as ei:
        load_trusted_pickle(p, trusted_sha256="0" * 64)
    assert digest in str(ei.value) and "0" * 64 in str(ei.value)
    with pytest.raises(UnsafeCheckpointError):
        load_trusted_pickle(p, trusted_sha256=[])
    d = load_trusted_pickle(p, trusted_sha256=["f" * 64, digest.upper()])
    assert d["args"].lr == 1e-3
    assert load_trusted_pickle(p, trusted_sha256="sha256:" + digest)["args"].lr == 1e-3


def test_load_trusted_pickle_plain_pickle_and_joblib(tmp_path):
    p = tmp_path / "obj.pkl"
    p.write_bytes(pickle.dumps(_Payload(7)))
    digest = sha256_file(p)
    assert load_trusted_pickle(p, digest, loader="pickle").x == 7
    with pytest.raises(UnsafeCheckpointError):
        load_trusted_pickle(p, "1" * 64, loader="pickle")
    joblib = pytest.importorskip("joblib")
    q = tmp_path / "obj.joblib"
    joblib.dump({"c": np.eye(2)}, q)
    assert np.array_equal(load_trusted_pickle(q, sha256_file(q), loader="joblib")["c"], np.eye(2))
    with pytest.raises(UnsafeCheckpointError):
        load_trusted_pickle(q, digest, loader="joblib")
    with pytest.raises(ValueError, match="loader"):
        load_trusted_pickle(p, digest, loader="yaml")
