"""``ckpt:DIR``: a locally trained (or reference-layout) unit vocoder as a benchmark system.

encode (16 kHz audio)::

    units     = unit encoder (the one recorded in the training config, or -o units=SPEC)
    f0        = F0 (the training extractor) of the peak-normalised audio, z-scored with the
                source speaker's training statistics (voiced frames only, as in training)
    f0_codes  = the checkpoint's frozen F0 quantizer on that contour  (12.5 Hz, 20 codes)
    speaker   = row of the speaker LUT: the utterance's speaker, or -o speaker=NAME

decode: ``CodeGenerator(units, f0_codes, speaker)`` -> 16 kHz audio.

The audio is zero-padded to whole F0 codes (the reference pads its files to 1280 samples the
same way) and the output is cut back to the input length. Everything the checkpoint folder
records is used as recorded: the speaker name -> id map of training (not one rebuilt from the
evaluation manifest, docs/reference.md §4), the F0 statistics file, the F0 extractor.

The fairseq ``code_hifigan`` vocoders (docs/reference.md §8.4: ``dur_predictor_params`` in
config.json, e.g. the public ``hubert_base_100_lj``) are read by the same class. They take
units only (no F0, no speaker) and decode as fairseq's ``CodeHiFiGANVocoder`` with duration
prediction: the frame-level units of the encoder are deduplicated (runs of one unit collapse
to one) and the vocoder's duration predictor decides how many frames each unit lasts. The
output length is therefore the *predicted* one, kept as it is (not cut or padded to the
input): the record's ``output_duration_s`` next to ``duration_s`` shows the difference, and
the metrics align by time (F0: nearest frame, unvoiced outside the output).

Multi-speaker, multi-style vocoders (the Expresso release: ``multispkr`` and ``multistyle`` in
config.json, ``speakers.txt`` and ``styles.txt`` beside the generator, one name per line, the line
index being the LUT row) take the speaker as above and one style for every utterance
(``-o style=NAME``; default ``read-default`` where the vocoder has it, else its first style).

A config key the reference and fairseq code read with ``cfg.get(key)`` means "off" when it is
absent (``f0``, ``multispkr``); that is how the generator is built, so the system reads the
config the same way (our training defaults do not apply to a file that omits them).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.audio import Audio
from resyn_bench.errors import UserError
from resyn_bench.systems.base import (
    Streams,
    StreamSpec,
    System,
    SystemFailure,
    as_float32,
)
from resyn_bench.systems.options import option, parse_options
from resyn_bench.systems.vocoder.config import F0_CODE_HOP

__all__ = ["CheckpointSystem", "CheckpointOptions", "CheckpointSystemError", "parse_f0_edit", "edit_f0_hz"]

F0_EDITS = "flat, shift:+N (semitones), scale:X (range factor) or none"


def parse_f0_edit(text) -> tuple[str, float] | None:
    """``-o f0_edit=`` as ``(kind, value)``: ``flat`` -> ("flat", 0), ``shift:+2`` ->
    ("shift", 2.0) semitones, ``scale:0.5`` -> ("scale", 0.5); None/"none" -> None.
    Anything else is a ValueError naming the accepted forms."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    raw = str(text).strip().lower()
    if raw == "flat":
        return ("flat", 0.0)
    kind, sep, value = raw.partition(":")
    if sep and kind in ("shift", "scale"):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and (kind == "shift" or number >= 0):
            return (kind, number)
    raise ValueError(f"unknown f0_edit {text!r}; choose {F0_EDITS} (e.g. -o f0_edit=shift:+2, "
                     f"-o f0_edit=scale:0.5; a scale factor is >= 0)")


def edit_f0_hz(f0: np.ndarray, kind: str, value: float) -> np.ndarray:
    """An F0 track in Hz (0 = unvoiced) after a ``shift`` (semitones: f0 * 2^(N/12)) or a
    ``scale`` (log-F0 excursions around the utterance's mean log-F0 multiplied by X; the mean
    itself is kept). Unvoiced frames stay 0; ``flat`` is done after normalisation (z = 0)."""
    f0 = np.asarray(f0, dtype=np.float64)
    out = np.zeros_like(f0)
    voiced = f0 > 0
    if not voiced.any():
        return out.astype(np.float32)
    if kind == "shift":
        out[voiced] = f0[voiced] * 2.0 ** (value / 12.0)
    elif kind == "scale":
        log = np.log(f0[voiced])
        centre = float(log.mean())
        out[voiced] = np.exp(centre + value * (log - centre))
    else:
        raise ValueError(f"edit_f0_hz: {kind!r} is not a Hz-domain edit (shift, scale)")
    return out.astype(np.float32)



class CheckpointSystemError(UserError, FileNotFoundError):
    """The checkpoint folder cannot be used (no generator, no unit encoder, missing stats...)."""


def _inference_config(raw: dict, model, path):
    """The checkpoint's config.json as a ``TrainConfig``, read with the semantics of the code
    that wrote it: ``f0`` / ``multispkr`` absent = off (fairseq code_hifigan configs omit
    ``multispkr``; our training default would otherwise claim a speaker LUT). The model built
    from the same dict is the arbiter: a config that disagrees with it is an error."""
    from resyn_bench.systems.vocoder.config import ConfigError, config_from_dict

    data = dict(raw)
    data.setdefault("f0", False)
    data.setdefault("multispkr", None)
    if getattr(model, "uses_style", False) and "model_in_dim" in data:
        # the style LUT (Expresso) is inference-only here: the training config does not model
        # it, so validate the rest of the conditioning without its channels
        data["model_in_dim"] = int(data["model_in_dim"]) - int(data["embedding_dim"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # keys we do not model are fine at inference
            cfg = config_from_dict(data, kind="vocoder")
    except ConfigError as exc:
        raise CheckpointSystemError(f"{Path(path).parent / 'config.json'} cannot be used for "
                                    f"synthesis: {exc}") from None
    uses_speaker = bool(getattr(model, "uses_speaker", cfg.multi_speaker))
    if bool(cfg.f0) != bool(getattr(model, "f0", cfg.f0)) or cfg.multi_speaker != uses_speaker:
        raise CheckpointSystemError(
            f"{path}: config.json (f0={cfg.f0}, multispkr={cfg.multispkr!r}) does not describe "
            f"the generator built from it (F0 input: {getattr(model, 'f0', None)}, speaker "
            f"input: {uses_speaker})")
    return cfg


def _train_hint(ckpt: Path) -> str:
    return (f"train one with `resyn-bench train vocoder --config PRESET --dataset NAME "
            f"--data-root DIR --units SPEC --f0-quantizer F0_DIR --out {ckpt}` "
            f"(presets: tiny, hubert100-vctk, cpc100-lj, ...)")


@dataclass(frozen=True)
class CheckpointOptions:
    """The options of ``ckpt:DIR`` (``-o key=value``), also those of every named system (which
    add ``checkpoint``). Declaring a field here is all it takes for the factory, the named
    systems and ``resyn-bench ls systems`` to know the option."""

    units: str | None = option(
        None, "unit-encoder spec (k-means .npz or catalogue name such as hubert-l6-km100); "
        "default: the encoder recorded at training, needed when the vocoder was trained from a "
        "unit file", metavar="SPEC")
    speaker: str | None = option(
        None, "target voice (a training speaker name) for every utterance: voice conversion, and "
        "the way to run speakers unseen in training", metavar="NAME")
    f0_stats: str | None = option(
        None, "another F0 statistics file (e.g. covering unseen speakers)", metavar="FILE")
    f0_extractor: str | None = option(
        None, "override the training F0 extractor (a name of `resyn-bench ls presets` with a 5 ms "
        "hop: yaapt, pyworld, harvest, ...); default: the one recorded at training", metavar="NAME")
    step: int | None = option(
        None, "use the generator g_<step> instead of the latest one", type=int)
    device: str = option("cpu", "torch device: cpu or cuda", metavar="DEVICE")
    trust_sha256: str | None = option(
        None, "sha256 of a reference checkpoint that needs full unpickling", metavar="HEX")
    f0_edit: str | None = option(
        None, f"F0 manipulation before quantization: {F0_EDITS}", metavar="EDIT")
    style: str | None = option(
        None, "the style of a multi-style vocoder (a name of its styles.txt; default "
        "read-default where it has it, else its first style)", metavar="NAME")
    precision: str = option(
        "fp32", "the HiFi-GAN body's precision: fp32, or bf16 (about 1.8x less compute on a CPU "
        "with AVX512-BF16, waveform about 50 dB SNR against fp32; changes the output)",
        choices=("fp32", "bf16"), metavar="PREC")


class CheckpointSystem(System):
    """A unit HiFi-GAN checkpoint folder (``g_XXXXXXXX`` + ``config.json``) as a system.

    Options (``-o key=value``): the fields of :class:`CheckpointOptions`, given as keywords or
    as one ``options=CheckpointOptions(...)``. Two need more words:

    ``f0_edit``       F0 manipulation before quantization: ``flat`` puts every voiced frame on
                      the speaker's mean F0 (the paper's disentanglement test: report it with
                      ``--experiment f0_flat``; VDE/FFE are then measured against the original);
                      ``shift:+N`` moves every voiced frame by N semitones (``shift:-2``);
                      ``scale:X`` multiplies the utterance's F0 range by X in log-F0 around its
                      mean (``scale:0.5`` halves the excursions, ``scale:2`` doubles them).
                      Edits apply to the F0 in Hz before the speaker normalisation, so what the
                      quantizer's codebook cannot represent is clipped: ``resyn-bench
                      disentangle`` measures the shift and range actually achieved.
    ``units``         needed when the vocoder was trained from a unit file (no encoder recorded).

    Loading runs in named steps, in this order (each fails with a message naming the file):
    :meth:`_generator_path`, :meth:`_load_generator`, :meth:`_load_speaker_table`,
    :meth:`_load_style_table`, :meth:`_load_f0_parts`, :meth:`_load_unit_encoder`.
    """

    Options = CheckpointOptions
    input_sample_rate = 16000

    def __init__(self, ckpt_dir: str, options: CheckpointOptions | None = None, **values: Any):
        if options is None:
            options = parse_options(CheckpointOptions, values, "ckpt")
        elif values:
            raise TypeError("CheckpointSystem: give options= or keyword options, not both")
        self.options = options
        path, folder = self._generator_path(ckpt_dir, options.step)
        try:
            self._f0_edit = parse_f0_edit(options.f0_edit)
        except ValueError as exc:
            raise CheckpointSystemError(str(exc)) from None
        self.f0_edit = None if self._f0_edit is None else str(options.f0_edit)
        self.device = options.device
        self.precision = options.precision
        self._load_generator(path, options.trust_sha256)
        self._load_speaker_table(folder, options.speaker)
        self._load_style_table(folder, options.style)
        self._load_f0_parts(folder, options.f0_extractor, options.f0_stats)
        self._load_unit_encoder(folder, options.units)

    @staticmethod
    def _generator_path(ckpt_dir: str, step: int | None) -> tuple[Path, Path]:
        """The generator file or folder to load (``g_<step>`` with ``step``) and its folder."""
        from resyn_bench.systems.vocoder.checkpoint import latest_checkpoint

        path = Path(ckpt_dir).expanduser()
        if not path.exists():
            raise CheckpointSystemError(f"checkpoint folder {path} does not exist; {_train_hint(path)}")
        folder = path if path.is_dir() else path.parent
        if step is not None:
            path = folder / f"g_{int(step):08d}"
            if not path.is_file():
                raise CheckpointSystemError(f"no generator checkpoint {path.name} in {folder}")
        elif path.is_dir() and latest_checkpoint(path, "g_") is None:
            raise CheckpointSystemError(f"{path} holds no generator checkpoint (g_XXXXXXXX); "
                                        f"{_train_hint(path)}")
        return path, folder

    def _load_generator(self, path: Path, trust_sha256: str | None) -> None:
        """The generator and its config.json: ``model``, ``config``, ``checkpoint``, the unit
        hop and the padding block; refuses the layouts this system cannot encode for."""
        import torch

        from resyn_bench.systems.vocoder.checkpoint import load_generator
        from resyn_bench.systems.vocoder.generator import (
            DurationCodeGenerator,
            prepare_for_inference,
        )

        trusted = (trust_sha256,) if trust_sha256 else ()
        loaded = load_generator(path, trusted_sha256=trusted)
        self.checkpoint = {"path": str(Path(loaded.path).resolve()), "step": loaded.step,
                           "sha256": loaded.sha256}
        self.config = _inference_config(loaded.config, loaded.model, loaded.path)
        cfg = self.config
        # fairseq code_hifigan: deduplicated units, durations predicted by the vocoder
        self.duration_prediction = isinstance(loaded.model, DurationCodeGenerator)
        if self.duration_prediction and cfg.f0:
            raise CheckpointSystemError(
                f"{loaded.path}: a duration-predicting vocoder conditioned on F0 is not "
                "supported (the F0 track would have to follow the predicted durations)")
        if self.f0_edit and not cfg.f0:
            raise CheckpointSystemError(
                f"f0_edit={self.f0_edit} needs a vocoder conditioned on F0 codes; {loaded.path} "
                "takes units only (its config has f0 false or no f0 key)")
        f0_kind = getattr(loaded.model, "f0_kind", None)
        if f0_kind in ("fairseq_codes", "raw"):
            raise CheckpointSystemError(
                f"{loaded.path}: this generator takes F0 the fairseq way ("
                f"{'quantized F0 through f0_quant_embed' if f0_kind == 'fairseq_codes' else 'the raw F0 value as one channel'}"
                "); it loads (resyn_bench.systems.vocoder.checkpoint.load_generator), but "
                "encoding audio for it needs the F0 extraction and quantization it was trained "
                "with, which this system does not know: synthesize from your own units and F0 with "
                "load_generator(...).model(code, f0=... or f0_codes=...)")
        self.model = prepare_for_inference(loaded.model.to(self.device), precision=self.precision)
        self.hop = int(cfg.code_hop_size)
        self.block = math.lcm(self.hop, F0_CODE_HOP) if cfg.f0 else self.hop
        self._torch = torch

    def _load_speaker_table(self, folder: Path, speaker: str | None) -> None:
        """The training speaker name -> LUT row map (config, else speakers.json or speakers.txt
        beside the checkpoint) and the fixed target voice (``-o speaker``)."""
        cfg = self.config
        self.speaker_map: dict[str, int] | None = None
        self.one_voice = cfg.multispkr == "single"   # reference LJ configs: every file is 'A'
        if self.one_voice:
            self.speaker_map = dict(cfg.speaker_map or {}) or {"A": 0}
        elif cfg.multi_speaker:
            self.speaker_map = (dict(cfg.speaker_map or {}) or self._speakers_json(folder)
                                or self._names_txt(folder / "speakers.txt", "speaker"))
            if not self.speaker_map:
                raise CheckpointSystemError(
                    f"{folder}: a multi-speaker vocoder without its speaker name -> id map "
                    "(config.json 'speaker_map', speakers.json, or speakers.txt with one name "
                    "per line); write the map used at training to speakers.json")
            self._check_rows(self.speaker_map, getattr(self.model, "spkr", None), "speaker",
                             folder)
        if speaker is not None and cfg.multi_speaker and speaker not in self.speaker_map:
            raise CheckpointSystemError(
                f"speaker {speaker!r} is not a training speaker of {folder}; choose one of "
                f"{', '.join(sorted(self.speaker_map)[:20])}")
        if speaker is not None and not cfg.multi_speaker:
            raise CheckpointSystemError(f"{folder}: a single-speaker vocoder takes no speaker option")
        self.target_speaker = speaker

    def _load_style_table(self, folder: Path, style: str | None) -> None:
        """Expresso vocoders: the style name -> LUT row map (styles.txt) and the one style used
        for every utterance."""
        self.style_map: dict[str, int] | None = None
        self.style = None
        if getattr(self.model, "uses_style", False):
            self.style_map = self._names_txt(folder / "styles.txt", "style")
            if not self.style_map:
                raise CheckpointSystemError(
                    f"{folder}: a multi-style vocoder (config multistyle) without styles.txt "
                    f"beside it (one style name per line, line i = style id i); place it at "
                    f"{folder / 'styles.txt'}")
            self._check_rows(self.style_map, self.model.style, "style", folder)
            if style is None:
                style = "read-default" if "read-default" in self.style_map else next(iter(self.style_map))
            if style not in self.style_map:
                raise CheckpointSystemError(
                    f"style {style!r} is not a style of {folder}; choose one of "
                    f"{', '.join(list(self.style_map)[:30])}")
            self.style = style
        elif style is not None:
            raise CheckpointSystemError(f"{folder}: this vocoder has no style input "
                                        "(config: multistyle off); drop -o style")

    def _load_f0_parts(self, folder: Path, f0_extractor: str | None, f0_stats: str | None) -> None:
        """F0 conditioning: the extractor (training's unless overridden), the per-speaker F0
        statistics and the check that the generator holds its F0 quantizer."""
        cfg = self.config
        self.f0_extractor = f0_extractor or cfg.f0_extractor
        self.f0_stats = None
        self.f0_stats_path = None
        if not cfg.f0:
            return
        from resyn_bench.systems.vocoder.data import f0_method_params
        from resyn_bench.systems.vocoder.f0_stats import load_f0_stats

        f0_method_params(self.f0_extractor)  # unknown names fail here, not per utterance
        candidates = [Path(f0_stats).expanduser()] if f0_stats else [
            p for p in ([Path(cfg.f0_stats).expanduser()] if cfg.f0_stats else [])
            + [folder / "f0_stats.json"]]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise CheckpointSystemError(
                f"F0 statistics not found (looked at {', '.join(map(str, candidates))}); pass "
                "-o f0_stats=FILE (our JSON from training, or a reference f0_stats.pth)")
        ids = self.speaker_map if found.suffix != ".json" else None
        self.f0_stats = load_f0_stats(found, ids)
        self.f0_stats_path = str(found.resolve())
        if getattr(self.model, "quantizer", None) is None:
            raise CheckpointSystemError(f"{folder}: the generator is conditioned on F0 but has "
                                        "no F0 quantizer block in its config")

    def _load_unit_encoder(self, folder: Path, units: str | None) -> None:
        """The unit encoder (training's unless ``-o units``), checked against the vocoder's hop
        and embedding table."""
        from resyn_bench.systems.encoders.base import load_unit_encoder

        cfg = self.config
        self.unit_spec = units or cfg.unit_encoder
        if not self.unit_spec:
            src = cfg.unit_source()
            raise CheckpointSystemError(
                f"{folder}: this vocoder was trained on units read from "
                f"{src.get('file') or 'a unit file'}; encoding new audio needs the encoder that "
                "made them: pass it with -o units=SPEC (a k-means .npz from `resyn-bench train "
                "kmeans`, or a catalogue name such as hubert-l6-km100 / cpc-km100)")
        # the unit encoder (HuBERT, CPC, VQ-VAE) runs on the vocoder's device; logmel features
        # have no model (and no device option)
        on_device = {} if str(self.device) == "cpu" else {"device": self.device}
        try:
            self.encoder = load_unit_encoder(self.unit_spec, **on_device)
        except TypeError:
            if not on_device:
                raise
            self.encoder = load_unit_encoder(self.unit_spec)
        if int(self.encoder.hop_size) != self.hop:
            raise CheckpointSystemError(
                f"unit encoder {self.unit_spec!r} has a hop of {self.encoder.hop_size} samples, "
                f"the vocoder expects {self.hop} (code_hop_size)")
        if int(self.encoder.vocab_size) > int(cfg.num_embeddings):
            raise CheckpointSystemError(
                f"unit encoder {self.unit_spec!r} has {self.encoder.vocab_size} units, the vocoder "
                f"embeds only {cfg.num_embeddings}")

    @staticmethod
    def _names_txt(path: Path, what: str) -> dict[str, int] | None:
        """``speakers.txt`` / ``styles.txt`` of textlesslib's vocoders: line i names LUT row i."""
        if not path.is_file():
            return None
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        while names and not names[-1]:
            names.pop()
        out: dict[str, int] = {}
        for i, name in enumerate(names):
            if not name:
                raise CheckpointSystemError(f"{path} line {i + 1}: empty {what} name")
            if name in out:
                raise CheckpointSystemError(f"{path}: {what} {name!r} is listed twice "
                                            f"(lines {out[name] + 1} and {i + 1})")
            out[name] = i
        return out or None

    @staticmethod
    def _check_rows(names: dict[str, int], table, what: str, folder: Path) -> None:
        rows = getattr(table, "num_embeddings", None)
        if rows is not None and names and max(names.values()) >= rows:
            raise CheckpointSystemError(
                f"{folder}: the {what} list has {max(names.values()) + 1} entries but the "
                f"generator's {what} table has {rows} rows: the list belongs to another model")

    @staticmethod
    def _speakers_json(folder: Path) -> dict | None:
        from resyn_bench.systems.vocoder.f0_stats import load_speaker_ids

        path = folder / "speakers.json"
        return load_speaker_ids(path) if path.is_file() else None

    # ------------------------------------------------------------------------------------------

    def stream_specs(self) -> list[StreamSpec]:
        cfg = self.config
        what = f"{getattr(self.encoder, 'name', 'units')} units, hop {self.hop}"
        if self.duration_prediction:
            # the rate counted is the encoder's frame rate: an upper bound, since the decoder
            # needs only the deduplicated sequence (durations are predicted, not sent)
            what += ("; deduplicated before decoding, durations predicted by the vocoder "
                     "(frame rate = upper bound of the unit rate)")
        specs = [StreamSpec("units", "discrete", 16000 / self.hop, int(self.encoder.vocab_size),
                            what)]
        if cfg.f0:
            specs.append(StreamSpec("f0_codes", "discrete", 16000 / F0_CODE_HOP,
                                    int(cfg.f0_quantizer.f0_vq_params.l_bins),
                                    f"F0 VQ-VAE codes of speaker-normalised {self.f0_extractor} F0"))
        if cfg.multi_speaker:
            specs.append(StreamSpec("speaker", "speaker", None, len(self.speaker_map),
                                    "speaker LUT row (sent once per utterance)"))
        if self.style_map:
            specs.append(StreamSpec("style", "speaker", None, len(self.style_map),
                                    f"style LUT row, {self.style!r} (sent once per utterance)"))
        return specs

    def speakers(self) -> list[str] | None:
        if self.one_voice:
            return None   # one voice: the speaker stream is not a choice
        return sorted(self.speaker_map) if self.speaker_map else None

    def _speaker_id(self, utterance) -> tuple[str, int]:
        if self.one_voice:
            name = self.target_speaker or next(iter(self.speaker_map))
            return name, int(self.speaker_map[name])
        # a fixed target (-o speaker=), else the runner's per-utterance conversion target
        name = (self.target_speaker or getattr(utterance, "target_speaker", None)
                or str(getattr(utterance, "speaker", "") or ""))
        if name not in self.speaker_map:
            known = sorted(self.speaker_map)
            raise SystemFailure(
                f"speaker {name!r} was not seen in training (the speaker LUT knows {len(known)}: "
                f"{', '.join(known[:10])}{', ...' if len(known) > 10 else ''}); choose a target "
                "voice with -o speaker=NAME")
        return name, int(self.speaker_map[name])

    def encode(self, audio: Audio, utterance) -> Streams:
        from resyn_bench.systems.vocoder.data import extract_f0, peak_normalize

        torch = self._torch
        cfg = self.config
        x = np.asarray(audio.samples, dtype=np.float32).reshape(-1)
        n_in = len(x)
        if self.duration_prediction:
            return self._encode_for_durations(x)
        n = -(-n_in // self.block) * self.block           # whole F0 codes (zero padding)
        padded = np.pad(x, (0, n - n_in))
        n_units = n // self.hop
        units = np.asarray(self.encoder.encode(padded), dtype=np.int64).reshape(-1)
        if units.size == 0:
            raise SystemFailure(f"the unit encoder returned no units for {n_in} samples")
        # encoders with a receptive field (HuBERT: (N - 400) // 320 + 1 frames) come up a frame
        # or two short of N / hop: repeat the last unit; extra frames are dropped
        if units.size < n_units:
            units = np.concatenate([units, np.full(n_units - units.size, units[-1])])
        units = units[:n_units]
        data: dict[str, Any] = {"units": units}
        meta: dict[str, Any] = {"n_samples": n_in, "padded_samples": n}
        if cfg.f0:
            source = None if self.one_voice else (str(getattr(utterance, "speaker", "") or "") or None)
            f0 = extract_f0(peak_normalize(padded), self.f0_extractor)
            if self._f0_edit is not None and self._f0_edit[0] != "flat":
                f0 = edit_f0_hz(f0, *self._f0_edit)
            try:
                z = self.f0_stats.normalize(f0, source)   # the source speaker's statistics
            except ValueError as exc:  # F0StatsError: no statistics for this speaker
                raise SystemFailure(f"F0 normalisation: {exc}") from None
            if self._f0_edit is not None and self._f0_edit[0] == "flat":
                # z = 0 is the speaker's mean F0; unvoiced stays 0 too
                z = np.where(f0 > 0, 0.0, z).astype(np.float32)
            with torch.no_grad():
                codes = self.model.quantizer.encode_indices(
                    torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))[None, None].to(self.device))
            data["f0_codes"] = codes[0].cpu().numpy().astype(np.int64)
            meta["voiced_frames"] = int((f0 > 0).sum())
        if cfg.multi_speaker:
            name, sid = self._speaker_id(utterance)
            data["speaker"] = sid
            meta["speaker_name"] = name
        if self.style_map:
            data["style"] = int(self.style_map[self.style])
            meta["style_name"] = self.style
        return Streams(data, sample_rate=16000, meta=meta)

    def _encode_for_durations(self, x: np.ndarray) -> Streams:
        """Units of the raw audio, as fairseq feeds its unit vocoders (no padding: the decoder
        predicts its own durations, so no output length has to be matched)."""
        units = np.asarray(self.encoder.encode(x), dtype=np.int64).reshape(-1)
        if units.size == 0:
            raise SystemFailure(f"the unit encoder returned no units for {len(x)} samples "
                                f"(shorter than one frame?)")
        return Streams({"units": units}, sample_rate=16000,
                       meta={"n_samples": len(x), "n_units": int(units.size)})

    def _decode_with_durations(self, units: np.ndarray, streams: Streams) -> np.ndarray:
        """Deduplicate, predict durations, synthesize (fairseq CodeHiFiGANVocoder with
        ``dur_prediction``); the output keeps the predicted length."""
        from resyn_bench.systems.vocoder.generator import deduplicate_units

        torch = self._torch
        if units.size == 0:
            raise SystemFailure("no units to decode")
        unique, _ = deduplicate_units(torch.as_tensor(units))
        with torch.no_grad():
            wav = self.model(unique[None].to(self.device), dur_prediction=True)
        y = wav.reshape(-1).float().cpu().numpy()
        # what the duration predictor decided, for whoever inspects the streams
        streams.meta.update(deduplicated_units=int(unique.numel()),
                            predicted_frames=len(y) // self.hop, output_samples=len(y))
        return y

    def decode(self, streams: Streams) -> Audio:
        torch = self._torch
        cfg = self.config
        units = np.asarray(streams["units"], dtype=np.int64).reshape(-1)
        if units.size and (units.min() < 0 or units.max() >= cfg.num_embeddings):
            raise SystemFailure(f"units outside 0..{cfg.num_embeddings - 1}")
        if self.duration_prediction:
            y = self._decode_with_durations(units, streams)
            if not np.all(np.isfinite(y)):
                raise SystemFailure("the vocoder produced NaN/inf samples")
            return Audio(as_float32(y), 16000)
        kwargs: dict[str, Any] = {}
        if cfg.f0:
            kwargs["f0_codes"] = torch.as_tensor(np.asarray(streams["f0_codes"], np.int64))[None].to(self.device)
        if cfg.multi_speaker:
            kwargs["spkr"] = torch.tensor([[int(streams["speaker"])]], device=self.device)
        if self.style_map:
            kwargs["style"] = torch.tensor([[int(streams["style"])]], device=self.device)
        with torch.no_grad():
            wav = self.model(torch.as_tensor(units)[None].to(self.device), **kwargs)
        y = wav.reshape(-1).float().cpu().numpy()
        n = streams.meta.get("n_samples")
        if n is not None:
            y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
        if not np.all(np.isfinite(y)):
            raise SystemFailure("the vocoder produced NaN/inf samples")
        return Audio(as_float32(y), 16000)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        cfg = self.config
        encoder = self.encoder.describe() if hasattr(self.encoder, "describe") else {}
        d.update(checkpoint=self.checkpoint, preset=cfg.preset, units=self.unit_spec,
                 unit_encoder=encoder, f0=cfg.f0, f0_extractor=self.f0_extractor if cfg.f0 else None,
                 f0_stats=self.f0_stats_path,
                 f0_quantizer={"path": cfg.f0_quantizer_path,
                               "step": cfg.extra.get("f0_quantizer_step")} if cfg.f0 else None,
                 speakers=len(self.speaker_map) if self.speaker_map else None,
                 target_speaker=self.target_speaker, f0_edit=self.f0_edit, device=self.device,
                 precision=self.precision,
                 style=self.style, styles=len(self.style_map) if self.style_map else None,
                 duration_prediction=self.duration_prediction,
                 layout="fairseq code_hifigan (duration predictor)" if self.duration_prediction
                 else "unit HiFi-GAN (speech-resynthesis)")
        if self.duration_prediction:
            d["duration_predictor"] = dict(cfg.extra.get("dur_predictor_params") or {})
        return d
