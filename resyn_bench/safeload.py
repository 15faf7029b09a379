"""Safe loading of checkpoint and statistics files.

``torch.load`` with full unpickling runs arbitrary code stored in the file, so the benchmark
never does that by default. :func:`safe_torch_load` uses torch's restricted ``weights_only``
unpickler and additionally allow-lists the handful of numpy constructors that plain data needs
(the reference ``f0_stats`` files are dicts of numpy scalars). Anything else is refused with an
:class:`UnsafeCheckpointError` that names the file, its SHA-256 and how to trust it explicitly;
:func:`load_trusted_pickle` then performs a full load only for a file whose hash the caller
vouches for.

Importing this module is cheap (torch is imported inside the functions).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from resyn_bench.errors import UserError

__all__ = ["UnsafeCheckpointError", "load_trusted_pickle", "safe_torch_load", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (checkpoints can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class UnsafeCheckpointError(UserError, RuntimeError):
    """A file needs arbitrary (code-executing) unpickling and was not explicitly trusted."""

    def __init__(self, path, sha256: str, reason: str = ""):
        self.path = str(path)
        self.sha256 = sha256
        self.reason = reason
        msg = (
            f"Refusing to unpickle '{self.path}' (sha256 {sha256}): it contains objects that the "
            f"safe loader does not allow (arbitrary pickle can execute code)."
        )
        if reason:
            msg += f" Detail: {_useful_detail(reason).rstrip('.')}."
        msg += (
            f" If you obtained this file from a source you trust, pass its hash as trusted "
            f"(trusted_sha256='{sha256}', e.g. load_trusted_pickle(path, trusted_sha256='{sha256}')), "
            f"or convert it once to a weights-only file."
        )
        super().__init__(msg)


def _useful_detail(reason: str) -> str:
    """The informative line of torch's long restricted-unpickler message (or the first line)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", reason)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "Unsupported" in ln or "not an allowed global" in ln:
            # keep the part before torch's suggestion to allow-list the global
            return ln.replace("WeightsUnpickler error: ", "").split(" Please use")[0][:300]
    return (lines[0] if lines else "")[:300]


def _numpy_safe_globals() -> list:
    """numpy constructors that only rebuild plain data (scalars, dtypes, arrays).

    Each is registered under its current name and under the numpy-1.x name (``numpy.core.*``)
    that files written with older numpy carry; the object itself always comes from the installed
    numpy, so nothing is imported by name from the file.
    """
    import numpy as np

    try:  # numpy >= 2
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma
    out: list = [np.dtype, np.ndarray]
    for name in ("scalar", "_reconstruct"):
        fn = getattr(ma, name)
        out.append((fn, f"numpy._core.multiarray.{name}"))
        out.append((fn, f"numpy.core.multiarray.{name}"))
    # numpy 2 may pickle dtypes through their numpy.dtypes classes (e.g. Float64DType)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and issubclass(obj, np.dtype):
                out.append((obj, f"numpy.dtypes.{name}"))
    return out


def safe_torch_load(path, map_location="cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with numpy data types allowed.

    Raises :class:`UnsafeCheckpointError` (naming the file, its sha256 and how to trust it) when
    the file needs arbitrary unpickling; ``FileNotFoundError`` when it does not exist.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            # plain-pickle files trip a protocol warning before being refused; the error says it all
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch reports a disallowed global (and other restricted-unpickler refusals) this way
        raise UnsafeCheckpointError(path, sha256_file(path), str(exc)) from None


def _normalise_hashes(trusted_sha256) -> set[str]:
    if trusted_sha256 is None:
        return set()
    if isinstance(trusted_sha256, (str, bytes)):
        trusted_sha256 = [trusted_sha256]
    out = set()
    for h in trusted_sha256:
        h = h.decode() if isinstance(h, bytes) else str(h)
        h = h.strip().lower()
        h = h.removeprefix("sha256:")
        if h:
            out.add(h)
    return out


def load_trusted_pickle(path, trusted_sha256: str | Iterable[str], loader: str = "torch",
                        map_location="cpu") -> Any:
    """Fully unpickle ``path`` only if its SHA-256 is one of ``trusted_sha256``.

    ``loader``: "torch" (``torch.load(weights_only=False)``), "joblib" or "pickle". The hash is
    computed from the bytes that are then loaded (read once into memory for "pickle"; for the
    other loaders the file is re-opened, so do not point this at files others can rewrite).
    """
    path = Path(path)
    if loader not in ("torch", "joblib", "pickle"):
        raise ValueError(f"loader must be 'torch', 'joblib' or 'pickle', not {loader!r}")
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    trusted = _normalise_hashes(trusted_sha256)
    if loader == "pickle":
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
    else:
        digest = sha256_file(path)
    if digest not in trusted:
        listed = ", ".join(sorted(trusted)) or "none"
        raise UnsafeCheckpointError(path, digest, f"its sha256 is not among the trusted hashes ({listed})")
    if loader == "torch":
        import torch

        return torch.load(path, map_location=map_location, weights_only=False)
    if loader == "joblib":
        import joblib

        return joblib.load(os.fspath(path))
    import pickle

    return pickle.loads(data)
