"""SIM embeddings: WavLM (against transformers.WavLMModel), the UniSpeech WavLM+ECAPA checkpoint
layout, SpeechBrain's ECAPA-TDNN and Fbank (against speechbrain when importable), and their
use as the ``spk`` group's embedding. Random weights in the published layouts; tiny sizes."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from resyn_bench.metrics.base import MetricError  # noqa: E402

TOL = 1e-4
CONV = (16,) * 7


def _perturb(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


# --------------------------------------------------------------------------------------------
# WavLM against transformers

def _tiny_hf_wavlm(stable: bool, seed: int = 0, buckets: int = 40, max_distance: int = 100):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.WavLMConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
        conv_dim=CONV, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, conv_bias=False,
        feat_extract_norm="layer" if stable else "group", do_stable_layer_norm=stable,
        num_buckets=buckets, max_bucket_distance=max_distance, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
    model = transformers.WavLMModel(cfg).eval()
    _perturb(model, seed + 1)
    return model


def hf_wavlm_to_unilm(sd: dict, stable: bool) -> dict:
    """transformers WavLM names -> unilm/s3prl WavLM names (written out here, independently of
    the module under test)."""
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if k.startswith("feature_extractor.conv_layers."):
            i = p[2]
            if p[3] == "conv":
                out[f"feature_extractor.conv_layers.{i}.0.{p[4]}"] = v
            else:  # layer_norm: LayerNorm per conv (stable) or the first conv's GroupNorm
                out[f"feature_extractor.conv_layers.{i}.2.{'1.' if stable else ''}{p[4]}"] = v
        elif k.startswith("feature_projection.layer_norm."):
            out[f"layer_norm.{p[-1]}"] = v
        elif k.startswith("feature_projection.projection."):
            out[f"post_extract_proj.{p[-1]}"] = v
        elif k == "encoder.pos_conv_embed.conv.parametrizations.weight.original0":
            out["encoder.pos_conv.0.weight_g"] = v
        elif k == "encoder.pos_conv_embed.conv.parametrizations.weight.original1":
            out["encoder.pos_conv.0.weight_v"] = v
        elif k == "encoder.pos_conv_embed.conv.bias":
            out["encoder.pos_conv.0.bias"] = v
        elif k.startswith("encoder.layer_norm."):
            out[k] = v
        elif k.startswith("encoder.layers."):
            i, rest = p[2], ".".join(p[3:])
            rest = (rest.replace("attention.gru_rel_pos_const", "self_attn.grep_a")
                    .replace("attention.gru_rel_pos_linear", "self_attn.grep_linear")
                    .replace("attention.rel_attn_embed", "self_attn.relative_attention_bias")
                    .replace("attention.", "self_attn.")
                    .replace("feed_forward.intermediate_dense", "fc1")
                    .replace("feed_forward.output_dense", "fc2"))
            if rest.startswith("layer_norm."):
                rest = "self_attn_layer_norm." + p[-1]
            out[f"encoder.layers.{i}.{rest}"] = v
        elif k == "masked_spec_embed":
            out["mask_emb"] = v
        else:
            raise AssertionError(f"unmapped transformers key {k}")
    return out


def _hf_states(hf, x) -> list:
    """The inputs of every block, then the encoder output (for a pre-LN model: after the final
    LayerNorm): s3prl's ``hidden_states``. transformers 5 reports the last block's output
    before that LayerNorm as ``hidden_states[-1]``, so the last entry is ``last_hidden_state``."""
    out = hf(x, output_hidden_states=True)
    return [*out.hidden_states[:-1], out.last_hidden_state]


@pytest.mark.parametrize("stable", [True, False], ids=["large-prelnorm", "base-postlnorm"])
def test_wavlm_hidden_states_match_transformers(stable):
    from resyn_bench.nn.wavlm import WavLMModel, wavlm_arch_from_tensors

    hf = _tiny_hf_wavlm(stable)
    sd = hf_wavlm_to_unilm(hf.state_dict(), stable)
    arch = wavlm_arch_from_tensors(sd)
    assert (arch.num_layers, arch.num_heads, arch.num_buckets, arch.layer_norm_first) == (
        3, 4, 40, stable)
    arch.max_distance = 100
    ours = WavLMModel(arch).eval()
    ours.load_state_dict_strict(sd)
    wav = (0.3 * np.random.default_rng(0).standard_normal(16000 + 77)).astype(np.float32)
    x = torch.from_numpy(wav)[None]
    with torch.no_grad():
        ref = _hf_states(hf, F.layer_norm(x, x.shape[-1:]) if stable else x)
        got = ours.hidden_states(x)
    assert len(got) == len(ref) == 4
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=TOL, rtol=0)


def test_relative_position_buckets_known_values():
    from resyn_bench.nn.wavlm import relative_position_buckets

    b = relative_position_buckets(300, 320, 800)
    # exact below 80 each way; keys after the query use the upper half of the buckets
    assert b[0, 0] == 0 and b[5, 3] == 2 and b[3, 5] == 160 + 2 and b[0, 79] == 160 + 79
    # log-spaced beyond: distance d -> 80 + floor(ln(d / 80) / ln(10) * 80), capped at 159
    d = 250
    assert b[0, d] == 160 + 80 + int(np.log(d / 80) / np.log(800 / 80) * 80)
    assert int(b.max()) <= 319


# --------------------------------------------------------------------------------------------
# UniSpeech WavLM + ECAPA checkpoint layout

def _unispeech_head_state(feat_dim=32, c=16, scale=4, se=8, mfa=24, att=8, emb=12, n_states=4,
                          seed=3) -> dict:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale_=0.3):
        return scale_ * torch.randn(*shape, generator=g)

    sd = {"feature_weight": r(n_states)}

    def crb(prefix, cin, cout, k):
        sd[f"{prefix}.conv.weight"] = r(cout, cin, k)
        sd[f"{prefix}.conv.bias"] = r(cout)
        bn(f"{prefix}.bn", cout)

    def bn(prefix, n):
        sd[f"{prefix}.weight"] = 1 + r(n)
        sd[f"{prefix}.bias"] = r(n)
        sd[f"{prefix}.running_mean"] = r(n)
        sd[f"{prefix}.running_var"] = 0.5 + torch.rand(n, generator=g)
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    crb("layer1", feat_dim, c, 5)
    for layer in ("layer2", "layer3", "layer4"):
        crb(f"{layer}.Conv1dReluBn1", c, c, 1)
        for i in range(scale - 1):
            sd[f"{layer}.Res2Conv1dReluBn.convs.{i}.weight"] = r(c // scale, c // scale, 3)
            sd[f"{layer}.Res2Conv1dReluBn.convs.{i}.bias"] = r(c // scale)
            bn(f"{layer}.Res2Conv1dReluBn.bns.{i}", c // scale)
        crb(f"{layer}.Conv1dReluBn2", c, c, 1)
        sd[f"{layer}.SE_Connect.linear1.weight"] = r(se, c)
        sd[f"{layer}.SE_Connect.linear1.bias"] = r(se)
        sd[f"{layer}.SE_Connect.linear2.weight"] = r(c, se)
        sd[f"{layer}.SE_Connect.linear2.bias"] = r(c)
    sd["conv.weight"] = r(mfa, 3 * c, 1)
    sd["conv.bias"] = r(mfa)
    sd["pooling.linear1.weight"] = r(att, mfa, 1)
    sd["pooling.linear1.bias"] = r(att)
    sd["pooling.linear2.weight"] = r(mfa, att, 1)
    sd["pooling.linear2.bias"] = r(mfa)
    bn("bn", 2 * mfa)
    sd["linear.weight"] = r(emb, 2 * mfa)
    sd["linear.bias"] = r(emb)
    return sd


def _reference_unispeech_head(sd: dict, states: list) -> torch.Tensor:
    """The UniSpeech ECAPA forward written with functional calls on the raw tensors."""
    def bn(x, p):
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], False, 0.0, 1e-5)

    def crb(x, p, pad=0, dil=1):
        return bn(F.relu(F.conv1d(x, sd[f"{p}.conv.weight"], sd[f"{p}.conv.bias"], padding=pad,
                                  dilation=dil)), f"{p}.bn")

    w = torch.softmax(sd["feature_weight"], 0)
    x = sum(w[i] * s for i, s in enumerate(states)).transpose(1, 2) + 1e-6
    x = (x - x.mean(2, keepdim=True)) / torch.sqrt(x.var(2, unbiased=False, keepdim=True) + 1e-5)
    out1 = crb(x, "layer1", pad=2)
    outs, y = [], out1
    for layer, dil in (("layer2", 2), ("layer3", 3), ("layer4", 4)):
        h = crb(y, f"{layer}.Conv1dReluBn1")
        n = sum(1 for k in sd if k.startswith(f"{layer}.Res2Conv1dReluBn.convs.") and k.endswith("weight"))
        width = h.shape[1] // (n + 1)
        pieces, acc = [], None
        for i in range(n):
            acc = h[:, i * width:(i + 1) * width] if i == 0 else acc + h[:, i * width:(i + 1) * width]
            acc = bn(F.relu(F.conv1d(acc, sd[f"{layer}.Res2Conv1dReluBn.convs.{i}.weight"],
                                     sd[f"{layer}.Res2Conv1dReluBn.convs.{i}.bias"], padding=dil,
                                     dilation=dil)), f"{layer}.Res2Conv1dReluBn.bns.{i}")
            pieces.append(acc)
        pieces.append(h[:, n * width:])
        h = crb(torch.cat(pieces, 1), f"{layer}.Conv1dReluBn2")
        s = torch.sigmoid(F.linear(F.relu(F.linear(h.mean(2), sd[f"{layer}.SE_Connect.linear1.weight"],
                                                   sd[f"{layer}.SE_Connect.linear1.bias"])),
                                   sd[f"{layer}.SE_Connect.linear2.weight"],
                                   sd[f"{layer}.SE_Connect.linear2.bias"]))
        y = y + h * s[:, :, None]
        outs.append(y)
    z = F.relu(F.conv1d(torch.cat(outs, 1), sd["conv.weight"], sd["conv.bias"]))
    a = torch.softmax(F.conv1d(torch.tanh(F.conv1d(z, sd["pooling.linear1.weight"],
                                                   sd["pooling.linear1.bias"])),
                               sd["pooling.linear2.weight"], sd["pooling.linear2.bias"]), dim=2)
    mean = (a * z).sum(2)
    std = torch.sqrt(((a * z * z).sum(2) - mean ** 2).clamp(min=1e-9))
    return F.linear(bn(torch.cat([mean, std], 1), "bn"), sd["linear.weight"], sd["linear.bias"])


def make_wavlm_ecapa_checkpoint(path: Path) -> tuple[dict, object]:
    """A tiny ``wavlm_large_finetune.pth``-layout file; returns (state dict, HF WavLM)."""
    # WavLM Large's bucket settings (max_distance is not stored in the file)
    hf = _tiny_hf_wavlm(True, seed=5, buckets=320, max_distance=800)
    wavlm = hf_wavlm_to_unilm(hf.state_dict(), True)
    sd = {f"feature_extract.model.{k}": v for k, v in wavlm.items()}
    sd.update(_unispeech_head_state())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd}, path)
    return sd, hf


def test_wavlm_ecapa_checkpoint_embeds_like_the_reference_forward(tmp_path):
    from resyn_bench.metrics.speaker_models import WavLMECAPAEncoder

    sd, hf = make_wavlm_ecapa_checkpoint(tmp_path / "wavlm_large_finetune.pth")
    enc = WavLMECAPAEncoder(checkpoint=str(tmp_path / "wavlm_large_finetune.pth"))
    enc.load()
    wav = (0.3 * np.random.default_rng(1).standard_normal(24000)).astype(np.float32)
    x = torch.from_numpy(wav)[None]
    with torch.no_grad():
        states = _hf_states(hf, F.layer_norm(x, x.shape[-1:]))
        ref = _reference_unispeech_head(sd, states)[0].numpy()
    raw = enc._model.embed(wav)
    np.testing.assert_allclose(raw, ref, atol=TOL, rtol=0)
    e = enc.embed(wav)
    assert e.shape == (12,) and abs(float(np.linalg.norm(e)) - 1) < 1e-5
    np.testing.assert_allclose(e, ref / np.linalg.norm(ref), atol=1e-4)
    s = enc.settings()
    from resyn_bench.safeload import sha256_file

    assert s["checkpoint_sha256"] == sha256_file(tmp_path / "wavlm_large_finetune.pth")


def test_wavlm_ecapa_rejects_other_files(tmp_path):
    from resyn_bench.metrics.speaker_models import WavLMECAPAEncoder

    torch.save({"model": {"layer1.conv.weight": torch.zeros(2, 2, 5)}}, tmp_path / "x.pth")
    with pytest.raises(MetricError, match="not a UniSpeech"):
        WavLMECAPAEncoder(checkpoint=str(tmp_path / "x.pth")).load()


def test_missing_models_name_url_and_path(home):
    from resyn_bench import catalogue
    from resyn_bench.metrics.speaker import SpeakerMetrics

    for emb, name in (("wavlm-ecapa", "wavlm-large-sv"), ("ecapa", "spkrec-ecapa-voxceleb")):
        g = SpeakerMetrics(embedding=emb)
        with pytest.raises(MetricError) as ei:
            g.load()
        msg = str(ei.value)
        assert str(catalogue.catalogue_path(name)) in msg
        assert catalogue.get_entry(name).url in msg
        assert g.settings()["backend"] == emb
    with pytest.raises(ValueError, match="disagree"):
        SpeakerMetrics(embedding="ecapa", backend="wavlm-ecapa")
    with pytest.raises(ValueError, match="speaker backend 'ecapa'.*min_speech_s"):
        SpeakerMetrics(embedding="ecapa", min_speech_s=0.5)


def test_spk_group_uses_wavlm_ecapa_from_the_catalogue(home):
    from resyn_bench import catalogue
    from resyn_bench.audio import Audio
    from resyn_bench.metrics.speaker import SpeakerMetrics

    make_wavlm_ecapa_checkpoint(catalogue.catalogue_path("wavlm-large-sv"))
    g = SpeakerMetrics(embedding="wavlm-ecapa")
    g.load()
    rng = np.random.default_rng(2)
    ref = g.analyse_reference(Audio((0.2 * rng.standard_normal(16000)).astype(np.float32), 16000))
    assert ref["embedding"].shape == (12,)
    assert g.settings()["encoder"]["checkpoint"] == "wavlm_large_finetune.pth"


# --------------------------------------------------------------------------------------------
# SpeechBrain ECAPA-TDNN

HYPERPARAMS = """\
# layout of speechbrain/spkrec-ecapa-voxceleb hyperparams.yaml (sizes shrunk)
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
n_mels: 80

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 8
    se_channels: 8
    lin_neurons: 12

modules:
    compute_features: !ref <compute_features>
    embedding_model: !ref <embedding_model>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


@pytest.fixture
def speechbrain_modules(monkeypatch):
    """speechbrain's Fbank, ECAPA_TDNN and InputNormalization, importable without a working
    torchaudio (only speechbrain's audio I/O needs it): a stub stands in for this test only."""
    try:
        import torchaudio  # noqa: F401
    except Exception:
        stub = types.ModuleType("torchaudio")
        stub.__version__ = "0"
        stub.list_audio_backends = lambda: []
        monkeypatch.setitem(sys.modules, "torchaudio", stub)
    try:
        from speechbrain.lobes.features import Fbank
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
        from speechbrain.processing.features import InputNormalization
    except Exception as exc:  # not installed: it is not a tox dependency (it needs torchaudio)
        pytest.skip(f"speechbrain not importable: {exc}")
    return Fbank, ECAPA_TDNN, InputNormalization


def _random_sb_state(seed=4) -> dict:
    """A random state dict in the SpeechBrain ECAPA layout, built from our module (used when
    speechbrain is absent; the parity test builds it with speechbrain itself)."""
    from resyn_bench.metrics.speaker_models import _build_sb_ecapa, read_hyperparams, speechbrain_config

    net = _build_sb_ecapa(torch, speechbrain_config(read_hyperparams(_hp_file()))[0])
    _perturb(net, seed)
    return net.state_dict()


def _hp_file(folder: Path | None = None) -> Path:
    import tempfile

    folder = folder or Path(tempfile.mkdtemp(prefix="resyn-hp-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS, encoding="utf-8")
    return folder / "hyperparams.yaml"


def test_hyperparams_are_read_without_executing_them(tmp_path):
    from resyn_bench.metrics.speaker_models import read_hyperparams, speechbrain_config

    hp = read_hyperparams(_hp_file(tmp_path))
    assert hp["compute_features"] == {"__tag__": "!new:speechbrain.lobes.features.Fbank",
                                      "n_mels": 80}
    assert hp["pretrainer"]["paths"]["embedding_model"] == \
        "speechbrain/spkrec-ecapa-voxceleb/embedding_model.ckpt"
    cfg, fbank = speechbrain_config(hp)
    assert cfg["channels"] == [16, 16, 16, 16, 48] and cfg["input_size"] == 80
    assert cfg["res2net_scale"] == 8 and cfg["global_context"] is True
    assert fbank["n_mels"] == 80 and fbank["win_ms"] == 25.0
    bad = HYPERPARAMS.replace("std_norm: False", "std_norm: True")
    (tmp_path / "hyperparams.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(MetricError, match="sentence mean"):
        speechbrain_config(read_hyperparams(tmp_path / "hyperparams.yaml"))


def test_fbank_matches_speechbrain(speechbrain_modules):
    Fbank, _, _ = speechbrain_modules
    from resyn_bench.metrics.speaker_models import speechbrain_fbank

    wav = (0.1 * np.random.default_rng(5).standard_normal(16000 + 33)).astype(np.float32)
    x = torch.from_numpy(wav)
    with torch.no_grad():
        ref = Fbank(n_mels=80)(x[None])[0]
    ours = speechbrain_fbank(x, n_mels=80)
    assert ours.shape == ref.shape == (101, 80)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-5, rtol=0)


def test_ecapa_embedding_matches_speechbrain(tmp_path, speechbrain_modules):
    Fbank, ECAPA_TDNN, InputNormalization = speechbrain_modules
    from resyn_bench.metrics.speaker_models import SpeechBrainECAPAEncoder

    torch.manual_seed(0)
    sb = ECAPA_TDNN(80, channels=[16, 16, 16, 16, 48], attention_channels=8, se_channels=8,
                    lin_neurons=12).eval()
    _perturb(sb, 6)
    folder = tmp_path / "spkrec-ecapa-voxceleb"
    _hp_file(folder)
    torch.save(sb.state_dict(), folder / "embedding_model.ckpt")
    wav = (0.2 * np.random.default_rng(7).standard_normal(20000)).astype(np.float32)
    x = torch.from_numpy(wav)[None]
    with torch.no_grad():
        feats = Fbank(n_mels=80)(x)
        feats = InputNormalization(norm_type="sentence", std_norm=False)(feats, torch.ones(1))
        ref = sb(feats, torch.ones(1))[0, 0].numpy()
    enc = SpeechBrainECAPAEncoder(checkpoint=str(folder))
    enc.load()
    np.testing.assert_allclose(enc._model.embed(wav), ref, atol=TOL, rtol=0)
    np.testing.assert_allclose(enc.embed(wav), ref / np.linalg.norm(ref), atol=1e-4)


def test_ecapa_loads_the_published_layout_from_the_catalogue(home):
    from resyn_bench import catalogue
    from resyn_bench.audio import Audio
    from resyn_bench.metrics.speaker import SpeakerMetrics

    ckpt = catalogue.catalogue_path("spkrec-ecapa-voxceleb")
    _hp_file(ckpt.parent)
    torch.save(_random_sb_state(), ckpt)
    g = SpeakerMetrics(embedding="ecapa")
    g.load()
    rng = np.random.default_rng(3)
    a = g.analyse_reference(Audio((0.2 * rng.standard_normal(16000)).astype(np.float32), 16000))
    assert a["embedding"].shape == (12,) and abs(np.linalg.norm(a["embedding"]) - 1) < 1e-5
    # too short for the reflect-padded first layer: a clear error, not a crash
    with pytest.raises(MetricError, match="too short"):
        g.analyse_reference(Audio(np.full(300, 0.1, np.float32), 16000))
    # a checkpoint of other sizes than hyperparams.yaml says is refused
    sd = _random_sb_state()
    sd["fc.conv.weight"] = torch.zeros(7, 96, 1)
    torch.save(sd, ckpt)
    g.release()
    with pytest.raises(MetricError, match="fc.conv.weight"):
        g.load()


@pytest.mark.gpu
def test_embeddings_on_cuda_match_cpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from resyn_bench.metrics.speaker_models import SpeechBrainECAPAEncoder, WavLMECAPAEncoder

    make_wavlm_ecapa_checkpoint(tmp_path / "w.pth")
    folder = tmp_path / "sb"
    _hp_file(folder)
    torch.save(_random_sb_state(), folder / "embedding_model.ckpt")
    wav = (0.2 * np.random.default_rng(4).standard_normal(24000)).astype(np.float32)
    for make in (lambda d: WavLMECAPAEncoder(checkpoint=str(tmp_path / "w.pth"), device=d),
                 lambda d: SpeechBrainECAPAEncoder(checkpoint=str(folder), device=d)):
        np.testing.assert_allclose(make("cuda").embed(wav), make("cpu").embed(wav), atol=1e-3)
