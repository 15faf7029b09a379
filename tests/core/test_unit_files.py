"""Unit files (resyn_bench.unit_files): reference dict lines, our JSONL, paths, name|codes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED  # noqa: E402

from resyn_bench.unit_files import (
    UnitEntry,
    UnitFileError,
    audio_stem,
    index_by_stem,
    parse_unit_line,
    read_unit_file,
    write_unit_file,
)

UNITS = SHARED / "units"
# wc -l of each file (units/SOURCE.md); entries = newlines + 1 where the file has no final newline
REAL_FILES = {
    "LJSpeech/hubert100/test.txt": (654, "hubert", False),
    "LJSpeech/cpc100/test.txt": (655, "cpc_km100", True),
    "LJSpeech/vqvae256/test.txt": (654, "vqvae256", False),
    "VCTK/hubert100/test.txt": (2172, "hubert", False),
    "VCTK/cpc100/test.txt": (2172, "cpc_km100", False),
    "VCTK/vqvae256/test.txt": (2172, "vqvae256", False),
}


def test_reference_line_parsed_with_literal_eval():
    e = parse_unit_line("{'audio': 'data/w/LJ001-0023.wav', 'hubert': '71 86 86 9', "
                        "'duration': 8.48}")
    assert e.audio == "data/w/LJ001-0023.wav" and e.key == "hubert" and e.duration == 8.48
    assert e.units.dtype == np.int64 and e.units.tolist() == [71, 86, 86, 9]
    assert e.stem == "LJ001-0023" and e.utt_id == "LJ001-0023" and e.extra == {}
    for key in ("cpc_km100", "cpc", "vqvae256", "codes"):
        assert parse_unit_line(f"{{'audio': 'a.flac', '{key}': '1 2'}}").key == key
    # LibriLight placeholder: a bare -1
    assert parse_unit_line("{'audio': '/x/a.flac', 'cpc_km100': '-1'}").units.tolist() == [-1]


def test_code_injection_is_not_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    line = "{'audio': __import__('pathlib').Path(" + repr(str(marker)) + ").touch(), 'hubert': '1'}"
    f = tmp_path / "evil.txt"
    f.write_text("{'audio': 'a.wav', 'hubert': '1 2'}\n" + line)
    with pytest.raises(UnitFileError, match=r"evil\.txt:2"):
        read_unit_file(f)
    assert not marker.exists()


@pytest.mark.parametrize("bad, match", [
    ("{'audio': 'a.wav', 'hubert': '1 x 2'}", "space-separated"),
    ("{'hubert': '1 2'}", "no 'audio' key"),
    ("{'audio': 'a.wav', 'hubert': '1 2', 'duration': 'long'}", "duration"),
    ("{'audio': 'a.wav', 'hubert': '1 2'", "not a dict literal"),
    ("a.wav\t1,2,x", "TAB"),
])
def test_bad_lines_name_file_and_line(tmp_path, bad, match):
    f = tmp_path / "units.txt"
    f.write_text("{'audio': 'ok.wav', 'hubert': '1 2'}\n\n" + bad + "\n")
    with pytest.raises(UnitFileError, match=match) as info:
        read_unit_file(f)
    assert f"{f}:3" in str(info.value)


def test_other_line_formats(tmp_path):
    f = tmp_path / "mixed.txt"
    f.write_text("data/wavs/LJ001-0001.wav\n"
                 "LJ001-0002|5 6 7\n"
                 "p225_001\t1,2,3\n"
                 '{"utt_id": "u4", "speaker": "s", "audio": "x/u4.wav", "hubert": [9, 8], '
                 '"duration": 1.5, "hop_size": 320, "vocab_size": 100}\n')
    a, b, c, d = read_unit_file(f)
    assert a.audio == "data/wavs/LJ001-0001.wav" and a.units.size == 0 and a.key == ""
    assert (b.audio, b.key, b.units.tolist()) == ("LJ001-0002", "codes", [5, 6, 7])
    assert (c.stem, c.units.tolist()) == ("p225_001", [1, 2, 3])
    assert d.units.tolist() == [9, 8] and d.duration == 1.5 and d.key == "hubert"
    assert d.utt_id == "u4" and d.speaker == "s"
    assert d.extra == {"utt_id": "u4", "speaker": "s", "hop_size": 320, "vocab_size": 100}
    assert audio_stem("C:\\data\\p225_001_mic2.flac") == "p225_001_mic2"


def test_write_reference_and_jsonl_roundtrip(tmp_path):
    entries = [UnitEntry("data/a/x1.wav", [1, 2, 3], "hubert", 0.06),
               UnitEntry("data/a/it's.wav", np.array([0, 99]), "hubert", 0.04)]
    ref = write_unit_file(tmp_path / "u.txt", entries, key="hubert")
    raw = ref.read_text()
    assert not raw.endswith("\n") and raw.count("\n") == 1
    assert raw.splitlines()[0] == "{'audio': 'data/a/x1.wav', 'hubert': '1 2 3', 'duration': 0.06}"
    assert read_unit_file(ref) == entries

    js = write_unit_file(tmp_path / "u.jsonl", entries, key="cpc_km100", fmt="jsonl",
                         hop_size=160, vocab_size=100)
    rows = [json.loads(x) for x in js.read_text().splitlines()]
    assert js.read_text().endswith("\n")
    assert rows[0] == {"utt_id": "x1", "speaker": None, "audio": "data/a/x1.wav",
                       "cpc_km100": "1 2 3", "duration": 0.06, "hop_size": 160,
                       "vocab_size": 100}
    back = read_unit_file(js)
    assert [e.units.tolist() for e in back] == [[1, 2, 3], [0, 99]]
    assert back[1].extra["hop_size"] == 160 and back[1].key == "cpc_km100"
    with pytest.raises(UnitFileError, match="two entries"):
        index_by_stem(entries + entries[:1])


@pytest.mark.parametrize("rel", sorted(REAL_FILES))
def test_real_reference_files(rel, tmp_path):
    path = UNITS / rel
    if not path.is_file():
        pytest.skip(f"shared units not available: {path}")
    n_lines, key, final_newline = REAL_FILES[rel]
    raw = path.read_bytes()
    assert raw.count(b"\n") == n_lines
    entries = read_unit_file(path)
    assert len(entries) == n_lines + (0 if final_newline else 1)
    assert {e.key for e in entries} == {key}
    assert all(e.units.size > 0 and e.units.min() >= 0 and e.duration > 0 for e in entries)
    vocab = 256 if "vqvae" in rel else 100
    assert max(int(e.units.max()) for e in entries) < vocab
    # units per second: 50 Hz HuBERT, 100 Hz CPC / VQ-VAE
    rate = np.median([e.units.size / e.duration for e in entries])
    assert rate == pytest.approx(50 if key == "hubert" else 100, rel=0.02)
    out = write_unit_file(tmp_path / "copy.txt", entries, key=None,
                          trailing_newline=final_newline)
    assert out.read_bytes() == raw


def test_real_lj_hubert_first_entry():
    path = UNITS / "LJSpeech/hubert100/test.txt"
    if not path.is_file():
        pytest.skip(f"shared units not available: {path}")
    first = read_unit_file(path)[0]
    assert first.audio == "data/LJSpeech-1.1/wavs_16khz/LJSpeech-1.1/wavs_16khz/LJ001-0023.wav"
    assert first.stem == "LJ001-0023" and first.duration == 8.48
    # 8.48 s = 135680 samples -> floor((N - 400) / 320) + 1 = 423 HuBERT frames
    assert first.units.size == (135680 - 400) // 320 + 1 == 423
    assert first.units[:8].tolist() == [71, 86, 86, 9, 44, 80, 60, 60]
