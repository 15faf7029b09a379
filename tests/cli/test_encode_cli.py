"""`resyn-bench train kmeans` and `resyn-bench encode` end to end on a tiny synthetic corpus
(log-mel features: no weights needed), plus the unit-encoder specs of base.load_unit_encoder.

Frame count: the log-mel features are Kaldi frames of 400 samples every 160 (whole frames only),
so an utterance of N samples at 16 kHz gets 1 + (N - 400) // 160 units (0 when N < 400).
"""
from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import harmonic_tone, write_manifest


def logmel_frames(n_samples: int) -> int:
    return 0 if n_samples < 400 else 1 + (n_samples - 400) // 160


def _args(configure, *argv):
    p = argparse.ArgumentParser()
    configure(p)
    return p.parse_args([str(a) for a in argv])


@pytest.fixture
def trained_run(tmp_path, tiny_corpus, home, capsys):
    """(k-means file, what the command printed)."""
    from resyn_bench.cli.kmeans import configure_parser as configure_train_kmeans_parser
    from resyn_bench.cli.kmeans import run as run_train_kmeans

    out = tmp_path / "km" / "logmel8.npz"
    args = _args(configure_train_kmeans_parser, "--encoder", "logmel", "--k", 8,
                 "--dataset", "manifest", "--data-root", tiny_corpus, "--batch-size", 128,
                 "--seed", 3, "--out", out, "--quiet")
    assert run_train_kmeans(args) == 0
    return out, capsys.readouterr().out


@pytest.fixture
def trained(trained_run):
    return trained_run[0]


def test_train_kmeans_writes_a_self_describing_model(trained_run, tiny_corpus):
    from resyn_bench.systems.encoders.kmeans import KMeansModel

    trained, out = trained_run
    assert "inertia" in out and "wrote" in out
    m = KMeansModel.load(trained)
    assert m.k == 8 and m.dim == 80
    meta = m.meta
    assert meta["extractor"] == "logmel" and meta["hop_size"] == 160
    assert meta["sample_rate"] == 16000 and meta["seed"] == 3 and "layer" not in meta
    # 6 utterances of 0.8 s at 16 kHz
    assert meta["training_data"]["utterances"] == 6
    assert meta["n_frames"] == 6 * logmel_frames(12800)
    assert "manifest" in meta["trained_on"] and meta["inertia"] > 0


def test_train_kmeans_max_frames_and_determinism(tmp_path, tiny_corpus, home, capsys):
    from resyn_bench.cli.kmeans import configure_parser as configure_train_kmeans_parser
    from resyn_bench.cli.kmeans import run as run_train_kmeans
    from resyn_bench.systems.encoders.kmeans import KMeansModel

    outs = []
    for name in ("a.npz", "b.npz"):
        args = _args(configure_train_kmeans_parser, "--encoder", "logmel", "--k", 4,
                     "--dataset", "manifest", "--data-root", tiny_corpus, "--max-frames", 200,
                     "--seed", 1, "--out", tmp_path / name, "--quiet")
        assert run_train_kmeans(args) == 0
        outs.append(KMeansModel.load(tmp_path / name))
    assert outs[0].meta["n_frames"] == 200
    assert outs[0].meta["training_data"]["frames_seen"] == 6 * logmel_frames(12800)
    assert np.array_equal(outs[0].centroids, outs[1].centroids)
    # a bad option combination: one line through the command line's error policy, exit 2
    from resyn_bench.cli import main

    capsys.readouterr()
    assert main(["train", "kmeans", "--encoder", "logmel", "--layer", "3", "--k", "4",
                 "--dataset", "manifest", "--data-root", str(tiny_corpus),
                 "--out", str(tmp_path / "c.npz")]) == 2
    err = capsys.readouterr().err
    assert "resyn-bench train kmeans: error: logmel features have no --layer" in err
    assert "Traceback" not in err and not (tmp_path / "c.npz").exists()


@pytest.mark.parametrize("fmt", ["reference", "jsonl"])
def test_encode_both_formats(trained, tiny_corpus, tmp_path, fmt):
    from resyn_bench.audio import load_audio
    from resyn_bench.cli.encode import configure_parser as configure_encode_parser
    from resyn_bench.cli.encode import run as run_encode
    from resyn_bench.systems.encoders.base import load_unit_encoder
    from resyn_bench.unit_files import read_unit_file

    out = tmp_path / f"units.{fmt}"
    args = _args(configure_encode_parser, "--units", trained, "--dataset", "manifest",
                 "--data-root", tiny_corpus, "--out", out, "--format", fmt, "--quiet")
    assert run_encode(args) == 0
    entries = read_unit_file(out)
    assert len(entries) == 6
    enc = load_unit_encoder(str(trained))
    assert (enc.vocab_size, enc.hop_size, enc.sample_rate) == (8, 160, 16000)
    for e in entries:
        assert e.key == "hubert"                    # the reference's generic code key
        audio = load_audio(e.audio)                 # absolute paths by default
        n = len(audio.samples)
        assert len(e.units) == logmel_frames(n) == enc.num_frames(n)
        assert e.duration == pytest.approx(n / 16000)
        assert np.array_equal(e.units, enc.encode(audio.samples))  # independent re-encode
        assert e.units.min() >= 0 and e.units.max() < 8
    text = out.read_text()
    if fmt == "reference":
        assert text.startswith("{'audio': ") and not text.endswith("\n")
        assert "utt_id" not in text                 # reference lines carry only its keys
    else:
        rows = [json.loads(line) for line in text.splitlines()]
        assert [r["utt_id"] for r in rows] == [f"spk{s}_{j:03d}" for s in "AB" for j in range(3)]
        assert {r["speaker"] for r in rows} == {"spkA", "spkB"}
        assert {r["hop_size"] for r in rows} == {160} and {r["vocab_size"] for r in rows} == {8}
    meta = json.loads((tmp_path / f"units.{fmt}.json").read_text())
    assert meta["utterances"] == 6 and meta["failed"] == {}
    assert meta["encoder"]["vocab_size"] == 8 and meta["encoder"]["frame_rate"] == 100
    assert meta["units_total"] == 6 * logmel_frames(12800)


def test_encode_reports_failures_and_continues(trained, tmp_path, capsys):
    from resyn_bench.cli.encode import configure_parser as configure_encode_parser
    from resyn_bench.cli.encode import run as run_encode
    from resyn_bench.unit_files import read_unit_file

    root = tmp_path / "mixed"
    (root / "wavs").mkdir(parents=True)
    sf.write(root / "wavs" / "good.wav", harmonic_tone(150, 0.5), 16000, subtype="PCM_16")
    # 22.05 kHz: resampled to 16 kHz (and counted), 0.5 s -> 8000 samples
    sf.write(root / "wavs" / "hi.wav", harmonic_tone(150, 0.5, sr=22050), 22050,
             subtype="PCM_16")
    (root / "wavs" / "broken.wav").write_bytes(b"RIFF not really a wav")
    sf.write(root / "wavs" / "tiny.wav", harmonic_tone(150, 0.01), 16000)  # 160 < 400 samples
    rows = [{"utt_id": u, "speaker": "s", "path": f"wavs/{u}.wav"}
            for u in ("good", "hi", "broken", "tiny")]
    write_manifest(root, rows)
    out = tmp_path / "out.txt"
    args = _args(configure_encode_parser, "--units", trained, "--dataset", "manifest",
                 "--data-root", root / "manifest.tsv", "--out", out, "--quiet",
                 "--audio-root", root)
    assert run_encode(args) == 0
    captured = capsys.readouterr()
    assert "broken" in captured.err and "tiny" in captured.err
    assert "encoded 2 of 4" in captured.out and "2 failed" in captured.out
    assert "22050 Hz -> 16000 Hz x1" in captured.out
    entries = read_unit_file(out)
    assert [e.audio for e in entries] == ["wavs/good.wav", "wavs/hi.wav"]  # --audio-root
    assert [len(e.units) for e in entries] == [logmel_frames(8000), logmel_frames(8000)]
    failed = dict(line.split("\t", 1) for line in
                  (tmp_path / "out.txt.failed.tsv").read_text().splitlines())
    assert set(failed) == {"broken", "tiny"}
    assert "unreadable" in failed["broken"] and "shorter than one frame" in failed["tiny"]


def test_encode_fails_an_utterance_with_non_finite_samples(trained, tmp_path, capsys):
    # NaN features would otherwise quantize silently to unit 0
    from resyn_bench.cli.encode import configure_parser as configure_encode_parser
    from resyn_bench.cli.encode import run as run_encode

    root = tmp_path / "nan"
    (root / "wavs").mkdir(parents=True)
    sf.write(root / "wavs" / "good.wav", harmonic_tone(150, 0.5), 16000, subtype="PCM_16")
    bad = harmonic_tone(150, 0.5).astype(np.float32)
    bad[100:200] = np.nan
    sf.write(root / "wavs" / "nan.wav", bad, 16000, subtype="FLOAT")
    write_manifest(root, [{"utt_id": u, "speaker": "s", "path": f"wavs/{u}.wav"}
                          for u in ("good", "nan")])
    out = tmp_path / "out.txt"
    args = _args(configure_encode_parser, "--units", trained, "--dataset", "manifest",
                 "--data-root", root / "manifest.tsv", "--out", out, "--quiet")
    assert run_encode(args) == 0
    failed = dict(line.split("\t", 1) for line in
                  (tmp_path / "out.txt.failed.tsv").read_text().splitlines())
    assert set(failed) == {"nan"} and "non_finite" in failed["nan"]


def test_encode_bad_spec_is_a_clear_error(tiny_corpus, tmp_path, home, capsys):
    from resyn_bench.cli import main

    assert main(["encode", "--units", "hubert-l6-km100", "--dataset", "manifest",
                 "--data-root", str(tiny_corpus), "--out", str(tmp_path / "u.txt")]) == 2
    err = capsys.readouterr().err
    assert "https://dl.fbaipublicfiles.com/textless_nlp/gslm/hubert/km100/km.bin" in err
    assert str(home / "checkpoints" / "gslm" / "hubert" / "km100" / "km.bin") in err
    assert not (tmp_path / "u.txt").exists()


# ------------------------------------------------------------------- load_unit_encoder specs

def _fake_gslm_km_bin(path, dim, k=5, seed=0):
    import joblib
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    km = KMeans(k, n_init=1, random_state=0).fit(rng.normal(size=(200, dim)).astype(np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(km, path)
    return km, hashlib.sha256(path.read_bytes()).hexdigest()


def test_catalogue_name_converts_km_bin_once_with_trust(home):
    from resyn_bench import catalogue
    from resyn_bench.safeload import UnsafeCheckpointError
    from resyn_bench.systems.encoders.base import load_unit_encoder

    path = catalogue.catalogue_path("logmel-km50")
    km, sha = _fake_gslm_km_bin(path, dim=80)
    with pytest.raises(UnsafeCheckpointError) as info:  # no documented hash for logmel-km50
        load_unit_encoder("logmel-km50")
    assert sha in str(info.value)
    enc = load_unit_encoder("logmel-km50", trusted_sha256=sha)
    assert path.with_name("km.npz").is_file()
    assert (enc.name, enc.vocab_size, enc.hop_size) == ("logmel-km50", 5, 160)
    wav = harmonic_tone(200, 0.3)
    feats = enc.features(wav)
    assert np.array_equal(enc.encode(wav), km.predict(feats))
    d = enc.describe()
    assert d["kmeans"]["source_sha256"] == sha and d["kmeans"]["catalogue_name"] == "logmel-km50"
    # later loads read the .npz (made from these very bytes): no hash needed
    assert load_unit_encoder("logmel-km50").vocab_size == 5


def test_hubert_name_needs_both_files(home):
    from resyn_bench import catalogue
    from resyn_bench.catalogue import CatalogueError
    from resyn_bench.systems.encoders.base import load_unit_encoder

    with pytest.raises(CatalogueError, match="km100/km.bin"):
        load_unit_encoder("hubert-km100")
    # a (fake) km.bin whose hash the user vouches for: now the HuBERT checkpoint is missing
    _, sha = _fake_gslm_km_bin(catalogue.catalogue_path("hubert-l6-km100"), dim=768)
    with pytest.raises(CatalogueError) as info:
        load_unit_encoder("hubert-l6-km100", trusted_sha256=sha)
    msg = str(info.value)
    assert "https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960.pt" in msg
    assert str(home / "checkpoints" / "hubert" / "hubert_base_ls960.pt") in msg


@pytest.mark.parametrize("spec,match", [
    ("hubert-l9-km100", "layer 6 only"),
    ("cpc-km1000", "K in 50, 100, 200, 500"),
    ("logmel-l2-km100", "only HuBERT names carry a layer"),
    ("no-such-units", "not a catalogue name"),
])
def test_bad_specs(spec, match, home):
    from resyn_bench.systems.encoders.base import UnitEncoderError, load_unit_encoder

    with pytest.raises(UnitEncoderError, match=match):
        load_unit_encoder(spec)


def test_dimension_mismatch_is_refused(tmp_path, home):
    from resyn_bench.systems.encoders.base import UnitEncoderError, load_unit_encoder
    from resyn_bench.systems.encoders.kmeans import KMeansModel

    path = KMeansModel(np.zeros((4, 768), np.float32), {"extractor": "logmel"}).save(
        tmp_path / "wrong.npz")
    with pytest.raises(UnitEncoderError, match="768-d"):
        load_unit_encoder(str(path))
    # a dict spec can name the extractor of a file that does not
    plain = KMeansModel(np.zeros((4, 80), np.float32)).save(tmp_path / "plain.npz")
    with pytest.raises(UnitEncoderError, match="does not name its feature extractor"):
        load_unit_encoder(str(plain))
    assert load_unit_encoder({"kmeans": str(plain), "extractor": "logmel"}).vocab_size == 4


# ------------------------------------------------------------------ the Python API (pipeline)

def test_fit_kmeans_and_encode_dataset_python_api(tiny_corpus, tmp_path, home):
    """The library functions behind `train kmeans` / `encode`, called without the CLI."""
    from resyn_bench.datasets import load_dataset
    from resyn_bench.systems.encoders.base import load_unit_encoder
    from resyn_bench.systems.encoders.kmeans import KMeansModel
    from resyn_bench.systems.encoders.pipeline import encode_dataset, fit_kmeans
    from resyn_bench.unit_files import read_unit_file

    data = load_dataset("manifest", str(tiny_corpus))
    lines = []
    fit = fit_kmeans(data, "logmel", 5, out=tmp_path / "km.npz", seed=2, batch_size=64,
                     say=lines.append, warn=lines.append)
    assert fit.path == tmp_path / "km.npz" and fit.failed == {}
    assert fit.n_utterances == 6 and fit.frames_seen == fit.frames_used == 6 * logmel_frames(12800)
    assert KMeansModel.load(fit.path).centroids.shape == (5, 80)
    assert np.array_equal(KMeansModel.load(fit.path).centroids, fit.model.centroids)
    assert lines and lines[0].startswith("features: 6 utterances")
    # in memory only: no file, same model for the same seed
    again = fit_kmeans(data, "logmel", 5, seed=2, batch_size=64, say=None)
    assert again.path is None and np.array_equal(again.model.centroids, fit.model.centroids)

    res = encode_dataset(data, str(fit.path))                       # no out: nothing written
    assert res.out is None and len(res.entries) == 6 and res.key == "hubert"
    enc = load_unit_encoder(str(fit.path))
    for utt, entry in zip(data.utterances, res.entries, strict=True):
        import soundfile as sf

        audio, _ = sf.read(utt.path, dtype="float32")
        assert np.array_equal(entry.units, enc.encode(audio))       # independent re-encode
    assert res.n_units == sum(len(e.units) for e in res.entries)
    written = encode_dataset(data, str(fit.path), out=tmp_path / "u.jsonl", fmt="jsonl")
    assert [e.units.tolist() for e in read_unit_file(written.out)] == [
        e.units.tolist() for e in res.entries]
    assert json.loads(written.meta_path.read_text())["utterances"] == 6


def test_pipeline_errors_are_user_errors(tiny_corpus, tmp_path, home):
    from resyn_bench.datasets import load_dataset
    from resyn_bench.errors import UserError
    from resyn_bench.systems.encoders.pipeline import PipelineError, PipelineFailed, fit_kmeans

    data = load_dataset("manifest", str(tiny_corpus))
    with pytest.raises(PipelineError, match="--k must be >= 1"):
        fit_kmeans(data, "logmel", 0)
    with pytest.raises(PipelineError, match="must end in .npz"):
        fit_kmeans(data, "logmel", 4, out=tmp_path / "km.bin")
    with pytest.raises(PipelineFailed, match="not enough for --k 100000") as info:
        fit_kmeans(data, "logmel", 100000, say=None)
    assert isinstance(info.value, UserError) and info.value.exit_code == 1
    assert not (tmp_path / "km.bin").exists()
