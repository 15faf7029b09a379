"""Dense feature extractors behind the unit encoders.

:func:`make_feature_extractor` is the one entry point (``"logmel"``, ``"hubert"``, ``"cpc"``);
each returned object has ``name``, ``sample_rate`` (16000), ``hop_size`` (samples per frame),
``dim`` and ``extract(wav) -> np.ndarray [T, dim] float32``.

Their checkpoints are read with :func:`resyn_bench.safeload.load_checkpoint_object`, safe by
default:

1. ``.safetensors`` files are parsed by :func:`resyn_bench.safeload.read_safetensors` (header +
   raw bytes, no pickle, no extra package);
2. other files go through :func:`resyn_bench.safeload.safe_torch_load` (``weights_only``);
3. a file that needs arbitrary unpickling (the official fairseq / CPC ``.pt`` files store
   omegaconf configs and fairseq objects) is read only when its SHA-256 is trusted: first with
   :func:`resyn_bench.safeload.load_trusted_pickle`; when that fails only because the classes
   the pickle names are not installed (fairseq, omegaconf), it is read again with the *inert*
   unpickler of :func:`resyn_bench.safeload.inert_torch_load`, which builds tensors and plain
   containers and turns every other object into a record of its arguments and state - no code
   from the file's world is ever imported or run.

Importing this module is cheap (numpy and torch are imported inside the functions).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from resyn_bench.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_NAMES",
    "MissingCheckpointError",
    "default_checkpoint_path",
    "make_feature_extractor",
]

#: names accepted by :func:`make_feature_extractor`
FEATURE_NAMES = ("logmel", "hubert", "cpc")

#: catalogue names of the default checkpoints
_CATALOGUE_NAMES = {"hubert": "hubert-base-ls960", "cpc": "cpc-big-ll6kh"}


class MissingCheckpointError(UserError, FileNotFoundError):
    """A feature extractor's checkpoint is not on disk; the message says where to put it."""


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
        from resyn_bench.nn.hubert import load_hubert

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
