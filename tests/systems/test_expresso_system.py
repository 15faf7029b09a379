"""Public-weights voice conversion: ``expresso-hubert500`` (textlesslib's Expresso vocoder
``hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500`` + HuBERT Base L9 km500) and the mHuBERT
km1000 named systems.

The released files cannot be downloaded in tests, so files of the same layouts are placed at
the catalogue paths under a temporary ``$RESYN_BENCH_HOME``: a tiny fairseq-format HuBERT with
the real strides and 9 layers, the safe k-means a documented km.bin converts into, and the
vocoder folder as released (``generator.pt`` = {'generator': state_dict} with ``spkr`` and
``style`` LUTs, ``config.json`` with ``multispkr``/``multistyle``, ``speakers.txt``,
``styles.txt``). The output is checked against an independent float64 computation.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import harmonic_tone
from test_fairseq_vocoders import published_forward, published_state_dict
from test_pretrained_system import HOP, HUBERT_CFG

HUBERT9_CFG = {"model": dict(HUBERT_CFG["model"], encoder_layers=9), "task": HUBERT_CFG["task"]}
SPEAKERS = ["ex01", "ex02", "lj", "vctk_p225", "vctk_p226"]
STYLES = ["read-default", "read-happy", "read-sad", "read-whisper"]
# the key set of the Expresso training config (speech-resynthesis examples/expresso), small widths
EXPRESSO_CFG = {
    "resblock": "1", "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002, "adam_b1": 0.8,
    "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234, "upsample_rates": [5, 4, 4, 2, 2],
    "upsample_kernel_sizes": [11, 8, 8, 4, 4], "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
    "num_embeddings": 500, "embedding_dim": 8, "model_in_dim": 24,
    "multispkr": "from_input_file", "multistyle": "from_input_file", "num_speakers": 8,
    "num_styles": 6, "segment_size": 8960, "code_hop_size": 320, "num_mels": 80,
    "num_freq": 1025, "n_fft": 1024, "hop_size": 256, "win_size": 1024, "sampling_rate": 16000,
    "fmin": 0, "fmax": 8000, "fmax_for_loss": None, "num_workers": 4,
    "dist_config": {"dist_backend": "nccl", "dist_url": "env://"}}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def place_expresso_files(home) -> dict:
    from resyn_bench.catalogue import catalogue_path, known_sha256
    from resyn_bench.nn.hubert import HubertModel, arch_from_fairseq_cfg
    from resyn_bench.systems.encoders.kmeans import KMeansModel, converted_path

    torch.manual_seed(0)
    hubert = catalogue_path("hubert-base-ls960")
    hubert.parent.mkdir(parents=True, exist_ok=True)
    arch = arch_from_fairseq_cfg(HUBERT9_CFG["model"], HUBERT9_CFG["task"])
    torch.save({"model": HubertModel(arch).state_dict(), "cfg": HUBERT9_CFG}, hubert)

    km_bin = catalogue_path("hubert-l9-km500")
    meta = {"extractor": "hubert", "layer": 9, "checkpoint": "hubert-base-ls960",
            "hop_size": HOP, "sample_rate": 16000, "name": "hubert-l9-km500",
            "catalogue_name": "hubert-l9-km500", "source": str(km_bin),
            "source_sha256": known_sha256("hubert-l9-km500")}
    centroids = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)
    KMeansModel(centroids, meta).save(converted_path(km_bin))

    folder = catalogue_path("vocoder-expresso-hubert-l9-km500").parent
    assert folder.name == "hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500"
    folder.mkdir(parents=True)
    sd = published_state_dict(EXPRESSO_CFG, seed=3)
    torch.save({"generator": sd}, folder / "generator.pt")
    (folder / "config.json").write_text(json.dumps(EXPRESSO_CFG, indent=4), encoding="utf-8")
    (folder / "speakers.txt").write_text("\n".join(SPEAKERS) + "\n", encoding="utf-8")
    (folder / "styles.txt").write_text("\n".join(STYLES) + "\n", encoding="utf-8")
    for name in ("vocoder-expresso-hubert-l9-km500", "vocoder-expresso-hubert-l9-km500-config",
                 "vocoder-expresso-hubert-l9-km500-speakers",
                 "vocoder-expresso-hubert-l9-km500-styles"):
        assert catalogue_path(name).is_file(), name
    return {"sd": sd, "folder": folder}


def test_catalogue_names_the_release():
    from resyn_bench import catalogue
    from resyn_bench.named_systems import get_named_system

    base = ("https://dl.fbaipublicfiles.com/textless_nlp/expresso/checkpoints/"
            "hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500/")
    entry = catalogue.get_entry("hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500")
    assert entry.url == base + "generator.pt"
    assert {catalogue.get_entry(n).url for n in entry.requires} == {
        base + "config.json", base + "speakers.txt", base + "styles.txt"}
    assert catalogue.get_entry("hubert-l9-km500").url == \
        "https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960_L9_km500.bin"
    ns = get_named_system("hifigan_expresso_lj_vctk_hubert_base_ls960_L9_km500")
    assert ns.name == "expresso-hubert500" and ns.unit_spec() == "hubert-l9-km500"
    assert ns.layer == 9 and ns.speaker == "lut" and ns.bitrate() == 450.0


def test_missing_files_say_what_to_fetch(home):
    from resyn_bench.catalogue import CatalogueError, catalogue_path
    from resyn_bench.named_systems import get_named_system
    from resyn_bench.registry import make_system

    status = get_named_system("expresso-hubert500").status()
    for name in ("vocoder-expresso-hubert-l9-km500", "vocoder-expresso-hubert-l9-km500-styles",
                 "hubert-l9-km500", "hubert-base-ls960"):
        assert f"fetch {name}" in status
    with pytest.raises(CatalogueError) as err:
        make_system("expresso-hubert500")
    assert str(catalogue_path("vocoder-expresso-hubert-l9-km500")) in str(err.value)
    assert "resyn-bench fetch vocoder-expresso-hubert-l9-km500" in str(err.value)
    status = get_named_system("mhubert1000-es-css10").status()
    for name in ("vocoder-mhubert1000-es-css10", "vocoder-mhubert1000-es-css10-config",
                 "mhubert-l11-km1000", "mhubert-base-vp-en-es-fr"):
        assert f"fetch {name}" in status


def test_mhubert_unit_encoder_spec():
    from resyn_bench.systems.encoders.base import parse_catalogue_spec

    name, info = parse_catalogue_spec("mhubert-l11-km1000")
    assert (name, info["layer"], info["checkpoint"], info["hop_size"]) == (
        "mhubert-l11-km1000", 11, "mhubert-base-vp-en-es-fr", 320)
    name, info = parse_catalogue_spec("hubert-l9-km500")
    assert (info["layer"], info["checkpoint"]) == (9, "hubert-base-ls960")


def test_voice_conversion_with_public_layout(home):
    from resyn_bench.audio import Audio
    from resyn_bench.named_systems import get_named_system
    from resyn_bench.registry import make_system
    from resyn_bench.systems.encoders.base import load_unit_encoder
    from resyn_bench.systems.vocoder.system import CheckpointSystemError

    files = place_expresso_files(home)
    assert get_named_system("expresso-hubert500").status() == "ready"
    system = make_system("expresso-hubert500", speaker="vctk_p225")
    assert system.speakers() == sorted(SPEAKERS)
    assert system.style == "read-default"
    d = system.describe()
    assert d["units"] == "hubert-l9-km500" and d["style"] == "read-default" and d["styles"] == 4
    x = harmonic_tone(140, duration=0.5)
    streams = system.encode(Audio(x, 16000), None)
    assert streams["speaker"] == SPEAKERS.index("vctk_p225") and streams["style"] == 0
    units = streams["units"]
    # independent: the same units from the encoder, the published forward in float64
    enc = load_unit_encoder("hubert-l9-km500")
    assert enc.extractor.layer == 9
    raw = enc.encode(np.pad(x, (0, -len(x) % HOP)))
    assert np.array_equal(units[:len(raw)], raw)
    y = system.decode(streams).samples
    ref = published_forward(files["sd"], EXPRESSO_CFG, torch.as_tensor(units)[None],
                            spkr=torch.tensor([[3]]), style=torch.tensor([[0]]))
    ref = ref.reshape(-1).numpy()[:len(x)]
    assert len(y) == len(x)
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=0)

    happy = make_system("expresso-hubert500", speaker="vctk_p225", style="read-happy")
    s2 = happy.encode(Audio(x, 16000), None)
    assert s2["style"] == 1
    assert not np.allclose(happy.decode(s2).samples, y)
    with pytest.raises(CheckpointSystemError, match="read-default"):
        make_system("expresso-hubert500", style="singing")
    with pytest.raises(CheckpointSystemError, match="not a training speaker"):
        make_system("expresso-hubert500", speaker="p999")


def test_voice_conversion_run(home, tmp_path):
    """The runner's VC protocol over the vocoder's own voices (targets from speakers.txt)."""
    import soundfile as sf
    from conftest import write_manifest

    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_records

    place_expresso_files(home)
    root = tmp_path / "c"
    root.mkdir()
    rows = []
    for i, spk in enumerate(("lj", "ex01")):
        sf.write(root / f"u{i}.wav", harmonic_tone(120 + 40 * i, duration=0.6), 16000)
        rows.append({"utt_id": f"u{i}", "speaker": spk, "path": f"u{i}.wav"})
    tsv = write_manifest(root, rows)
    run(RunConfig(system="expresso-hubert500", dataset="manifest", data_root=str(tsv),
                  out=str(tmp_path / "run"), metrics="pitch", f0_preset="dio", vc_targets=2,
                  experiment="vc"), progress=False)
    records = read_records(tmp_path / "run")
    assert len(records) == 4 and all(r["status"] == "ok" for r in records), records
    for r in records:
        assert r["target_speaker"] in SPEAKERS and r["target_speaker"] != r["speaker"]
