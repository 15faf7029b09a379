"""The inert unpickler (trusted fairseq-style checkpoints whose classes are not installed):
numpy values rebuild, ``_codecs.encode`` is allowed for latin-1 only, and any failure is an
error that names the file."""
from __future__ import annotations

import importlib
import io
import pickle
import sys

import numpy as np
import pytest
import torch

from resyn_bench.safeload import (
    CheckpointReadError,
    _inert_pickle_module,
    load_checkpoint_object,
    plain,
    sha256_file,
)

MODULE = "resyn_test_gone_fairseq_module"


@pytest.fixture
def gone_class(tmp_path, monkeypatch):
    """A class from a module that exists while the file is written and is gone when it is read
    (what fairseq/omegaconf classes look like on a machine without them)."""
    (tmp_path / f"{MODULE}.py").write_text(
        "class Config:\n    def __init__(self, **kw):\n        self.__dict__.update(kw)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module(MODULE)
    yield mod.Config
    sys.modules.pop(MODULE, None)


def _write(path, obj):
    torch.save(obj, path)
    sys.modules.pop(MODULE, None)
    (path.parent / f"{MODULE}.py").unlink()
    return sha256_file(path)


def test_numpy_scalars_and_arrays_in_nested_dicts(tmp_path, gone_class):
    # fairseq's extra_state holds numpy scalars and arrays; torch pickles bytes with protocol 2
    # as _codecs.encode(str, 'latin1')
    obj = {"model": {"w": torch.arange(6.0).reshape(2, 3)},
           "cfg": gone_class(lr=np.float64(5e-4), layers=12),
           "extra_state": {"best": np.float64(3.25), "steps": np.int64(400000),
                           "nested": {"arr": np.arange(5, dtype=np.int32),
                                      "m": np.ones((2, 2), dtype=np.float32),
                                      "scalars": [np.float32(0.5), np.bool_(True)]}}}
    p = tmp_path / "ckpt.pt"
    sha = _write(p, obj)
    with pytest.raises(ModuleNotFoundError):  # the file really needs the gone module
        torch.load(p, weights_only=False)
    loaded, full = load_checkpoint_object(p, trusted_sha256=sha)
    assert full
    assert torch.equal(loaded["model"]["w"], obj["model"]["w"])
    es = loaded["extra_state"]
    assert es["best"] == 3.25 and isinstance(es["best"], np.float64)
    assert es["steps"] == 400000 and isinstance(es["steps"], np.int64)
    np.testing.assert_array_equal(es["nested"]["arr"], np.arange(5, dtype=np.int32))
    assert es["nested"]["arr"].dtype == np.int32
    np.testing.assert_array_equal(es["nested"]["m"], np.ones((2, 2), dtype=np.float32))
    assert es["nested"]["scalars"][0] == np.float32(0.5) and bool(es["nested"]["scalars"][1])
    assert plain(loaded["cfg"]) == {"lr": 5e-4, "layers": 12}


def _codecs_pickle(encoding: str) -> bytes:
    # protocol 2, as torch writes bytes: GLOBAL _codecs.encode, (str, encoding), REDUCE
    return (b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X"
            + len(encoding).to_bytes(4, "little") + encoding.encode() + b"q\x02\x86q\x03Rq\x04.")


def test_codecs_encode_latin1_only():
    unpickler = _inert_pickle_module().Unpickler
    assert unpickler(io.BytesIO(_codecs_pickle("latin1"))).load() == b"abc"
    assert pickle.loads(_codecs_pickle("latin1")) == b"abc"  # the stream is what torch writes
    with pytest.raises(pickle.UnpicklingError, match="latin1"):
        unpickler(io.BytesIO(_codecs_pickle("rot13"))).load()


def test_inert_failure_names_the_file(tmp_path, gone_class):
    p = tmp_path / "odd.pt"
    # the legacy (non-zip) format keeps the pickle stream in the file as written: make the
    # array's bytes ask for another codec, which the inert reader refuses
    torch.save({"cfg": gone_class(x=1), "arr": np.arange(3)}, p,
               _use_new_zipfile_serialization=False)
    sys.modules.pop(MODULE, None)
    (p.parent / f"{MODULE}.py").unlink()
    raw = p.read_bytes()
    assert raw.count(b"latin1") >= 1
    p.write_bytes(raw.replace(b"latin1", b"rot_13"))
    sha = sha256_file(p)
    with pytest.raises(CheckpointReadError) as err:
        load_checkpoint_object(p, trusted_sha256=sha, what="HuBERT checkpoint")
    msg = str(err.value)
    assert str(p) in msg and "HuBERT checkpoint" in msg
    assert "safetensors" in msg or "convert" in msg  # says what to do
