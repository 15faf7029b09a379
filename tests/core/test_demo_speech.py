"""The embedded real-speech `demo` dataset, read from the installed package."""
from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from resyn_bench import demo_speech
from resyn_bench.audio import load_audio, validate
from resyn_bench.datasets import DatasetError, load_dataset

REPO = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_loads_from_the_installed_package():
    import resyn_bench

    folder = demo_speech.demo_dir()
    assert folder == Path(resyn_bench.__file__).resolve().parent / "data" / "demo"
    ds = load_dataset("demo")
    assert ds.root == folder and ds.info["corpus_dir"] == str(folder)
    assert ds.info["version"] == demo_speech.DEMO_VERSION
    assert ds.info["manifest_sha256"] == hashlib.sha256(
        (folder / "manifest.tsv").read_bytes()).hexdigest()
    assert "real speech" in ds.info["layout"]
    assert len(ds) == 30 and ds.info["counts"]["with_text"] == 30


def test_speakers_are_balanced_for_cross_validation():
    from resyn_bench.metrics.speaker import assign_folds

    ds = load_dataset("demo")
    counts = Counter(u.speaker for u in ds)
    assert counts == {"p225": 6, "p226": 6, "p227": 6, "p228": 6, "LJ": 6}
    # 5-fold CV: every utterance is held out once, and every fold keeps >= 4 training
    # utterances of every speaker (no enrolment-only speaker, every fold enrols everybody)
    folds = assign_folds([u.utt_id for u in ds], [u.speaker for u in ds], folds=5)
    assert all(f >= 0 for f in folds.values())
    for f in range(5):
        kept = Counter(u.speaker for u in ds if folds[u.utt_id] != f)
        assert set(kept) == set(counts) and min(kept.values()) >= 4
    # both sexes (VCTK speaker table), and the VCTK speakers read the same sentences
    attribution = (ds.root / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for spk, sex in (("p225", "F"), ("p226", "M"), ("p227", "M"), ("p228", "F")):
        assert f"| {spk} |" in attribution and f"| {sex} |" in attribution.split(f"| {spk} |")[1]
    texts = {spk: {u.text for u in ds if u.speaker == spk} for spk in ("p225", "p226", "p228")}
    assert texts["p225"] == texts["p226"] == texts["p228"]


def test_audio_files_durations_and_transcripts():
    ds = load_dataset("demo")
    rows = {r["utt_id"]: r for r in _rows(ds.root / "manifest.tsv")}
    total_bytes = total_s = 0.0
    for u in ds:
        assert u.path.suffix == ".flac" and u.path.is_relative_to(ds.root)
        audio = validate(load_audio(u.path), what=u.utt_id)
        assert audio.sample_rate == 16000
        assert 2.0 <= audio.duration <= 8.0
        assert abs(float(rows[u.utt_id]["duration_s"]) - audio.duration) < 1e-3
        assert rows[u.utt_id]["sample_rate"] == "16000"
        # speech, not silence or clipping; trimmed: no second of near-silence at either end
        peak = float(np.max(np.abs(audio.samples)))
        assert 0.05 < peak < 1.0
        hop = 1600
        edge = [audio.samples[:hop * 10], audio.samples[-hop * 10:]]
        for seg in edge:
            frames = seg[:len(seg) // hop * hop].reshape(-1, hop)
            assert np.max(np.sqrt(np.mean(frames ** 2, axis=1))) > 0.01 * peak
        # transcripts: ordinary words, no digits, no abbreviations or markup
        assert u.text and u.text == " ".join(u.text.split())
        assert not any(c.isdigit() for c in u.text)
        assert set(u.text) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ,.;'")
        total_bytes += u.path.stat().st_size
        total_s += audio.duration
    assert total_bytes < 4e6 and 120 < total_s < 180


def test_licence_provenance_and_hashes():
    folder = demo_speech.check_demo_dir()
    attribution = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needed in ("CC BY 4.0", "creativecommons.org/licenses/by/4.0", "public domain",
                   "Yamagishi", "Linda Johnson", "resampled", "trimmed"):
        assert needed.lower() in attribution.lower(), needed
    prov = _rows(folder / "PROVENANCE.tsv")
    manifest = _rows(folder / "manifest.tsv")
    assert [r["utt_id"] for r in prov] == [r["utt_id"] for r in manifest]
    for r, m in zip(prov, manifest, strict=True):
        assert hashlib.sha256((folder / m["path"]).read_bytes()).hexdigest() == r["sha256"]
        assert r["source"].startswith(("vctk_againvc_48k/", "ljspeech_coqui_subset/"))
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == {m["path"] for m in manifest} | set(demo_speech.METADATA_FILES)


def test_bad_roots_and_damaged_copies(tmp_path):
    with pytest.raises(DatasetError, match="embedded in the package and takes no data root"):
        load_dataset("demo", tmp_path)
    # a copy of the corpus folder is accepted; a damaged one names what is missing
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(demo_speech.demo_dir(), copy)
    assert [u.utt_id for u in load_dataset("demo", copy)] == [u.utt_id
                                                              for u in load_dataset("demo")]
    (copy / "flac" / "p226" / "p226_004.flac").unlink()
    with pytest.raises(DatasetError, match="lacks 1 audio files.*p226_004.*reinstall"):
        load_dataset("demo", copy)
    (copy / "ATTRIBUTION.md").unlink()
    with pytest.raises(DatasetError, match="missing ATTRIBUTION.md.*reinstall"):
        load_dataset("demo", copy)


@pytest.mark.slow
def test_rebuild_script_reproduces_the_committed_audio(tmp_path):
    """tests/tools/build_demo_speech.py rebuilds the same samples from ../shared/corpora."""
    corpora = SHARED / "corpora"
    if not (corpora / "vctk_againvc_48k").is_dir() or not (corpora / "ljspeech_coqui_subset").is_dir():
        pytest.skip(f"{corpora} not present")
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_demo_speech",
                                                  REPO / "tests" / "tools" / "build_demo_speech.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--corpora", str(corpora), "--out", str(tmp_path / "demo")]) == 0
    new, old = tmp_path / "demo", demo_speech.demo_dir()
    assert (new / "manifest.tsv").read_text() == (old / "manifest.tsv").read_text()
    for m in _rows(old / "manifest.tsv"):
        a, b = load_audio(new / m["path"]), load_audio(old / m["path"])
        assert np.array_equal(a.samples, b.samples), m["utt_id"]


@pytest.mark.slow
def test_copy_row_is_ground_truth_for_pitch_and_speaker(tmp_path, home):
    """The copy system on the real demo: zero F0 errors, every speaker recognised in every
    held-out fold (5 speakers x 6 utterances: 30 target and 120 non-target trials)."""
    pytest.importorskip("resemblyzer")
    from resyn_bench.reports.collate import summarize_run
    from resyn_bench.runner import RunConfig, run

    out = tmp_path / "copy"
    res = run(RunConfig(system="copy", dataset="demo", out=str(out), metrics="f0,spk",
                        f0_preset="dio"), progress=False)
    assert res.n_failed == 0
    m = summarize_run(out).metrics
    assert m["f0.ffe"].pooled == 0.0 and m["f0.vde"].pooled == 0.0
    assert m["spk.n_target_trials"].pooled == 30 and m["spk.n_nontarget_trials"].pooled == 120
    assert m["spk.eer"].pooled == 0.0
    assert m["spk.acc"].pooled == pytest.approx(1.0)


def test_wer_by_speaker_pools_edits_over_reference_words(monkeypatch, tmp_path):
    import resyn_bench.store as store

    recs = [{"speaker": "a", "counts": {"asr.word_edits": 1, "asr.ref_words": 10}},
            {"speaker": "a", "counts": {"asr.word_edits": 3, "asr.ref_words": 30}},
            {"speaker": "b", "counts": {"asr.word_edits": 0, "asr.ref_words": 7}},
            {"speaker": "c", "counts": {}},                       # ASR failed: left out
            {"speaker": "b", "counts": {"asr.word_edits": 2, "asr.ref_words": 3}}]
    monkeypatch.setattr(store, "read_records", lambda run_dir, groups=None: recs)
    by = demo_speech.wer_by_speaker(tmp_path)
    assert by == {"a": pytest.approx(10.0), "b": pytest.approx(20.0)}   # 4/40, 2/10


def test_demo_command_prints_ground_truth_wer_by_speaker(tmp_path, home, capsys):
    pytest.importorskip("pocketsphinx")
    from resyn_bench.cli import main

    assert main(["demo", "--out", str(tmp_path / "d"), "--systems", "copy", "--metrics", "asr",
                 "--limit", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("ground truth (copy) WER by speaker"))
    expected = demo_speech.wer_by_speaker(tmp_path / "d" / "demo-copy")
    assert list(expected) == ["p225"]     # the first two utterances are p225's
    assert line.endswith(f"p225 {expected['p225']:.1f} %")
