"""`resyn-bench codec`: stream bitrates of unit files (the paper's and synthetic ones)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED

from resyn_bench.cli import main
from resyn_bench.codec_study import CodecStudyError, render, study, study_unit_file, utterance_fraction
from resyn_bench.unit_files import UnitEntry, write_unit_file

UNITS = SHARED / "units"


def _entries(n: int, seed: int = 0, speakers=("p225", "p226", "p227")) -> list[UnitEntry]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        spk = speakers[i % len(speakers)]
        units = np.repeat(rng.integers(0, 100, 40), rng.integers(1, 4, 40))
        out.append(UnitEntry(audio=f"data/wav/{spk}_{i:03d}_mic2.flac", units=units, key="hubert",
                             duration=len(units) / 50))
    return out


def test_hash_split_is_stable_and_about_half():
    ids = [f"p225_{i:03d}" for i in range(400)]
    f = [utterance_fraction(i) for i in ids]
    assert f == [utterance_fraction(i) for i in ids] and all(0 <= x < 1 for x in f)
    assert 150 < sum(x < 0.5 for x in f) < 250


def test_synthetic_unit_file(tmp_path):
    path = write_unit_file(tmp_path / "syn" / "hubert100" / "test.txt", _entries(60))
    s = study_unit_file(path)
    assert s.frame_rate == 50.0 and s.vocab_size == 100 and s.paper_bps == 350.0
    r = s.rates
    assert r.raw == 350.0 and r.round_trip is True
    assert r.n_sequences + r.n_train_sequences == 60
    # a uniform random unit per run: ~log2(100) bits per run; durations 1..3 uniform
    assert r.dedup / r.runs_per_second == pytest.approx(np.log2(100), abs=0.3)
    assert r.huffman >= r.unigram * 0.95   # fitted on other utterances: no better than the entropy
    assert s.speaker["n_speakers"] == 3 and s.speaker["bits_per_utterance_raw"] == 2
    d = s.to_dict()
    assert d["total"]["raw"] == 412.5 and d["total"]["paper"] == 415.0
    text = render({"streams": [d], "runs": [], "f0_codes": study([])["f0_codes"]}, "md")
    assert "| syn/hubert100 (HuBERT) | 50 | 100 | 350 | 350 |" in text
    assert "62.5" in text and "65" in text


def test_train_file_beside_test_file_is_used(tmp_path):
    folder = tmp_path / "corpus" / "hubert100"
    write_unit_file(folder / "test.txt", _entries(20, seed=1))
    write_unit_file(folder / "train.txt", _entries(50, seed=2))
    result = study([tmp_path / "corpus"])
    (s,) = result["streams"]
    assert s["label"] == "corpus/hubert100"
    assert s["rates"]["n_sequences"] == 20 and s["rates"]["n_train_sequences"] == 50
    assert "train.txt" in s["split"]


def test_bad_inputs(tmp_path):
    with pytest.raises(CodecStudyError, match="no such file"):
        study([tmp_path / "missing.txt"])
    placeholder = tmp_path / "ll" / "test.txt"
    placeholder.parent.mkdir()
    placeholder.write_text("{'audio': '/x/a.flac', 'cpc_km100': '-1'}\n{'audio': '/x/b.flac', "
                           "'cpc_km100': '-1'}")
    with pytest.raises(CodecStudyError, match="negative unit ids"):
        study_unit_file(placeholder)
    odd = write_unit_file(tmp_path / "odd" / "x.txt", _entries(10), key="units")
    with pytest.raises(CodecStudyError, match="--frame-rate"):
        study_unit_file(odd)
    assert study_unit_file(odd, frame_rate=25, vocab=128).rates.raw == 25 * 7
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecStudyError, match="no unit files"):
        study([tmp_path / "empty"])


def test_cli_json_and_errors(tmp_path, capsys):
    path = write_unit_file(tmp_path / "u" / "hubert100" / "test.txt", _entries(30))
    assert main(["codec", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["streams"][0]["rates"]["raw"] == 350.0
    assert out["f0_codes"]["formula_bps"] == 62.5 and out["f0_codes"]["paper_bps"] == 65.0
    assert main(["codec", str(path), str(path), "--train", str(path)]) == 2
    assert "--train goes with exactly one" in capsys.readouterr().err
    for fmt in ("text", "tex", "csv"):
        assert main(["codec", str(path), "--format", fmt, "--out", str(tmp_path / f"o.{fmt}")]) == 0
        assert (tmp_path / f"o.{fmt}").read_text(encoding="utf-8").strip()
    assert "\\toprule" in (tmp_path / "o.tex").read_text(encoding="utf-8")


def test_the_papers_streams_lj(capsys):
    folder = UNITS / "LJSpeech"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    assert main(["codec", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    by_key = {s["key"]: s for s in result["streams"]}
    assert by_key["hubert"]["rates"]["raw"] == 350.0
    assert by_key["cpc_km100"]["rates"]["raw"] == 700.0
    assert by_key["vqvae256"]["rates"]["raw"] == 800.0
    for s in result["streams"]:
        assert s["rates"]["round_trip"] is True
        assert s["rates"]["unigram"] < s["rates"]["raw"]          # entropy coding saves
        assert s["best_achieved_bps"] < s["rates"]["raw"]
        assert s["speaker"]["n_speakers"] == 1                     # LJSpeech: one voice


@pytest.mark.slow
def test_the_papers_streams_all(capsys):
    if not UNITS.is_dir():
        pytest.skip(f"{UNITS} not present")
    assert main(["codec", str(UNITS)]) == 0
    text = capsys.readouterr().out
    for label in ("LJSpeech/hubert100", "VCTK/hubert100", "VCTK/cpc100", "VCTK/vqvae256"):
        assert label in text
    assert "62.5" in text and "65" in text


def test_run_directory_row(tiny_corpus, tmp_path, home, capsys):
    pytest.importorskip("pycodec2")
    from resyn_bench.runner import RunConfig, run

    out = tmp_path / "c2"
    run(RunConfig(system="codec2", dataset="manifest", data_root=str(tiny_corpus), out=str(out),
                  metrics="pitch", f0_preset="dio", system_options={"mode": "700C"},
                  experiment="codec"), progress=False)
    assert main(["codec", str(out), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["runs"]
    assert row["source"] == "measured" and row["nominal_bps"] == 700.0
    assert 700.0 <= row["bitrate"] < 760.0 and row["n_utterances"] == 6
