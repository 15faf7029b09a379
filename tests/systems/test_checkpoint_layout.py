"""Generator checkpoints in the reference layout (g_XXXXXXXX = {'generator': sd} + config.json) and
the fairseq code_hifigan duration layout: files written here from spec keys/shapes with known
random weights load with our code and synthesize what an independent computation predicts."""
from __future__ import annotations

import argparse
import copy
import json
import os

import pytest
import torch
from test_generator import (
    DUR_CFG,
    SMALL,
    SMALL_Q,
    needs_quantizer,
    reference_forward,
    reference_log_durations,
    spec_state_dict,
)

from resyn_bench.safeload import UnsafeCheckpointError, sha256_file
from resyn_bench.systems.vocoder.checkpoint import (
    export_state_dict,
    latest_checkpoint,
    load_generator,
    load_training_state,
    read_config,
    save_generator,
    save_training_state,
)
from resyn_bench.systems.vocoder.generator import CodeGenerator, DurationCodeGenerator, prepare_for_inference

# reference configs carry many training keys the generator does not use; they must survive
REF_EXTRA = {"batch_size": 16, "learning_rate": 0.0002, "adam_b1": 0.8, "adam_b2": 0.99,
             "segment_size": 8960, "f0_stats": "datasets/VCTK/f0_stats.th",
             "f0_quantizer_path": "checkpoints/vctk_f0_vq/g_00400000", "f0_normalize": True,
             "dist_config": {"dist_backend": "nccl", "dist_url": "env://", "world_size": 1},
             "some_future_key": [1, 2, 3]}


def write_reference_checkpoint(folder, cfg, sd, step=400000, extra=None):
    """What the reference training writes: config.json + torch.save({'generator': sd})."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=4))
    path = folder / f"g_{step:08d}"
    torch.save({"generator": sd, **(extra or {})}, path)
    return path


def _inputs(seed=0, batch=2, t_q=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 12, (batch, 4 * t_q), generator=g), torch.randint(0, 20, (batch, t_q), generator=g),
            torch.randint(0, 5, (batch, 1), generator=g))


def test_reference_layout_loads_and_matches_independent_forward(tmp_path):
    cfg = dict(SMALL, **REF_EXTRA)
    sd = spec_state_dict(cfg, seed=11)
    path = write_reference_checkpoint(tmp_path / "ckpt", cfg, sd, step=400000)
    loaded = load_generator(tmp_path / "ckpt")
    assert loaded.path == path and loaded.step == 400000 and loaded.sha256 == sha256_file(path)
    assert loaded.config == cfg and not loaded.model.training
    code, f0c, spk = _inputs()
    with torch.no_grad():
        y = loaded.model(code, f0_codes=f0c, spkr=spk)
    ref = reference_forward(sd, cfg, code, f0c, spkr=spk)
    assert y.shape == (2, 1, code.shape[1] * 20)
    assert torch.allclose(y.double(), ref, atol=1e-5, rtol=0)
    # the same file given directly, then prepared for inference
    fast = prepare_for_inference(load_generator(path).model)
    assert torch.allclose(fast(code, f0_codes=f0c, spkr=spk).double(), ref, atol=1e-5, rtol=0)


def test_directory_resolves_to_latest_generator(tmp_path):
    d = tmp_path / "ckpt"
    sd_old, sd_new = spec_state_dict(SMALL, seed=1), spec_state_dict(SMALL, seed=2)
    write_reference_checkpoint(d, SMALL, sd_old, step=10000)
    newest = write_reference_checkpoint(d, SMALL, sd_new, step=20000)
    torch.save({"generator": sd_old}, d / "do_00030000")      # discriminator state, other prefix
    (d / ".g_00090000.abc.tmp").write_bytes(b"partial write")  # an interrupted atomic write
    (d / "g_best").write_bytes(b"not a step")
    assert latest_checkpoint(d) == newest
    assert latest_checkpoint(d, prefix="do_") == d / "do_00030000"
    assert latest_checkpoint(tmp_path / "missing") is None
    loaded = load_generator(d)
    assert loaded.step == 20000
    assert torch.equal(loaded.model.state_dict()["conv_pre.weight_v"], sd_new["conv_pre.weight_v"])


def test_missing_config_and_empty_dir_errors_name_paths(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    with pytest.raises(FileNotFoundError, match="no generator checkpoint"):
        load_generator(d)
    torch.save({"generator": spec_state_dict(SMALL)}, d / "g_00000100")
    with pytest.raises(FileNotFoundError) as ei:
        load_generator(d)
    assert str(d / "config.json") in str(ei.value)
    # an explicit config works without config.json
    assert load_generator(d, config=SMALL).step == 100
    with pytest.raises(FileNotFoundError, match="not found"):
        load_generator(tmp_path / "nothing" / "g_00000001")


def test_config_mismatch_is_reported(tmp_path):
    sd = spec_state_dict(SMALL)
    write_reference_checkpoint(tmp_path / "c", dict(SMALL, multispkr=None, model_in_dim=16), sd, step=5)
    with pytest.raises(ValueError, match=r"unexpected keys \['spkr.weight'\].*config.json"):
        load_generator(tmp_path / "c")
    write_reference_checkpoint(tmp_path / "d", dict(SMALL, num_embeddings=13), sd, step=5)
    with pytest.raises(ValueError, match="shape"):
        load_generator(tmp_path / "d")
    torch.save({"mpd": {}, "msd": {}}, tmp_path / "d" / "g_00000006")
    with pytest.raises(ValueError, match="not a generator checkpoint"):
        load_generator(tmp_path / "d")


def test_save_load_roundtrip_keeps_reference_keys_and_config(tmp_path):
    cfg = dict(SMALL, **REF_EXTRA)
    sd = spec_state_dict(cfg, seed=3)
    src = write_reference_checkpoint(tmp_path / "theirs", cfg, sd, step=123)
    loaded = load_generator(src)
    out = save_generator(tmp_path / "ours", 123, loaded.model, loaded.config)
    assert out.name == "g_00000123"
    raw = torch.load(out, weights_only=True)
    assert list(raw) == ["generator"]
    theirs = torch.load(src, weights_only=True)["generator"]
    assert set(raw["generator"]) == set(theirs)
    for k, v in theirs.items():
        assert torch.equal(raw["generator"][k], v), k
    assert json.loads((tmp_path / "ours" / "config.json").read_text()) == cfg
    assert read_config(tmp_path / "ours" / "config.json")["some_future_key"] == [1, 2, 3]
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["config.json", "g_00000123"]


def test_prepared_model_saves_weight_norm_keys(tmp_path):
    sd = spec_state_dict(SMALL, seed=4)
    model = CodeGenerator(SMALL)
    model.load_state_dict(sd)
    fast = prepare_for_inference(copy.deepcopy(model))
    out = save_generator(tmp_path / "ckpt", 7, fast, SMALL)
    saved = torch.load(out, weights_only=True)["generator"]
    assert list(saved) == list(model.state_dict())  # same keys, same order as the reference layout
    assert all(v.is_contiguous() for v in saved.values())
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in sd.items()}
    code, f0c, spk = _inputs(1)
    reloaded = load_generator(out).model
    with torch.no_grad():
        assert torch.allclose(reloaded(code, f0_codes=f0c, spkr=spk), model(code, f0_codes=f0c, spkr=spk),
                              atol=1e-6, rtol=0)
    # and a file with folded ``weight`` keys (e.g. exported for inference elsewhere) loads too
    torch.save({"generator": fast.state_dict()}, tmp_path / "ckpt" / "g_00000008")
    folded = load_generator(tmp_path / "ckpt").model
    with torch.no_grad():
        assert torch.allclose(folded(code, f0_codes=f0c, spkr=spk), model(code, f0_codes=f0c, spkr=spk),
                              atol=1e-6, rtol=0)


def test_pickle_only_checkpoint_needs_trusted_hash(tmp_path):
    d = tmp_path / "ckpt"
    sd = spec_state_dict(SMALL, seed=5)
    path = write_reference_checkpoint(d, SMALL, sd, step=10,
                                      extra={"args": argparse.Namespace(lr=2e-4)})  # arbitrary object
    digest = sha256_file(path)
    with pytest.raises(UnsafeCheckpointError) as ei:
        load_generator(d)
    assert digest in str(ei.value) and str(path) in str(ei.value)
    with pytest.raises(UnsafeCheckpointError):
        load_generator(d, trusted_sha256=["0" * 64])
    loaded = load_generator(d, trusted_sha256=digest)
    assert loaded.sha256 == digest
    assert torch.equal(loaded.model.state_dict()["dict.weight"], sd["dict.weight"])


def test_fairseq_duration_layout(tmp_path):
    cfg = dict(DUR_CFG, num_speakers=200)  # fairseq configs carry num_speakers even without speakers
    sd = spec_state_dict(cfg, seed=8)
    write_reference_checkpoint(tmp_path / "vocoder", cfg, sd, step=500000)
    loaded = load_generator(tmp_path / "vocoder")
    model = loaded.model
    assert isinstance(model, DurationCodeGenerator) and loaded.step == 500000
    units = torch.tensor([[4, 9, 1, 4, 11]])
    with torch.no_grad():
        y = model(units, dur_prediction=True)
    dur = torch.clamp(torch.round(torch.exp(reference_log_durations(sd, cfg, units)) - 1).long(), min=1)
    ref = reference_forward(sd, cfg, units, dur=dur)
    assert y.shape[-1] == int(dur.sum()) * 20
    assert torch.allclose(y.double(), ref, atol=1e-5, rtol=0)
    # duration keys without dur_predictor_params in the config: a clear error
    bad = {k: v for k, v in cfg.items() if k != "dur_predictor_params"}
    (tmp_path / "vocoder" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="dur_predictor_params"):
        load_generator(tmp_path / "vocoder")


def test_training_state_atomic_and_latest(tmp_path):
    state = {"mpd": {"w": torch.ones(2)}, "optim_g": {"state": {}, "param_groups": [{"lr": 2e-4}]},
             "steps": 30, "epoch": 2}
    p1 = save_training_state(tmp_path, 20, dict(state, steps=20))
    p2 = save_training_state(tmp_path, 30, state)
    assert p1.name == "do_00000020" and p2.name == "do_00000030"
    got = load_training_state(tmp_path)
    assert got["steps"] == 30 and torch.equal(got["mpd"]["w"], torch.ones(2))
    assert load_training_state(p1)["steps"] == 20
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="do_"):
        load_training_state(tmp_path / "empty")


def test_export_state_dict_is_cpu_and_independent():
    m = CodeGenerator(SMALL)
    sd = export_state_dict(m)
    sd["dict.weight"].add_(1.0)
    assert not torch.equal(sd["dict.weight"], m.dict.weight.detach())


@needs_quantizer
def test_f0_quantizer_keys_roundtrip_and_separate_quantizer_file(tmp_path):
    from resyn_bench.systems.vocoder.f0_quantizer import F0Quantizer, save_f0_quantizer

    cfg = dict(SMALL, f0_quantizer=SMALL_Q)
    torch.manual_seed(0)
    model = CodeGenerator(cfg)
    q_sd = {k: v for k, v in model.state_dict().items() if k.startswith("quantizer.")}
    sd = {**spec_state_dict(cfg, seed=9), **q_sd}
    write_reference_checkpoint(tmp_path / "full", cfg, sd, step=1)
    loaded = load_generator(tmp_path / "full").model
    f0 = torch.randn(1, 1, 48)
    code, spk = torch.randint(0, 12, (1, 12)), torch.tensor([[2]])
    with torch.no_grad():
        y = loaded(code, f0=f0, spkr=spk)
    idx = loaded.quantizer.encode_indices(f0)
    assert torch.allclose(y.double(), reference_forward(sd, cfg, code, idx, spkr=spk), atol=1e-5, rtol=0)

    # a generator file without quantizer.* keys reads the F0 VQ-VAE from f0_quantizer_path
    q = F0Quantizer.from_config(SMALL_Q)
    q.load_state_dict({k[len("quantizer."):]: v for k, v in q_sd.items()})
    qdir = tmp_path / "f0_vq"
    save_f0_quantizer(qdir, 400000, q, SMALL_Q)
    bare = {k: v for k, v in sd.items() if not k.startswith("quantizer.")}
    write_reference_checkpoint(tmp_path / "bare", dict(cfg, f0_quantizer_path=str(qdir / "g_00400000")), bare)
    loaded2 = load_generator(tmp_path / "bare").model
    with torch.no_grad():
        assert torch.equal(loaded2(code, f0=f0, spkr=spk), y)
    write_reference_checkpoint(tmp_path / "nowhere", dict(cfg, f0_quantizer_path="no/such/g_00400000"), bare)
    with pytest.raises(FileNotFoundError, match="no/such/g_00400000"):
        load_generator(tmp_path / "nowhere")

