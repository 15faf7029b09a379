"""Dense feature extractors behind the unit encoders, and how their checkpoints are read.

:func:`make_feature_extractor` is the one entry point (``"logmel"``, ``"hubert"``, ``"cpc"``);
each returned object has ``name``, ``sample_rate`` (16000), ``hop_size`` (samples per frame),
``dim`` and ``extract(wav) -> np.ndarray [T, dim] float32``.

Checkpoint reading (shared by the HuBERT and CPC loaders) is safe by default:

1. ``.safetensors`` files are parsed here (header + raw bytes, no pickle, no extra package);
2. other files go through :func:`resyn_bench.safeload.safe_torch_load` (``weights_only``);
3. a file that needs arbitrary unpickling (the official fairseq / CPC ``.pt`` files store
   omegaconf configs and fairseq objects) is read only when its SHA-256 is trusted: first with
   :func:`resyn_bench.safeload.load_trusted_pickle`; when that fails only because the classes
   the pickle names are not installed (fairseq, omegaconf), it is read again with an *inert*
   unpickler that builds tensors and plain containers and turns every other object into a
   record of its arguments and state - no code from the file's world is ever imported or run.

Importing this module is cheap (numpy and torch are imported inside the functions).
"""
from __future__ import annotations

import json
import logging
import pickle
import struct
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from resyn_bench.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_NAMES",
    "CheckpointReadError",
    "MissingCheckpointError",
    "default_checkpoint_path",
    "load_checkpoint_object",
    "make_feature_extractor",
    "plain",
    "read_safetensors",
]

#: names accepted by :func:`make_feature_extractor`
FEATURE_NAMES = ("logmel", "hubert", "cpc")

#: catalogue names of the default checkpoints
_CATALOGUE_NAMES = {"hubert": "hubert-base-ls960", "cpc": "cpc-big-ll6kh"}


class MissingCheckpointError(UserError, FileNotFoundError):
    """A feature extractor's checkpoint is not on disk; the message says where to put it."""


class CheckpointReadError(UserError, ValueError):
    """A trusted checkpoint could not be read; the message names the file and what to do."""


# --------------------------------------------------------------------------------------------
# Factory

def make_feature_extractor(name: str, layer: int | None = None, checkpoint: str | None = None,
                           trusted_sha256: Iterable[str] | str = (), **kwargs):
    """A feature extractor by name.

    - ``"logmel"``: 80 log-mel filterbanks, Kaldi-style (no weights; ``layer``/``checkpoint``
      must be None).
    - ``"hubert"``: HuBERT transformer layer ``layer`` (default 6); ``checkpoint`` a fairseq
      ``.pt``, our converted file, a Hugging Face directory/state dict; None means the
      catalogue file ``hubert-base-ls960`` (its documented sha256 is trusted).
    - ``"cpc"``: CPC LSTM level ``layer`` (default 2); ``checkpoint`` None means the catalogue
      file ``cpc-big-ll6kh`` (its documented sha256 is trusted).

    The catalogue's documented hash of the model's default file is trusted in addition to
    ``trusted_sha256`` (trust goes with the content, so a copy of that file elsewhere loads too).

    Extra keyword arguments go to the model wrapper (e.g. ``device``, ``max_chunk``).
    """
    key = str(name).strip().lower()
    if key == "logmel":
        if layer is not None or checkpoint is not None:
            raise ValueError("logmel features have no layer and no checkpoint")
        from resyn_bench.systems.encoders.logmel import LogMelFeatureExtractor

        return LogMelFeatureExtractor(**kwargs)
    if key == "hubert":
        from resyn_bench.systems.encoders.hubert import load_hubert

        path = Path(checkpoint) if checkpoint is not None else default_checkpoint_path("hubert")
        return load_hubert(path, layer=6 if layer is None else int(layer),
                           trusted_sha256=_with_catalogue_hash("hubert", trusted_sha256), **kwargs)
    if key == "cpc":
        from resyn_bench.systems.encoders.cpc import load_cpc

        path = Path(checkpoint) if checkpoint is not None else default_checkpoint_path("cpc")
        return load_cpc(path, layer=2 if layer is None else int(layer),
                        trusted_sha256=_with_catalogue_hash("cpc", trusted_sha256), **kwargs)
    raise ValueError(f"unknown feature extractor {name!r}; known: {', '.join(FEATURE_NAMES)}")


def _with_catalogue_hash(model: str, trusted_sha256: Iterable[str] | str) -> tuple[str, ...]:
    """The user's hashes plus the catalogue's documented hash of ``model``'s default file."""
    from resyn_bench import catalogue

    return catalogue.trusted_hashes(_CATALOGUE_NAMES[model], trusted_sha256)


def default_checkpoint_path(model: str) -> Path:
    """The cache path of the default checkpoint of ``model`` ("hubert" or "cpc").

    Raises :class:`MissingCheckpointError` (a FileNotFoundError) naming the URL, the exact path
    and the ``resyn-bench fetch`` command when the file is absent."""
    from resyn_bench import catalogue

    cname = _CATALOGUE_NAMES[model]
    path = catalogue.catalogue_path(cname)
    if not path.is_file():
        raise MissingCheckpointError(str(catalogue.missing_file_error(
            cname, what=f"the {model} feature extractor")))
    return path


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
    from resyn_bench.safeload import (
        UnsafeCheckpointError,
        load_trusted_pickle,
        safe_torch_load,
    )

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
