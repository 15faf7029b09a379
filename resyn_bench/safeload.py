"""Safe loading of checkpoint and statistics files.

``torch.load`` with full unpickling runs arbitrary code stored in the file, so the benchmark
never does that by default. :func:`safe_torch_load` uses torch's restricted ``weights_only``
unpickler and additionally allow-lists the handful of numpy constructors that plain data needs
(the reference ``f0_stats`` files are dicts of numpy scalars). Anything else is refused with an
:class:`UnsafeCheckpointError` that names the file, its SHA-256 and how to trust it explicitly;
:func:`load_trusted_pickle` then performs a full load only for a file whose hash the caller
vouches for.

Two readers that never run code from a file live here too: :func:`read_safetensors` parses a
``.safetensors`` file (header + raw bytes, no pickle, no extra package), and
:func:`inert_torch_load` reads a pickle whose hash was already verified without importing the
classes it names (fairseq, omegaconf): tensors and plain containers are rebuilt, every other
object becomes a :class:`PickledObject` record of its arguments and state.

:func:`load_checkpoint_object` is the one entry point that tries them in order: a
``.safetensors`` file is parsed, anything else goes through :func:`safe_torch_load`; a file
that needs full unpickling is read only when its hash is trusted, with the inert unpickler when
the classes it names are not installed. :func:`plain` turns what such a file holds (omegaconf
configs, argparse namespaces, inert records) into plain Python.

Importing this module is cheap (torch is imported inside the functions).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import struct
import types
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from resyn_bench.core.hashing import sha256_file
from resyn_bench.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["CheckpointReadError", "PickledObject", "UnsafeCheckpointError", "inert_torch_load",
           "load_checkpoint_object", "load_trusted_pickle", "plain", "read_safetensors",
           "safe_torch_load", "sha256_file"]


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


# --------------------------------------------------------------------------------------------
# safetensors (format: u64 little-endian header size, JSON header, raw little-endian bytes)

_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
              "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
              "BOOL": "bool"}


def read_safetensors(path) -> dict:
    """Tensors of a ``.safetensors`` file as a dict of CPU torch tensors (copies)."""
    import torch

    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: not a safetensors file (header size {n} exceeds the file)")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info.get("dtype") not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {key!r} has dtype {info.get('dtype')!r}, which this "
                             f"reader does not support ({', '.join(sorted(_ST_DTYPES))})")
        dtype = getattr(torch, _ST_DTYPES[info["dtype"]])
        start, end = info["data_offsets"]
        buf = bytearray(data[base + start:base + end])
        t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[key] = t.reshape(info["shape"]).clone()
    return out


# --------------------------------------------------------------------------------------------
# Inert unpickler: tensors and plain containers are rebuilt; any other object becomes a record

class PickledObject:
    """Stand-in for an object of a class that was not imported: keeps what the pickle said."""

    _pickled_class = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        obj.items, obj.list = {}, []
        return obj

    def __init__(self, *args, **kwargs):  # REDUCE calls the class; __new__ kept the args
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.list.append(value)

    def extend(self, values):
        self.list.extend(values)

    def __repr__(self):
        return f"<pickled {self._pickled_class}>"


_STUB_CLASSES: dict = {}


def _stub_class(module: str, name: str):
    key = f"{module}.{name}"
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(f"Pickled_{name}", (PickledObject,), {"_pickled_class": key})
    return _STUB_CLASSES[key]


def _allowed_globals() -> dict:
    import collections

    import numpy as np
    import torch

    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice, ("builtins", "complex"): complex,
        ("builtins", "bytearray"): bytearray,
        ("torch", "Size"): torch.Size, ("torch", "device"): torch.device,
        ("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray,
    }
    for fn in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
               "_rebuild_parameter_with_state"):
        if hasattr(torch._utils, fn):
            allowed[("torch._utils", fn)] = getattr(torch._utils, fn)
    for name in dir(torch):
        obj = getattr(torch, name, None)
        if isinstance(obj, torch.dtype):
            allowed[("torch", name)] = obj
    try:
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "scalar")] = ma.scalar
        allowed[(mod, "_reconstruct")] = ma._reconstruct
    return allowed


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` for latin-1 only: how protocol-2 pickles (torch's default) write
    ``bytes`` (numpy arrays and scalars carry their raw data this way). Any other codec is
    refused, as torch's weights-only unpickler restricts it."""
    import codecs

    if not isinstance(obj, str) or codecs.lookup(str(encoding)).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r} "
                                     "(only latin1, the way pickles store bytes, is allowed)")
    return obj.encode("latin1", errors)


def _reconstructor(cls, base, state):
    """copyreg._reconstructor restricted to stand-ins and plain containers."""
    if isinstance(cls, type) and issubclass(cls, PickledObject):
        return cls.__new__(cls)
    if cls in (dict, list, set):
        return cls()
    raise pickle.UnpicklingError(f"refusing to rebuild {cls!r}")


def _newobj(cls, *args):
    if isinstance(cls, type) and issubclass(cls, PickledObject):
        return cls.__new__(cls, *args)
    raise pickle.UnpicklingError(f"refusing to build {cls!r}")


class _InertUnpickler(pickle.Unpickler):
    _allowed: ClassVar[dict] = {}  # filled by _inert_pickle_module()

    def find_class(self, module, name):
        hit = self._allowed.get((module, name))
        if hit is not None:
            return hit
        if module == "copyreg" and name == "_reconstructor":
            return _reconstructor
        if module == "copyreg" and name == "__newobj__":
            return _newobj
        if module == "_codecs" and name == "encode":
            return _codecs_encode
        return _stub_class(module, name)


def _inert_pickle_module():
    _InertUnpickler._allowed = _allowed_globals()
    mod = types.ModuleType("resyn_bench_inert_pickle")
    mod.Unpickler = _InertUnpickler
    mod.Pickler = pickle.Pickler
    mod.load = lambda f, **kw: _InertUnpickler(f, **kw).load()
    mod.loads = pickle.loads
    mod.__name__ = "resyn_bench_inert_pickle"
    return mod


def inert_torch_load(path) -> Any:
    """``torch.load`` whose unpickler never imports classes named by the file (see module doc).

    Only call this for a file whose SHA-256 has been checked against a trusted value: it is
    not a general-purpose safe loader (torch's ``weights_only`` is)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False,
                      pickle_module=_inert_pickle_module())


# --------------------------------------------------------------------------------------------
# One entry point for checkpoints of any of these kinds

class CheckpointReadError(UserError, ValueError):
    """A trusted checkpoint could not be read; the message names the file and what to do."""


def plain(obj: Any) -> Any:
    """Turn a loaded config (omegaconf, argparse.Namespace, inert records) into plain Python.

    Inert records of omegaconf containers/nodes are unwrapped through their ``_content`` /
    ``_val`` state; enum-like records become their value."""
    from collections.abc import Mapping

    if isinstance(obj, PickledObject):
        st = obj.state
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[1], dict):
            st = {**(st[0] or {}), **st[1]}  # (dict state, slot state)
        if isinstance(st, dict):
            if "_content" in st:
                return plain(st["_content"])
            if "_val" in st:
                return plain(st["_val"])
            if "_value_" in st:
                return plain(st["_value_"])
            return {str(k): plain(v) for k, v in st.items() if not str(k).startswith("_")}
        if obj.items:
            return {str(k): plain(v) for k, v in obj.items.items()}
        if obj.list:
            return [plain(v) for v in obj.list]
        if len(obj.args) == 1:
            return plain(obj.args[0])
        return [plain(a) for a in obj.args] if obj.args else None
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "__dict__") and type(obj).__name__ in ("Namespace", "DictConfig"):
        return {k: plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0 and not hasattr(obj, "grad"):
        return obj.item()  # numpy scalar
    return obj


def load_checkpoint_object(path, trusted_sha256: Iterable[str] | str = (),
                           what: str = "checkpoint") -> tuple[Any, bool]:
    """Read a checkpoint file; returns (object, was_full_pickle).

    Safe formats load directly. A file that needs arbitrary unpickling is read only when its
    SHA-256 is in ``trusted_sha256``; otherwise :class:`resyn_bench.safeload.UnsafeCheckpointError`
    explains how to trust it; a trusted file that cannot be read raises
    :class:`CheckpointReadError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.suffix == ".safetensors":
        return read_safetensors(path), False
    try:
        return safe_torch_load(path), False
    except UnsafeCheckpointError:
        pass
    hashes = [trusted_sha256] if isinstance(trusted_sha256, str) else list(trusted_sha256 or ())
    try:
        # verifies the hash first (UnsafeCheckpointError when it is not trusted)
        return load_trusted_pickle(path, hashes, loader="torch"), True
    except (ImportError, AttributeError) as exc:
        # hash verified, but the classes the pickle names (fairseq, omegaconf) are not
        # installed: read it with the inert unpickler instead
        log.info("%s: %s; reading it with the inert unpickler", path, exc)
        missing = exc
    try:
        return inert_torch_load(path), True
    except Exception as exc:
        raise CheckpointReadError(
            f"cannot read {what} {path}: its pickle needs classes that are not installed "
            f"({missing}), and reading it without them failed ({type(exc).__name__}: {exc}). "
            "Convert it once where those packages are installed to a plain state dict "
            "(torch.save(ckpt['model'], 'model.pt') or a .safetensors file) and pass that file, "
            "or install them here (fairseq, omegaconf)") from exc
