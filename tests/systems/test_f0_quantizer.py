"""F0 quantizer (Jukebox VQ-VAE): reference keys/shapes, lengths, EMA codebook maths, training,
checkpoint round trip, distributed EMA synchronisation."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from torch.nn import functional as F

from resyn_bench.safeload import UnsafeCheckpointError, sha256_file
from resyn_bench.systems.vocoder.f0_quantizer import (
    REFERENCE_F0_QUANTIZER_CONFIG,
    Bottleneck,
    EMABottleneck,
    F0Quantizer,
    JukeboxDecoder,
    JukeboxEncoder,
    load_f0_quantizer,
    save_f0_quantizer,
)

LIBRILIGHT_ENCODER = {"input_emb_width": 1, "output_emb_width": 128, "levels": 1, "downs_t": [[5, 1]],
                      "strides_t": [[2, 5]], "width": 32, "depth": 4, "m_conv": 1.0,
                      "dilation_growth_rate": 3}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread avoids heavy oversubscription slow-downs on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _resnet_keys(prefix: str) -> dict:
    out = {}
    for b in range(4):
        out[f"{prefix}.model.{b}.model.1.weight"] = (32, 32, 3)
        out[f"{prefix}.model.{b}.model.1.bias"] = (32,)
        out[f"{prefix}.model.{b}.model.3.weight"] = (32, 32, 1)
        out[f"{prefix}.model.{b}.model.3.bias"] = (32,)
    return out


def reference_f0_keys() -> dict:
    """The §8.3 table of docs/reference.md, written out key by key."""
    exp = {}
    enc = "encoder.level_blocks.0.model"
    for i in range(4):
        exp[f"{enc}.{i}.0.weight"] = (32, 1 if i == 0 else 32, 4)
        exp[f"{enc}.{i}.0.bias"] = (32,)
        exp.update(_resnet_keys(f"{enc}.{i}.1"))
    exp[f"{enc}.4.weight"] = (128, 32, 3)
    exp[f"{enc}.4.bias"] = (128,)
    exp["vq.level_blocks.0.k"] = (20, 128)
    dec = "decoder.level_blocks.0.model"
    exp[f"{dec}.0.weight"] = (32, 128, 3)
    exp[f"{dec}.0.bias"] = (32,)
    for i in range(1, 5):
        exp.update(_resnet_keys(f"{dec}.{i}.0"))
        exp[f"{dec}.{i}.1.weight"] = (32, 128 if i == 4 else 32, 4)
        exp[f"{dec}.{i}.1.bias"] = (128 if i == 4 else 32,)
    exp["decoder.out.weight"] = (1, 128, 3)
    exp["decoder.out.bias"] = (1,)
    return exp


@pytest.fixture(scope="module")
def ref_model():
    torch.manual_seed(0)
    return F0Quantizer.from_config(REFERENCE_F0_QUANTIZER_CONFIG)


def test_state_dict_keys_and_shapes_match_reference(ref_model):
    got = {k: tuple(v.shape) for k, v in ref_model.state_dict().items()}
    assert got == reference_f0_keys()
    assert ref_model.hop_factor == 16 and ref_model.num_codes == 20
    # the codebook is created on CPU, as a buffer, not a parameter
    assert ref_model.vq.level_blocks[0].k.device.type == "cpu"
    assert "vq.level_blocks.0.k" not in dict(ref_model.named_parameters())


def test_dilations_follow_growth_rate(ref_model):
    res = ref_model.encoder.level_blocks[0].model[2][1]
    assert [blk.model[1].dilation[0] for blk in res.model] == [1, 3, 9, 27]
    assert [blk.model[1].padding[0] for blk in res.model] == [1, 3, 9, 27]
    assert isinstance(res.model[0].model[0], torch.nn.ReLU) and isinstance(res.model[0].model[2], torch.nn.ReLU)
    dec_res = ref_model.decoder.level_blocks[0].model[1][0]
    assert [blk.model[1].dilation[0] for blk in dec_res.model] == [1, 3, 9, 27]  # not reversed


def test_from_config_accepts_vocoder_nesting_and_rejects_missing_blocks():
    vocoder_cfg = {"f0": True, "f0_quantizer": REFERENCE_F0_QUANTIZER_CONFIG, "num_embeddings": 100}
    m = F0Quantizer.from_config(vocoder_cfg)
    assert set(m.state_dict()) == set(reference_f0_keys())
    with pytest.raises(KeyError, match="f0_encoder_params"):
        F0Quantizer.from_config({"f0": True})
    bad = json.loads(json.dumps(REFERENCE_F0_QUANTIZER_CONFIG))
    bad["f0_encoder_params"]["levels"] = 2
    with pytest.raises(ValueError, match="levels"):
        F0Quantizer.from_config(bad)


def test_lengths_x16(ref_model):
    ref_model.eval()
    f0 = torch.randn(2, 1, 208)
    h = ref_model.encoder(f0)
    assert h.shape == (2, 128, 13)
    assert ref_model.decoder(h).shape == (2, 1, 208)
    f0_hat, commit, info = ref_model(f0)
    assert f0_hat.shape == f0.shape and commit.dim() == 0
    idx = ref_model.encode_indices(f0)
    assert idx.dtype == torch.long and idx.shape == (2, 13)
    assert torch.equal(idx, info["indices"])
    assert int(idx.min()) >= 0 and int(idx.max()) < 20
    assert ref_model.decode_indices(idx).shape == (2, 1, 208)
    # lengths that do not fill a code: floor(T / 16) codes; forward refuses them
    assert ref_model.encode_indices(torch.randn(1, 1, 215)).shape == (1, 13)
    with pytest.raises(ValueError, match="multiple of 16"):
        ref_model(torch.randn(1, 1, 215))


def test_librilight_list_branch_keys_and_x160():
    enc = JukeboxEncoder(**LIBRILIGHT_ENCODER)
    convs = {k: tuple(v.shape) for k, v in enc.state_dict().items() if ".1.model." not in k}
    expected = {}
    for i in range(5):
        expected[f"level_blocks.0.model.{i}.0.weight"] = (32, 1 if i == 0 else 32, 4)
        expected[f"level_blocks.0.model.{i}.0.bias"] = (32,)
    expected["level_blocks.0.model.5.0.weight"] = (32, 32, 11)
    expected["level_blocks.0.model.5.0.bias"] = (32,)
    expected["level_blocks.0.model.6.weight"] = (128, 32, 3)
    expected["level_blocks.0.model.6.bias"] = (128,)
    assert convs == expected
    stride5 = enc.level_blocks[0].model[5][0]
    assert (stride5.kernel_size[0], stride5.stride[0], stride5.padding[0]) == (11, 5, 3)
    assert enc.hop_factor == 160
    assert enc(torch.randn(1, 1, 1600)).shape == (1, 128, 10)
    # our mirrored decoder for the list branch restores the length
    dec = JukeboxDecoder(**LIBRILIGHT_ENCODER)
    assert dec(torch.randn(1, 128, 10)).shape == (1, 1, 1600)


def _set_codebook(block: EMABottleneck, k: torch.Tensor) -> None:
    with torch.no_grad():
        block.k.copy_(k)
    block.restore_k()


def test_ema_update_known_answer_and_dead_code_restart():
    torch.manual_seed(0)
    mu = 0.9
    blk = EMABottleneck(l_bins=3, emb_width=2, mu=mu)
    k0 = torch.tensor([[0.0, 0.0], [10.0, 10.0], [100.0, 100.0]])
    _set_codebook(blk, k0)
    a = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 2.0], [1.0, 1.5]])     # -> code 0
    b = torch.tensor([[9.0, 9.0], [8.0, 10.0], [10.0, 8.0], [9.5, 9.0]])   # -> code 1
    vecs = torch.cat([a, b])
    x = vecs.t().unsqueeze(0)                                              # [1, 2, 8]
    blk.train()
    idx, x_q, commit, metrics = blk(x)
    assert idx.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]
    # quantised output and commit loss use the codebook *before* the update
    assert torch.allclose(x_q, k0[idx[0]].t().unsqueeze(0))
    assert torch.isclose(commit, ((k0[idx[0]] - vecs) ** 2).sum() / vecs.numel())
    # EMA: k_elem = mu * 1 + (1 - mu) * count ; k_sum = mu * k + (1 - mu) * sum
    elem = torch.tensor([mu + (1 - mu) * 4, mu + (1 - mu) * 4, mu])
    assert torch.allclose(blk.k_elem, elem)
    sum0 = mu * k0[0] + (1 - mu) * a.sum(0)
    sum1 = mu * k0[1] + (1 - mu) * b.sum(0)
    assert torch.allclose(blk.k[0], sum0 / elem[0])
    assert torch.allclose(blk.k[1], sum1 / elem[1])
    # both live codes moved toward their cluster mean
    assert torch.norm(blk.k[0] - a.mean(0)) < torch.norm(k0[0] - a.mean(0))
    assert torch.norm(blk.k[1] - b.mean(0)) < torch.norm(k0[1] - b.mean(0))
    # code 2 got nothing: k_elem 0.9 < 1 -> restarted at one of the current encoder outputs
    assert any(torch.equal(blk.k[2], v) for v in vecs)
    assert int(metrics["usage"]) == 2 and int(metrics["used_curr"]) == 2


def test_first_training_forward_initialises_from_encoder_outputs():
    torch.manual_seed(1)
    blk = EMABottleneck(l_bins=4, emb_width=3, mu=0.99).train()
    vecs = torch.randn(10, 3) * 5
    assert not blk.initialised
    _, x_q, _, _ = blk(vecs.t().unsqueeze(0))
    assert blk.initialised
    # x_q is quantised with the freshly initialised codebook (before the EMA step): every
    # output vector is one of the encoder outputs picked as a code
    # (x_q is straight-through, x + (q - x), hence equal up to rounding)
    for row in x_q[0].t():
        assert any(torch.allclose(row, v, atol=1e-5) for v in vecs)
    assert len({tuple(r.round(decimals=3).tolist()) for r in x_q[0].t()}) == 4  # distinct codes
    # init_k directly: rows are exact encoder outputs
    blk.init_k(vecs)
    for row in blk.k:
        assert any(torch.equal(row, v) for v in vecs)
    assert torch.equal(blk.k_sum, blk.k) and torch.equal(blk.k_elem, torch.ones(4))
    # eval mode never initialises
    blk_eval = EMABottleneck(l_bins=4, emb_width=3).eval()
    blk_eval(vecs.t().unsqueeze(0))
    assert not blk_eval.initialised and torch.equal(blk_eval.k, torch.zeros(4, 3))
    # fewer vectors than codes: tiled copies with small noise (std 0.01 / sqrt(emb))
    blk2 = EMABottleneck(l_bins=6, emb_width=3).train()
    few = torch.randn(2, 3) * 5
    blk2.init_k(few)
    dist = torch.cdist(blk2.k, few).min(dim=1).values
    assert float(dist.max()) < 0.01 * 8 / 3 ** 0.5 and float(dist.max()) > 0


def test_eval_and_encode_never_touch_codebook(ref_model):
    m = F0Quantizer.from_config(REFERENCE_F0_QUANTIZER_CONFIG)
    blk = m.vq.level_blocks[0]
    _set_codebook(blk, torch.randn(20, 128))
    before = blk.k.clone()
    m.eval()
    m(torch.randn(2, 1, 64))
    m.train()
    m.encode_indices(torch.randn(2, 1, 64))
    assert torch.equal(blk.k, before)
    m(torch.randn(2, 1, 64))
    assert not torch.equal(blk.k, before)


def test_commit_loss_and_straight_through():
    torch.manual_seed(2)
    bott = Bottleneck(l_bins=5, emb_width=4, mu=0.99)
    _set_codebook(bott.block, torch.randn(5, 4))
    x = torch.randn(2, 4, 6, requires_grad=True)
    bott.eval()
    idx, x_q, commit, _ = bott(x)
    flat = x.detach().permute(0, 2, 1).reshape(-1, 4)
    ref_idx = torch.cdist(flat, bott.block.k).argmin(dim=1)
    assert torch.equal(idx.reshape(-1), ref_idx)
    direct = ((bott.block.k[ref_idx] - flat) ** 2).sum() / (2 * 6 * 4)
    assert torch.isclose(commit, direct)
    assert not x_q.requires_grad  # eval: detached
    # training: straight-through estimator passes the gradient of x_q unchanged to x
    bott.train()
    _, x_q, commit, _ = bott(x, update_k=False)
    w = torch.randn_like(x_q)
    (x_q * w).sum().backward()
    assert torch.allclose(x.grad, w)
    x.grad = None
    commit.backward()
    assert torch.allclose(x.grad, 2 * (x.detach() - x_q.detach()) / x.numel())


def _synthetic_f0(n: int, frames: int = 208, seed: int = 0) -> torch.Tensor:
    """Normalised F0-like contours: slow sinusoids and ramps with unvoiced (0) gaps."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames) / 200.0
    freq = torch.rand(n, 1, 1, generator=g) * 2 + 0.5
    phase = torch.rand(n, 1, 1, generator=g) * 6.28
    slope = torch.randn(n, 1, 1, generator=g)
    f0 = torch.sin(2 * torch.pi * freq * t + phase) + slope * (t - 0.5)
    start = torch.randint(0, frames - 40, (n,), generator=g)
    for i in range(n):
        f0[i, :, start[i]:start[i] + 30] = 0.0
    return f0


def test_training_steps_reduce_reconstruction_error():
    torch.manual_seed(0)
    # a narrower model than the reference (same structure) keeps the test fast on a busy CPU
    codec = dict(REFERENCE_F0_QUANTIZER_CONFIG["f0_encoder_params"], width=16, depth=2, output_emb_width=32)
    cfg = {"f0_encoder_params": codec, "f0_decoder_params": codec,
           "f0_vq_params": {"l_bins": 20, "emb_width": 32, "mu": 0.99, "levels": 1}}
    m = F0Quantizer.from_config(cfg).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.8, 0.99))
    f0 = _synthetic_f0(6)
    history = []
    for _ in range(40):
        f0_hat, commit, info = m(f0)
        mse = F.mse_loss(f0_hat, f0)
        loss = mse + 0.02 * commit
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(mse.item())
    m.eval()
    with torch.no_grad():
        end = F.mse_loss(m(f0)[0], f0).item()
    assert end < 0.5 * history[0], (history[0], end)
    assert int(info["usage"]) >= 10  # dead codes are restarted: most of the codebook lives


class _NotAllowed:  # a custom class: needs full unpickling
    pass


def test_save_load_roundtrip_reference_layout(tmp_path, ref_model):
    torch.manual_seed(3)
    m = F0Quantizer.from_config(REFERENCE_F0_QUANTIZER_CONFIG)
    _set_codebook(m.vq.level_blocks[0], torch.randn(20, 128))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-4, betas=(0.8, 0.99))
    m.train()
    F.mse_loss(m(torch.randn(2, 1, 32))[0], torch.zeros(2, 1, 32)).backward()
    opt.step()
    full_cfg = {"segment_size": 16640, "lambda_commit": 0.02, **REFERENCE_F0_QUANTIZER_CONFIG}
    path = save_f0_quantizer(tmp_path / "ckpt", 400000, m, full_cfg, optim_state=opt.state_dict(), epoch=7)
    assert path.name == "g_00400000"
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text()) == full_cfg
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"generator", "optim_g", "steps", "epoch"}
    assert raw["steps"] == 400000 and raw["epoch"] == 7
    assert set(raw["generator"]) == set(reference_f0_keys())
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "ckpt").iterdir())

    save_f0_quantizer(tmp_path / "ckpt", 10000, m, full_cfg)  # an older step: dir load takes the last
    loaded, cfg, step = load_f0_quantizer(tmp_path / "ckpt")
    assert step == 400000 and cfg == full_cfg and not loaded.training
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.vq.level_blocks[0].initialised  # loaded codebook is kept when fine-tuning
    m.eval()
    f0 = torch.randn(1, 1, 64)
    assert torch.equal(loaded.encode_indices(f0), m.encode_indices(f0))

    # a vocoder generator file holds the quantizer under 'quantizer.'
    voc = tmp_path / "voc"
    voc.mkdir()
    sd = {f"quantizer.{k}": v for k, v in m.state_dict().items()}
    sd["dict.weight"] = torch.zeros(100, 128)
    torch.save({"generator": sd}, voc / "g_00000005")
    loaded2, _, step2 = load_f0_quantizer(voc / "g_00000005")
    assert step2 == 5 and torch.equal(loaded2.codebook, m.codebook)

    # a file that needs arbitrary unpickling is refused unless its hash is trusted
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"generator": m.state_dict(), "extra": _NotAllowed()}, bad / "g_00000001")
    with pytest.raises(UnsafeCheckpointError):
        load_f0_quantizer(bad)
    ok, _, _ = load_f0_quantizer(bad, trusted_sha256=[sha256_file(bad / "g_00000001")])
    assert torch.equal(ok.codebook, m.codebook)

    with pytest.raises(FileNotFoundError, match="g_XXXXXXXX"):
        load_f0_quantizer(tmp_path)


# ---- distributed: EMA statistics are all-reduced and restarts broadcast ----

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Run by torchrun in separate interpreters (a script, not a pickled test function: the test
# module is not importable by name from the installed-wheel test environment).
_DDP_WORKER = """
import os, sys
import torch
import torch.distributed as dist
from resyn_bench.systems.vocoder.f0_quantizer import EMABottleneck

out_dir = sys.argv[1]
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
try:
    torch.manual_seed(100 + rank)  # different random streams per rank
    blk = EMABottleneck(l_bins=4, emb_width=2, mu=0.9).train()
    data = torch.load(os.path.join(out_dir, "data.pt"))
    for step in range(3):
        blk(data[step][rank].t().unsqueeze(0))
    torch.save({"k": blk.k, "k_sum": blk.k_sum, "k_elem": blk.k_elem},
               os.path.join(out_dir, f"rank{rank}.pt"))
finally:
    dist.destroy_process_group()
"""


def test_ddp_ranks_keep_identical_codebooks(tmp_path):
    import subprocess
    import sys

    torch.manual_seed(5)
    # 3 steps x 2 ranks x 6 vectors; per-rank data differ
    data = [[torch.randn(6, 2) + 4 * r for r in range(2)] for _ in range(3)]
    torch.save(data, tmp_path / "data.pt")
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(script),
         str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=180,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for key in ("k", "k_sum", "k_elem"):
        assert torch.equal(r0[key], r1[key]), key
    # the counts are global: sum of k_elem after init (ones) follows the EMA of 12 vectors/step
    total = 4.0
    for _ in range(3):
        total = 0.9 * total + 0.1 * 12
    assert abs(float(r0["k_elem"].sum()) - total) < 1e-4


def test_bottleneck_runs_in_float32_under_autocast():
    torch.manual_seed(6)
    bott = Bottleneck(l_bins=16, emb_width=8)
    _set_codebook(bott.block, torch.randn(16, 8))
    bott.eval()
    x = torch.randn(2, 8, 40)
    idx_ref, _, commit_ref, _ = bott(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        idx, _x_q, commit, _ = bott(x)
    assert torch.equal(idx, idx_ref)
    assert commit.dtype == torch.float32 and torch.isclose(commit, commit_ref)
    assert bott.block.k.dtype == torch.float32
