"""Content VQ-VAE (docs/reference.md §2.3, §5.4): raw-audio encoder + 256-code EMA codebook +
unit HiFi-GAN, trained jointly; its checkpoints, its use as a unit encoder (``vqvae:DIR``) and
as a ``ckpt:DIR`` system."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_training import assert_same_tree, load, losses_at, make_corpus, read_log

from resyn_bench.systems.vocoder.config import ConfigError, get_preset, load_config


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions on a shared machine
    yield
    torch.set_num_threads(n)


def tiny_cfg(**changes) -> dict:
    cfg = get_preset("tiny-vqvae").generator_config()
    cfg.update(changes)
    return cfg


def test_reference_librilight_state_dict_keys_and_shapes():
    """Build only: the keys of configs/LibriLight/vqvae256.json's generator (docs/reference.md §8.2)."""
    from resyn_bench.systems.vocoder.content_vqvae import (
        REFERENCE_LIBRILIGHT_VQVAE_CONFIG,
        VQVAECodeGenerator,
    )

    sd = VQVAECodeGenerator(REFERENCE_LIBRILIGHT_VQVAE_CONFIG).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    # no unit LUT, speaker LUT, F0 LUT or F0 quantizer
    assert not [k for k in sd if k.split(".")[0] in ("dict", "spkr", "f0_dict", "quantizer")]
    assert shapes["code_vq.level_blocks.0.k"] == (256, 128)
    assert [k for k in sd if k.startswith("code_vq.")] == ["code_vq.level_blocks.0.k"]
    assert shapes["conv_pre.weight_v"] == (512, 128, 7) and shapes["conv_pre.weight_g"] == (512, 1, 1)
    assert shapes["ups.0.weight_v"] == (512, 256, 11) and shapes["ups.2.weight_v"] == (128, 64, 4)
    assert shapes["conv_post.weight_v"] == (1, 16, 7)
    enc = "code_encoder.level_blocks.0.model."
    assert shapes[enc + "0.0.weight"] == (32, 1, 4)
    for i in (1, 2, 3, 4):
        assert shapes[f"{enc}{i}.0.weight"] == (32, 32, 4)
    assert shapes[enc + "5.0.weight"] == (32, 32, 11)          # the stride-5 stage
    assert shapes[enc + "6.weight"] == (128, 32, 3) and shapes[enc + "6.bias"] == (128,)
    for i in range(6):
        for d in range(4):
            assert shapes[f"{enc}{i}.1.model.{d}.model.1.weight"] == (32, 32, 3)
            assert shapes[f"{enc}{i}.1.model.{d}.model.3.weight"] == (32, 32, 1)
    assert not [k for k in sd if k.startswith(enc + "7")]
    n_enc = sum(1 for k in sd if k.startswith("code_encoder."))
    assert n_enc == 6 * (2 + 4 * 4) + 2
    # the preset builds exactly this model
    preset = VQVAECodeGenerator(get_preset("vqvae256-librilight").generator_config()).state_dict()
    assert {k: tuple(v.shape) for k, v in preset.items()} == shapes
    # dilations 1, 3, 9, 27 in each residual stack, stride-5 conv with kernel 11 and padding 3
    m = VQVAECodeGenerator(REFERENCE_LIBRILIGHT_VQVAE_CONFIG).code_encoder.level_blocks[0].model
    assert [blk.model[1].dilation[0] for blk in m[0][1].model] == [1, 3, 9, 27]
    assert (m[5][0].stride[0], m[5][0].padding[0]) == (5, 3)


def test_encoder_is_x160_and_output_length():
    from resyn_bench.systems.vocoder.content_vqvae import VQVAECodeGenerator

    torch.manual_seed(0)
    model = VQVAECodeGenerator(tiny_cfg()).eval()
    for n in (160 * 7, 160 * 7 + 159, 5120, 1600 + 80):
        audio = 0.1 * torch.randn(2, 1, n)
        z = model.code_encoder(audio)
        assert z.shape == (2, 32, n // 160)
        wav, commit, codes = model(audio)
        assert codes.shape == (2, n // 160) and codes.dtype == torch.int64
        assert wav.shape == (2, 1, 160 * (n // 160)) and commit.dim() == 0
        assert torch.equal(model.encode_codes(audio), codes)
        assert torch.equal(model.encode_codes(audio[:, 0]), codes)  # [B, T] works too
    with pytest.raises(ValueError, match="shorter than one code"):
        model(torch.zeros(1, 1, 100))


def test_codes_path_equals_audio_path_and_ema_updates_only_in_training():
    from resyn_bench.systems.vocoder.content_vqvae import VQVAECodeGenerator
    from resyn_bench.systems.vocoder.generator import prepare_for_inference

    torch.manual_seed(1)
    model = VQVAECodeGenerator(tiny_cfg())
    audio = 0.2 * torch.randn(2, 1, 3200)
    k0 = model.codebook.clone()
    model.train()
    _, commit, _ = model(audio)                    # first training call: codebook initialised
    assert not torch.equal(model.codebook, k0) and float(commit.detach()) >= 0
    k1 = model.codebook.clone()
    model(audio)                                    # one EMA step
    assert not torch.equal(model.codebook, k1)
    model.eval()
    k2 = model.codebook.clone()
    with torch.no_grad():
        wav_audio, commit, codes = model(audio)
        wav_codes = model(codes)
    assert torch.equal(model.codebook, k2)           # eval never moves the codebook
    # the decoder reads the codebook rows of the codes: same input, same waveform
    assert torch.equal(wav_audio, wav_codes)
    # independent check of the quantiser: nearest codebook row (squared Euclidean distance)
    z = model.code_encoder(audio).detach().permute(0, 2, 1)          # [B, T, D]
    dist = ((z[:, :, None, :] - model.codebook[None, None]) ** 2).sum(-1)
    assert torch.equal(dist.argmin(-1), codes)
    with pytest.raises(ValueError, match="code ids must lie in 0..255"):
        model(torch.full((1, 4), 256))
    fast = prepare_for_inference(model)
    assert torch.allclose(fast(codes), wav_codes, atol=1e-5)
    wav_fast, _, codes_fast = fast(audio)
    assert torch.equal(codes_fast, codes) and torch.allclose(wav_fast, wav_audio, atol=1e-5)


def test_straight_through_gradient_and_f0_speaker_conditioning():
    """The paper's LJ/VCTK-style conditioning (content | F0 codes | speaker) also works, and the
    decoder loss reaches the audio encoder through the quantiser."""
    from resyn_bench.systems.vocoder.config import TrainConfig
    from resyn_bench.systems.vocoder.content_vqvae import VQVAECodeGenerator

    tiny = get_preset("tiny").to_dict()
    cfg = tiny_cfg(f0=True, multispkr="_", num_speakers=4, model_in_dim=96,
                   f0_quantizer=tiny["f0_quantizer"])
    TrainConfig.from_dict(cfg)  # a valid training config too
    torch.manual_seed(2)
    model = VQVAECodeGenerator(cfg).train()
    assert model.state_dict()["conv_pre.weight_v"].shape[1] == 96
    assert {"f0_dict.weight", "spkr.weight"} <= set(model.state_dict())
    audio = 0.2 * torch.randn(2, 1, 2560)            # 16 codes at 100 Hz = 2 F0 codes
    wav, commit, codes = model(audio, f0_codes=torch.tensor([[1, 2], [3, 4]]),
                               spkr=torch.tensor([[0], [3]]))
    assert wav.shape == (2, 1, 2560) and codes.shape == (2, 16)
    (wav.pow(2).mean() + 0.02 * commit).backward()
    g = model.code_encoder.level_blocks[0].model[0][0].weight.grad
    assert g is not None and float(g.abs().sum()) > 0
    with pytest.raises(ValueError, match="spkr"):
        model(audio, f0_codes=torch.tensor([[1, 2], [3, 4]]))


def test_config_validation():
    cfg = get_preset("tiny-vqvae")
    assert cfg.is_vqvae and cfg.code_encoder_params.downsampling() == 160
    assert cfg.unit_source()["kind"] == "vqvae"
    with pytest.raises(ConfigError, match="downsamples x80"):
        cfg.with_overrides({"code_encoder_params.downs_t": [[4, 1]]})
    # the unit count is the codebook size (reference VQ-VAE configs need not say it)
    assert cfg.with_overrides({"num_embeddings": 100}).num_embeddings == 256
    assert cfg.with_overrides({"code_vq_params.l_bins": 128}).num_embeddings == 128
    with pytest.raises(ConfigError, match="must be equal"):
        cfg.with_overrides({"code_vq_params.emb_width": 64})
    with pytest.raises(ConfigError, match="makes its own codes"):
        cfg.with_overrides({"unit_encoder": "hubert-l6-km100"})
    # unit vocoders keep their config.json free of VQ-VAE keys
    assert "code_encoder_params" not in get_preset("tiny").to_dict()
    assert get_preset("vqvae256-vctk").is_vqvae is False  # LUT over a content VQ-VAE's codes


# ---------------------------------------------------------------------------------------------
# joint training, checkpoints, unit encoder, ckpt system


def vqvae_config(root, *extra):
    return load_config("tiny-vqvae", ["dataset=manifest", f"data_root={root}", "validation_size=2",
                                      "batch_size=4", "log_interval=1", "validation_interval=3",
                                      "checkpoint_interval=3", "segment_size=3840",
                                      "validation_max_seconds=1.0", "learning_rate=0.001", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-step tiny content VQ-VAE, and the same run stopped at 3 and resumed to 6."""
    from resyn_bench.systems.vocoder.train import train_vocoder

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("vqvae")
    root = make_corpus(base / "corpus", n_per_speaker=3)
    cfg = vqvae_config(root)
    a, b = base / "a", base / "b"
    ra = train_vocoder(cfg, a, max_steps=6, device="cpu")
    train_vocoder(cfg, b, max_steps=3, device="cpu")
    rb = train_vocoder(cfg, b, max_steps=6, device="cpu")
    torch.set_num_threads(n)
    return {"root": root, "a": a, "b": b, "ra": ra, "rb": rb, "cfg": cfg}


def test_joint_training_checkpoints_and_losses(trained):
    a, ra = trained["a"], trained["ra"]
    assert ra.step == 6 and ra.checkpoint == a / "g_00000006"
    assert {"g_00000003", "do_00000003", "g_00000006", "do_00000006", "config.json",
            "train_log.jsonl"} <= {p.name for p in a.iterdir()}
    g = load(a / "g_00000006")["generator"]
    assert g["code_vq.level_blocks.0.k"].shape == (256, 32)
    assert "dict.weight" not in g and any(k.startswith("code_encoder.") for k in g)
    do = load(a / "do_00000006")
    assert set(do["code_vq_ema"]) == {"k_sum", "k_elem"} and do["steps"] == 6
    saved = json.loads((a / "config.json").read_text())
    assert saved["unit_encoder"] == f"vqvae:{a.resolve()}"
    assert saved["code_vq_params"]["l_bins"] == 256 and saved["lambda_commit_code"] == 0.02
    log = read_log(a)
    steps = [r for r in log if "loss_g" in r]
    assert len(steps) == 6
    assert all(r["code_commit"] >= 0 and 1 <= r["code_usage"] <= 256 for r in steps)
    # the loss includes 0.02 x the code commitment
    for r in steps:
        assert r["loss_g"] == pytest.approx(r["loss_adv"] + 2 * r["loss_fm"] + 45 * r["mel_l1"]
                                            + 0.02 * r["code_commit"], rel=1e-5)
    # learning: the held-out mel distance goes down
    val = {r["step"]: r["validation"]["mel_l1"] for r in log if "validation" in r}
    assert sorted(val) == [0, 3, 6] and val[6] < val[0]
    # the codebook was trained: it differs from the step-3 one and holds distinct rows
    k3 = load(a / "g_00000003")["generator"]["code_vq.level_blocks.0.k"]
    assert not torch.equal(k3, g["code_vq.level_blocks.0.k"])


def test_resume_equals_uninterrupted(trained):
    a, b, rb = trained["a"], trained["b"], trained["rb"]
    assert (rb.start_step, rb.step) == (3, 6)
    log_a, log_b = read_log(a), read_log(b)
    for step in (4, 5, 6):
        assert losses_at(log_a, step) == losses_at(log_b, step)
    assert_same_tree(load(a / "g_00000006"), load(b / "g_00000006"))
    assert_same_tree(load(a / "do_00000006")["code_vq_ema"], load(b / "do_00000006")["code_vq_ema"])


def test_load_vqvae_generator_and_unit_encoder(trained):
    from resyn_bench.systems.encoders.base import UnitEncoderError, load_unit_encoder
    from resyn_bench.systems.vocoder.content_vqvae import (
        VQVAECodeGenerator,
        load_vqvae_generator,
    )
    from resyn_bench.systems.vocoder.data import load_training_audio

    a = trained["a"]
    loaded = load_vqvae_generator(a)
    assert isinstance(loaded.model, VQVAECodeGenerator) and loaded.step == 6
    assert_same_tree({k: v for k, v in loaded.model.state_dict().items()},
                     load(a / "g_00000006")["generator"])
    enc = load_unit_encoder(f"vqvae:{a}")
    assert (enc.name, enc.sample_rate, enc.hop_size, enc.vocab_size) == ("vqvae256", 16000, 160, 256)
    d = enc.describe()
    assert d["checkpoint"]["step"] == 6 and d["frame_rate"] == 100 and d["bitrate_bps"] == 800
    wav_path = trained["root"] / "wavs" / "spkA_000.wav"
    import soundfile as sf

    raw, _ = sf.read(wav_path, dtype="float32")
    units = enc.encode(raw)
    assert units.dtype == np.int64 and units.shape == (len(raw) // 160,)
    assert units.min() >= 0 and units.max() < 256
    # the same codes as the model on the training-style (peak-normalised) audio
    x = torch.from_numpy(load_training_audio(wav_path))[None, None]
    assert np.array_equal(units, loaded.model.encode_codes(x)[0].numpy())
    # the codebook is actually used: a tone with a moving pitch and a silent gap is not one code
    assert len(np.unique(units)) > 1
    with pytest.raises(UnitEncoderError, match="does not exist"):
        load_unit_encoder(f"vqvae:{a / 'nope'}")


def test_encode_cli_writes_vqvae_units(trained, tmp_path):
    import argparse

    from resyn_bench.cli.encode import configure_parser as configure_encode_parser
    from resyn_bench.cli.encode import run as run_encode
    from resyn_bench.systems.encoders.base import load_unit_encoder
    from resyn_bench.unit_files import read_unit_file

    p = argparse.ArgumentParser()
    configure_encode_parser(p)
    out = tmp_path / "units.txt"
    args = p.parse_args(["--units", f"vqvae:{trained['a']}", "--dataset", "manifest",
                         "--data-root", str(trained["root"]), "--out", str(out), "--key", "vqvae256"])
    assert run_encode(args) == 0
    entries = read_unit_file(out)
    assert len(entries) == 6 and {e.key for e in entries} == {"vqvae256"}
    enc = load_unit_encoder(f"vqvae:{trained['a']}")
    import soundfile as sf

    for e in entries:
        raw, _ = sf.read(e.audio, dtype="float32")
        assert np.array_equal(e.units, enc.encode(raw))


def test_build_generator_dispatches_to_the_vqvae():
    from resyn_bench.systems.vocoder.content_vqvae import VQVAECodeGenerator
    from resyn_bench.systems.vocoder.generator import build_generator

    assert isinstance(build_generator(tiny_cfg()), VQVAECodeGenerator)


def test_checkpoint_system_runs_through_the_runner(trained, tmp_path):
    from resyn_bench import registry
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_manifest

    assert "ckpt" in registry.SYSTEMS
    root = trained["root"]
    res = run(RunConfig(system=f"ckpt:{trained['a']}", dataset="manifest", data_root=str(root),
                        out=str(tmp_path / "run"), metrics="pitch"), progress=False)
    assert res.n_total == 6 and res.n_failed == 0
    system = read_manifest(tmp_path / "run")["system"]
    assert system["units"] == f"vqvae:{trained['a'].resolve()}"
    streams = {s["name"]: s for s in system["streams"]}
    assert set(streams) == {"units"}
    assert (streams["units"]["frame_rate"], streams["units"]["vocab_size"]) == (100.0, 256)


def test_unit_vocoder_on_vqvae_codes(trained, tmp_path):
    """The paper's vqvae256-{lj,vctk} pipeline: a unit-LUT vocoder trained on the codes of a
    trained content VQ-VAE (``--units vqvae:DIR``), then run as ckpt:DIR with that encoder."""
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_manifest
    from resyn_bench.systems.vocoder.train import train_vocoder

    root, a = trained["root"], trained["a"]
    cfg = load_config("tiny", ["dataset=manifest", f"data_root={root}", "validation_size=2",
                               "batch_size=4", "segment_size=3840", "validation_max_seconds=1.0",
                               "f0=false", "multispkr=null", "model_in_dim=32", "num_embeddings=256",
                               f"unit_encoder=vqvae:{a}", "unit_key=vqvae256"])
    r = train_vocoder(cfg, tmp_path / "lut", max_steps=1, device="cpu")
    g = load(r.checkpoint)["generator"]
    assert g["dict.weight"].shape == (256, 32) and "code_vq.level_blocks.0.k" not in g
    res = run(RunConfig(system=f"ckpt:{tmp_path / 'lut'}", dataset="manifest", data_root=str(root),
                        out=str(tmp_path / "run"), metrics="pitch", limit=2), progress=False)
    assert res.n_failed == 0
    system = read_manifest(tmp_path / "run")["system"]
    assert system["units"] == f"vqvae:{a}" and system["unit_encoder"]["vocab_size"] == 256


DDP_WORKER = """
import os, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from resyn_bench.systems.vocoder import content_vqvae
from resyn_bench.systems.vocoder.config import load_config
from resyn_bench.systems.vocoder.train import train_vocoder

config, out, probe = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
rank = os.environ["RANK"]
quantize = content_vqvae.VQVAECodeGenerator.quantize

def recording(self, audio):
    result = quantize(self, audio)
    if self.training:  # the codebook right after this rank's EMA step
        with open(probe / f"codebook.rank{rank}", "a") as fh:
            fh.write(repr(float(self.codebook.double().sum())) + "\\n")
    return result

content_vqvae.VQVAECodeGenerator.quantize = recording
result = train_vocoder(load_config(config), out, max_steps=3, device="cpu",
                       checksum_file=probe / "checksums")
"""


def test_two_process_ddp_keeps_codebooks_identical(trained, tmp_path):
    """Each rank sees other crops, yet the EMA codebook update is the same on both (statistics
    all-reduced, restart vectors broadcast), as are the parameters."""
    import os
    import subprocess
    import sys

    from resyn_bench.distributed import find_free_port

    cfg = vqvae_config(trained["root"], "validation_interval=10", "checkpoint_interval=10")
    config = cfg.save(tmp_path / "request.json")
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    probe = tmp_path / "probe"
    probe.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(find_free_port()),
         str(script), str(config), str(tmp_path / "out"), str(probe)],
        check=False, capture_output=True, text=True, timeout=240,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    books = [(probe / f"codebook.rank{r}").read_text().split() for r in (0, 1)]
    assert len(books[0]) == 3 and books[0] == books[1] and len(set(books[0])) == 3
    sums = [(probe / f"checksums.rank{r}").read_text() for r in (0, 1)]
    assert sums[0] == sums[1] and len(sums[0].splitlines()) == 3
