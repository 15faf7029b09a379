"""``hubert100-lj-pretrained``: HuBERT Base L6 + GSLM km100 + the public fairseq unit HiFi-GAN
(duration predictor, no F0, no speaker; docs/reference.md §8.4), run through the real CLI.

The official files cannot be downloaded in tests, so files *of the same layout* are placed by
hand at the exact catalogue paths under a temporary ``$RESYN_BENCH_HOME``:

* ``hubert/hubert_base_ls960.pt``: a fairseq checkpoint ``{'model': state_dict, 'cfg': {'model':
  ..., 'task': ...}}`` (tensors + plain dicts), a tiny HuBERT with the real conv strides
  (hop 320, receptive field 400) and 6 transformer blocks so that layer 6 exists;
* ``gslm/hubert/km100/km.npz``: the safe k-means a documented ``km.bin`` is converted into
  (its meta records the documented source sha256), 100 centroids of the tiny HuBERT's width;
* ``code_hifigan/hubert_base_100_lj/g_00500000`` + ``config.json``: a tiny generator in the
  fairseq code_hifigan layout (``{'generator': state_dict}`` with ``dict``, weight-norm convs
  and ``dur_predictor.*``) and a config with the key set of the released one.

The duration predictor is set to a known answer (every unit lasts 2 frames), so the output
length checks the deduplicate -> predict -> expand path exactly.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from conftest import harmonic_signal, harmonic_tone

SR_LJ = 22050
FRAMES_PER_UNIT = 2          # the duration predictor below predicts exp(log 3) - 1 = 2 frames
HOP = 320
KM100_SHA256 = "f14a3104615485381fc489701d6761c9abbdbb0d43607cf55518a1e2891023fe"

# tiny HuBERT: the real conv kernels/strides (hop 320, receptive field 400), small widths
HUBERT_CFG = {
    "model": {"_name": "hubert", "extractor_mode": "default",
              "conv_feature_layers": "[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16,2,2)] * 2",
              "encoder_layers": 6, "encoder_embed_dim": 16, "encoder_ffn_embed_dim": 32,
              "encoder_attention_heads": 2, "activation_fn": "gelu", "conv_pos": 16,
              "conv_pos_groups": 4, "conv_bias": False, "layer_norm_first": False},
    "task": {"_name": "hubert_pretraining", "normalize": False, "labels": ["km"]},
}

# the key set of fairseq's code_hifigan hubert_base_100_lj config.json (hubert100_dw1.0.json),
# with small widths; note: no "multispkr" key (fairseq reads it with cfg.get -> None)
VOCODER_CFG = {
    "resblock": "1", "num_gpus": 8, "batch_size": 16, "learning_rate": 0.0002,
    "adam_b1": 0.8, "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234,
    "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
    "upsample_initial_channel": 32, "resblock_kernel_sizes": [3],
    "resblock_dilation_sizes": [[1, 3, 5]],
    "num_embeddings": 100, "embedding_dim": 8, "model_in_dim": 8,
    "segment_size": 8960, "code_hop_size": 320, "f0": False,
    "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 256, "win_size": 1024,
    "dur_prediction_weight": 1.0,
    "dur_predictor_params": {"encoder_embed_dim": 8, "var_pred_hidden_dim": 8,
                             "var_pred_kernel_size": 3, "var_pred_dropout": 0.5},
    "sampling_rate": 16000, "fmin": 0, "fmax": 8000, "fmax_for_loss": None,
    "num_workers": 4, "dist_config": {"dist_backend": "nccl", "dist_url": "env://"},
}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(n)


def make_ljspeech(root, n: int = 3):
    """An LJSpeech-1.1 layout: metadata.csv (id|text|normalized) + wavs/<id>.wav at 22.05 kHz
    (speech-like harmonic signals with voiced stretches and pauses)."""
    import librosa

    (root / "wavs").mkdir(parents=True)
    lines = []
    for i in range(n):
        uid = f"LJ001-{i + 1:04d}"
        x = librosa.resample(harmonic_signal(mult=1.0 + 0.2 * i, seed=i), orig_sr=16000,
                             target_sr=SR_LJ)
        sf.write(root / "wavs" / f"{uid}.wav", x, SR_LJ, subtype="PCM_16")
        lines.append(f"{uid}|Printing, text {i}.|Printing, text {i}.")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def place_official_files(home) -> dict:
    """Files of the official layouts at the catalogue paths (see module docstring)."""
    from resyn_bench.catalogue import catalogue_path
    from resyn_bench.nn.hubert import HubertModel, arch_from_fairseq_cfg
    from resyn_bench.systems.encoders.kmeans import KMeansModel, converted_path
    from resyn_bench.systems.vocoder.generator import DurationCodeGenerator

    torch.manual_seed(0)
    hubert = catalogue_path("hubert-base-ls960")
    assert str(hubert).startswith(str(home))
    hubert.parent.mkdir(parents=True)
    arch = arch_from_fairseq_cfg(HUBERT_CFG["model"], HUBERT_CFG["task"])
    assert (arch.hop_size, arch.receptive_field) == (HOP, 400)
    sd = HubertModel(arch).state_dict()
    sd["label_embs_concat"] = torch.zeros(100, 8)       # pre-training heads, as in the real file
    sd["final_proj.weight"] = torch.zeros(8, 16)
    torch.save({"model": sd, "cfg": HUBERT_CFG}, hubert)

    km_bin = catalogue_path("hubert-l6-km100")
    km_bin.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    meta = {"extractor": "hubert", "layer": 6, "checkpoint": "hubert-base-ls960",
            "hop_size": HOP, "sample_rate": 16000, "name": "hubert-l6-km100",
            "catalogue_name": "hubert-l6-km100", "source": str(km_bin),
            "source_sha256": KM100_SHA256,
            "trained_on": "LibriSpeech train-clean-100 (GSLM, HuBERT Base layer 6)"}
    # post-LN HuBERT outputs are layer-normalised: unit-variance centroids spread the units
    KMeansModel(rng.standard_normal((100, 16)).astype(np.float32), meta).save(converted_path(km_bin))

    g_file = catalogue_path("vocoder-hubert100-lj")
    cfg_file = catalogue_path("vocoder-hubert100-lj-config")
    assert g_file.parent == cfg_file.parent and cfg_file.name == "config.json"
    g_file.parent.mkdir(parents=True)
    model = DurationCodeGenerator(VOCODER_CFG)
    with torch.no_grad():  # known answer: log(1 + d) = log 3 for every unit -> d = 2 frames
        model.dur_predictor.proj.weight.zero_()
        model.dur_predictor.proj.bias.fill_(math.log(1 + FRAMES_PER_UNIT))
    gsd = model.state_dict()
    # the fairseq code_hifigan key layout (units only: no speaker, no F0 tables)
    for key in ("dict.weight", "conv_pre.weight_g", "conv_pre.weight_v", "ups.0.weight_v",
                "resblocks.0.convs1.0.weight_g", "conv_post.bias", "dur_predictor.conv1.0.weight",
                "dur_predictor.ln1.weight", "dur_predictor.conv2.0.bias", "dur_predictor.proj.weight"):
        assert key in gsd, key
    assert not any(k.startswith(("spkr.", "f0_dict.", "quantizer.")) for k in gsd)
    torch.save({"generator": gsd}, g_file)
    cfg_file.write_text(json.dumps(VOCODER_CFG, indent=4), encoding="utf-8")
    return {"g": g_file, "config": cfg_file, "hubert": hubert, "km": converted_path(km_bin)}


def run_cli(*argv: str) -> int:
    from resyn_bench.cli import main

    return main(list(argv))


def test_missing_files_name_url_path_and_fetch(home, tmp_path, capsys):
    from resyn_bench.catalogue import CatalogueError, catalogue_path

    root = make_ljspeech(tmp_path / "LJSpeech-1.1", n=1)
    capsys.readouterr()
    try:
        code = run_cli("run", "--system", "hubert100-lj-pretrained", "--dataset", "ljspeech",
                       "--data-root", str(root), "--out", str(tmp_path / "run"),
                       "--metrics", "pitch", "--quiet")
    except CatalogueError as exc:   # the CLI lets the catalogue error through (traceback)
        msg = str(exc)
    else:                           # ... or reports it on stderr with a failing exit code
        assert code != 0
        msg = capsys.readouterr().err
    assert "https://dl.fbaipublicfiles.com/fairseq/speech_to_speech/vocoder/code_hifigan/" \
           "hubert_base_100_lj/g_00500000" in msg
    assert str(catalogue_path("vocoder-hubert100-lj")) in msg
    assert "resyn-bench fetch vocoder-hubert100-lj" in msg

    capsys.readouterr()
    assert run_cli("ls", "systems") == 0
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.startswith("hubert100-lj-pretrained"))
    assert "needs:" in line and "fetch vocoder-hubert100-lj" in line and "350.0" in line


def test_pretrained_system_runs_from_hand_placed_files(home, tmp_path, capsys):
    from resyn_bench.audio import load_audio
    from resyn_bench.safeload import sha256_file
    from resyn_bench.store import read_manifest, read_records
    from resyn_bench.systems.encoders.base import load_unit_encoder

    files = place_official_files(home)
    capsys.readouterr()
    assert run_cli("ls", "systems") == 0
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.startswith("hubert100-lj-pretrained"))
    assert line.rstrip().endswith("ready"), line

    root = make_ljspeech(tmp_path / "LJSpeech-1.1")
    out = tmp_path / "run"
    assert run_cli("run", "--system", "hubert100-lj-pretrained", "--dataset", "ljspeech",
                   "--data-root", str(root), "--out", str(out), "--metrics", "pitch",
                   "--quiet") == 0

    records = read_records(out)
    assert len(records) == 3
    assert all(r["status"] == "ok" for r in records), records
    manifest = read_manifest(out)
    system = manifest["system"]
    assert system["checkpoint"] == {"path": str(files["g"].resolve()), "step": 500000,
                                    "sha256": sha256_file(files["g"])}
    assert system["duration_prediction"] is True and system["f0"] is False
    assert system["units"] == "hubert-l6-km100" and system["speakers"] is None
    assert system["unit_encoder"]["kmeans"]["source_sha256"] == KM100_SHA256
    assert system["unit_encoder"]["extractor"]["checkpoint"] == str(files["hubert"])
    streams = {s["name"]: s for s in system["streams"]}
    assert set(streams) == {"units"}                     # no F0 codes, no speaker
    assert (streams["units"]["frame_rate"], streams["units"]["vocab_size"]) == (50.0, 100)

    from resyn_bench.reports.collate import bitrate_bps

    assert bitrate_bps(system["streams"]) == 350.0       # the paper's HuBERT K=100 rate

    # independent check of every output: HuBERT L6 + km100 on the 16 kHz input, runs of equal
    # units collapsed, each unique unit -> 2 predicted frames of 320 samples
    encoder = load_unit_encoder("hubert-l6-km100")
    import librosa

    for r in records:
        ref = load_audio(root / "wavs" / f"{r['utt_id']}.wav")
        x16 = librosa.resample(ref.samples, orig_sr=SR_LJ, target_sr=16000)
        units = encoder.encode(x16)
        n_unique = 1 + int(np.count_nonzero(np.diff(units)))
        assert 1 < n_unique < len(units)                 # deduplication does something here
        path = out / r["output_path"]
        y = load_audio(path)
        assert y.sample_rate == 16000 and np.all(np.isfinite(y.samples))
        # the predicted length is kept (not cut/padded to the input's)
        assert len(y.samples) == n_unique * FRAMES_PER_UNIT * HOP
        assert r["output_duration_s"] == pytest.approx(len(y.samples) / 16000)
        assert r["output_duration_s"] != pytest.approx(r["duration_s"], abs=0.01)
        # F0 metrics on the differing lengths: the output track is put on the reference's
        # frame times (nearest frame, unvoiced past the output's end), so every reference
        # frame is scored once, whatever length the durations gave
        counts = r["counts"]
        assert abs(counts["f0.n_frames"] - r["duration_s"] / 0.005) <= 2
        assert counts["f0.n_ref_voiced"] > 0.3 * counts["f0.n_frames"]
        assert 0.0 <= r["metrics"]["f0.vde"] <= 1.0 and 0.0 <= r["metrics"]["f0.ffe"] <= 1.0


def test_system_encode_decode_direct(home, tmp_path):
    """The same system through the Python API: frame-level units in the stream, decode
    deduplicates and expands by the predicted durations; no F0 stats or speaker map needed."""
    from resyn_bench.registry import make_system
    from resyn_bench.systems.vocoder.system import CheckpointSystemError

    place_official_files(home)
    system = make_system("hubert100-lj-pretrained")
    assert system.speakers() is None and system.f0_stats is None
    x = harmonic_tone(150, duration=1.0)
    x[6000:8000] = 0
    from resyn_bench.audio import Audio

    streams = system.encode(Audio(x, 16000), None)
    units = streams["units"]
    assert units.dtype == np.int64 and len(units) == (len(x) - 400) // HOP + 1  # raw HuBERT frames
    y = system.decode(streams).samples
    n_unique = 1 + int(np.count_nonzero(np.diff(units)))
    assert len(y) == n_unique * FRAMES_PER_UNIT * HOP
    assert streams.meta["deduplicated_units"] == n_unique
    assert np.array_equal(y, system.decode(streams).samples)        # deterministic (eval mode)
    # a repeated unit run changes nothing: only the deduplicated sequence reaches the vocoder
    doubled = type(streams)({"units": np.repeat(units, 2)}, 16000, dict(streams.meta))
    assert np.array_equal(system.decode(doubled).samples, y)

    with pytest.raises(CheckpointSystemError, match="f0_edit=flat needs a vocoder conditioned on F0"):
        make_system("hubert100-lj-pretrained", f0_edit="flat")
    with pytest.raises(CheckpointSystemError, match="single-speaker vocoder takes no speaker"):
        make_system("hubert100-lj-pretrained", speaker="LJ")
