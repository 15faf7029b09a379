"""Typed training configurations for the unit vocoder and the F0 quantizer.

Both configs are dataclasses whose field names are the reference repository's JSON keys
(``configs/{LJSpeech,VCTK}/*_lut.json``, ``f0_vqvae.json``), so a reference ``config.json``
loads as is, and the ``config.json`` written beside our checkpoints is in that format too - with
our extra keys (unit source, F0 extractor, dataset, schedule, loss weights...) added.

* :class:`TrainConfig` - unit HiFi-GAN (``CodeGenerator``) + MPD/MSD training.
* :class:`F0QuantizerTrainConfig` - the F0 VQ-VAE.
* :data:`PRESETS` - the paper's configurations (``hubert100-vctk``, ``cpc100-lj``, ...,
  ``f0-vqvae-vctk``, the content VQ-VAE ``vqvae256-librilight``) and small ``tiny`` /
  ``tiny-f0`` / ``tiny-vqvae`` ones for laptops and tests. (``vqvae256-{lj,vctk}`` are unit
  vocoders over the codes of a trained content VQ-VAE: ``--units vqvae:DIR``.)
* :func:`load_config` - a preset name or a JSON file, then ``key=value`` overrides
  (dotted keys reach nested blocks: ``f0_quantizer.f0_vq_params.l_bins=20``).

Every value is type-checked when a config is built from JSON or overridden (no ``type=bool``
surprises: ``f0=false`` is a JSON boolean, ``f0=0`` is an error).

Pure data: importing this module imports no torch.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from resyn_bench.core.suggest import did_you_mean
from resyn_bench.dsp.presets import training_names, training_preset
from resyn_bench.errors import UserError

__all__ = [
    "F0_EXTRACTORS",
    "PRESETS",
    "ConfigError",
    "DistConfig",
    "F0QuantizerParams",
    "F0QuantizerTrainConfig",
    "JukeboxParams",
    "TrainConfig",
    "VQParams",
    "apply_overrides",
    "get_preset",
    "load_config",
    "parse_override",
    "preset_names",
]

#: F0 extractors the data pipeline accepts: the names of the shared table with a 5 ms hop
#: (resyn_bench.dsp.presets): pyworld (dio 60-400 Hz, fast, default), yaapt (the paper's), ...
F0_EXTRACTORS = tuple(training_names())
#: The F0 grid: 5 ms frames; F0 codes are 16 frames (1280 samples at 16 kHz, 12.5 Hz).
F0_HOP = 80
F0_CODE_HOP = 1280


class ConfigError(UserError, ValueError):
    """A configuration value or key is invalid; the message says which and what is expected."""


# ---------------------------------------------------------------------------------------------
# generic dataclass <-> dict with type checks


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` (int -> float, list -> tuple never), or raise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{where}: expected {' or '.join(_type_name(a) for a in args)}, "
                          f"got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object ({tp.__name__}), got {value!r}")
        return tp.from_dict(value, where=where)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover - programming error


class _Config:
    """Mixin: typed construction from a dict, dict/JSON output, dotted overrides."""

    #: keys accepted on input but not modelled (kept in ``extra`` and written back)
    _extra_field = "extra"

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> _Config:
        if not isinstance(data, dict):
            raise ConfigError(f"{where or cls.__name__}: expected an object, got {data!r}")
        hints = cls._hints()
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        for key, value in data.items():
            if key == cls._extra_field and key in names:
                unknown.update(value or {})
            elif key in names:
                kwargs[key] = _check(value, hints[key], f"{where}{'.' if where else ''}{key}")
            else:
                unknown[key] = value
        if unknown:
            if cls._extra_field in names:
                kwargs[cls._extra_field] = unknown
            else:
                key = min(unknown)
                raise ConfigError(f"{where or cls.__name__}: unknown key {key!r}"
                                  + _suggest(key, names))
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def validate(self) -> None:
        """Cross-field checks (subclasses extend)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict in the reference layout (unknown input keys written back as they were)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == self._extra_field:
                continue
            out[f.name] = value.to_dict() if isinstance(value, _Config) else copy.deepcopy(value)
        extra = getattr(self, self._extra_field, None) if self._extra_field in {
            f.name for f in dataclasses.fields(self)} else None
        if extra:
            for k, v in extra.items():
                out.setdefault(k, copy.deepcopy(v))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` (atomically: a killed run never leaves half a file)."""
        from resyn_bench.core.atomic import write_text_atomic

        return write_text_atomic(path, self.to_json() + "\n")

    def copy(self):
        return copy.deepcopy(self)

    def with_overrides(self, overrides: dict[str, Any] | list[str] | None):
        """A copy with ``{"dotted.key": value}`` or ``["key=value", ...]`` applied and checked."""
        return apply_overrides(self, overrides)


def _suggest(key: str, names) -> str:
    return did_you_mean(key, sorted(names), n=3, parenthesised=True)


# ---------------------------------------------------------------------------------------------
# F0 VQ-VAE blocks (the nested "f0_quantizer" block of the reference configs)


@dataclass
class JukeboxParams(_Config):
    """Jukebox-style 1-D conv encoder/decoder (reference ``f0_encoder_params`` keys)."""

    input_emb_width: int = 1
    output_emb_width: int = 128
    levels: int = 1
    # per level: an int (``downs_t`` stages of stride ``strides_t``) or, for the content VQ-VAE's
    # list branch, lists (``[[5, 1]]`` / ``[[2, 5]]``: five stride-2 stages, one stride-5 stage)
    downs_t: list[int | list[int]] = field(default_factory=lambda: [4])
    strides_t: list[int | list[int]] = field(default_factory=lambda: [2])
    width: int = 32
    depth: int = 4
    m_conv: float = 1.0
    dilation_growth_rate: int = 3

    _extra_field = ""

    def downsampling(self) -> int:
        factor = 1
        for downs, stride in zip(self.downs_t, self.strides_t, strict=True):
            if isinstance(downs, list) != isinstance(stride, list):
                raise ConfigError(f"downs_t {self.downs_t} / strides_t {self.strides_t}: each level "
                                  "must be two ints or two lists of equal length")
            if isinstance(downs, list):
                if len(downs) != len(stride):
                    raise ConfigError(f"downs_t {downs} and strides_t {stride} differ in length")
                for d, st in zip(downs, stride, strict=True):
                    factor *= st ** d
            else:
                factor *= stride ** downs
        return factor


@dataclass
class VQParams(_Config):
    """Codebook (reference ``f0_vq_params``): ``l_bins`` codes of ``emb_width`` dims, EMA ``mu``."""

    l_bins: int = 20
    emb_width: int = 128
    mu: float = 0.99
    levels: int = 1

    _extra_field = ""


@dataclass
class F0QuantizerParams(_Config):
    f0_vq_params: VQParams = field(default_factory=VQParams)
    f0_encoder_params: JukeboxParams = field(default_factory=JukeboxParams)
    f0_decoder_params: JukeboxParams = field(default_factory=JukeboxParams)

    _extra_field = ""

    def validate(self) -> None:
        _check_quantizer(self.f0_vq_params, self.f0_encoder_params, self.f0_decoder_params, "f0_quantizer")


def _check_quantizer(vq: VQParams, enc: JukeboxParams, dec: JukeboxParams, where: str) -> None:
    if enc.downsampling() != F0_CODE_HOP // F0_HOP:
        raise ConfigError(f"{where}: the F0 encoder must downsample by {F0_CODE_HOP // F0_HOP} "
                          f"(200 Hz F0 -> 12.5 Hz codes); downs_t {enc.downs_t} with strides_t "
                          f"{enc.strides_t} gives {enc.downsampling()}")
    if enc.output_emb_width != vq.emb_width or dec.output_emb_width != vq.emb_width:
        raise ConfigError(f"{where}: encoder/decoder output_emb_width ({enc.output_emb_width}/"
                          f"{dec.output_emb_width}) must equal f0_vq_params.emb_width ({vq.emb_width})")
    if vq.l_bins < 2:
        raise ConfigError(f"{where}: f0_vq_params.l_bins must be >= 2")


@dataclass
class DistConfig(_Config):
    """Reference ``dist_config``. Only the backend matters here (torchrun sets address/port)."""

    dist_backend: str = "nccl"
    dist_url: str = "env://"


# ---------------------------------------------------------------------------------------------
# fields shared by both configs: data, schedule, logging (our keys, written beside the reference)


def _check_common(cfg, where: str) -> None:
    if cfg.batch_size < 1:
        raise ConfigError(f"{where}: batch_size must be >= 1")
    if cfg.segment_size % F0_CODE_HOP:
        raise ConfigError(f"{where}: segment_size ({cfg.segment_size}) must be a multiple of "
                          f"{F0_CODE_HOP} samples (one F0 code) so units, F0 frames and F0 codes align")
    if cfg.sampling_rate != 16000:
        raise ConfigError(f"{where}: sampling_rate must be 16000 (the unit and F0 grids assume it)")
    if cfg.f0_extractor not in F0_EXTRACTORS:
        try:
            training_preset(cfg.f0_extractor)
        except KeyError as exc:
            raise ConfigError(f"{where}: f0_extractor must be one of {F0_EXTRACTORS}: "
                              f"{exc.args[0]}") from None
    for name in ("training_steps", "checkpoint_interval", "validation_interval", "log_interval"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{where}: {name} must be >= 1")
    if cfg.validation_size < 0:
        raise ConfigError(f"{where}: validation_size must be >= 0")
    if not 0 < cfg.lr_decay <= 1:
        raise ConfigError(f"{where}: lr_decay must be in (0, 1]")


@dataclass
class TrainConfig(_Config):
    """Unit HiFi-GAN training. Field names up to ``dist_config`` are the reference JSON keys."""

    # --- reference keys (configs/*/*_lut.json), in their file order ---
    input_training_file: str | None = None      # unit file (reference format or ours)
    input_validation_file: str | None = None    # unit file for validation (else held out, below)
    resblock: str = "1"
    num_gpus: int = 0
    batch_size: int = 16                        # global batch, divided across DDP ranks
    learning_rate: float = 0.0002
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    lr_decay: float = 0.999                     # ExponentialLR gamma, stepped once per epoch
    seed: int = 1234
    upsample_rates: list[int] = field(default_factory=lambda: [5, 4, 4, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [11, 8, 8, 4, 4])
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    num_embeddings: int = 100
    embedding_dim: int = 128
    model_in_dim: int = 384
    segment_size: int = 8960
    code_hop_size: int = 320
    f0: bool = True
    multispkr: str | None = "_"                 # truthy: speaker LUT; "single": one speaker
    num_mels: int = 80
    num_freq: int = 1025
    n_fft: int = 1024
    hop_size: int = 256
    win_size: int = 1024
    f0_stats: str | None = None                 # None: computed from the training data
    f0_normalize: bool = True
    f0_feats: bool = False
    f0_median: bool = False
    f0_interp: bool = False
    f0_quantizer_path: str | None = None        # a trained F0 quantizer checkpoint (file or dir)
    f0_quantizer: F0QuantizerParams = field(default_factory=F0QuantizerParams)
    # content VQ-VAE (configs/LibriLight/vqvae256.json): a raw-audio encoder and a codebook
    # trained jointly with the decoder instead of a unit LUT; None = a unit vocoder
    code_encoder_params: JukeboxParams | None = None
    code_vq_params: VQParams | None = None
    lambda_commit_code: float = 0.02
    sampling_rate: int = 16000
    fmin: int = 0
    fmax: int = 8000
    fmax_for_loss: int | None = None
    num_workers: int = 0
    dist_config: DistConfig = field(default_factory=DistConfig)

    # --- ours ---
    preset: str | None = None
    num_speakers: int = 200                     # rows of the speaker LUT (reference: 200)
    speaker_embedding: str = "lut"
    unit_key: str | None = None                 # code key in the unit file ("hubert", "cpc_km100", ...)
    unit_encoder: str | None = None             # load_unit_encoder spec (k-means file or catalogue name)
    f0_extractor: str = "pyworld"
    dataset: str | None = None                  # resyn-bench dataset name (manifest, vctk, ljspeech...)
    data_root: str | None = None
    split: str | None = None                    # split file selecting the training utterances
    limit: int | None = None
    validation_split: str | None = None         # split file of held-out validation utterances
    validation_size: int = 100                  # else: hold out this many (seeded choice)
    validation_max_seconds: float = 10.0        # validation audio cropped to this length (CPU cost)
    speaker_map: dict[str, int] | None = None   # name -> LUT row; filled in by training
    f0_cache_dir: str | None = None             # F0 track cache (default: <out>/f0_cache)
    training_steps: int = 400000
    training_epochs: int = 2000
    checkpoint_interval: int = 10000
    validation_interval: int = 1000
    log_interval: int = 100
    lambda_adv: float = 1.0
    lambda_fm: float = 2.0
    lambda_mel: float = 45.0
    discriminator_width: float = 1.0            # MPD/MSD channel scale (1.0 = reference sizes)
    mpd_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    tensorboard: bool = False                   # also write TensorBoard events (if installed)
    extra: dict[str, Any] = field(default_factory=dict)   # unmodelled input keys, kept

    kind = "vocoder"

    def validate(self) -> None:
        where = f"vocoder config{f' {self.preset!r}' if self.preset else ''}"
        _check_common(self, where)
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError(f"{where}: upsample_rates and upsample_kernel_sizes differ in length")
        total = 1
        for r in self.upsample_rates:
            total *= r
        if total != self.code_hop_size:
            raise ConfigError(f"{where}: the product of upsample_rates ({total}) must equal "
                              f"code_hop_size ({self.code_hop_size})")
        if self.segment_size % self.code_hop_size:
            raise ConfigError(f"{where}: segment_size must be a multiple of code_hop_size")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError(f"{where}: resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise ConfigError(f"{where}: upsample_initial_channel must be divisible by "
                              f"2**{len(self.upsample_rates)} (channels halve at every upsampling)")
        n_inputs = 1 + bool(self.f0) + bool(self.multispkr)
        if self.model_in_dim != n_inputs * self.embedding_dim:
            raise ConfigError(f"{where}: model_in_dim ({self.model_in_dim}) must be {n_inputs} x "
                              f"embedding_dim ({self.embedding_dim}) for units"
                              f"{' + F0 codes' if self.f0 else ''}{' + speaker' if self.multispkr else ''}")
        if self.speaker_embedding != "lut":
            raise ConfigError(f"{where}: only speaker_embedding 'lut' can be trained here")
        if self.discriminator_width <= 0:
            raise ConfigError(f"{where}: discriminator_width must be > 0")
        if self.code_encoder_params is not None or self.code_vq_params is not None:
            self._validate_vqvae(where)
        elif self.input_training_file and self.unit_encoder:
            raise ConfigError(f"{where}: give the units either as a file (input_training_file) or "
                              "as an encoder (unit_encoder), not both")
        if self.f0_interp or self.f0_median or self.f0_feats:
            raise ConfigError(f"{where}: f0_interp/f0_median/f0_feats are false in every reference "
                              "config and not supported")

    def _validate_vqvae(self, where: str) -> None:
        enc, vq = self.code_encoder_params, self.code_vq_params
        if enc is None or vq is None:
            raise ConfigError(f"{where}: a content VQ-VAE needs both code_encoder_params and "
                              "code_vq_params")
        if enc.input_emb_width != 1:
            raise ConfigError(f"{where}: code_encoder_params.input_emb_width must be 1 (mono audio)")
        if enc.downsampling() != self.code_hop_size:
            raise ConfigError(f"{where}: the code encoder downsamples x{enc.downsampling()} "
                              f"(downs_t {enc.downs_t}, strides_t {enc.strides_t}) but "
                              f"code_hop_size is {self.code_hop_size}")
        if not (enc.output_emb_width == vq.emb_width == self.embedding_dim):
            raise ConfigError(f"{where}: code_encoder_params.output_emb_width "
                              f"({enc.output_emb_width}), code_vq_params.emb_width ({vq.emb_width}) "
                              f"and embedding_dim ({self.embedding_dim}) must be equal")
        # no unit LUT here: the number of units is the codebook size (reference configs of the
        # content VQ-VAE need not carry num_embeddings, so the default must not contradict it)
        self.num_embeddings = vq.l_bins
        if vq.l_bins < 2:
            raise ConfigError(f"{where}: code_vq_params.l_bins must be >= 2")
        if self.unit_encoder and not str(self.unit_encoder).startswith("vqvae:"):
            raise ConfigError(f"{where}: a content VQ-VAE makes its own codes from the audio; "
                              f"drop the unit encoder {self.unit_encoder!r} (--units is only "
                              "needed as a list of training audio)")
        if self.lambda_commit_code < 0:
            raise ConfigError(f"{where}: lambda_commit_code must be >= 0")

    @property
    def multi_speaker(self) -> bool:
        return bool(self.multispkr)

    @property
    def is_vqvae(self) -> bool:
        """A content VQ-VAE trained from raw audio (no unit source needed)."""
        return self.code_encoder_params is not None

    def unit_source(self) -> dict[str, Any]:
        """What turns audio into units, as recorded for the checkpoint system."""
        if self.is_vqvae:
            return {"kind": "vqvae", "encoder": self.unit_encoder}
        if self.unit_encoder:
            return {"kind": "encoder", "encoder": self.unit_encoder}
        if self.input_training_file:
            return {"kind": "file", "file": self.input_training_file, "key": self.unit_key}
        return {"kind": "none"}

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if not self.is_vqvae:  # unit vocoders: config.json as before (no VQ-VAE keys)
            for key in ("code_encoder_params", "code_vq_params", "lambda_commit_code"):
                d.pop(key, None)
        return d

    def generator_config(self) -> dict[str, Any]:
        """The dict ``CodeGenerator(cfg)`` (``VQVAECodeGenerator`` for a content VQ-VAE) is
        built from (reference keys)."""
        return self.to_dict()


@dataclass
class F0QuantizerTrainConfig(_Config):
    """F0 VQ-VAE training. Field names up to ``dist_config`` are ``f0_vqvae.json``'s keys."""

    input_training_file: str | None = None
    input_validation_file: str | None = None
    resblock: str = "1"
    num_gpus: int = 0
    batch_size: int = 16
    learning_rate: float = 0.0002
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    lr_decay: float = 0.999
    seed: int = 1234
    segment_size: int = 16640
    multispkr: str | None = "_"
    f0_stats: str | None = None
    f0_normalize: bool = True
    f0_feats: bool = False
    f0_median: bool = False
    f0_interp: bool = False
    f0_vq_params: VQParams = field(default_factory=VQParams)
    f0_encoder_params: JukeboxParams = field(default_factory=JukeboxParams)
    f0_decoder_params: JukeboxParams = field(default_factory=JukeboxParams)
    lambda_commit: float = 0.02
    sampling_rate: int = 16000
    num_workers: int = 0
    dist_config: DistConfig = field(default_factory=DistConfig)

    # --- ours ---
    preset: str | None = None
    f0_extractor: str = "pyworld"
    dataset: str | None = None
    data_root: str | None = None
    split: str | None = None
    limit: int | None = None
    validation_split: str | None = None
    validation_size: int = 100
    speaker_map: dict[str, int] | None = None
    f0_cache_dir: str | None = None
    training_steps: int = 400000
    checkpoint_interval: int = 10000
    validation_interval: int = 1000
    log_interval: int = 100
    tensorboard: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    kind = "f0-quantizer"

    def validate(self) -> None:
        where = f"F0 quantizer config{f' {self.preset!r}' if self.preset else ''}"
        _check_common(self, where)
        _check_quantizer(self.f0_vq_params, self.f0_encoder_params, self.f0_decoder_params, where)
        if self.f0_interp or self.f0_median or self.f0_feats:
            raise ConfigError(f"{where}: f0_interp/f0_median/f0_feats are not supported")
        if not self.f0_normalize:
            raise ConfigError(f"{where}: f0_normalize must be true (the quantizer codes z-scores)")

    @property
    def multi_speaker(self) -> bool:
        """Per-speaker F0 statistics (False: one speaker, global statistics)."""
        return bool(self.multispkr) and self.multispkr != "single"

    def quantizer_config(self) -> dict[str, Any]:
        """The dict ``F0Quantizer.from_config`` reads (the three reference blocks)."""
        d = self.to_dict()
        return {k: d[k] for k in ("f0_vq_params", "f0_encoder_params", "f0_decoder_params")}

    # training-schedule attribute shared with the vocoder loop
    training_epochs = 10000


# ---------------------------------------------------------------------------------------------
# presets

# (num_embeddings, code_hop_size, upsample_rates, upsample_kernel_sizes, unit_key, unit_encoder)
_UNITS = {
    "hubert100": (100, 320, [5, 4, 4, 2, 2], [11, 8, 8, 4, 4], "hubert", "hubert-l6-km100"),
    "cpc100": (100, 160, [5, 4, 2, 2, 2], [11, 8, 4, 4, 4], "cpc_km100", "cpc-km100"),
    "vqvae256": (256, 160, [5, 4, 2, 2, 2], [11, 8, 4, 4, 4], "vqvae256", None),
}
# dataset label -> (multispkr, resyn-bench dataset name, reference train/val unit-file folder)
_DATASETS = {
    "lj": ("single", "ljspeech", "LJSpeech"),
    "vctk": ("_", "vctk", "VCTK"),
}


def _paper_vocoder(units: str, ds: str) -> TrainConfig:
    n, hop, rates, kernels, key, encoder = _UNITS[units]
    multispkr, dataset, _folder = _DATASETS[ds]
    return TrainConfig(
        preset=f"{units}-{ds}", num_embeddings=n, code_hop_size=hop, upsample_rates=list(rates),
        upsample_kernel_sizes=list(kernels), multispkr=multispkr, unit_key=key,
        unit_encoder=encoder, f0_extractor="yaapt", dataset=dataset, num_workers=4)


def _paper_f0(ds: str) -> F0QuantizerTrainConfig:
    multispkr, dataset, _folder = _DATASETS[ds]
    return F0QuantizerTrainConfig(preset=f"f0-vqvae-{ds}", multispkr=multispkr,
                                  f0_extractor="yaapt", dataset=dataset, num_workers=4)


def _tiny() -> TrainConfig:
    """A vocoder small enough to train for minutes on a laptop CPU (tests, demos).

    Units at 100 Hz (hop 160, as the offline ``logmel100`` system), a 64-channel generator with
    one resblock kernel, and discriminators at 1/16 of the reference width (with full-size
    discriminators one step costs ~7 s on 2 cores whatever the generator size)."""
    return TrainConfig(
        preset="tiny", batch_size=4, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[11, 8, 4, 4, 4], upsample_initial_channel=64,
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]], num_embeddings=100,
        embedding_dim=32, model_in_dim=96, segment_size=5120, code_hop_size=160,
        multispkr="_", num_speakers=200,
        f0_quantizer=F0QuantizerParams(
            f0_vq_params=VQParams(l_bins=20, emb_width=32),
            f0_encoder_params=JukeboxParams(output_emb_width=32, width=16, depth=2),
            f0_decoder_params=JukeboxParams(output_emb_width=32, width=16, depth=2)),
        unit_key="units", f0_extractor="pyworld", validation_size=4, validation_max_seconds=4.0,
        training_steps=2000, checkpoint_interval=200, validation_interval=100, log_interval=10,
        discriminator_width=0.0625, num_workers=0)


def _tiny_f0() -> F0QuantizerTrainConfig:
    """A small F0 quantizer (16 channels, depth 2, 32-d codebook of 20 codes; x16 as the paper)."""
    return F0QuantizerTrainConfig(
        preset="tiny-f0", batch_size=8, segment_size=16640,
        f0_vq_params=VQParams(l_bins=20, emb_width=32),
        f0_encoder_params=JukeboxParams(output_emb_width=32, width=16, depth=2),
        f0_decoder_params=JukeboxParams(output_emb_width=32, width=16, depth=2),
        f0_extractor="pyworld", validation_size=4, training_steps=2000, checkpoint_interval=200,
        validation_interval=100, log_interval=10, num_workers=0)


def _librilight_vqvae() -> TrainConfig:
    """The content VQ-VAE of configs/LibriLight/vqvae256.json (docs/reference.md §5.4): raw-audio
    encoder (x160) + 256 x 128 EMA codebook + HiFi-GAN, trained jointly; no F0, no speaker."""
    return TrainConfig(
        preset="vqvae256-librilight", batch_size=32, num_embeddings=256, embedding_dim=128,
        model_in_dim=128, code_hop_size=160, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[11, 8, 4, 4, 4], f0=False, multispkr=None,
        code_encoder_params=JukeboxParams(downs_t=[[5, 1]], strides_t=[[2, 5]]),
        code_vq_params=VQParams(l_bins=256, emb_width=128, mu=0.99), lambda_commit_code=0.02,
        unit_key="vqvae256", f0_extractor="yaapt", num_workers=4)


def _tiny_vqvae() -> TrainConfig:
    """A content VQ-VAE small enough for a laptop CPU (tests, demos): the ``tiny`` generator
    (64 channels, one resblock kernel) fed by a 16-channel, depth-2 audio encoder (x160, as the
    paper) and a 256 x 32 codebook; no F0, no speaker (as the LibriLight config)."""
    return TrainConfig(
        preset="tiny-vqvae", batch_size=4, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[11, 8, 4, 4, 4], upsample_initial_channel=64,
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]], num_embeddings=256,
        embedding_dim=32, model_in_dim=32, segment_size=5120, code_hop_size=160, f0=False,
        multispkr=None,
        code_encoder_params=JukeboxParams(output_emb_width=32, downs_t=[[5, 1]], strides_t=[[2, 5]],
                                          width=16, depth=2),
        code_vq_params=VQParams(l_bins=256, emb_width=32, mu=0.99), lambda_commit_code=0.02,
        unit_key="vqvae256", f0_extractor="pyworld", validation_size=4, validation_max_seconds=4.0,
        training_steps=2000, checkpoint_interval=200, validation_interval=100, log_interval=10,
        discriminator_width=0.0625, num_workers=0)


#: preset name -> factory of a fresh config
PRESETS: dict[str, Callable[[], TrainConfig | F0QuantizerTrainConfig]] = {}
for _u in _UNITS:
    for _d in _DATASETS:
        PRESETS[f"{_u}-{_d}"] = (lambda u=_u, d=_d: _paper_vocoder(u, d))
for _d in _DATASETS:
    PRESETS[f"f0-vqvae-{_d}"] = (lambda d=_d: _paper_f0(d))
PRESETS["tiny"] = _tiny
PRESETS["tiny-f0"] = _tiny_f0
PRESETS["vqvae256-librilight"] = _librilight_vqvae
PRESETS["tiny-vqvae"] = _tiny_vqvae

#: short names of the paper's multi-speaker setups (as in named_systems.ALIASES)
PRESET_ALIASES = {"hubert100": "hubert100-vctk", "cpc100": "cpc100-vctk",
                  "vqvae256": "vqvae256-vctk", "f0-vqvae": "f0-vqvae-vctk"}


def preset_names(kind: str | None = None) -> list[str]:
    """Preset names, optionally only those of one kind ("vocoder" / "f0-quantizer")."""
    return [n for n, f in PRESETS.items() if kind is None or f().kind == kind]


def get_preset(name: str) -> TrainConfig | F0QuantizerTrainConfig:
    name = PRESET_ALIASES.get(name, name)
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{_suggest(name, PRESETS)}; presets: "
                          f"{', '.join(PRESETS)} (or give a config.json file)")
    return PRESETS[name]()


def _looks_like_f0_config(data: dict[str, Any]) -> bool:
    return "f0_vq_params" in data and "upsample_rates" not in data


def config_from_dict(data: dict[str, Any], kind: str | None = None) -> TrainConfig | F0QuantizerTrainConfig:
    """Build the right config class from a (reference or ours) JSON dict."""
    if kind is None:
        kind = "f0-quantizer" if _looks_like_f0_config(data) else "vocoder"
    cls = F0QuantizerTrainConfig if kind == "f0-quantizer" else TrainConfig
    cfg = cls.from_dict(data)
    if cfg.extra:
        warnings.warn(f"config keys not used by resyn-bench training (kept as they are): "
                      f"{', '.join(sorted(cfg.extra))}", stacklevel=2)
    return cfg


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | list[str] | None = None,
                kind: str | None = None) -> TrainConfig | F0QuantizerTrainConfig:
    """A preset name or a JSON file (reference format or ours), then overrides.

    ``kind`` ("vocoder" / "f0-quantizer") makes a mismatch an error instead of a surprise."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
        detected = "f0-quantizer" if _looks_like_f0_config(data) else "vocoder"
        if kind is not None and detected != kind:
            raise ConfigError(f"{name_or_path!r} is a {detected} config, not a {kind} config; "
                              f"{kind} presets: {', '.join(preset_names(kind))}")
        cfg = config_from_dict(data, detected)
    else:
        cfg = get_preset(text)
    if kind is not None and cfg.kind != kind:
        raise ConfigError(f"{name_or_path!r} is a {cfg.kind} config, not a {kind} config; "
                          f"{kind} presets: {', '.join(preset_names(kind))}")
    return apply_overrides(cfg, overrides)


# ---------------------------------------------------------------------------------------------
# overrides


def parse_override(item: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value); the value is read as JSON when it parses (numbers,
    true/false/null, lists, objects), else kept as a string (paths, names)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. batch_size=8, f0=false, "
                          "upsample_rates=[5,4,2,2,2])")
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def apply_overrides(cfg, overrides: dict[str, Any] | list[str] | None):
    """A copy of ``cfg`` with the overrides applied; the result is re-validated."""
    if not overrides:
        return cfg.copy()
    items = [parse_override(o) for o in overrides] if isinstance(overrides, (list, tuple)) \
        else list(overrides.items())
    data = cfg.to_dict()
    fields = {f.name for f in dataclasses.fields(cfg)}
    for key, value in items:
        parts = key.split(".")
        if parts[0] not in fields:
            raise ConfigError(f"unknown config key {parts[0]!r}{_suggest(parts[0], fields)}")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {key!r}: {'.'.join(parts[:i + 1])} is not a block")
            node = node[part]
        if len(parts) > 1 and parts[-1] not in node:
            raise ConfigError(f"override {key!r}: no key {parts[-1]!r} in {'.'.join(parts[:-1])}"
                              + _suggest(parts[-1], node))
        node[parts[-1]] = value
    return type(cfg).from_dict(data)
