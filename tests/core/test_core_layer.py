"""resyn_bench.core: atomic writes, file hashes, package versions, did-you-mean hints."""
from __future__ import annotations

import errno
import hashlib
import json
import os
from importlib import metadata

import numpy as np
import pytest

from resyn_bench.core import atomic
from resyn_bench.core.atomic import (
    DiskFull,
    atomic_open,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from resyn_bench.core.hashing import (
    sha256_file,
    sha256_file_cached,
    sha256_file_or_none,
    sha256_hasher,
)
from resyn_bench.core.suggest import close_matches, did_you_mean
from resyn_bench.core.versions import package_version, package_versions


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------ atomic writes

def test_whole_file_writers_replace_and_leave_no_temporary(tmp_path):
    target = tmp_path / "sub" / "f.txt"          # the folder is created
    assert write_text_atomic(target, "héllo\n") == target
    assert target.read_bytes() == "héllo\n".encode()
    write_bytes_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    write_json_atomic(tmp_path / "sub" / "j.json", {"b": 1, "a": "é"}, sort_keys=True)
    assert (tmp_path / "sub" / "j.json").read_text(encoding="utf-8") == \
        json.dumps({"a": "é", "b": 1}, indent=2, ensure_ascii=False) + "\n"
    assert _files(tmp_path / "sub") == ["f.txt", "j.json"]


def test_atomic_open_commits_only_a_completed_block(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_open(target) as fh:
            fh.write(b"new bytes that never")
            raise RuntimeError("half way")
    assert target.read_bytes() == b"old" and _files(tmp_path) == ["model.npz"]
    with atomic_open(target) as fh:  # a file object: numpy appends no suffix
        np.savez(fh, x=np.arange(3))
    with np.load(target) as z:
        assert z["x"].tolist() == [0, 1, 2]
    with atomic_open(tmp_path / "t.txt", "w") as fh:
        fh.write("text\n")
    assert (tmp_path / "t.txt").read_text() == "text\n"
    assert _files(tmp_path) == ["model.npz", "t.txt"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass


def test_keyboard_interrupt_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "ckpt"
    target.write_bytes(b"complete old checkpoint")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as fh:
            fh.write(b"partial")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"complete old checkpoint" and _files(tmp_path) == ["ckpt"]


def test_temporary_names_are_hidden_unique_and_recognised_by_the_cleanups(tmp_path):
    from resyn_bench.runfolder import _TEMP

    a, b = atomic.temp_name(tmp_path / "g_00000001"), atomic.temp_name(tmp_path / "g_00000001")
    assert a != b and a.parent == tmp_path and f".{atomic._HOST}." in a.name  # shards on hosts
    assert a.name.startswith(".g_00000001.") and a.name.endswith(".tmp")
    assert _TEMP.fullmatch(a.name)                       # the run-folder clean-up
    assert a.match(".*.tmp")                             # the training clean-up's glob


def test_a_full_disk_is_raised_as_disk_full_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write", full)
    with pytest.raises(DiskFull) as info:
        write_text_atomic(tmp_path / "m.json", "{}")
    assert str(tmp_path / "m.json") in str(info.value)
    assert _files(tmp_path) == []


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real = os.write
    monkeypatch.setattr(atomic, "_write", lambda fd, data: real(fd, bytes(data[:3])))
    write_bytes_atomic(tmp_path / "f", b"0123456789")
    assert (tmp_path / "f").read_bytes() == b"0123456789"


def test_the_old_module_name_still_works():
    from resyn_bench import safe_io

    assert safe_io.write_file_atomic is write_bytes_atomic
    assert not hasattr(safe_io, "_write")  # tests must patch resyn_bench.core.atomic._write


# ------------------------------------------------------------------------------ hashes

def test_sha256_matches_hashlib_across_block_boundaries(tmp_path):
    data = os.urandom(3 * 1024 + 17)
    p = tmp_path / "blob"
    p.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(p) == expected
    assert sha256_file(p, chunk=1000) == expected        # several blocks, a short last one
    h = sha256_hasher(p)
    h.update(b"more")                                     # a resumed download goes on from here
    assert h.hexdigest() == hashlib.sha256(data + b"more").hexdigest()


def test_cached_hash_follows_changes_and_missing_files_give_none(tmp_path):
    p = tmp_path / "w.bin"
    p.write_bytes(b"one")
    assert sha256_file_cached(p) == hashlib.sha256(b"one").hexdigest()
    p.write_bytes(b"two, longer")                         # size (and mtime) change
    assert sha256_file_cached(p) == hashlib.sha256(b"two, longer").hexdigest()
    assert sha256_file_or_none(p) == hashlib.sha256(b"two, longer").hexdigest()
    assert sha256_file_or_none(tmp_path / "absent") is None
    assert sha256_file_or_none(None) is None
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "absent")


# ------------------------------------------------------------------------------ versions

def test_package_versions_read_metadata_and_default_when_absent():
    assert package_version("numpy") == metadata.version("numpy") == np.__version__
    assert package_version("no-such-distribution-xyz") is None
    assert package_version("no-such-distribution-xyz", "?") == "?"
    assert package_versions(["numpy", "no-such-distribution-xyz"]) == {
        "numpy": np.__version__, "no-such-distribution-xyz": None}


# ------------------------------------------------------------------------------ did you mean

def test_did_you_mean_formats():
    names = ["hubert", "cpc", "logmel"]
    assert close_matches("hubret", names) == ["hubert"]
    assert did_you_mean("hubret", names) == " Did you mean 'hubert'?"
    assert did_you_mean("hubret", names, parenthesised=True) == " (did you mean 'hubert'?)"
    assert did_you_mean("zzzzzz", names) == ""
    assert did_you_mean("abcd", ["abce", "xbcd"], n=2, joiner=" or ") == \
        " Did you mean 'xbcd' or 'abce'?"  # best first (difflib's order)
    # an alias is shown as the name it stands for, once
    assert did_you_mean("km10", ["km100", "km-100"], n=2,
                        show=lambda c: "km100") == " Did you mean 'km100'?"


def test_every_lookup_of_a_typed_name_uses_the_one_helper():
    """The call sites keep their messages: spot-check three of them."""
    from resyn_bench import registry
    from resyn_bench.datasets import DatasetError, _resolve_name

    with pytest.raises(registry.RegistryError, match="Did you mean 'world'"):
        registry.make_system("wrold")
    with pytest.raises(DatasetError, match="Did you mean 'vctk'"):
        _resolve_name("vctkk")
    from resyn_bench.catalogue import CatalogueError, resolve_name

    with pytest.raises(CatalogueError, match="Did you mean 'hubert-l6-km100'"):
        resolve_name("hubert-l6-km10")
