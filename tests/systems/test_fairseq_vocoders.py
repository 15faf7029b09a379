"""fairseq / textlesslib CodeGenerator variants load strictly and synthesize what an independent
float64 computation of the published layout predicts (random weights):

- quantized F0 through ``f0_quant_embed`` (config ``f0_quant_num_bin`` > 0, no F0 VQ-VAE);
- raw F0 as one input channel (``model_in_dim = embedding_dim x parts + 1``);
- the Expresso vocoders' speaker + style LUTs (``multispkr`` / ``multistyle``).

Layout facts (fairseq ``fairseq/models/text_to_speech/codehifigan.py``, textlesslib
``textless/vocoders/hifigan/generator.py``): conditioning channels are units | F0 | speaker |
style; a shorter sequence is repeated frame by frame to the longer one's length; speaker and
style vectors are repeated over time.
"""
from __future__ import annotations

import json

import pytest
import torch
from test_generator import reference_decoder, spec_shapes

from resyn_bench.systems.vocoder.checkpoint import load_generator
from resyn_bench.systems.vocoder.generator import build_generator, f0_input_kind

BODY = dict(upsample_rates=[5, 2, 2], upsample_kernel_sizes=[11, 4, 4],
            upsample_initial_channel=32, resblock="1", resblock_kernel_sizes=[3, 7, 11],
            resblock_dilation_sizes=[[1, 3, 5]] * 3, code_hop_size=20)
E = 8
QUANT_F0 = dict(BODY, num_embeddings=12, embedding_dim=E, model_in_dim=3 * E, f0=True,
                f0_quant_num_bin=32, multispkr=True, num_speakers=4)
RAW_F0 = dict(BODY, num_embeddings=12, embedding_dim=E, model_in_dim=E + 1, f0=True)
RAW_F0_SPK = dict(RAW_F0, model_in_dim=2 * E + 1, multispkr=True, num_speakers=3)
EXPRESSO = dict(BODY, num_embeddings=12, embedding_dim=E, model_in_dim=3 * E,
                multispkr="from_input_file", multistyle="from_input_file",
                num_speakers=6, num_styles=5)


def published_shapes(cfg: dict) -> dict[str, tuple]:
    """Keys/shapes of the published layout: the HiFi-GAN body + dict + spkr from the shared
    spec helper, with the F0 table named and sized as fairseq does, and the style LUT."""
    out = {k: v for k, v in spec_shapes({**cfg, "f0": False}).items()}
    if int(cfg.get("f0_quant_num_bin") or 0) > 0:
        out["f0_quant_embed.weight"] = (cfg["f0_quant_num_bin"], cfg["embedding_dim"])
    if cfg.get("multistyle"):
        out["style.weight"] = (cfg.get("num_styles", 100), cfg["embedding_dim"])
    return out


def published_state_dict(cfg: dict, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in published_shapes(cfg).items():
        if k.endswith("weight_g"):
            sd[k] = 0.5 + 0.5 * torch.rand(shape, generator=g)
        elif k.endswith("weight_v"):
            sd[k] = torch.randn(shape, generator=g)
        else:
            sd[k] = 0.3 * torch.randn(shape, generator=g)
    return sd


def _repeat_to(feat: torch.Tensor, length: int) -> torch.Tensor:
    factor = length // feat.shape[-1]
    assert factor * feat.shape[-1] == length
    return feat[..., torch.arange(length) // factor]


def published_forward(sd, cfg, code, f0=None, spkr=None, style=None) -> torch.Tensor:
    """The published CodeGenerator forward in float64, from the raw state dict."""
    sd = {k: v.double() for k, v in sd.items()}
    x = sd["dict.weight"][code].transpose(1, 2)
    if cfg.get("f0"):
        if "f0_quant_embed.weight" in sd:
            f = sd["f0_quant_embed.weight"][f0.long()].transpose(1, 2)
        else:
            f = f0.double().unsqueeze(1)
        if x.shape[-1] < f.shape[-1]:
            x = _repeat_to(x, f.shape[-1])
        elif x.shape[-1] > f.shape[-1]:
            f = _repeat_to(f, x.shape[-1])
        x = torch.cat([x, f], dim=1)
    for key, ids in (("spkr.weight", spkr), ("style.weight", style)):
        if ids is not None:
            v = sd[key][ids.view(-1)]
            x = torch.cat([x, v[:, :, None].expand(-1, -1, x.shape[-1])], dim=1)
    return reference_decoder(sd, cfg, x)


def _write(folder, cfg, sd, name="g_00500000"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save({"generator": sd}, folder / name)
    return folder / name


def test_quantized_f0_table_is_f0_quant_embed(tmp_path):
    assert f0_input_kind(QUANT_F0) == "fairseq_codes"
    sd = published_state_dict(QUANT_F0, seed=1)
    model = load_generator(_write(tmp_path / "q", QUANT_F0, sd)).model
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == published_shapes(QUANT_F0)
    g = torch.Generator().manual_seed(2)
    code = torch.randint(0, 12, (2, 6), generator=g)
    f0 = torch.randint(0, 32, (2, 12), generator=g)      # F0 codes at twice the unit rate
    spk = torch.tensor([[1], [3]])
    with torch.no_grad():
        y = model(code, f0_codes=f0, spkr=spk)
    ref = published_forward(sd, QUANT_F0, code, f0, spkr=spk)
    assert y.shape == ref.shape == (2, 1, 12 * 20)
    assert torch.allclose(y.double(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cfg", [RAW_F0, RAW_F0_SPK], ids=["raw", "raw+speaker"])
def test_raw_f0_is_one_channel(tmp_path, cfg):
    assert f0_input_kind(cfg) == "raw"
    sd = published_state_dict(cfg, seed=3)
    model = load_generator(_write(tmp_path / "raw", cfg, sd)).model
    assert model.conv_pre.weight_v.shape[1] == cfg["model_in_dim"]
    assert not any(k.startswith(("f0_dict", "f0_quant_embed")) for k in model.state_dict())
    g = torch.Generator().manual_seed(4)
    code = torch.randint(0, 12, (1, 8), generator=g)
    f0 = torch.randn(1, 4, generator=g)                  # F0 at half the unit rate
    spk = torch.tensor([[2]]) if cfg.get("multispkr") else None
    with torch.no_grad():
        y = model(code, f0=f0, spkr=spk)
    ref = published_forward(sd, cfg, code, f0, spkr=spk)
    assert torch.allclose(y.double(), ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="raw-F0"):
        model(code, f0_codes=torch.zeros(1, 4, dtype=torch.long))


def test_expresso_speaker_and_style(tmp_path):
    sd = published_state_dict(EXPRESSO, seed=5)
    model = load_generator(_write(tmp_path / "ex", EXPRESSO, sd, name="generator.pt")).model
    code = torch.randint(0, 12, (1, 10), generator=torch.Generator().manual_seed(6))
    spk, style = torch.tensor([[4]]), torch.tensor([[2]])
    with torch.no_grad():
        y = model(code, spkr=spk, style=style)
        other = model(code, spkr=spk, style=torch.tensor([[0]]))
    ref = published_forward(sd, EXPRESSO, code, spkr=spk, style=style)
    assert torch.allclose(y.double(), ref, atol=1e-5, rtol=0)
    assert not torch.allclose(y, other)                  # the style input is used
    with pytest.raises(ValueError, match="style"):
        model(code, spkr=spk)
    with pytest.raises(ValueError, match="out of range"):
        model(code, spkr=spk, style=torch.tensor([[5]]))


def test_strict_keys(tmp_path):
    # the speech-resynthesis table name in a fairseq-layout file: refused, naming the keys
    sd = published_state_dict(QUANT_F0, seed=7)
    sd["f0_dict.weight"] = sd.pop("f0_quant_embed.weight")
    with pytest.raises(ValueError, match="f0_quant_embed.weight"):
        load_generator(_write(tmp_path / "a", QUANT_F0, sd))
    # a raw-F0 file with a stray table
    sd = published_state_dict(RAW_F0, seed=8)
    sd["f0_quant_embed.weight"] = torch.zeros(32, E)
    with pytest.raises(ValueError, match="unexpected keys"):
        load_generator(_write(tmp_path / "b", RAW_F0, sd))
    # an Expresso file without its style table
    sd = published_state_dict(EXPRESSO, seed=9)
    del sd["style.weight"]
    with pytest.raises(ValueError, match="style.weight"):
        load_generator(_write(tmp_path / "c", EXPRESSO, sd))


def test_model_in_dim_mismatch_names_the_parts():
    with pytest.raises(ValueError, match="style"):
        build_generator(dict(EXPRESSO, model_in_dim=2 * E))
