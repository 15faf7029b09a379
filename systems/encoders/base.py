"""Unit encoders: a dense feature extractor followed by a k-means quantizer.

``load_unit_encoder(spec)`` accepts

* a k-means file written by ``resyn-bench train kmeans`` (``.npz``): self-describing, its
  metadata names the feature extractor, layer and checkpoint it was trained on;
* a catalogue name: ``hubert-l6-km{50,100,200,500}`` (also ``hubert-km100``; HuBERT Base
  layer 6 + the GSLM k-means), ``cpc-km{50,100,200,500}`` (CPC big + GSLM k-means),
  ``logmel-km{50,100,200}`` (80-band log-mel + GSLM k-means), ``hubert-l9-km500`` (HuBERT
  Base layer 9, the Expresso vocoders' units), ``mhubert-l11-km1000`` (mHuBERT Base layer 11,
  fairseq's textless S2ST vocoders). The official ``km.bin`` pickle
  is converted once into a safe ``km.npz`` beside it (only if its sha256 is documented or the
  caller vouches for it); later loads read the ``.npz``;
* a dict ``{"kmeans": <file or catalogue name>, "extractor": ..., "layer": ...,
  "checkpoint": ..., "trusted_sha256": [...]}`` overriding what the k-means file says;
* ``vqvae:CKPT_DIR``: the raw-audio encoder + codebook of a trained content VQ-VAE vocoder
  (``resyn-bench train vocoder --config tiny-vqvae|vqvae256-librilight --out CKPT_DIR``);
  returns a :class:`resyn_bench.systems.vocoder.content_vqvae.VQVAEUnitEncoder` (same
  attributes and ``encode``/``describe``; 256 codes at 100 Hz for the paper's model).

Missing files raise the catalogue's actionable error (URL, sha256, exact path to place it at).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.core.bitrate import stream_bps
from resyn_bench.errors import UserError
from resyn_bench.systems.encoders.kmeans import KMeansError, KMeansModel

__all__ = ["UnitEncoder", "UnitEncoderError", "load_unit_encoder", "parse_catalogue_spec",
           "resolve_extractor_checkpoint", "CATALOGUE_ENCODERS", "CATALOGUE_KMEANS"]


class UnitEncoderError(UserError, ValueError):
    """A unit-encoder spec cannot be resolved, or its parts do not fit together."""


#: catalogue k-means families: name pattern -> what the GSLM k-means was trained on
CATALOGUE_ENCODERS: dict[str, dict[str, Any]] = {
    "hubert": {"extractor": "hubert", "layer": 6, "checkpoint": "hubert-base-ls960",
               "hop_size": 320, "sample_rate": 16000, "ks": (50, 100, 200, 500),
               "trained_on": "LibriSpeech train-clean-100 (GSLM, HuBERT Base layer 6)"},
    "cpc": {"extractor": "cpc", "layer": None, "checkpoint": "cpc-big-ll6kh",
            "hop_size": 160, "sample_rate": 16000, "ks": (50, 100, 200, 500),
            "trained_on": "LibriSpeech train-clean-100 (GSLM, CPC big)"},
    "logmel": {"extractor": "logmel", "layer": None, "checkpoint": None,
               "hop_size": 160, "sample_rate": 16000, "ks": (50, 100, 200),
               "trained_on": "LibriSpeech train-clean-100 (GSLM, 80-band log-mel)"},
}

#: single published k-means that are not part of a GSLM family (exact names)
CATALOGUE_KMEANS: dict[str, dict[str, Any]] = {
    "hubert-l9-km500": {"extractor": "hubert", "layer": 9, "checkpoint": "hubert-base-ls960",
                        "hop_size": 320, "sample_rate": 16000, "k": 500,
                        "trained_on": "LibriSpeech 960 h (HuBERT Base layer 9; the units of "
                                      "textlesslib's Expresso vocoders)"},
    "mhubert-l11-km1000": {"extractor": "hubert", "layer": 11,
                           "checkpoint": "mhubert-base-vp-en-es-fr", "hop_size": 320,
                           "sample_rate": 16000, "k": 1000,
                           "trained_on": "VoxPopuli En/Es/Fr (mHuBERT Base layer 11; fairseq "
                                         "textless S2ST)"},
}

_SPEC = re.compile(r"^(?P<family>hubert|cpc|logmel)(?:-l(?P<layer>\d+))?-km(?P<k>\d+)$")


class UnitEncoder:
    """Audio (mono float32 at ``sample_rate``) -> int64 units, one per ``hop_size`` samples."""

    def __init__(self, extractor, kmeans: KMeansModel, name: str | None = None,
                 source: str | None = None):
        self.extractor = extractor
        self.kmeans = kmeans
        meta = kmeans.meta
        if int(extractor.dim) != kmeans.dim:
            raise UnitEncoderError(
                f"the k-means expects {kmeans.dim}-d features but the {extractor.name} "
                f"extractor gives {extractor.dim}-d ones: the k-means was trained on "
                f"{meta.get('extractor') or 'other'} features")
        for key in ("hop_size", "sample_rate"):
            want, got = meta.get(key), getattr(extractor, key)
            if want is not None and int(want) != int(got):
                raise UnitEncoderError(
                    f"the k-means was trained on features with {key} {want}, but the "
                    f"{extractor.name} extractor has {key} {got}")
        self.name = name or meta.get("name") or _default_name(extractor, kmeans)
        self.source = source

    @property
    def sample_rate(self) -> int:
        return int(self.extractor.sample_rate)

    @property
    def hop_size(self) -> int:
        return int(self.extractor.hop_size)

    @property
    def vocab_size(self) -> int:
        return self.kmeans.k

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_size

    def num_frames(self, num_samples: int) -> int | None:
        """Units :meth:`encode` returns for ``num_samples`` samples, where the extractor says
        (None if it does not)."""
        fn = getattr(self.extractor, "num_frames", None)
        return int(fn(int(num_samples))) if callable(fn) else None

    def features(self, wav: np.ndarray) -> np.ndarray:
        """The dense features [T, D] the units are computed from."""
        x = np.asarray(wav, dtype=np.float32)
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        if x.ndim != 1:
            raise UnitEncoderError(f"expected mono audio (1-D), got shape {x.shape}")
        return self.extractor.extract(x)

    def encode(self, wav: np.ndarray) -> np.ndarray:
        """int64 units [T] of ``wav`` (mono float32 at :attr:`sample_rate`)."""
        return self.kmeans.predict(self.features(wav))

    def describe(self) -> dict:
        meta = self.kmeans.meta
        ext = getattr(self.extractor, "describe", None)
        extractor = ext() if callable(ext) else {"name": self.extractor.name}
        return {
            "name": self.name, "source": self.source,
            "sample_rate": self.sample_rate, "hop_size": self.hop_size,
            "frame_rate": self.frame_rate, "vocab_size": self.vocab_size,
            # upper bound: every unit sent with a fixed-length code
            "bitrate_bps": stream_bps(self.frame_rate, self.vocab_size),
            "extractor": extractor,
            "kmeans": {k: meta.get(k) for k in (
                "k", "dim", "extractor", "layer", "checkpoint", "trained_on", "seed",
                "inertia", "n_frames", "source", "source_sha256", "catalogue_name")
                if meta.get(k) is not None},
        }

    def __repr__(self) -> str:
        return (f"UnitEncoder({self.name!r}, vocab={self.vocab_size}, "
                f"hop={self.hop_size}, sr={self.sample_rate})")


def _default_name(extractor, kmeans: KMeansModel) -> str:
    layer = getattr(extractor, "layer", None)
    return f"{extractor.name}{f'-l{layer}' if layer is not None else ''}-km{kmeans.k}"


def parse_catalogue_spec(spec: str) -> tuple[str, dict[str, Any]] | None:
    """``hubert-l6-km100`` -> ("hubert-l6-km100", family info); None when ``spec`` does not
    look like a catalogue unit-encoder name. Raises for names of the right shape that the
    catalogue does not have (another layer, another K)."""
    key = str(spec).strip().lower()
    if key in CATALOGUE_KMEANS:
        return key, dict(CATALOGUE_KMEANS[key])
    m = _SPEC.match(key)
    if not m:
        return None
    family, k = m["family"], int(m["k"])
    info = dict(CATALOGUE_ENCODERS[family])
    if m["layer"] is not None:
        if family != "hubert":
            raise UnitEncoderError(f"{spec!r}: only HuBERT names carry a layer "
                                   f"(use {family}-km{k})")
        if int(m["layer"]) != info["layer"]:
            raise UnitEncoderError(
                f"{spec!r}: the published GSLM HuBERT k-means are for layer 6 only (other "
                f"published ones: hubert-l9-km500, mhubert-l11-km1000); for layer "
                f"{m['layer']} train your own: resyn-bench train kmeans --encoder hubert "
                f"--layer {m['layer']} --k {k} ... --out km.npz, then use --units km.npz")
    if k not in info["ks"]:
        raise UnitEncoderError(
            f"{spec!r}: the catalogue has {family} k-means for K in "
            f"{', '.join(map(str, info['ks']))}; for K={k} train your own with "
            f"resyn-bench train kmeans --encoder {family} --k {k} ...")
    name = f"hubert-l6-km{k}" if family == "hubert" else f"{family}-km{k}"
    info["k"] = k
    return name, info


def _hash_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _catalogue_kmeans(name: str, info: dict, extra_hashes: Iterable[str]) -> KMeansModel:
    """The GSLM k-means ``name`` as a safe model (converting km.bin -> km.npz on first use)."""
    from resyn_bench import catalogue
    from resyn_bench.systems.encoders.kmeans import convert_km_bin, converted_path

    path = catalogue.catalogue_path(name)
    npz = converted_path(path)
    if not path.is_file():
        if npz.is_file():  # converted earlier and the pickle since deleted: the .npz suffices
            return KMeansModel.load(npz)
        raise catalogue.missing_file_error(name, what=f"unit encoder {name!r}")
    meta = {k: info[k] for k in ("extractor", "layer", "checkpoint", "hop_size", "sample_rate",
                                 "trained_on")}
    meta["catalogue_name"] = name
    meta["name"] = name
    return convert_km_bin(path, catalogue.trusted_hashes(name, extra_hashes), meta=meta)


def resolve_extractor_checkpoint(checkpoint: str | None, what: str, extra_hashes: list[str]
                        ) -> tuple[str | None, list[str]]:
    """A k-means meta's checkpoint (catalogue name, path or None) -> (path or None, hashes to
    trust)."""
    if checkpoint is None:
        return None, extra_hashes
    from resyn_bench import catalogue

    try:
        cname = catalogue.resolve_name(checkpoint)
    except catalogue.CatalogueError:
        cname = None
    if cname is not None and not Path(str(checkpoint)).is_file():
        path = catalogue.catalogue_path(cname)
        if not path.is_file():
            raise catalogue.missing_file_error(cname, what=what)
        return str(path), list(catalogue.trusted_hashes(cname, extra_hashes))
    if not Path(str(checkpoint)).expanduser().exists():
        raise UnitEncoderError(f"{what} needs the checkpoint {checkpoint}, which does not exist "
                               "(give another with the spec's 'checkpoint' key)")
    return str(Path(str(checkpoint)).expanduser()), extra_hashes


def load_unit_encoder(spec: str | Path | dict, *, trusted_sha256: Iterable[str] | str = (),
                      **extractor_kwargs) -> UnitEncoder:
    """A :class:`UnitEncoder` from a k-means file, a catalogue name or a dict (module doc).

    ``trusted_sha256``: hashes the user vouches for (a km.bin or checkpoint pickle without a
    documented hash). ``extractor_kwargs`` go to ``make_feature_extractor`` (e.g. device)."""
    if isinstance(spec, str) and spec.strip().startswith("vqvae:"):
        return _load_vqvae_encoder(spec.strip(), trusted_sha256, extractor_kwargs)
    from resyn_bench.systems.encoders.features import make_feature_extractor

    overrides: dict[str, Any] = {}
    if isinstance(spec, dict):
        overrides = dict(spec)
        if "kmeans" not in overrides:
            raise UnitEncoderError(f"a dict unit-encoder spec needs a 'kmeans' key, got "
                                   f"{sorted(overrides)}")
        spec = overrides.pop("kmeans")
    hashes = _hash_list(trusted_sha256) + _hash_list(overrides.pop("trusted_sha256", None))
    text = str(spec).strip()
    path = Path(text).expanduser()

    is_file_spec = path.suffix in (".npz", ".bin") or path.exists()
    parsed = None if is_file_spec else parse_catalogue_spec(text)
    if parsed is not None:
        name, info = parsed
        kmeans = _catalogue_kmeans(name, info, hashes)
        label = name
    elif path.suffix == ".bin":
        # a km.bin outside the catalogue: needs an explicit hash and the extractor it was made on
        from resyn_bench.systems.encoders.kmeans import convert_km_bin

        if not path.is_file():
            raise UnitEncoderError(f"k-means file not found: {path}")
        if "extractor" not in overrides:
            raise UnitEncoderError(
                f"{path} is a pickled k-means that does not say which features it was trained "
                "on: give a dict spec {'kmeans': PATH, 'extractor': 'hubert', 'layer': 6, "
                "'trusted_sha256': HASH} (the .npz written beside it is self-describing)")
        kmeans = convert_km_bin(path, hashes, meta={k: overrides.get(k) for k in (
            "extractor", "layer", "checkpoint") if overrides.get(k) is not None})
        label = str(path)
    elif path.is_file():
        try:
            kmeans = KMeansModel.load(path)
        except KMeansError as exc:
            raise UnitEncoderError(str(exc)) from None
        label = str(path)
    else:
        from resyn_bench import catalogue

        known = ", ".join(f"{f}-km{{{','.join(map(str, i['ks']))}}}" if f != "hubert"
                          else f"hubert-l6-km{{{','.join(map(str, i['ks']))}}}"
                          for f, i in CATALOGUE_ENCODERS.items())
        raise UnitEncoderError(
            f"unit encoder {text!r}: no such k-means file, and not a catalogue name ({known}); "
            f"catalogue files live under {catalogue.checkpoints_root()}")

    meta = {**kmeans.meta, **{k: v for k, v in overrides.items()
                              if k in ("extractor", "layer", "checkpoint")}}
    extractor_name = meta.get("extractor")
    if not extractor_name:
        raise UnitEncoderError(
            f"{label}: the k-means file does not name its feature extractor; use a dict spec "
            "{'kmeans': PATH, 'extractor': 'logmel'|'hubert'|'cpc', 'layer': ...}")
    checkpoint, ext_hashes = resolve_extractor_checkpoint(meta.get("checkpoint"),
                                                 f"unit encoder {label!r}", hashes)
    kwargs = dict(extractor_kwargs)
    if ext_hashes and extractor_name != "logmel":
        kwargs["trusted_sha256"] = ext_hashes
    extractor = make_feature_extractor(extractor_name, layer=meta.get("layer"),
                                       checkpoint=checkpoint, **kwargs)
    return UnitEncoder(extractor, kmeans, name=overrides.get("name") or meta.get("name"),
                       source=label)


def _load_vqvae_encoder(spec: str, trusted_sha256, extractor_kwargs: dict):
    """``vqvae:CKPT_DIR`` -> the trained content VQ-VAE's encoder + codebook as a unit encoder."""
    from resyn_bench.systems.vocoder.content_vqvae import VQVAEUnitEncoder

    unknown = set(extractor_kwargs) - {"device"}
    if unknown:
        raise UnitEncoderError(f"{spec}: options {sorted(unknown)} do not apply to a VQ-VAE encoder")
    folder = spec[len("vqvae:"):].strip()
    if not folder:
        raise UnitEncoderError("a VQ-VAE unit encoder spec names its checkpoint folder: vqvae:DIR")
    path = Path(folder).expanduser()
    if not path.exists():
        raise UnitEncoderError(
            f"VQ-VAE checkpoint folder {path} does not exist; train one with `resyn-bench train "
            f"vocoder --config tiny-vqvae|vqvae256-librilight --dataset NAME --data-root DIR "
            f"--out {path}`")
    try:
        return VQVAEUnitEncoder(path, device=extractor_kwargs.get("device", "cpu"),
                                trusted_sha256=_hash_list(trusted_sha256))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UnitEncoderError(f"{spec}: {exc}") from None
