"""F0 statistics (resyn_bench.systems.vocoder.f0_stats) and `resyn-bench f0-stats`."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED, harmonic_tone, write_manifest  # noqa: E402

from resyn_bench.datasets import load_dataset
from resyn_bench.systems.vocoder.data import extract_f0, load_training_audio
from resyn_bench.systems.vocoder.f0_stats import (
    F0Stats,
    F0StatsError,
    SpeakerF0,
    compute_f0_stats,
    load_f0_stats,
    speaker_ids_from_names,
)

UNITS = SHARED / "units"
# known F0 per utterance (Hz); 110/130 -> mean 120, std 10; 200/240 -> mean 220, std 20
TONES = {"spkB": (200.0, 240.0), "spkA": (110.0, 130.0)}


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    (root / "wavs").mkdir()
    rows = []
    for spk, f0s in TONES.items():
        for j, f0 in enumerate(f0s):
            x = np.zeros(int(1.2 * 16000), np.float32)          # 0.1 s silence each side
            x[1600:1600 + 16000] = harmonic_tone(f0, duration=1.0, n_harmonics=6)
            uid = f"{spk}_{j}"
            sf.write(root / "wavs" / f"{uid}.wav", x, 16000, subtype="PCM_16")
            rows.append({"utt_id": uid, "speaker": spk, "path": f"wavs/{uid}.wav"})
    write_manifest(root, rows)
    return root / "manifest.tsv"


def test_stats_of_known_tones(tone_corpus, tmp_path):
    ds = load_dataset("manifest", tone_corpus)
    stats = compute_f0_stats(ds, "pyworld", cache_dir=tmp_path / "cache")
    assert stats.speaker_ids == {"spkA": 0, "spkB": 1}        # sorted names, like the reference
    for spk, (lo, hi) in TONES.items():
        s = stats.speakers[spk]
        assert s.mean == pytest.approx((lo + hi) / 2, abs=1.0)
        assert s.std == pytest.approx((hi - lo) / 2, abs=1.0)
        # ~200 voiced frames per 1 s tone; the silences stay unvoiced
        assert 380 <= s.n_frames <= 402
    g = stats.global_stats
    allf = np.array([f for pair in TONES.values() for f in pair])
    assert g.mean == pytest.approx(allf.mean(), abs=1.5)
    assert g.std == pytest.approx(allf.std(), abs=1.5)
    assert g.n_frames == sum(s.n_frames for s in stats.speakers.values())
    assert stats.lookup("spkA") == (stats.speakers["spkA"].mean, stats.speakers["spkA"].std)
    assert stats.lookup("nobody") == (g.mean, g.std)             # unseen speaker -> global

    # independent computation from the raw tracks: pooled mean / population std per speaker
    for spk in TONES:
        voiced = np.concatenate([
            (t := extract_f0(load_training_audio(u.path), "pyworld"))[t > 0]
            for u in ds if u.speaker == spk]).astype(np.float64)
        assert stats.speakers[spk].mean == pytest.approx(voiced.mean(), rel=1e-9)
        assert stats.speakers[spk].std == pytest.approx(voiced.std(), rel=1e-9)
        assert stats.speakers[spk].n_frames == voiced.size

    # the disk cache is reused: a second run extracts nothing
    from resyn_bench.systems.vocoder import data as vdata
    calls = []
    orig = vdata.extract_f0
    try:
        vdata.extract_f0 = lambda *a, **k: calls.append(1) or orig(*a, **k)
        again = compute_f0_stats(ds, "pyworld", cache_dir=tmp_path / "cache")
    finally:
        vdata.extract_f0 = orig
    assert calls == [] and again.to_dict() == stats.to_dict()


def test_json_roundtrip_and_normalize(tmp_path):
    stats = F0Stats(global_stats=SpeakerF0(150.0, 30.0, 1000),
                    speakers={"a": SpeakerF0(100.0, 10.0, 400), "b": SpeakerF0(200.0, 20.0, 600)},
                    speaker_ids={"a": 0, "b": 1}, extractor="yaapt", sample_rate=16000)
    path = stats.save(tmp_path / "s.json")
    data = json.loads(path.read_text())
    assert data["global"] == {"mean": 150.0, "std": 30.0, "n_frames": 1000}
    assert data["speakers"]["b"] == {"mean": 200.0, "std": 20.0, "n_frames": 600}
    assert data["speaker_ids"] == {"a": 0, "b": 1} and data["extractor"] == "yaapt"
    back = load_f0_stats(path)
    assert back.to_dict() == stats.to_dict()
    f0 = np.array([0.0, 110.0, 90.0, 0.0, 120.0])
    assert back.normalize(f0, "a").tolist() == pytest.approx([0, 1, -1, 0, 2])
    assert back.normalize(f0, 1).tolist() == pytest.approx([0, -4.5, -5.5, 0, -4])  # by id
    assert back.normalize(f0, "zz").tolist() == pytest.approx([0, -4/3, -2, 0, -1])  # global
    den = back.denormalize(back.normalize(f0, "b"), f0 > 0, "b")
    assert den.tolist() == pytest.approx(f0.tolist())


def test_reference_layout_written_and_read_back(tmp_path):
    torch = pytest.importorskip("torch")
    stats = F0Stats(global_stats=SpeakerF0(150.0, 30.0),
                    speakers={"a": SpeakerF0(100.0, 10.0), "b": SpeakerF0(200.0, 20.0)},
                    speaker_ids={"a": 0, "b": 1})
    ref = stats.to_reference_dict()
    assert ref == {0: {"f0_mean": 100.0, "f0_std": 10.0}, 1: {"f0_mean": 200.0, "f0_std": 20.0},
                   "f0_mean": 150.0, "f0_std": 30.0}
    torch.save(ref, tmp_path / "f0_stats.th")
    back = load_f0_stats(tmp_path / "f0_stats.th", speaker_ids={"a": 0, "b": 1})
    assert back.lookup("b") == (200.0, 20.0) and back.lookup(0) == (100.0, 10.0)
    assert back.lookup("c") == (150.0, 30.0)


def test_malformed_stats(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"global": {"mean": 100.0, "std": 0.0}}))
    with pytest.raises(F0StatsError, match="positive"):
        load_f0_stats(bad)
    bad.write_text(json.dumps({"format": "other/9", "global": None}))
    with pytest.raises(F0StatsError, match="unknown format"):
        load_f0_stats(bad)
    with pytest.raises(F0StatsError, match="f0-stats"):
        load_f0_stats(tmp_path / "missing.json")
    with pytest.raises(F0StatsError, match="unexpected key"):
        F0Stats.from_reference({"speaker": {"f0_mean": 1.0, "f0_std": 1.0}})
    only_ids = F0Stats.from_reference({3: {"f0_mean": 100.0, "f0_std": 10.0}})
    with pytest.raises(F0StatsError, match="speaker_ids"):
        only_ids.lookup("p225")


def test_refuses_code_executing_pickle(tmp_path):
    torch = pytest.importorskip("torch")
    from resyn_bench.safeload import UnsafeCheckpointError

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"f0_mean": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError):
        load_f0_stats(tmp_path / "evil.pth")


def test_reference_files():
    lj, vctk = UNITS / "LJSpeech/f0_stats.pth", UNITS / "VCTK/f0_stats.th"
    if not lj.is_file() or not vctk.is_file():
        pytest.skip(f"reference f0 stats not in {UNITS}")
    s = load_f0_stats(lj)
    assert s.lookup() == pytest.approx((209.04119886766213, 58.75603900262766), abs=1e-9)
    assert s.lookup("LJ") == s.lookup()          # single speaker: global values
    v = load_f0_stats(vctk)
    assert v.global_stats is None and sorted(v.by_id) == list(range(109))
    for sid, mean, std in ((18, 90.63, 10.38), (28, 142.02, 20.53), (69, 197.27, 26.25),
                           (105, 111.74, 25.97), (108, 119.17, 27.05), (57, 99.05, 21.46)):
        assert v.lookup(sid) == pytest.approx((mean, std), abs=0.006)
    # named lookups need the training-time map (sorted names of the 109 training speakers)
    names = [f"s{i:03d}" for i in range(109)]
    named = load_f0_stats(vctk, speaker_ids=speaker_ids_from_names(names))
    assert named.lookup("s018") == pytest.approx((90.63, 10.38), abs=0.006)
    with pytest.raises(F0StatsError, match="speaker_ids"):
        v.lookup("p225")
    # our JSON keeps the values and names them
    data = named.to_dict()
    assert data["speakers"]["s018"]["mean"] == pytest.approx(90.63, abs=0.006)


def test_cli_f0_stats(tone_corpus, tmp_path, capsys):
    from resyn_bench.cli.f0_stats import configure_parser as configure_f0_stats_parser
    from resyn_bench.cli.f0_stats import run as run_f0_stats

    p = argparse.ArgumentParser()
    configure_f0_stats_parser(p)
    out = tmp_path / "stats.json"
    args = p.parse_args(["--dataset", "manifest", "--data-root", str(tone_corpus),
                         "--extractor", "pyworld", "--limit", "3", "--out", str(out),
                         "--torch-out", str(tmp_path / "f0.th"), "--quiet"])
    assert run_f0_stats(args) == 0
    text = capsys.readouterr().out
    assert "spkA" in text and "(global)" in text and "mean_hz" in text
    stats = load_f0_stats(out)
    # a manifest keeps its order (spkB_0, spkB_1, spkA_0, ...): --limit 3 has one spkA tone
    assert stats.speakers["spkA"].mean == pytest.approx(110.0, abs=1.0)
    assert stats.speakers["spkA"].n_frames < 250
    assert stats.speakers["spkB"].mean == pytest.approx(220.0, abs=1.0)
    assert load_f0_stats(tmp_path / "f0.th", speaker_ids=out).lookup("spkA") == \
        pytest.approx(stats.lookup("spkA"))
    # a missing dataset: one line through the command line's error policy, exit 2
    from resyn_bench.cli import main

    assert main(["f0-stats", "--dataset", "manifest", "--data-root", str(tmp_path / "nope"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resyn-bench f0-stats: error: ") and "nope" in err


def test_parallel_extraction_matches_serial(tone_corpus, tmp_path):
    ds = load_dataset("manifest", tone_corpus)
    serial = compute_f0_stats(ds, "pyworld")
    parallel = compute_f0_stats(ds, "pyworld", jobs=2, cache_dir=tmp_path / "c")
    assert parallel.to_dict() == serial.to_dict()
    assert len(list((tmp_path / "c").rglob("*.npy"))) == len(ds)   # workers wrote the cache


@pytest.mark.parametrize("extractor", [
    "pyworld", pytest.param("yaapt", marks=pytest.mark.slow)])   # yaapt: ~50 s on 2 cores
def test_real_vctk_stats_match_reference_file(extractor):
    """Our stats of 10 silence-trimmed utterances per speaker against the reference
    VCTK/f0_stats.th: ids 0..3 are p225..p228 (the first four sorted training speakers)."""
    corpus = SHARED / "corpora/vctk_againvc_48k/manifest.tsv"
    ref_file = UNITS / "VCTK/f0_stats.th"
    if not corpus.is_file() or not ref_file.is_file():
        pytest.skip("shared VCTK subset / reference stats not available")
    ours = compute_f0_stats(load_dataset("manifest", corpus), extractor)
    ref = load_f0_stats(ref_file)
    assert ours.speaker_ids == {"p225": 0, "p226": 1, "p227": 2, "p228": 3}
    for name, sid in ours.speaker_ids.items():
        ref_mean, ref_std = ref.lookup(sid)
        mean, std = ours.lookup(name)
        assert mean == pytest.approx(ref_mean, rel=0.05), name     # measured: within 4.1 %
        assert ref_std / 2 < std < ref_std * 1.8, name
