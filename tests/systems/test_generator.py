"""Unit HiFi-GAN generator: reference keys/shapes, forward pass against an independent computation
written here with torch.nn.functional from the raw state dict, alignment, speaker variants,
duration predictor, inference preparation.

The helpers ``spec_state_dict`` and ``reference_forward`` are also used by
tests/systems/test_checkpoint_layout.py; they know nothing of the model classes (keys and shapes come
from docs/reference.md §8.2/§8.4).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from resyn_bench.systems.vocoder.generator import (
    CodeGenerator,
    DurationCodeGenerator,
    build_generator,
    deduplicate_units,
    prepare_for_inference,
    repeat_frames,
)

# a small config with the reference structure: 3 upsampling stages, 3 ResBlock1 per stage
SMALL = dict(num_embeddings=12, embedding_dim=8, model_in_dim=24, upsample_rates=[5, 2, 2],
             upsample_kernel_sizes=[11, 4, 4], upsample_initial_channel=32, resblock="1",
             resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
             code_hop_size=20, f0=True, multispkr="_", num_speakers=5)
HOP = 20

HUBERT_REF = dict(num_embeddings=100, embedding_dim=128, model_in_dim=384,
                  upsample_rates=[5, 4, 4, 2, 2], upsample_kernel_sizes=[11, 8, 8, 4, 4],
                  upsample_initial_channel=512, resblock="1", resblock_kernel_sizes=[3, 7, 11],
                  resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], code_hop_size=320,
                  f0=True, multispkr="single",
                  f0_quantizer={"f0_vq_params": {"l_bins": 20, "emb_width": 128, "mu": 0.99, "levels": 1},
                                "f0_encoder_params": {"input_emb_width": 1, "output_emb_width": 128,
                                                      "levels": 1, "downs_t": [4], "strides_t": [2],
                                                      "width": 32, "depth": 4, "m_conv": 1.0,
                                                      "dilation_growth_rate": 3},
                                "f0_decoder_params": {"input_emb_width": 1, "output_emb_width": 128,
                                                      "levels": 1, "downs_t": [4], "strides_t": [2],
                                                      "width": 32, "depth": 4, "m_conv": 1.0,
                                                      "dilation_growth_rate": 3}})
CPC_REF = dict(HUBERT_REF, upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[11, 8, 4, 4, 4],
               code_hop_size=160)

SMALL_Q = {"f0_vq_params": {"l_bins": 20, "emb_width": 8, "mu": 0.99, "levels": 1},
           "f0_encoder_params": {"input_emb_width": 1, "output_emb_width": 8, "levels": 1,
                                 "downs_t": [4], "strides_t": [2], "width": 8, "depth": 2,
                                 "m_conv": 1.0, "dilation_growth_rate": 3},
           "f0_decoder_params": {"input_emb_width": 1, "output_emb_width": 8, "levels": 1,
                                 "downs_t": [4], "strides_t": [2], "width": 8, "depth": 2,
                                 "m_conv": 1.0, "dilation_growth_rate": 3}}


def _quantizer_available() -> bool:
    try:
        import resyn_bench.systems.vocoder.f0_quantizer  # noqa: F401
    except ImportError:
        return False
    return True


needs_quantizer = pytest.mark.skipif(not _quantizer_available(), reason="F0 quantizer module absent")


# ------------------------------------------------------------------ spec-side helpers

def spec_shapes(cfg: dict) -> dict[str, tuple]:
    """Generator keys and shapes per docs/reference.md §8.2 (without ``quantizer.*``)."""
    e, ch0 = cfg["embedding_dim"], cfg["upsample_initial_channel"]
    out: dict[str, tuple] = {}

    def wn(name, v_shape):
        # legacy weight_norm, dim 0: g has one entry per row of v (per *input* channel for
        # ConvTranspose1d, whose weight is [in, out, k]); bias has one per output channel
        out[f"{name}.bias"] = (v_shape[1] if name.startswith("ups.") else v_shape[0],)
        out[f"{name}.weight_g"] = (v_shape[0], 1, 1)
        out[f"{name}.weight_v"] = tuple(v_shape)

    wn("conv_pre", (ch0, cfg["model_in_dim"], 7))
    nk = len(cfg["resblock_kernel_sizes"])
    for i, k in enumerate(cfg["upsample_kernel_sizes"]):
        wn(f"ups.{i}", (ch0 // 2 ** i, ch0 // 2 ** (i + 1), k))
    for i in range(len(cfg["upsample_rates"])):
        ch = ch0 // 2 ** (i + 1)
        for j, (k, dil) in enumerate(zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"], strict=True)):
            for m in range(len(dil)):
                if str(cfg.get("resblock", "1")) == "2":  # HiFi-GAN V2/V3 block: one conv per dilation
                    wn(f"resblocks.{i * nk + j}.convs.{m}", (ch, ch, k))
                    continue
                wn(f"resblocks.{i * nk + j}.convs1.{m}", (ch, ch, k))
                wn(f"resblocks.{i * nk + j}.convs2.{m}", (ch, ch, k))
    wn("conv_post", (1, ch0 // 2 ** len(cfg["upsample_rates"]), 7))
    out["dict.weight"] = (cfg["num_embeddings"], e)
    if cfg.get("f0"):
        out["f0_dict.weight"] = (20, e)
    if cfg.get("speaker_embedding") == "dvector":
        out["spkr.weight"] = (e, cfg.get("dvector_dim", 256))
        out["spkr.bias"] = (e,)
    elif cfg.get("multispkr"):
        out["spkr.weight"] = (cfg.get("num_speakers", 200), e)
    if cfg.get("dur_predictor_params"):
        p = cfg["dur_predictor_params"]
        h, k, d = p["var_pred_hidden_dim"], p["var_pred_kernel_size"], p["encoder_embed_dim"]
        out.update({"dur_predictor.conv1.0.weight": (h, d, k), "dur_predictor.conv1.0.bias": (h,),
                    "dur_predictor.ln1.weight": (h,), "dur_predictor.ln1.bias": (h,),
                    "dur_predictor.conv2.0.weight": (h, h, k), "dur_predictor.conv2.0.bias": (h,),
                    "dur_predictor.ln2.weight": (h,), "dur_predictor.ln2.bias": (h,),
                    "dur_predictor.proj.weight": (1, h), "dur_predictor.proj.bias": (1,)})
    return out


def spec_state_dict(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the spec's keys/shapes, scaled so the output is not saturated."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in spec_shapes(cfg).items():
        if k.endswith("weight_g"):
            # per-row norms around 0.5-1: keeps the signal level roughly constant through the stack
            t = 0.5 + 0.5 * torch.rand(shape, generator=gen)
        elif k.endswith("weight_v"):
            t = torch.randn(shape, generator=gen)
        elif ".ln" in k and k.endswith("weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            t = 0.3 * torch.randn(shape, generator=gen)
        sd[k] = t
    return sd


def _wn(sd, name):
    g, v = sd[f"{name}.weight_g"], sd[f"{name}.weight_v"]
    norm = v.pow(2).sum(dim=tuple(range(1, v.dim())), keepdim=True).sqrt()
    return g * v / norm


def reference_decoder(sd: dict, cfg: dict, x: torch.Tensor) -> torch.Tensor:
    """HiFi-GAN V1 body from the raw (double) state dict with torch.nn.functional only."""
    x = F.conv1d(x, _wn(sd, "conv_pre"), sd["conv_pre.bias"], padding=3)
    kernels, dils = cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"]
    nk = len(kernels)
    for i, (u, k) in enumerate(zip(cfg["upsample_rates"], cfg["upsample_kernel_sizes"], strict=True)):
        x = F.leaky_relu(x, 0.1)
        x = F.conv_transpose1d(x, _wn(sd, f"ups.{i}"), sd[f"ups.{i}.bias"], stride=u, padding=(k - u) // 2)
        total = torch.zeros_like(x)
        for j, (kk, dil) in enumerate(zip(kernels, dils, strict=True)):
            name = f"resblocks.{i * nk + j}"
            y = x
            for m, d in enumerate(dil):
                if str(cfg.get("resblock", "1")) == "2":
                    y = y + F.conv1d(F.leaky_relu(y, 0.1), _wn(sd, f"{name}.convs.{m}"), sd[f"{name}.convs.{m}.bias"],
                                     padding=d * (kk - 1) // 2, dilation=d)
                    continue
                t = F.conv1d(F.leaky_relu(y, 0.1), _wn(sd, f"{name}.convs1.{m}"), sd[f"{name}.convs1.{m}.bias"],
                             padding=d * (kk - 1) // 2, dilation=d)
                t = F.conv1d(F.leaky_relu(t, 0.1), _wn(sd, f"{name}.convs2.{m}"), sd[f"{name}.convs2.{m}.bias"],
                             padding=(kk - 1) // 2)
                y = y + t
            total = total + y
        x = total / nk
    x = F.leaky_relu(x, 0.01)
    x = F.conv1d(x, _wn(sd, "conv_post"), sd["conv_post.bias"], padding=3)
    return torch.tanh(x)


def _stretch(feat: torch.Tensor, length: int) -> torch.Tensor:
    # index arithmetic, not repeat_interleave: frame t of the output reads frame t // factor
    factor = length // feat.shape[-1]
    assert factor * feat.shape[-1] == length
    return feat[..., torch.arange(length) // factor]


def reference_forward(sd: dict, cfg: dict, code, f0_codes=None, spkr=None, dvector=None, dur=None):
    """Independent CodeGenerator forward in float64."""
    sd = {k: v.double() for k, v in sd.items()}
    x = sd["dict.weight"][code].transpose(1, 2)  # [B, E, T]
    if dur is not None:
        idx = torch.cat([torch.full((int(n),), t) for t, n in enumerate(dur.view(-1))])
        x = x[..., idx]
    if f0_codes is not None:
        f = sd["f0_dict.weight"][f0_codes].transpose(1, 2)
        if f.shape[-1] > x.shape[-1]:
            x = _stretch(x, f.shape[-1])
        else:
            f = _stretch(f, x.shape[-1])
        x = torch.cat([x, f], dim=1)
    if spkr is not None:
        s = sd["spkr.weight"][spkr.view(-1)]
        x = torch.cat([x, s[:, :, None].expand(-1, -1, x.shape[-1])], dim=1)
    if dvector is not None:
        s = dvector.double() @ sd["spkr.weight"].T + sd["spkr.bias"]
        x = torch.cat([x, s[:, :, None].expand(-1, -1, x.shape[-1])], dim=1)
    return reference_decoder(sd, cfg, x)


def reference_log_durations(sd: dict, cfg: dict, code: torch.Tensor) -> torch.Tensor:
    """fairseq VariancePredictor (eval) from the raw state dict: [B, T]."""
    sd = {k: v.double() for k, v in sd.items()}
    k = cfg["dur_predictor_params"]["var_pred_kernel_size"]
    x = sd["dict.weight"][code]  # [B, T, C]
    for n in (1, 2):
        x = F.relu(F.conv1d(x.transpose(1, 2), sd[f"dur_predictor.conv{n}.0.weight"],
                            sd[f"dur_predictor.conv{n}.0.bias"], padding=(k - 1) // 2)).transpose(1, 2)
        x = F.layer_norm(x, x.shape[-1:], sd[f"dur_predictor.ln{n}.weight"], sd[f"dur_predictor.ln{n}.bias"])
    return (x @ sd["dur_predictor.proj.weight"].T + sd["dur_predictor.proj.bias"]).squeeze(-1)


def load_spec_weights(model, sd):
    model.load_state_dict(sd, strict=True)
    return model.eval()


# ------------------------------------------------------------------ keys and shapes

@pytest.mark.parametrize("cfg", [HUBERT_REF, CPC_REF], ids=["hubert100", "cpc100"])
def test_reference_size_state_dict_matches_spec(cfg):
    if not _quantizer_available():
        cfg = {k: v for k, v in cfg.items() if k != "f0_quantizer"}
    model = CodeGenerator(cfg)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = spec_shapes(cfg)
    gen_keys = {k: s for k, s in got.items() if not k.startswith("quantizer.")}
    assert gen_keys == want
    # a few rows of the docs/reference.md §8.2 table verbatim
    assert got["conv_pre.weight_v"] == (512, 384, 7) and got["conv_pre.weight_g"] == (512, 1, 1)
    assert got["ups.0.weight_g"] == (512, 1, 1) and got["ups.0.weight_v"] == (512, 256, 11)
    assert got["ups.2.weight_v"] == ((128, 64, 8) if cfg["code_hop_size"] == 320 else (128, 64, 4))
    assert got["resblocks.14.convs2.2.weight_v"] == (16, 16, 11)
    assert got["conv_post.weight_v"] == (1, 16, 7) and got["spkr.weight"] == (200, 128)
    assert got["f0_dict.weight"] == (20, 128) and got["dict.weight"] == (100, 128)
    if "f0_quantizer" in cfg:
        q = {k for k in got if k.startswith("quantizer.")}
        assert "quantizer.vq.level_blocks.0.k" in q and got["quantizer.vq.level_blocks.0.k"] == (20, 128)
        assert got["quantizer.encoder.level_blocks.0.model.0.0.weight"] == (32, 1, 4)
        assert got["quantizer.decoder.out.weight"] == (1, 128, 3)
    assert model.hop_length == cfg["code_hop_size"]


def test_init_is_normal_001_for_ups_resblocks_post():
    torch.manual_seed(0)
    m = CodeGenerator(dict(SMALL, upsample_initial_channel=64))
    w = _wn(m.state_dict(), "resblocks.0.convs1.0")
    assert abs(float(w.std()) - 0.01) < 0.002
    assert abs(float(_wn(m.state_dict(), "ups.0").std()) - 0.01) < 0.002
    # conv_pre keeps PyTorch's default init (much larger than 0.01 for fan-in 24*7)
    assert float(_wn(m.state_dict(), "conv_pre").std()) > 0.03
    m2 = CodeGenerator(dict(SMALL, upsample_initial_channel=64, weight_init="torch_default"))
    assert float(_wn(m2.state_dict(), "resblocks.0.convs1.0").std()) > 0.03


# ------------------------------------------------------------------ forward parity

def test_forward_matches_independent_computation_lut_speaker():
    sd = spec_state_dict(SMALL, seed=1)
    model = load_spec_weights(CodeGenerator(SMALL), sd)
    g = torch.Generator().manual_seed(2)
    code = torch.randint(0, 12, (2, 16), generator=g)
    f0_codes = torch.randint(0, 20, (2, 4), generator=g)
    spkr = torch.tensor([[3], [1]])
    with torch.no_grad():
        y = model(code, f0_codes=f0_codes, spkr=spkr)
    ref = reference_forward(sd, SMALL, code, f0_codes, spkr=spkr)
    assert y.shape == (2, 1, 16 * HOP) and y.dtype == torch.float32
    assert 0.02 < float(ref.std()) < 0.9, "test weights should not saturate tanh"
    assert torch.allclose(y.double(), ref, atol=1e-5, rtol=0)
    # the speaker matters: another id changes the waveform
    with torch.no_grad():
        y2 = model(code, f0_codes=f0_codes, spkr=torch.tensor([[0], [1]]))
    assert (y2[0] - y[0]).abs().max() > 1e-3 and torch.allclose(y2[1], y[1])


def test_dvector_variant_matches_independent_computation():
    cfg = dict(SMALL, speaker_embedding="dvector", dvector_dim=6)
    model = CodeGenerator(cfg)
    assert tuple(model.spkr.weight.shape) == (8, 6) and isinstance(model.spkr, torch.nn.Linear)
    sd = spec_state_dict(cfg, seed=3)
    load_spec_weights(model, sd)
    code = torch.randint(0, 12, (2, 8))
    f0_codes = torch.randint(0, 20, (2, 2))
    dvec = torch.randn(2, 6)
    with torch.no_grad():
        y = model(code, f0_codes=f0_codes, dvector=dvec)
    assert torch.allclose(y.double(), reference_forward(sd, cfg, code, f0_codes, dvector=dvec), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="dvector"):
        model(code, f0_codes=f0_codes)
    with pytest.raises(ValueError, match="not spkr"):
        model(code, f0_codes=f0_codes, spkr=torch.tensor([[0], [0]]), dvector=dvec)
    with pytest.raises(ValueError, match="6"):
        model(code, f0_codes=f0_codes, dvector=torch.randn(2, 5))


def test_fairseq_embedder_config_gives_linear_speaker_projection():
    cfg = dict(SMALL, embedder_params={"x": 1}, embedder_dim=256)
    m = CodeGenerator(cfg)
    assert tuple(m.spkr.weight.shape) == (8, 256) and tuple(m.spkr.bias.shape) == (8,)


def test_units_only_and_units_longer_or_shorter_than_f0_codes():
    cfg = dict(SMALL, f0=False, multispkr=None, model_in_dim=8)
    sd = spec_state_dict(cfg, seed=4)
    model = load_spec_weights(CodeGenerator(cfg), sd)
    code = torch.randint(0, 12, (1, 10))
    with torch.no_grad():
        y = model(code)
    assert y.shape == (1, 1, 10 * HOP)
    assert torch.allclose(y.double(), reference_forward(sd, cfg, code), atol=1e-5, rtol=0)

    # units at a lower rate than the F0 codes: the unit sequence is repeated instead
    sd = spec_state_dict(SMALL, seed=5)
    model = load_spec_weights(CodeGenerator(SMALL), sd)
    code, f0c, spk = torch.randint(0, 12, (1, 3)), torch.randint(0, 20, (1, 6)), torch.tensor([[2]])
    with torch.no_grad():
        y = model(code, f0_codes=f0c, spkr=spk)
    assert y.shape == (1, 1, 6 * HOP)
    assert torch.allclose(y.double(), reference_forward(sd, SMALL, code, f0c, spkr=spk), atol=1e-5, rtol=0)


@pytest.mark.parametrize("t_c", [4, 8, 20])
def test_output_length_is_units_times_hop(t_c):
    model = CodeGenerator(SMALL).eval()
    with torch.no_grad():
        y = model(torch.zeros(1, t_c, dtype=torch.long), f0_codes=torch.zeros(1, t_c // 4, dtype=torch.long),
                  spkr=torch.tensor([[0]]))
    assert y.shape == (1, 1, t_c * HOP)


def test_length_mismatch_and_input_errors_are_clear():
    model = CodeGenerator(SMALL).eval()
    code = torch.zeros(1, 10, dtype=torch.long)
    with pytest.raises(ValueError, match=r"F0-code sequence \(3 frames\).*unit sequence \(10 frames\).*1280"):
        model(code, f0_codes=torch.zeros(1, 3, dtype=torch.long), spkr=torch.tensor([[0]]))
    with pytest.raises(ValueError, match="pass f0="):
        model(code, spkr=torch.tensor([[0]]))
    with pytest.raises(ValueError, match="spkr"):
        model(code, f0_codes=torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        model(code, f0_codes=torch.zeros(1, 5, dtype=torch.long), spkr=torch.tensor([[5]]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 10), f0_codes=torch.zeros(1, 5, dtype=torch.long), spkr=torch.tensor([[0]]))
    single = CodeGenerator(dict(SMALL, f0=False, multispkr=None, model_in_dim=8))
    with pytest.raises(ValueError, match="no speaker input"):
        single(code, spkr=torch.tensor([[0]]))
    with pytest.raises(ValueError, match="no F0 input"):
        single(code, f0_codes=torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="model_in_dim is 30 but the conditioning has 24"):
        CodeGenerator(dict(SMALL, model_in_dim=30))
    with pytest.raises(KeyError, match="upsample_rates"):
        CodeGenerator({k: v for k, v in SMALL.items() if k != "upsample_rates"})


def test_repeat_frames_and_deduplicate():
    x = torch.arange(6.0).view(1, 2, 3)
    assert repeat_frames(x, 6).tolist() == [[[0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5]]]
    with pytest.raises(ValueError, match="integer multiple"):
        repeat_frames(x, 7)
    units = torch.tensor([5, 5, 5, 2, 7, 7, 5])
    u, d = deduplicate_units(units)
    assert u.tolist() == [5, 2, 7, 5] and d.tolist() == [3, 1, 2, 1]
    assert torch.equal(u.repeat_interleave(d), units)


# ------------------------------------------------------------------ inference preparation

RB2 = dict(SMALL, resblock="2", resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 2], [2, 6]])


@pytest.mark.parametrize("cfg", [SMALL, RB2], ids=["resblock1", "resblock2"])
def test_prepare_for_inference_equivalent_and_folds_weight_norm(cfg):
    sd = spec_state_dict(cfg, seed=6)
    model = load_spec_weights(CodeGenerator(cfg), sd)
    model.train()
    code, f0c, spk = torch.randint(0, 12, (2, 12)), torch.randint(0, 20, (2, 3)), torch.tensor([[1], [4]])
    naive = model(code, f0_codes=f0c, spkr=spk)
    assert naive.requires_grad
    fast = prepare_for_inference(copy.deepcopy(model))
    keys = fast.state_dict().keys()
    assert "conv_pre.weight" in keys and not any(k.endswith("weight_g") for k in keys)
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    y = fast(code, f0_codes=f0c, spkr=spk)
    assert not y.requires_grad and y.is_contiguous() and y.shape == naive.shape
    assert torch.allclose(y, naive.detach(), atol=1e-6, rtol=0)
    assert torch.allclose(y.double(), reference_forward(sd, cfg, code, f0c, spkr=spk), atol=1e-5, rtol=0)
    # the folded weight equals g * v / ||v||
    assert torch.allclose(fast.ups[1].weight, _wn(sd, "ups.1"), atol=1e-6)
    # the unprepared model still trains: its autograd graph is intact (no in-place clobbering)
    naive.sum().backward()
    assert model.conv_pre.weight_g.grad is not None and model.dict.weight.grad is not None


# ------------------------------------------------------------------ F0 quantizer path

@needs_quantizer
def test_f0_path_through_frozen_quantizer():
    cfg = dict(SMALL, f0_quantizer=SMALL_Q)
    torch.manual_seed(0)
    model = CodeGenerator(cfg).eval()
    assert any(k.startswith("quantizer.encoder.") for k in model.state_dict())
    f0 = torch.randn(2, 1, 64)  # 64 F0 frames -> 4 codes -> units at 4x
    code = torch.randint(0, 12, (2, 16))
    spk = torch.tensor([[0], [1]])
    idx = model.quantizer.encode_indices(f0)
    assert idx.shape == (2, 4)
    with torch.no_grad():
        y_f0 = model(code, f0=f0, spkr=spk)
        y_codes = model(code, f0_codes=idx, spkr=spk)
    assert torch.equal(y_f0, y_codes)
    ref = reference_forward(model.state_dict(), cfg, code, idx, spkr=spk)
    assert torch.allclose(y_f0.double(), ref, atol=1e-5, rtol=0)
    # the quantizer stays frozen: eval even in train mode, no trainable parameters
    model.train()
    assert not model.quantizer.training
    assert not any(p.requires_grad for p in model.quantizer.parameters())
    with pytest.raises(ValueError, match="not both"):
        model(code, f0=f0, f0_codes=idx, spkr=spk)


# ------------------------------------------------------------------ duration predictor

DUR_CFG = dict(num_embeddings=12, embedding_dim=8, model_in_dim=8, upsample_rates=[5, 2, 2],
               upsample_kernel_sizes=[11, 4, 4], upsample_initial_channel=32, resblock="1",
               resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
               code_hop_size=20, f0=False, dur_prediction_weight=1.0,
               dur_predictor_params={"encoder_embed_dim": 8, "var_pred_hidden_dim": 8,
                                     "var_pred_kernel_size": 3, "var_pred_dropout": 0.5})


def test_duration_generator_predictor_and_expansion():
    sd = spec_state_dict(DUR_CFG, seed=7)
    model = build_generator(DUR_CFG)
    assert isinstance(model, DurationCodeGenerator)
    load_spec_weights(model, sd)
    code = torch.tensor([[3, 7, 7, 1, 9, 9, 9, 2]])
    units, dur = deduplicate_units(code[0])
    # log-duration prediction equals the independent VariancePredictor computation
    with torch.no_grad():
        log_d = model.predict_log_durations(units[None])
    assert torch.allclose(log_d.double(), reference_log_durations(sd, DUR_CFG, units[None]), atol=1e-5)
    # known durations: deduplicated units + dur reproduce the frame-level synthesis exactly
    with torch.no_grad():
        y_frames = model(code)
        y_dedup = model(units[None], dur=dur[None])
    assert torch.equal(y_frames, y_dedup)
    assert torch.allclose(y_frames.double(), reference_forward(sd, DUR_CFG, code), atol=1e-5, rtol=0)
    # predicted durations: clamp(round(exp(pred) - 1), min=1) with a known answer
    with torch.no_grad():
        model.dur_predictor.proj.weight.zero_()
        model.dur_predictor.proj.bias.fill_(float(torch.log(torch.tensor(4.0))))  # -> 3 frames
    pred = model.predict_durations(units[None])
    assert pred.tolist() == [[3] * len(units)]
    with torch.no_grad():
        y = model(units[None], dur_prediction=True)
    assert y.shape[-1] == 3 * len(units) * HOP
    with torch.no_grad():
        model.dur_predictor.proj.bias.fill_(-5.0)  # exp(-5) - 1 < 0 -> clamped to 1
    assert model.predict_durations(units[None]).tolist() == [[1] * len(units)]
    # training target: MSE against log(dur + 1)
    loss = model.duration_loss(units[None], dur[None])
    assert torch.allclose(loss, F.mse_loss(model.predict_log_durations(units[None]), torch.log(dur[None] + 1.0)))
    # prepared for inference: same waveform (dropout off, folded weights, fast path)
    with torch.no_grad():
        y1 = model(units[None], dur_prediction=True)
    fast = prepare_for_inference(copy.deepcopy(model))
    assert y1.shape[-1] == len(units) * HOP
    assert torch.allclose(fast(units[None], dur_prediction=True), y1, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="do not match"):
        model(units[None], dur=dur[None, :-1])
    with pytest.raises(ValueError, match="equal total lengths"):
        model(torch.stack([units, units]), dur=torch.stack([dur, dur + 1]))
