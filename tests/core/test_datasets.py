"""Dataset loaders on tiny fake layouts, split-file formats, errors, and the shared real corpora."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED

from resyn_bench.datasets import (
    DATASETS,
    Dataset,
    DatasetError,
    Utterance,
    list_datasets,
    load_dataset,
    read_split,
)

CORPORA = SHARED / "corpora"


def tone(path: Path, sr: int = 16000, dur: float = 0.1, freq: float = 220.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * dur)) / sr
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * freq * t), sr, subtype="PCM_16")
    return path


def ids(ds: Dataset) -> list[str]:
    return [u.utt_id for u in ds.utterances]


# --------------------------------------------------------------------------- fake layouts


@pytest.fixture
def ljspeech(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    for utt in ("LJ001-0001", "LJ001-0002", "LJ002-0003"):
        tone(root / "wavs" / f"{utt}.wav", sr=22050)
    # Unsorted, an unbalanced '"' (as in the real file), an empty normalized column, and a
    # listed id whose wav is missing.
    (root / "metadata.csv").write_text(
        'LJ002-0003|He said "no more.|He said "no more.\n'
        "LJ001-0001|Printing, in 1455|Printing, in fourteen fifty-five\n"
        "LJ001-0002|raw text only|\n"
        "LJ009-0009|no audio for this one|no audio for this one\n", encoding="utf-8")
    return root


@pytest.fixture
def vctk092(tmp_path):
    root = tmp_path / "VCTK-Corpus-0.92"
    audio = root / "wav48_silence_trimmed"
    for spk, nums in (("p225", ("001", "002")), ("p315", ("001",))):
        for num in nums:
            for mic, freq in (("mic1", 200.0), ("mic2", 300.0)):
                tone(audio / spk / f"{spk}_{num}_{mic}.flac", sr=48000, freq=freq)
    (root / "txt" / "p225").mkdir(parents=True)
    (root / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\n")
    (root / "txt" / "p225" / "p225_002.txt").write_text("Ask her to bring these things.\n")
    (audio / "log.txt").write_text("not audio")
    return root


@pytest.fixture
def vctk_old(tmp_path):
    root = tmp_path / "VCTK-Corpus"
    for spk, num in (("p226", "002"), ("p226", "001"), ("p227", "001")):
        tone(root / "wav48" / spk / f"{spk}_{num}.wav", sr=48000)
        (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
        (root / "txt" / spk / f"{spk}_{num}.txt").write_text(f"sentence {spk} {num}")
    return root


@pytest.fixture
def librispeech(tmp_path):
    root = tmp_path / "LibriSpeech"
    chap = root / "test-clean" / "1089" / "134686"
    tone(chap / "1089-134686-0001.flac")
    tone(chap / "1089-134686-0000.flac")
    tone(chap / "1089-134686-0002.flac")  # no transcript line
    (chap / "1089-134686.trans.txt").write_text(
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER\n"
        "1089-134686-0001 STUFF IT INTO YOU\n")
    chap2 = root / "test-clean" / "121" / "123852"
    tone(chap2 / "121-123852-0000.flac")
    (chap2 / "121-123852.trans.txt").write_text("121-123852-0000 THOSE PRETTY WRONGS\n")
    return root


@pytest.fixture
def manifest(tmp_path):
    root = tmp_path / "corpus"
    rel = tone(root / "wavs" / "b.wav")
    absolute = tone(tmp_path / "elsewhere" / "a.wav")
    tone(root / "wavs" / "c.wav")
    (root / "manifest.tsv").write_text(
        "utt_id\tspeaker\tpath\ttext\tsample_rate\tduration_s\n"
        f"utt_b\tspk1\twavs/{rel.name}\tHello \"world\"\t16000\t0.1\n"
        f"utt_a\tspk2\t{absolute}\t\t16000\t0.1\n"
        "utt_c\t\twavs/c.wav\tthird\t16000\t0.1\n", encoding="utf-8")
    return root


# --------------------------------------------------------------------------- loaders


def test_ljspeech_layout(ljspeech):
    ds = load_dataset("ljspeech", ljspeech)
    # sorted; the listed id without audio is kept (the runner records it as failed "missing")
    assert ids(ds) == ["LJ001-0001", "LJ001-0002", "LJ002-0003", "LJ009-0009"]
    assert not {u.utt_id: u for u in ds}["LJ009-0009"].path.exists()
    ds.utterances = [u for u in ds if u.utt_id != "LJ009-0009"]
    by = {u.utt_id: u for u in ds}
    assert by["LJ001-0001"].text == "Printing, in fourteen fifty-five"  # normalized column
    assert by["LJ001-0002"].text == "raw text only"  # empty normalized -> raw
    assert by["LJ002-0003"].text == 'He said "no more.'  # quote kept, no csv quoting
    assert ds.speakers() == ["LJ"]
    assert all(u.path.is_file() and u.path.is_absolute() for u in ds)
    assert ds.info["missing_audio"] == {"count": 1, "first": ["LJ009-0009"]}
    assert ds.info["counts"]["utterances"] == 4
    json.dumps(ds.info)
    # the metadata.csv file itself is accepted as the root
    assert ids(load_dataset("ljspeech", ljspeech / "metadata.csv"))[:3] == ids(ds)


def test_vctk_092_mic1_default_and_mic2(vctk092):
    ds = load_dataset("vctk", vctk092)
    assert ids(ds) == ["p225_001", "p225_002", "p315_001"]
    assert all(u.path.name.endswith("_mic1.flac") for u in ds)
    by = {u.utt_id: u for u in ds}
    assert by["p225_001"].text == "Please call Stella."
    assert by["p315_001"].text is None  # no transcript, like the real p315
    assert by["p315_001"].speaker == "p315"
    assert ds.info["layout"] == "VCTK 0.92" and ds.info["mic"] == "mic1"
    assert ds.info["skipped_other_mic"] == 3
    ds2 = load_dataset("vctk", vctk092, mic="mic2")
    assert ids(ds2) == ids(ds)
    assert all(u.path.name.endswith("_mic2.flac") for u in ds2)
    assert load_dataset("vctk", vctk092, mic=2).utterances == ds2.utterances
    with pytest.raises(DatasetError, match="mic"):
        load_dataset("vctk", vctk092, mic="mic3")


def test_vctk_old_layout(vctk_old):
    ds = load_dataset("vctk", vctk_old)
    assert ids(ds) == ["p226_001", "p226_002", "p227_001"]
    assert ds.speakers() == ["p226", "p227"]
    assert ds.utterances[0].text == "sentence p226 001"
    assert ds.utterances[0].path == vctk_old.resolve() / "wav48" / "p226" / "p226_001.wav"
    assert ds.info["layout"] == "VCTK-Corpus (0.80)"


def test_vctk_resampled_wavs_folder(tmp_path):
    root = tmp_path / "vctk16"
    tone(root / "wavs" / "p228" / "p228_005.wav")
    tone(root / "wav16" / "p229" / "p229_001.wav")  # wav16 comes first in the search order
    ds = load_dataset("vctk", root)
    assert ids(ds) == ["p229_001"] and ds.info["audio_dir"] == "wav16"
    assert ids(load_dataset("vctk", root, audio_dir="wavs")) == ["p228_005"]


def test_librispeech_nested(librispeech):
    for root in (librispeech, librispeech / "test-clean"):
        ds = load_dataset("librispeech", root)
        assert ids(ds) == ["1089-134686-0000", "1089-134686-0001", "1089-134686-0002",
                           "121-123852-0000"]
        by = {u.utt_id: u for u in ds}
        assert by["1089-134686-0001"].text == "STUFF IT INTO YOU"
        assert by["1089-134686-0002"].text is None
        assert by["121-123852-0000"].speaker == "121"
        assert ds.speakers() == ["1089", "121"]
        assert ds.info["transcript_files"] == 2


def test_manifest_relative_absolute_and_empty_text(manifest):
    for root in (manifest, manifest / "manifest.tsv"):
        ds = load_dataset("manifest", root)
        assert ids(ds) == ["utt_b", "utt_a", "utt_c"]  # manifest order kept
        by = {u.utt_id: u for u in ds}
        assert by["utt_b"].path == manifest.resolve() / "wavs" / "b.wav"
        assert by["utt_b"].text == 'Hello "world"'
        assert by["utt_a"].path.parent.name == "elsewhere" and by["utt_a"].text is None
        assert by["utt_c"].speaker == "unknown"
        assert all(u.path.is_file() for u in ds)


def test_manifest_minimal_columns_and_missing_audio(tmp_path):
    tone(tmp_path / "x.wav")
    (tmp_path / "m.tsv").write_text("path\tutt_id\nx.wav\tx\n")
    ds = load_dataset("manifest", tmp_path / "m.tsv")
    assert ds.utterances == [Utterance("x", "unknown", tmp_path.resolve() / "x.wav", None)]
    (tmp_path / "bad.tsv").write_text("utt_id\tpath\nx\tx.wav\ny\tnope.wav\n")
    partial = load_dataset("manifest", tmp_path / "bad.tsv")  # kept; failed at run time
    assert ids(partial) == ["x", "y"]
    assert partial.info["missing_audio"]["count"] == 1
    (tmp_path / "none.tsv").write_text("utt_id\tpath\ny\tnope.wav\n")
    with pytest.raises(DatasetError, match="none of the 1 audio files exist.*nope.wav"):
        load_dataset("manifest", tmp_path / "none.tsv")
    (tmp_path / "nohdr.tsv").write_text("x\tx.wav\n")
    with pytest.raises(DatasetError, match="utt_id and path"):
        load_dataset("manifest", tmp_path / "nohdr.tsv")


def test_duplicate_ids_rejected(tmp_path):
    tone(tmp_path / "a.wav")
    tone(tmp_path / "b.wav")
    (tmp_path / "manifest.tsv").write_text("utt_id\tpath\nu1\ta.wav\nu1\tb.wav\n")
    with pytest.raises(DatasetError, match="duplicate utt_ids.*u1"):
        load_dataset("manifest", tmp_path)
    # the same VCTK utterance as .wav and .flac
    tone(tmp_path / "v" / "wav48" / "p225" / "p225_001.wav")
    tone(tmp_path / "v" / "wav48" / "p225" / "p225_001.flac")
    with pytest.raises(DatasetError, match="duplicate"):
        load_dataset("vctk", tmp_path / "v")


# --------------------------------------------------------------------------- split files


def test_split_plain_ids_keeps_file_order(vctk_old, tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("# test ids\np227_001\n\np226_001\np999_001\n")
    ds = load_dataset("vctk", vctk_old, split=split)
    assert ids(ds) == ["p227_001", "p226_001"]
    assert ds.info["split"]["format"] == "lines"
    assert ds.info["split"]["matched"] == 2 and ds.info["split"]["entries"] == 3
    assert ds.info["split_missing"] == {"count": 1, "first": ["p999_001"]}
    assert ds.info["counts"] == {"found": 3, "utterances": 2, "speakers": 2, "with_text": 2}


def test_split_paths_with_mic_suffix(vctk092, tmp_path):
    split = tmp_path / "paths.txt"
    split.write_text("wav48_silence_trimmed/p315/p315_001_mic2.flac\n"
                     "/abs/p225_002_mic2.flac|some text\n"
                     "p225_001.wav\n")
    ds = load_dataset("vctk", vctk092, split=split)
    assert ids(ds) == ["p315_001", "p225_002", "p225_001"]
    assert ds.info["split_missing"]["count"] == 0


def test_split_dict_literal_lines(vctk092, tmp_path):
    split = tmp_path / "test.txt"
    split.write_text(
        "{'audio': 'data/VCTK-Corpus/wav16_silence_trimmed_padded/p225_002_mic2.flac', "
        "'hubert': '71 12 12 63', 'duration': 2.3}\n"
        "{'audio': 'data/VCTK-Corpus/wav16_silence_trimmed_padded/p263_021_mic2.flac', "
        "'hubert': '1 2', 'duration': 1.0}\n"
        "{'audio': 'data/VCTK-Corpus/wav16_silence_trimmed_padded/p225_001_mic2.flac', "
        "'hubert': '5', 'duration': 0.5}")  # no newline at the end, like the real file
    sp = read_split(split)
    assert sp.format == "dict"
    assert sp.keys == ["p225_002_mic2", "p263_021_mic2", "p225_001_mic2"]
    ds = load_dataset("vctk", vctk092, split=split, mic="mic2")
    assert ids(ds) == ["p225_002", "p225_001"]
    assert ds.info["split_missing"] == {"count": 1, "first": ["p263_021_mic2"]}


def test_split_fairseq_tsv(librispeech, tmp_path):
    split = tmp_path / "test.tsv"
    split.write_text("/data/LibriSpeech/test-clean\n"
                     "121/123852/121-123852-0000.flac\t35040\n"
                     "1089/134686/1089-134686-0001.flac\t52400\n")
    ds = load_dataset("librispeech", librispeech, split=split)
    assert ds.info["split"]["format"] == "fairseq_tsv"
    assert ids(ds) == ["121-123852-0000", "1089-134686-0001"]


def test_split_duplicates_and_no_match(vctk_old, tmp_path):
    split = tmp_path / "dups.txt"
    split.write_text("p226_002\np226_002_mic1\np226_001\n")
    ds = load_dataset("vctk", vctk_old, split=split)
    assert ids(ds) == ["p226_002", "p226_001"] and ds.info["split"]["duplicates"] == 1
    none = tmp_path / "none.txt"
    none.write_text("LJ001-0001\nLJ001-0002\n")
    with pytest.raises(DatasetError, match="none of the 2 entries"):
        load_dataset("vctk", vctk_old, split=none)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("vctk", vctk_old, split=tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(DatasetError, match="lists no utterances"):
        load_dataset("vctk", vctk_old, split=empty)


def test_limit_after_ordering(vctk_old, tmp_path):
    assert ids(load_dataset("vctk", vctk_old, limit=2)) == ["p226_001", "p226_002"]
    split = tmp_path / "s.txt"
    split.write_text("p227_001\np226_002\np226_001\n")
    ds = load_dataset("vctk", vctk_old, split=split, limit=2)
    assert ids(ds) == ["p227_001", "p226_002"]
    assert ds.info["limit"] == 2 and ds.info["counts"]["utterances"] == 2
    assert len(load_dataset("vctk", vctk_old, limit=100)) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(DatasetError, match="limit"):
            load_dataset("vctk", vctk_old, limit=bad)


# --------------------------------------------------------------------------- names and errors


def test_names_table_and_did_you_mean(ljspeech):
    names = [n for n, _ in list_datasets()]
    assert set(names) == {"demo", "synthetic", "ljspeech", "vctk", "librispeech", "manifest"}
    assert names == list(DATASETS)
    assert all(desc and DATASETS[n].root_hint for n, desc in list_datasets())
    with pytest.raises(DatasetError, match=r"Did you mean 'ljspeech'.*Valid names: demo, "):
        load_dataset("ljspech", ljspeech)
    with pytest.raises(DatasetError, match="Did you mean 'librispeech'"):
        load_dataset("libri_speach", ljspeech)
    with pytest.raises(ValueError, match="Valid names"):  # DatasetError is a ValueError
        load_dataset("zzz", ljspeech)
    assert load_dataset("LJSpeech", ljspeech).name == "ljspeech"
    with pytest.raises(DatasetError, match="takes no option mic"):
        load_dataset("ljspeech", ljspeech, mic="mic1")


@pytest.mark.parametrize("name, expected", [
    ("ljspeech", "expected metadata.csv .* and wavs/<id>.wav under"),
    ("vctk", "expected wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac"),
    ("librispeech", "expected <speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac"),
    ("manifest", "expected a manifest .tsv file, or a folder holding manifest.tsv"),
])
def test_missing_or_wrong_root_says_what_was_expected(tmp_path, name, expected):
    with pytest.raises(DatasetError, match="does not exist.*" + expected):
        load_dataset(name, tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=expected):
        load_dataset(name, empty)
    with pytest.raises(DatasetError, match="needs a data root"):
        load_dataset(name)


def test_ljspeech_listed_but_no_audio(tmp_path):
    (tmp_path / "wavs").mkdir()
    (tmp_path / "metadata.csv").write_text("LJ001-0001|a|a\n")
    with pytest.raises(DatasetError, match="no usable utterances.*LJ001-0001"):
        load_dataset("ljspeech", tmp_path)
    (tmp_path / "metadata.csv").write_text("just one field\n")
    with pytest.raises(DatasetError, match="line 1: expected id|text"):
        load_dataset("ljspeech", tmp_path)


# --------------------------------------------------------------------------- real corpora


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


def test_real_manifests_load_with_their_counts():
    corpora = sorted(p.parent for p in _need(CORPORA).glob("*/manifest.tsv"))
    if not corpora:
        pytest.skip("no corpora with manifest.tsv")
    for folder in corpora:
        rows = _manifest_rows(folder / "manifest.tsv")
        ds = load_dataset("manifest", folder)
        assert ids(ds) == [r["utt_id"] for r in rows], folder.name
        assert ds.speakers() == sorted({r["speaker"] for r in rows})
        assert ds.info["counts"]["with_text"] == sum(bool(r["text"].strip()) for r in rows)
        assert all(u.path.is_file() for u in ds)
        json.dumps(ds.info)


def test_real_ljspeech_subset():
    root = _need(CORPORA / "ljspeech_coqui_subset")
    ds = load_dataset("ljspeech", root)
    rows = _manifest_rows(root / "manifest.tsv")
    assert len(ds) == len(rows) == 32 and ds.speakers() == ["LJ"]
    assert ids(ds) == sorted(r["utt_id"] for r in rows)
    normalized = {line.split("|")[0]: line.split("|")[2]
                  for line in (root / "metadata.csv").read_text(encoding="utf-8").splitlines()}
    assert all(u.text == normalized[u.utt_id].strip() for u in ds)


def test_real_vctk_and_librispeech_folders():
    for name in ("vctk_autovc_16k", "vctk_againvc_48k"):
        root = _need(CORPORA / name)
        ds = load_dataset("vctk", root)
        rows = _manifest_rows(root / "manifest.tsv")
        assert ids(ds) == sorted(r["utt_id"] for r in rows)
        assert ds.speakers() == ["p225", "p226", "p227", "p228"]
        assert ds.info["transcripts"] is False and ds.info["counts"]["with_text"] == 0
    ds = load_dataset("librispeech", _need(CORPORA / "librispeech_lhotse_fixture"))
    assert ids(ds) == ["2412-153948-0000", "2412-153948-0001"] and ds.speakers() == ["2412"]


def test_real_vctk_unit_split_against_autovc_subset():
    split = _need(SHARED / "units" / "VCTK" / "hubert100" / "test.txt")
    root = _need(CORPORA / "vctk_autovc_16k")
    sp = read_split(split)
    # 2173 dict lines (`wc -l` says 2172: the last line has no newline), all mic2 stems
    assert sp.format == "dict" and len(sp.keys) == 2173 == len(set(sp.keys))
    assert all(k.endswith("_mic2") for k in sp.keys)
    wanted = [k[: -len("_mic2")] for k in sp.keys]
    have = {r["utt_id"] for r in _manifest_rows(root / "manifest.tsv")}
    expected = [k for k in wanted if k in have]  # few: the subset is not the test set
    ds = load_dataset("vctk", root, split=split)
    assert ids(ds) == expected and 0 < len(expected) < 10
    assert ds.info["split_missing"]["count"] == 2173 - len(expected)
    assert len(ds.info["split_missing"]["first"]) == 5
    ds_m = load_dataset("manifest", root, split=split)
    assert ids(ds_m) == expected


def test_real_ljspeech_unit_split():
    split = _need(SHARED / "units" / "LJSpeech" / "hubert100" / "test.txt")
    root = _need(CORPORA / "ljspeech_coqui_subset")
    sp = read_split(split)
    assert sp.format == "dict" and sp.keys[0] == "LJ001-0023"
    ds = load_dataset("ljspeech", root, split=split)
    assert ids(ds) == [k for k in sp.keys if k in {u.utt_id for u in load_dataset("ljspeech",
                                                                                    root)}]
    assert len(ds) >= 1
