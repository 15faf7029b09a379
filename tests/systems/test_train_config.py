"""Training configs: presets, the reference JSON format, overrides, type checks; the train CLI
parsers (no torch needed)."""
from __future__ import annotations

import json

import pytest

from resyn_bench.systems.vocoder.config import (
    PRESETS,
    ConfigError,
    F0QuantizerTrainConfig,
    TrainConfig,
    apply_overrides,
    get_preset,
    load_config,
    parse_override,
    preset_names,
)

# configs/VCTK/hubert100_lut.json of the reference repository, key for key (values from
# docs/reference.md §5.1 / §3.4)
REFERENCE_HUBERT_VCTK = {
    "input_training_file": "datasets/VCTK/hubert100/train.txt",
    "input_validation_file": "datasets/VCTK/hubert100/val.txt",
    "resblock": "1", "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002,
    "adam_b1": 0.8, "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234,
    "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
    "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "num_embeddings": 100, "embedding_dim": 128, "model_in_dim": 384,
    "segment_size": 8960, "code_hop_size": 320, "f0": True, "multispkr": "_",
    "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 256, "win_size": 1024,
    "f0_stats": "datasets/VCTK/f0_stats.th", "f0_normalize": True, "f0_feats": False,
    "f0_median": False, "f0_interp": False,
    "f0_quantizer_path": "checkpoints/vctk_f0_vq/g_00400000",
    "f0_quantizer": {
        "f0_vq_params": {"l_bins": 20, "emb_width": 128, "mu": 0.99, "levels": 1},
        "f0_encoder_params": {"input_emb_width": 1, "output_emb_width": 128, "levels": 1,
                              "downs_t": [4], "strides_t": [2], "width": 32, "depth": 4,
                              "m_conv": 1.0, "dilation_growth_rate": 3},
        "f0_decoder_params": {"input_emb_width": 1, "output_emb_width": 128, "levels": 1,
                              "downs_t": [4], "strides_t": [2], "width": 32, "depth": 4,
                              "m_conv": 1.0, "dilation_growth_rate": 3}},
    "sampling_rate": 16000, "fmin": 0, "fmax": 8000, "fmax_for_loss": None, "num_workers": 4,
    "dist_config": {"dist_backend": "nccl", "dist_url": "env://"},
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_roundtrips_json(name, tmp_path):
    cfg = get_preset(name)
    cfg.validate()
    path = cfg.save(tmp_path / "config.json")
    back = load_config(path)
    assert back == cfg
    assert type(back) is type(cfg)


def test_paper_presets_carry_the_paper_values():
    h = get_preset("hubert100-vctk")
    assert (h.code_hop_size, h.upsample_rates, h.upsample_kernel_sizes) == (320, [5, 4, 4, 2, 2], [11, 8, 8, 4, 4])
    assert (h.num_embeddings, h.embedding_dim, h.model_in_dim, h.segment_size) == (100, 128, 384, 8960)
    assert (h.learning_rate, h.adam_b1, h.adam_b2, h.lr_decay, h.batch_size) == (2e-4, 0.8, 0.99, 0.999, 16)
    assert (h.lambda_fm, h.lambda_mel, h.discriminator_width) == (2.0, 45.0, 1.0)
    assert h.multispkr == "_" and h.f0_extractor == "yaapt" and h.unit_encoder == "hubert-l6-km100"
    c = get_preset("cpc100-lj")
    assert (c.code_hop_size, c.upsample_rates, c.upsample_kernel_sizes) == (160, [5, 4, 2, 2, 2], [11, 8, 4, 4, 4])
    assert c.multispkr == "single" and c.dataset == "ljspeech"
    assert get_preset("vqvae256-vctk").num_embeddings == 256
    f = get_preset("f0-vqvae-vctk")
    assert isinstance(f, F0QuantizerTrainConfig)
    assert (f.segment_size, f.lambda_commit, f.f0_vq_params.l_bins, f.f0_vq_params.emb_width) == (16640, 0.02, 20, 128)
    assert (f.f0_encoder_params.downs_t, f.f0_encoder_params.width, f.f0_encoder_params.depth) == ([4], 32, 4)
    assert get_preset("hubert100") == h  # alias of the multi-speaker variant


def test_tiny_presets_are_small_and_aligned():
    t = get_preset("tiny")
    assert t.upsample_initial_channel <= 64 and t.discriminator_width < 0.1
    assert t.segment_size % 1280 == 0 and t.segment_size <= 8960
    tf = get_preset("tiny-f0")
    assert tf.f0_encoder_params.downsampling() == 16  # 12.5 Hz codes like the paper
    assert sorted(preset_names("f0-quantizer")) == ["f0-vqvae-lj", "f0-vqvae-vctk", "tiny-f0"]


def test_reference_config_json_loads_and_is_written_back_in_its_format(tmp_path):
    path = tmp_path / "hubert100_lut.json"
    path.write_text(json.dumps(REFERENCE_HUBERT_VCTK))
    cfg = load_config(path, kind="vocoder")
    assert isinstance(cfg, TrainConfig)
    assert cfg.input_training_file == "datasets/VCTK/hubert100/train.txt"
    assert cfg.f0_quantizer.f0_vq_params.l_bins == 20
    out = cfg.to_dict()
    for key, value in REFERENCE_HUBERT_VCTK.items():  # every reference key, same value
        assert out[key] == value, key
    # our keys are added beside them
    assert {"unit_encoder", "f0_extractor", "speaker_map", "lambda_mel"} <= set(out)


def test_unknown_reference_keys_are_kept(tmp_path):
    data = dict(REFERENCE_HUBERT_VCTK, dur_prediction_weight=1.0)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="dur_prediction_weight"):
        cfg = load_config(path)
    assert cfg.to_dict()["dur_prediction_weight"] == 1.0


def test_reference_f0_vqvae_json_is_an_f0_config(tmp_path):
    data = {k: REFERENCE_HUBERT_VCTK[k] for k in ("batch_size", "learning_rate", "seed", "multispkr",
                                                  "f0_stats", "f0_normalize", "sampling_rate")}
    data.update(REFERENCE_HUBERT_VCTK["f0_quantizer"], segment_size=16640, lambda_commit=0.02)
    path = tmp_path / "f0_vqvae.json"
    path.write_text(json.dumps(data))
    cfg = load_config(path)
    assert isinstance(cfg, F0QuantizerTrainConfig)
    with pytest.raises(ConfigError, match="f0-quantizer config, not a vocoder"):
        load_config(path, kind="vocoder")


def test_overrides_are_typed_and_checked():
    cfg = load_config("tiny", ["batch_size=8", "f0_extractor=yaapt", "f0_quantizer.f0_vq_params.mu=0.9",
                               "upsample_rates=[5,4,4,2,2]", "upsample_kernel_sizes=[11,8,8,4,4]",
                               "code_hop_size=320", "segment_size=6400"])
    assert cfg.batch_size == 8 and cfg.f0_quantizer.f0_vq_params.mu == 0.9
    assert parse_override("data_root=/a/b=c") == ("data_root", "/a/b=c")
    assert parse_override("f0=false") == ("f0", False)
    with pytest.raises(ConfigError, match="expected true or false"):
        load_config("tiny", ["f0=0"])          # no type=bool surprises
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config("tiny", ["batch_size=eight"])
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        load_config("tiny", ["batch_sise=3"])
    with pytest.raises(ConfigError, match="no key 'l_binz'"):
        load_config("tiny", ["f0_quantizer.f0_vq_params.l_binz=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("batch_size")


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="must equal code_hop_size"):
        load_config("tiny", ["code_hop_size=320"])
    with pytest.raises(ConfigError, match="model_in_dim"):
        load_config("tiny", ["f0=false"])
    assert load_config("tiny", ["f0=false", "model_in_dim=64"]).f0 is False
    with pytest.raises(ConfigError, match="multiple of 1280"):
        load_config("tiny", ["segment_size=4000"])
    with pytest.raises(ConfigError, match="downsample by 16"):
        load_config("tiny-f0", ["f0_encoder_params.downs_t=[3]"])
    with pytest.raises(ConfigError, match="unknown preset 'tinny'.*did you mean 'tiny'"):
        load_config("tinny")
    cfg = apply_overrides(get_preset("tiny"), {"unit_encoder": "x.npz"})
    with pytest.raises(ConfigError, match="not both"):
        apply_overrides(cfg, {"input_training_file": "units.txt"})


def test_unit_source_is_recorded():
    assert get_preset("hubert100-lj").unit_source() == {"kind": "encoder", "encoder": "hubert-l6-km100"}
    cfg = load_config("tiny", ["input_training_file=/x/train.txt", "unit_key=hubert"])
    assert cfg.unit_source() == {"kind": "file", "file": "/x/train.txt", "key": "hubert"}


def test_cli_parsers_build_the_config(tmp_path, capsys):
    from resyn_bench.cli import main

    units = tmp_path / "train.txt"
    units.write_text("{'audio': 'a.wav', 'hubert': '1 2 3', 'duration': 0.1}")
    rc = main(["train", "vocoder", "--config", "hubert100-vctk", "--out", str(tmp_path / "o"),
               "--dataset", "manifest", "--data-root", str(tmp_path), "--units", str(units),
               "--f0-quantizer", str(tmp_path / "q"), "--set", "batch_size=8", "seed=7",
               "--print-config"])
    assert rc == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["input_training_file"] == str(units) and cfg["unit_encoder"] is None
    assert cfg["batch_size"] == 8 and cfg["seed"] == 7 and cfg["dataset"] == "manifest"
    assert cfg["f0_quantizer_path"] == str(tmp_path / "q")
    rc = main(["train", "vocoder", "--config", "tiny", "--out", "o", "--units", "hubert-l6-km100",
               "--print-config"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["unit_encoder"] == "hubert-l6-km100"
    rc = main(["train", "f0-quantizer", "--config", "tiny", "--out", "o", "--print-config"])
    assert rc == 2 and "vocoder config, not a f0-quantizer config" in capsys.readouterr().err
