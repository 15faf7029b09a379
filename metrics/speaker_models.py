"""Speaker embeddings as current papers report SIM: WavLM-Large + ECAPA-TDNN and SpeechBrain ECAPA.

Both are :class:`resyn_bench.metrics.speaker.SpeakerEncoder` backends of the ``spk`` group
(``-m spk.embedding=wavlm-ecapa`` / ``ecapa``; resemblyzer stays the default), in-house modules
that read the published files (no UniSpeech, s3prl or speechbrain code at run time).

``wavlm-ecapa`` - UniSpeech's speaker-verification model (``wavlm_large_finetune.pth``, the SIM
column of VALL-E-style papers). The file holds ``{"model": state_dict}``:

- ``feature_extract.model.*``: WavLM Large (:mod:`resyn_bench.nn.wavlm`); the waveform is
  layer-normalised first (WavLM Large's ``normalize``), and all L + 1 hidden states are taken
  as s3prl exposes them (the input of every transformer block, then the final output);
- ``feature_weight`` [L + 1]: the states are mixed with softmax(feature_weight), +1e-6, then an
  InstanceNorm1d over time (no affine) per channel;
- ECAPA-TDNN of UniSpeech (``ECAPA_TDNN_SMALL``): ``layer1`` Conv1d(k5, pad 2) -> ReLU ->
  BatchNorm; ``layer2..4`` SE-Res2Blocks (1x1 conv-ReLU-BN, Res2 convs k3 with dilation 2, 3, 4
  and zero padding = dilation in ``scale - 1`` chunks (the last chunk passes through), 1x1
  conv-ReLU-BN, squeeze-excitation ``SE_Connect.linear1/2``, residual); ``conv`` (1x1) on the
  concatenated outputs of layers 2-4, ReLU; attentive statistics pooling (``pooling.linear1``
  tanh, ``pooling.linear2`` softmax over time; weighted mean and std); ``bn``; ``linear`` ->
  256-d embedding.

``ecapa`` - SpeechBrain's ``spkrec-ecapa-voxceleb`` (``embedding_model.ckpt`` +
``hyperparams.yaml``). Front end as SpeechBrain's ``Fbank``: centred STFT (n_fft 400, 25 ms
Hamming window, 10 ms hop, zero padding), power spectrum, 80 triangular mel filters between
0 and 8 kHz (each filter's half-width is the spacing to its lower neighbour, peak 1), 10 log10
with a floor of 1e-10 and a dynamic range limited to 80 dB below the utterance maximum; then
sentence mean normalisation (``InputNormalization(norm_type="sentence", std_norm=False)``).
ECAPA-TDNN of SpeechBrain (``blocks``, ``mfa``, ``asp``, ``asp_bn``, ``fc``): convolutions
with "same" reflect padding, conv -> ReLU -> BatchNorm, Res2Net chunks, SE block, attentive
statistics pooling with global context; 192-d embedding. Sizes come from hyperparams.yaml.

Embeddings are L2-normalised (cosine similarity is what SIM reports). Weights are never
downloaded at run time; a missing file raises an error with its URL and target path.
"""
from __future__ import annotations

import math
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.core.hashing import sha256_file_or_none
from resyn_bench.distributed import resolve_device as _default_device
from resyn_bench.metrics.base import MetricError
from resyn_bench.metrics.speaker import SpeakerEncoder

__all__ = ["SpeechBrainECAPAEncoder", "WavLMECAPAEncoder", "read_hyperparams",
           "speechbrain_fbank"]

WAVLM_ECAPA = "wavlm-large-sv"
SB_ECAPA = "spkrec-ecapa-voxceleb"


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise MetricError(f"speaker embedding needs torch ({exc}); pip install "
                          f"'resyn-bench[models]'") from None
    return torch



def _catalogue_file(name: str, what: str, path: str | Path | None) -> Path:
    from resyn_bench import catalogue

    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise MetricError(f"{what}: {p} does not exist")
        return p
    p = catalogue.catalogue_path(name)
    if not p.is_file():
        raise MetricError(str(catalogue.missing_file_error(name, what=what)))
    for dep in catalogue.get_entry(name).requires:
        if not catalogue.is_present(dep):
            raise MetricError(str(catalogue.missing_file_error(dep, what=what)))
    return p


def _sha(path: Path) -> str:
    return sha256_file_or_none(path) or ""


def _check_audio(samples: np.ndarray, min_samples: int) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise MetricError("speaker embedding: audio is empty or not finite")
    if x.size < min_samples:
        raise MetricError(f"speaker embedding: {x.size / 16000:.3f} s of audio is too short "
                          f"(at least {min_samples / 16000:.3f} s)")
    if float(np.max(np.abs(x))) == 0.0:
        raise MetricError("speaker embedding: audio is silent")
    return x


def _unit(v) -> np.ndarray:
    e = np.asarray(v, dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(e))
    if not np.isfinite(n) or n == 0.0:
        raise MetricError("speaker embedding: the encoder returned a zero/non-finite vector")
    return (e / n).astype(np.float32)


# --------------------------------------------------------------------------------------------
# UniSpeech ECAPA-TDNN on WavLM

def _build_unispeech_head(torch, sd: dict):
    """The UniSpeech ECAPA head as a module tree whose names are the checkpoint's."""
    nn, F = torch.nn, torch.nn.functional

    class ConvReluBn(nn.Module):
        def __init__(self, cin, cout, k=1, pad=0, dil=1):
            super().__init__()
            self.conv = nn.Conv1d(cin, cout, k, padding=pad, dilation=dil)
            self.bn = nn.BatchNorm1d(cout)

        def forward(self, x):
            return self.bn(F.relu(self.conv(x)))

    class Res2(nn.Module):
        def __init__(self, c, scale, dil):
            super().__init__()
            self.width = c // scale
            n = scale - 1
            self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, 3, padding=dil,
                                                 dilation=dil) for _ in range(n))
            self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(n))

        def forward(self, x):
            parts = torch.split(x, self.width, 1)
            out, sp = [], None
            for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
                sp = parts[i] if i == 0 else sp + parts[i]
                sp = bn(F.relu(conv(sp)))
                out.append(sp)
            out.append(parts[len(self.convs)])
            return torch.cat(out, 1)

    class SE(nn.Module):
        def __init__(self, c, bottleneck):
            super().__init__()
            self.linear1 = nn.Linear(c, bottleneck)
            self.linear2 = nn.Linear(bottleneck, c)

        def forward(self, x):
            s = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(2)))))
            return x * s.unsqueeze(2)

    class Block(nn.Module):
        def __init__(self, c, scale, dil, bottleneck):
            super().__init__()
            self.Conv1dReluBn1 = ConvReluBn(c, c)
            self.Res2Conv1dReluBn = Res2(c, scale, dil)
            self.Conv1dReluBn2 = ConvReluBn(c, c)
            self.SE_Connect = SE(c, bottleneck)

        def forward(self, x):
            y = self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x)))
            return x + self.SE_Connect(y)

    class Pool(nn.Module):
        def __init__(self, c, att, global_context):
            super().__init__()
            self.global_context = global_context
            self.linear1 = nn.Conv1d(c * 3 if global_context else c, att, 1)
            self.linear2 = nn.Conv1d(att, c, 1)

        def forward(self, x):
            xin = x
            if self.global_context:
                m = x.mean(-1, keepdim=True).expand_as(x)
                s = torch.sqrt(x.var(-1, keepdim=True) + 1e-10).expand_as(x)
                xin = torch.cat((x, m, s), 1)
            a = torch.softmax(self.linear2(torch.tanh(self.linear1(xin))), dim=2)
            mean = (a * x).sum(2)
            std = torch.sqrt(((a * x * x).sum(2) - mean ** 2).clamp(min=1e-9))
            return torch.cat([mean, std], 1)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            w1 = sd["layer1.conv.weight"]
            c, feat_dim = int(w1.shape[0]), int(w1.shape[1])
            scale = 1 + sum(1 for k in sd if re.match(r"layer2\.Res2Conv1dReluBn\.convs\.\d+\.weight$", k))
            bottleneck = int(sd["layer2.SE_Connect.linear1.weight"].shape[0])
            mfa = int(sd["conv.weight"].shape[0])
            att = int(sd["pooling.linear1.weight"].shape[0])
            gctx = int(sd["pooling.linear1.weight"].shape[1]) == 3 * mfa
            self.feature_weight = nn.Parameter(torch.zeros(int(sd["feature_weight"].shape[0])))
            self.instance_norm = nn.InstanceNorm1d(feat_dim)
            self.layer1 = ConvReluBn(feat_dim, c, 5, 2)
            self.layer2 = Block(c, scale, 2, bottleneck)
            self.layer3 = Block(c, scale, 3, bottleneck)
            self.layer4 = Block(c, scale, 4, bottleneck)
            self.conv = nn.Conv1d(3 * c, mfa, 1)
            self.pooling = Pool(mfa, att, gctx)
            self.bn = nn.BatchNorm1d(2 * mfa)
            self.linear = nn.Linear(2 * mfa, int(sd["linear.weight"].shape[0]))

        def forward(self, states):  # list of [B, T, D]
            w = torch.softmax(self.feature_weight, -1).view(-1, 1, 1, 1)
            x = (w * torch.stack(states, 0)).sum(0).transpose(1, 2) + 1e-6
            x = self.instance_norm(x)
            o1 = self.layer1(x)
            o2 = self.layer2(o1)
            o3 = self.layer3(o2)
            o4 = self.layer4(o3)
            y = F.relu(self.conv(torch.cat([o2, o3, o4], 1)))
            return self.linear(self.bn(self.pooling(y)))

    return Head()


class WavLMECAPAModel:
    """WavLM + UniSpeech ECAPA head loaded from a ``wavlm_large_finetune.pth``-layout dict."""

    def __init__(self, state: dict, device: str = "cpu"):
        torch = _torch()
        from resyn_bench.nn.wavlm import (
            WavLMModel,
            legacy_weight_norm_names,
            wavlm_arch_from_tensors,
        )

        sd = state.get("model", state) if isinstance(state, dict) else None
        if not isinstance(sd, dict):
            raise MetricError("wavlm-ecapa: the checkpoint is not a dict with a 'model' state dict")
        sd = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        prefix = "feature_extract.model."
        wavlm_sd = legacy_weight_norm_names(
            {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
        head_sd = {k: v for k, v in sd.items() if not k.startswith("feature_extract.")}
        if not wavlm_sd or "layer1.conv.weight" not in head_sd:
            raise MetricError(
                "wavlm-ecapa: not a UniSpeech WavLM+ECAPA speaker-verification checkpoint "
                f"(expected '{prefix}*' and 'layer1.conv.weight' keys, found e.g. "
                f"{sorted(sd)[:4]})")
        self.wavlm = WavLMModel(wavlm_arch_from_tensors(wavlm_sd))
        self.wavlm.load_state_dict_strict(wavlm_sd, "wavlm-ecapa WavLM")
        self.head = _build_unispeech_head(torch, head_sd)
        own = self.head.state_dict()
        missing = sorted(set(own) - set(head_sd))
        extra = sorted(set(head_sd) - set(own))
        if missing or extra:
            raise MetricError(f"wavlm-ecapa: ECAPA head tensors do not match the UniSpeech "
                              f"layout: missing {missing[:5]}, unexpected {extra[:5]}")
        self.head.load_state_dict({k: v.float() for k, v in head_sd.items()}, strict=True)
        if len(self.wavlm.encoder.layers) + 1 != int(head_sd["feature_weight"].shape[0]):
            raise MetricError(f"wavlm-ecapa: feature_weight has {head_sd['feature_weight'].shape[0]} "
                              f"entries, WavLM gives {len(self.wavlm.encoder.layers) + 1} states")
        self.wavlm.eval().to(device)
        self.head.eval().to(device)
        self.device = device

    def embed(self, wav: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None].to(self.device)
            return self.head(self.wavlm.hidden_states(x))[0].float().cpu().numpy()


class WavLMECAPAEncoder(SpeakerEncoder):
    """``wavlm-ecapa``: UniSpeech WavLM-Large + ECAPA-TDNN speaker embeddings (256-d)."""

    name = "wavlm-ecapa"

    @property
    def device(self) -> str:  # resolved on use: constructing must not import torch
        return _default_device(self._device)

    def __init__(self, checkpoint: str | None = None, device: str | None = None,
                 trust_sha256: str | None = None):
        self.checkpoint = checkpoint
        self._device = device
        self.trust_sha256 = trust_sha256
        self._model: WavLMECAPAModel | None = None
        self._lock = threading.Lock()

    def _path(self) -> Path:
        return _catalogue_file(WAVLM_ECAPA, "spk.embedding=wavlm-ecapa", self.checkpoint)

    def settings(self) -> dict[str, Any]:
        try:
            p = self._path()
            name, sha = p.name, _sha(p)
        except MetricError:
            name, sha = (Path(self.checkpoint).name if self.checkpoint else WAVLM_ECAPA), None
        return {"model": "UniSpeech WavLM-Large + ECAPA-TDNN (wavlm_large_finetune layout)",
                "checkpoint": name, "checkpoint_sha256": sha, "device": self.device,
                "input": "16 kHz, whole utterance, layer-normalised waveform",
                "normalisation": "L2"}

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            _torch()
            from resyn_bench import catalogue
            from resyn_bench.safeload import load_checkpoint_object

            path = self._path()
            trusted = catalogue.trusted_hashes(WAVLM_ECAPA, self.trust_sha256)
            obj, _ = load_checkpoint_object(path, trusted, what="wavlm-ecapa checkpoint")
            self._model = WavLMECAPAModel(obj, self.device)

    def release(self) -> None:
        with self._lock:
            self._model = None

    def embed(self, samples_16k: np.ndarray) -> np.ndarray:
        if self._model is None:
            self.load()
        x = _check_audio(samples_16k, 400 * 3)  # a few WavLM frames
        return _unit(self._model.embed(x))


# --------------------------------------------------------------------------------------------
# SpeechBrain ECAPA-TDNN

def speechbrain_fbank(wav, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400,
                      win_ms: float = 25.0, hop_ms: float = 10.0, f_min: float = 0.0,
                      f_max: float | None = None, amin: float = 1e-10, top_db: float = 80.0):
    """Log-mel filterbanks [T, n_mels] as SpeechBrain's ``Fbank`` computes them (see the module
    docstring); ``wav`` is a 1-D float tensor."""
    torch = _torch()
    f_max = sample_rate // 2 if f_max is None else f_max
    win = int(round(sample_rate / 1000.0 * win_ms))
    hop = int(round(sample_rate / 1000.0 * hop_ms))
    spec = torch.stft(wav, n_fft, hop, win, torch.hamming_window(win, device=wav.device),
                      center=True, pad_mode="constant", normalized=False, onesided=True,
                      return_complex=True)
    power = (spec.real ** 2 + spec.imag ** 2).transpose(0, 1)           # [T, F]

    def to_mel(hz):
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    mel = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)
    hz = 700.0 * (10 ** (mel / 2595.0) - 1.0)
    centre, band = hz[1:-1], (hz[1:] - hz[:-1])[:-1]
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    slope = (freqs[None, :] - centre[:, None]) / band[:, None]           # [M, F]
    fb = torch.clamp(torch.minimum(slope + 1.0, 1.0 - slope), min=0.0).to(wav.device)
    mel_power = power @ fb.T
    db = 10.0 * torch.log10(torch.clamp(mel_power, min=amin))
    return torch.maximum(db, db.max() - top_db)


class _YamlTag:
    def __init__(self, tag: str, value):
        self.tag, self.value = tag, value


def read_hyperparams(path: str | Path) -> dict:
    """SpeechBrain's hyperparams.yaml read without executing it: ``!new:``/``!name:`` objects
    become ``{"__tag__": ..., **kwargs}``, ``!ref <key>`` is resolved against top-level keys."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)
        return _YamlTag("!" + suffix, value)

    Loader.add_multi_constructor("!", construct)
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506
    except yaml.YAMLError as exc:
        raise MetricError(f"{path}: not a readable hyperparams.yaml ({exc})") from None
    if not isinstance(raw, dict):
        raise MetricError(f"{path}: expected a mapping at the top level")

    def resolve(v, depth=0):
        if depth > 20:
            raise MetricError(f"{path}: !ref cycle")
        if isinstance(v, _YamlTag):
            if v.tag == "!ref":
                text = str(v.value).strip()
                m = re.fullmatch(r"<([\w.]+)>", text)
                if m:
                    return resolve(raw.get(m.group(1)), depth + 1)
                return re.sub(r"<([\w.]+)>", lambda mm: str(resolve(raw.get(mm.group(1)),
                                                                       depth + 1)), text)
            inner = resolve(v.value, depth + 1)
            return {"__tag__": v.tag, **inner} if isinstance(inner, dict) else \
                {"__tag__": v.tag, "value": inner}
        if isinstance(v, dict):
            return {k: resolve(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list):
            return [resolve(x, depth + 1) for x in v]
        return v

    return {k: resolve(v) for k, v in raw.items()}


def _build_sb_ecapa(torch, cfg: dict):
    nn, F = torch.nn, torch.nn.functional

    class Conv(nn.Module):  # speechbrain.nnet.CNN.Conv1d: "same" reflect padding
        def __init__(self, cin, cout, k, dil=1):
            super().__init__()
            self.conv = nn.Conv1d(cin, cout, k, dilation=dil)
            self.pad = dil * (k - 1) // 2

        def forward(self, x):
            if self.pad:
                x = F.pad(x, (self.pad, self.pad), mode="reflect")
            return self.conv(x)

    class BN(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.norm = nn.BatchNorm1d(c)

        def forward(self, x):
            return self.norm(x)

    class TDNN(nn.Module):
        def __init__(self, cin, cout, k, dil):
            super().__init__()
            self.conv = Conv(cin, cout, k, dil)
            self.norm = BN(cout)

        def forward(self, x):
            return self.norm(F.relu(self.conv(x)))

    class Res2Net(nn.Module):
        def __init__(self, c, scale, k, dil):
            super().__init__()
            self.scale = scale
            self.blocks = nn.ModuleList(TDNN(c // scale, c // scale, k, dil)
                                        for _ in range(scale - 1))

        def forward(self, x):
            ys, y = [], None
            for i, xi in enumerate(torch.chunk(x, self.scale, dim=1)):
                y = xi if i == 0 else self.blocks[i - 1](xi if i == 1 else xi + y)
                ys.append(y)
            return torch.cat(ys, 1)

    class SEBlock(nn.Module):
        def __init__(self, c, se):
            super().__init__()
            self.conv1 = Conv(c, se, 1)
            self.conv2 = Conv(se, c, 1)

        def forward(self, x):
            s = torch.sigmoid(self.conv2(F.relu(self.conv1(x.mean(2, keepdim=True)))))
            return s * x

    class SERes2(nn.Module):
        def __init__(self, cin, cout, scale, se, k, dil):
            super().__init__()
            self.tdnn1 = TDNN(cin, cout, 1, 1)
            self.res2net_block = Res2Net(cout, scale, k, dil)
            self.tdnn2 = TDNN(cout, cout, 1, 1)
            self.se_block = SEBlock(cout, se)
            self.shortcut = Conv(cin, cout, 1) if cin != cout else None

        def forward(self, x):
            r = self.shortcut(x) if self.shortcut is not None else x
            return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x)))) + r

    class ASP(nn.Module):
        def __init__(self, c, att, global_context):
            super().__init__()
            self.global_context = global_context
            self.tdnn = TDNN(c * 3 if global_context else c, att, 1, 1)
            self.conv = Conv(att, c, 1)

        @staticmethod
        def stats(x, w):
            mean = (w * x).sum(2)
            std = torch.sqrt((w * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(1e-12))
            return mean, std

        def forward(self, x):
            t = x.shape[-1]
            if self.global_context:
                m, s = self.stats(x, torch.full_like(x[:, :1], 1.0 / t))
                a = torch.cat([x, m.unsqueeze(2).expand_as(x), s.unsqueeze(2).expand_as(x)], 1)
            else:
                a = x
            a = torch.softmax(self.conv(torch.tanh(self.tdnn(a))), dim=2)
            m, s = self.stats(x, a)
            return torch.cat((m, s), 1).unsqueeze(2)

    class ECAPA(nn.Module):
        def __init__(self):
            super().__init__()
            ch, ks, dl = cfg["channels"], cfg["kernel_sizes"], cfg["dilations"]
            self.blocks = nn.ModuleList([TDNN(cfg["input_size"], ch[0], ks[0], dl[0])])
            for i in range(1, len(ch) - 1):
                self.blocks.append(SERes2(ch[i - 1], ch[i], cfg["res2net_scale"],
                                          cfg["se_channels"], ks[i], dl[i]))
            self.mfa = TDNN(ch[-2] * (len(ch) - 2), ch[-1], ks[-1], dl[-1])
            self.asp = ASP(ch[-1], cfg["attention_channels"], cfg["global_context"])
            self.asp_bn = BN(ch[-1] * 2)
            self.fc = Conv(ch[-1] * 2, cfg["lin_neurons"], 1)

        def forward(self, feats):  # [B, T, n_mels]
            x = feats.transpose(1, 2)
            outs = []
            for block in self.blocks:
                x = block(x)
                outs.append(x)
            x = self.mfa(torch.cat(outs[1:], 1))
            return self.fc(self.asp_bn(self.asp(x))).transpose(1, 2)

    return ECAPA()


_SB_DEFAULTS = {"channels": [512, 512, 512, 512, 1536], "kernel_sizes": [5, 3, 3, 3, 1],
                "dilations": [1, 2, 3, 4, 1], "attention_channels": 128, "res2net_scale": 8,
                "se_channels": 128, "global_context": True, "lin_neurons": 192}


def speechbrain_config(hp: dict) -> tuple[dict, dict]:
    """(ECAPA sizes, Fbank options) from a read hyperparams.yaml; unsupported settings are
    errors, not silently different numbers."""
    emb = hp.get("embedding_model")
    if not isinstance(emb, dict) or not str(emb.get("__tag__", "")).endswith("ECAPA_TDNN"):
        raise MetricError("hyperparams.yaml: embedding_model is not a "
                          "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN")
    cfg = {**_SB_DEFAULTS, **{k: v for k, v in emb.items() if k in _SB_DEFAULTS},
           "input_size": int(emb.get("input_size", 80))}
    if emb.get("groups") not in (None, [1] * len(cfg["channels"])) or emb.get("activation"):
        raise MetricError("hyperparams.yaml: ECAPA groups/activation other than the defaults "
                          "are not supported")
    fe = hp.get("compute_features") or {}
    if not str(fe.get("__tag__", "")).endswith("features.Fbank"):
        raise MetricError("hyperparams.yaml: compute_features is not speechbrain Fbank")
    if fe.get("deltas") or fe.get("context") or fe.get("filter_shape", "triangular") != "triangular":
        raise MetricError("hyperparams.yaml: Fbank with deltas/context/non-triangular filters "
                          "is not supported")
    fbank = {"n_mels": int(fe.get("n_mels", 40)), "sample_rate": int(fe.get("sample_rate", 16000)),
             "n_fft": int(fe.get("n_fft", 400)), "win_ms": float(fe.get("win_length", 25)),
             "hop_ms": float(fe.get("hop_length", 10)), "f_min": float(fe.get("f_min", 0)),
             "f_max": (float(fe["f_max"]) if fe.get("f_max") is not None else None)}
    if fbank["sample_rate"] != 16000:
        raise MetricError("hyperparams.yaml: only 16 kHz models are supported")
    if fbank["n_mels"] != cfg["input_size"]:
        raise MetricError(f"hyperparams.yaml: Fbank gives {fbank['n_mels']} mels but the ECAPA "
                          f"input_size is {cfg['input_size']}")
    norm = hp.get("mean_var_norm") or {}
    if norm and (norm.get("norm_type", "global") != "sentence" or norm.get("std_norm", True)):
        raise MetricError("hyperparams.yaml: mean_var_norm must be sentence mean "
                          "normalisation (norm_type: sentence, std_norm: False)")
    return cfg, fbank


class SpeechBrainECAPAModel:
    def __init__(self, state: dict, hp: dict, device: str = "cpu"):
        torch = _torch()
        self.cfg, self.fbank = speechbrain_config(hp)
        self.net = _build_sb_ecapa(torch, self.cfg)
        sd = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
        own = self.net.state_dict()
        missing = sorted(set(own) - set(sd))
        extra = sorted(set(sd) - set(own))
        if missing or extra:
            raise MetricError(f"ecapa: embedding_model.ckpt does not match the ECAPA sizes of "
                              f"hyperparams.yaml: missing {missing[:5]}, unexpected {extra[:5]}")
        for k, v in sd.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise MetricError(f"ecapa: {k} has shape {tuple(v.shape)}, hyperparams.yaml "
                                  f"implies {tuple(own[k].shape)}")
        self.net.load_state_dict({k: (v if k.endswith("num_batches_tracked") else v.float())
                                  for k, v in sd.items()}, strict=True)
        self.net.eval().to(device)
        self.device = device

    def features(self, wav: np.ndarray):
        torch = _torch()
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).to(self.device)
        f = speechbrain_fbank(x, **self.fbank)
        return f - f.mean(0, keepdim=True)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.inference_mode():
            return self.net(self.features(wav)[None])[0, 0].float().cpu().numpy()


class SpeechBrainECAPAEncoder(SpeakerEncoder):
    """``ecapa``: SpeechBrain spkrec-ecapa-voxceleb ECAPA-TDNN embeddings (192-d)."""

    name = "ecapa"

    @property
    def device(self) -> str:
        return _default_device(self._device)

    def __init__(self, checkpoint: str | None = None, device: str | None = None):
        #: the folder holding embedding_model.ckpt and hyperparams.yaml (default: catalogue)
        self.checkpoint = checkpoint
        self._device = device
        self._model: SpeechBrainECAPAModel | None = None
        self._lock = threading.Lock()

    def _files(self) -> tuple[Path, Path]:
        from resyn_bench import catalogue

        if self.checkpoint is not None:
            folder = Path(self.checkpoint).expanduser()
            ckpt, hp = folder / "embedding_model.ckpt", folder / "hyperparams.yaml"
            for p in (ckpt, hp):
                if not p.is_file():
                    raise MetricError(f"spk.embedding=ecapa: {p} not found (the folder must hold "
                                      f"SpeechBrain's embedding_model.ckpt and hyperparams.yaml)")
            return ckpt, hp
        ckpt = _catalogue_file(SB_ECAPA, "spk.embedding=ecapa", None)
        return ckpt, catalogue.catalogue_path(f"{SB_ECAPA}-hyperparams")

    def settings(self) -> dict[str, Any]:
        try:
            ckpt, _ = self._files()
            sha = _sha(ckpt)
        except MetricError:
            sha = None
        return {"model": "SpeechBrain ECAPA-TDNN (spkrec-ecapa-voxceleb layout)",
                "checkpoint_sha256": sha, "device": self.device,
                "features": "SpeechBrain Fbank (80 mel, 25/10 ms) + sentence mean norm",
                "normalisation": "L2"}

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            _torch()
            from resyn_bench.safeload import load_checkpoint_object

            ckpt, hp_file = self._files()
            state, _ = load_checkpoint_object(ckpt, (), what="ecapa embedding_model.ckpt")
            if not isinstance(state, dict):
                raise MetricError(f"{ckpt}: expected a state dict")
            self._model = SpeechBrainECAPAModel(state, read_hyperparams(hp_file), self.device)

    def release(self) -> None:
        with self._lock:
            self._model = None

    def embed(self, samples_16k: np.ndarray) -> np.ndarray:
        if self._model is None:
            self.load()
        # reflect padding of the k=5 first layer needs at least 3 frames of 10 ms
        x = _check_audio(samples_16k, 800)
        return _unit(self._model.embed(x))
