"""UTMOS22 strong (utmos group): a random checkpoint in SpeechMOS's layout, scored against a
reference built from transformers' Wav2Vec2Model + torch's LSTM/Linear; errors; registry."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from resyn_bench.audio import Audio  # noqa: E402
from resyn_bench.metrics.base import MetricError  # noqa: E402


@dataclass
class Utt:
    utt_id: str = "u"
    text: str | None = None
    speaker: str = "s"


def _hf_to_fairseq(sd: dict) -> dict:
    """transformers Wav2Vec2Model (group norm, post-LN) names -> fairseq names, written here."""
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if k.startswith("feature_extractor.conv_layers."):
            out[f"feature_extractor.conv_layers.{p[2]}.{'0' if p[3] == 'conv' else '2'}.{p[4]}"] = v
        elif k.startswith("feature_projection.layer_norm."):
            out[f"layer_norm.{p[-1]}"] = v
        elif k.startswith("feature_projection.projection."):
            out[f"post_extract_proj.{p[-1]}"] = v
        elif k.endswith("parametrizations.weight.original0"):
            out["encoder.pos_conv.0.weight_g"] = v
        elif k.endswith("parametrizations.weight.original1"):
            out["encoder.pos_conv.0.weight_v"] = v
        elif k == "encoder.pos_conv_embed.conv.bias":
            out["encoder.pos_conv.0.bias"] = v
        elif k.startswith("encoder.layer_norm."):
            out[k] = v
        elif k.startswith("encoder.layers."):
            rest = (".".join(p[3:]).replace("attention.", "self_attn.")
                    .replace("feed_forward.intermediate_dense", "fc1")
                    .replace("feed_forward.output_dense", "fc2"))
            if rest.startswith("layer_norm."):
                rest = "self_attn_layer_norm." + p[-1]
            out[f"encoder.layers.{p[2]}.{rest}"] = v
        elif k == "masked_spec_embed":
            out["mask_emb"] = v
        else:
            raise AssertionError(k)
    return out


def make_utmos_checkpoint(path, seed: int = 0):
    """A tiny random UTMOS22-strong state dict; returns a reference scoring function."""
    torch.manual_seed(seed)
    cfg = transformers.Wav2Vec2Config(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="group",
        do_stable_layer_norm=False, conv_bias=False, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
    ssl = transformers.Wav2Vec2Model(cfg).eval()
    with torch.no_grad():
        for p in ssl.parameters():
            p.add_(0.2 * torch.randn_like(p))
    lstm = torch.nn.LSTM(128 + 8 + 8, 16, batch_first=True, bidirectional=True)
    proj = torch.nn.Sequential(torch.nn.Linear(32, 24), torch.nn.ReLU(), torch.nn.Linear(24, 1))
    dom, judge = torch.randn(1, 8), torch.randn(1, 8)
    sd = {f"wav2vec2.{k}": v for k, v in _hf_to_fairseq(ssl.state_dict()).items()}
    sd.update({f"blstm.{k}": v for k, v in lstm.state_dict().items()})
    sd.update({f"projection.{k}": v for k, v in proj.state_dict().items()})
    sd["domain_emb"], sd["judge_emb"] = dom, judge
    torch.save(sd, path)

    def reference(wav: np.ndarray) -> float:
        with torch.no_grad():
            h = ssl(torch.from_numpy(wav)[None]).last_hidden_state
            t = h.shape[1]
            cat = torch.cat([h, dom[:, None].expand(1, t, -1), judge[:, None].expand(1, t, -1)], 2)
            return float(proj(lstm(cat)[0]).mean() * 2 + 3)

    return reference


def test_utmos_matches_reference_forward(tmp_path):
    from resyn_bench.metrics.utmos import UTMOSMetrics

    reference = make_utmos_checkpoint(tmp_path / "utmos.pt")
    g = UTMOSMetrics(checkpoint=str(tmp_path / "utmos.pt"), device="cpu")
    g.load()
    for n in (16000, 16000 + 320):  # odd and even frame counts (SpeechMOS pads odd ones)
        wav = (0.2 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
        sc = g.score({}, Audio(wav, 16000), Utt())
        assert sc.values["utmos.mos"] == pytest.approx(reference(wav), abs=1e-4)
    from resyn_bench.safeload import sha256_file

    assert g.settings()["checkpoint_sha256"] == sha256_file(tmp_path / "utmos.pt")
    with pytest.raises(MetricError, match="shorter than one frame"):
        g.predict(np.zeros(100, np.float32))
    with pytest.raises(MetricError, match="expected 16000 Hz"):
        g.score({}, Audio(np.zeros(8000, np.float32), 8000), Utt())


def test_missing_checkpoint_names_url_and_path(home):
    from resyn_bench import catalogue
    from resyn_bench.registry import make_metric

    g = make_metric("utmos")
    with pytest.raises(MetricError) as ei:
        g.load()
    assert str(catalogue.catalogue_path("utmos22-strong")) in str(ei.value)
    assert "releases/download/v1.0.0/utmos22_strong_step7459_v1.pt" in str(ei.value)
    assert g.settings()["checkpoint_sha256"] is None


def test_catalogue_copy_loads_and_other_files_are_refused(home, tmp_path):
    from resyn_bench import catalogue
    from resyn_bench.metrics.utmos import UTMOSMetrics

    path = catalogue.catalogue_path("utmos22-strong")
    path.parent.mkdir(parents=True)
    reference = make_utmos_checkpoint(path, seed=1)
    g = UTMOSMetrics(device="cpu")
    wav = (0.1 * np.random.default_rng(9).standard_normal(12000)).astype(np.float32)
    assert g.predict(wav) == pytest.approx(reference(wav), abs=1e-4)
    torch.save({"wav2vec2.x": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(MetricError, match="not a UTMOS22"):
        UTMOSMetrics(checkpoint=str(tmp_path / "bad.pt")).load()


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from resyn_bench.metrics.utmos import UTMOSMetrics

    make_utmos_checkpoint(tmp_path / "u.pt")
    wav = (0.2 * np.random.default_rng(3).standard_normal(16000)).astype(np.float32)
    cpu = UTMOSMetrics(checkpoint=str(tmp_path / "u.pt"), device="cpu").predict(wav)
    gpu = UTMOSMetrics(checkpoint=str(tmp_path / "u.pt"), device="cuda").predict(wav)
    assert gpu == pytest.approx(cpu, abs=1e-3)


def test_newer_weight_norm_names_load(tmp_path):
    """A copy re-saved with torch's parametrized weight norm names loads the same."""
    from resyn_bench.metrics.utmos import UTMOSMetrics

    reference = make_utmos_checkpoint(tmp_path / "u.pt", seed=2)
    sd = torch.load(tmp_path / "u.pt", weights_only=True)
    sd = {k.replace("weight_g", "parametrizations.weight.original0")
           .replace("weight_v", "parametrizations.weight.original1"): v for k, v in sd.items()}
    assert "wav2vec2.encoder.pos_conv.0.parametrizations.weight.original0" in sd
    torch.save(sd, tmp_path / "new.pt")
    wav = (0.1 * np.random.default_rng(1).standard_normal(9000)).astype(np.float32)
    g = UTMOSMetrics(checkpoint=str(tmp_path / "new.pt"), device="cpu")
    assert g.predict(wav) == pytest.approx(reference(wav), abs=1e-4)
