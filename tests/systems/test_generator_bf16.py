"""bf16 inference of the unit HiFi-GAN (prepare_for_inference(precision="bf16")): the body runs in
bfloat16, the waveform stays within 30 dB SNR of fp32 and comes back float32."""
from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from test_generator import HUBERT_REF, SMALL, load_spec_weights, spec_state_dict  # noqa: E402

from resyn_bench.systems.vocoder.generator import (  # noqa: E402
    PRECISIONS,
    CodeGenerator,
    prepare_for_inference,
)

MIN_SNR_DB = 30.0


def snr_db(ref: torch.Tensor, y: torch.Tensor) -> float:
    return float(10 * torch.log10((ref.double() ** 2).sum() / ((ref.double() - y.double()) ** 2).sum()))


def _inputs(cfg: dict, n_codes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = n_codes * 1280 // cfg["code_hop_size"]
    kw = {"code": torch.randint(0, cfg["num_embeddings"], (1, frames), generator=g)}
    if "f0_quantizer" in cfg:
        kw["f0"] = torch.randn(1, 1, n_codes * 16, generator=g)
    else:
        kw["f0_codes"] = torch.randint(0, 20, (1, n_codes), generator=g)
    return kw


@pytest.mark.parametrize("name,cfg,n_codes", [("small", SMALL, 6), ("hubert100 ref", HUBERT_REF, 3)])
def test_bf16_within_30_db_of_fp32(name, cfg, n_codes):
    torch.manual_seed(0)
    if name == "small":
        model = load_spec_weights(CodeGenerator(cfg), spec_state_dict(cfg, seed=3))
    else:
        model = CodeGenerator(cfg)
    fp32 = prepare_for_inference(copy.deepcopy(model))
    bf16 = prepare_for_inference(copy.deepcopy(model), precision="bf16")
    kw = _inputs(cfg, n_codes)
    if model.uses_speaker:
        kw["spkr"] = torch.tensor([[1]])
    y32, y16 = fp32(**kw), bf16(**kw)
    assert y16.dtype == torch.float32 and y16.shape == y32.shape and y16.is_contiguous()
    assert bf16.conv_pre.weight.dtype == torch.bfloat16 and bf16.ups[0].weight.dtype == torch.bfloat16
    assert bf16.dict.weight.dtype == torch.float32            # conditioning stays fp32
    assert float(y32.abs().max()) > 0
    assert not torch.equal(y16, y32)                          # it really ran in bf16
    assert snr_db(y32, y16) >= MIN_SNR_DB


def test_precision_is_checked():
    assert PRECISIONS == ("fp32", "bf16")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        prepare_for_inference(CodeGenerator(SMALL), precision="fp16")
