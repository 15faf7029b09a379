"""The espeak-ng `synthetic` dataset: content, size option, caching, atomic builds, determinism."""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from resyn_bench import demo_corpus
from resyn_bench.audio import load_audio, validate
from resyn_bench.datasets import DatasetError, load_dataset
from resyn_bench.paths import resyn_bench_home

pytest.importorskip("espeakng_loader")


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real build, through load_dataset('synthetic') with RESYN_BENCH_HOME set."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESYN_BENCH_HOME", str(home))
        t0 = time.perf_counter()
        ds = load_dataset("synthetic")
        seconds = time.perf_counter() - t0
    return home, ds, seconds


def test_home_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RESYN_BENCH_HOME", str(tmp_path))
    assert resyn_bench_home() == tmp_path
    assert demo_corpus.synthetic_corpus_dir() == tmp_path / "synthetic" / "v2-n20"
    assert demo_corpus.synthetic_corpus_dir(utterances=400) == tmp_path / "synthetic" / "v2-n400"
    monkeypatch.delenv("RESYN_BENCH_HOME")
    assert resyn_bench_home() == Path.home() / ".cache" / "resyn-bench"


def test_synthetic_content(built):
    home, ds, seconds = built
    corpus = home / "synthetic" / "v2-n20"
    assert len(ds) == 20 and "not meaningful" in ds.info["layout"]
    assert ds.root == corpus and (corpus / "manifest.tsv").is_file()
    assert len(ds.speakers()) >= 4 and len(ds) >= 12
    assert ds.speakers() == sorted(v.speaker for v in demo_corpus.VOICES)
    assert ds.info["counts"]["with_text"] == len(ds)
    durations = {}
    for u in ds:
        assert u.path == corpus / "wavs" / u.speaker / f"{u.utt_id}.wav"
        assert u.text and u.text.strip()
        audio = validate(load_audio(u.path), what=u.utt_id)  # non-empty, finite, non-silent
        assert audio.sample_rate == 16000
        assert 1.0 <= audio.duration <= 8.0
        assert np.max(np.abs(audio.samples)) > 0.05
        durations[u.utt_id] = audio.duration
    rows = (corpus / "manifest.tsv").read_text().splitlines()
    assert rows[0].split("\t") == list(demo_corpus.MANIFEST_COLUMNS)
    for row in rows[1:]:
        utt_id, _, _, _, sr, dur = row.split("\t")
        assert sr == "16000" and abs(float(dur) - durations[utt_id]) < 1e-3
    assert seconds < 20


def test_speakers_differ(built):
    _, ds, _ = built
    # same sentence, different voices -> different signals (and lengths, via rate)
    first = [u for u in ds if u.utt_id.endswith("h1_01")]
    lengths = {len(load_audio(u.path).samples) for u in first}
    assert len(first) == len(demo_corpus.VOICES) and len(lengths) == len(first)


def test_second_call_is_cached(built, monkeypatch):
    home, ds, _ = built
    corpus = ds.root
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}

    def no_build(dest, timeout=600.0, utterances=20):
        raise AssertionError("rebuilt a cached corpus")

    monkeypatch.setattr(demo_corpus, "_run_builder", no_build)
    monkeypatch.setenv("RESYN_BENCH_HOME", str(home))
    t0 = time.perf_counter()
    again = load_dataset("synthetic")
    assert time.perf_counter() - t0 < 0.5
    assert again.utterances == ds.utterances
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == before
    # data_root may name the home (cache location) or the corpus folder itself
    assert load_dataset("synthetic", home).utterances == ds.utterances
    assert load_dataset("synthetic", corpus, limit=2).utterances == ds.utterances[:2]
    assert load_dataset("espeak-demo", home).utterances == ds.utterances   # the alias


def test_deterministic_bytes_across_builds_and_processes(built, tmp_path):
    home, ds, _ = built
    reference = digest(ds.root)
    assert "manifest.tsv" in reference and len(reference) == len(ds) + 2  # + SOURCE.md
    # a second build in this process, and a build from a fresh interpreter
    assert digest(demo_corpus.ensure_synthetic_corpus(tmp_path / "b")) == reference
    import subprocess
    subprocess.run([sys.executable, "-m", "resyn_bench.demo_corpus", str(tmp_path / "c")],
                   check=True, capture_output=True)
    assert digest(tmp_path / "c" / "synthetic" / "v2-n20") == reference


def test_in_process_synthesis_twice():
    a = demo_corpus.synthesize("Rice is often served in round bowls.", "en-us+f3")
    engine = demo_corpus._engine()
    b = demo_corpus.synthesize("The birch canoe slid on the smooth planks.", "en-gb-x-rp+m1",
                               rate=140, pitch=40)
    assert demo_corpus._engine() is engine  # initialised once
    for audio in (a, b):
        assert audio.sample_rate == engine.sample_rate == 22050
        validate(audio)
    with pytest.raises(demo_corpus.EspeakError, match="no voice"):
        demo_corpus.synthesize("hello", "en-gb+f5")
    validate(demo_corpus.synthesize("hello", "en-us"))  # still usable after an error


NAME = f"{demo_corpus.SYNTH_VERSION}-n{demo_corpus.DEFAULT_UTTERANCES}"


def _fake_builder(dest: Path, timeout: float = 600.0, utterances: int = 20) -> None:
    (dest / "wavs").mkdir()
    (dest / "wavs" / "x.wav").write_bytes(b"RIFF")
    (dest / "manifest.tsv").write_text("utt_id\tspeaker\tpath\ttext\n")


def test_killed_build_leaves_nothing(tmp_path, monkeypatch):
    def dies(dest, timeout=600.0, utterances=20):
        (dest / "wavs").mkdir()
        (dest / "wavs" / "half.wav").write_bytes(b"RIFF")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_corpus, "_run_builder", dies)
    with pytest.raises(KeyboardInterrupt):
        demo_corpus.ensure_synthetic_corpus(tmp_path)
    parent = tmp_path / "synthetic"
    assert not (parent / NAME).exists()
    assert not list(parent.glob(".*build*"))
    # leftovers of a build killed with SIGKILL (no cleanup) and a manifest-less target are
    # cleared by the next builder
    (parent / f".{NAME}.build-stale").mkdir()
    (parent / NAME / "wavs").mkdir(parents=True)
    monkeypatch.setattr(demo_corpus, "_run_builder", _fake_builder)
    target = demo_corpus.ensure_synthetic_corpus(tmp_path)
    assert (target / "manifest.tsv").is_file() and (target / "wavs" / "x.wav").is_file()
    assert sorted(p.name for p in parent.iterdir()) == [f".{NAME}.lock", NAME]


def test_lost_rename_race_keeps_the_winner(tmp_path, monkeypatch):
    target = demo_corpus.synthetic_corpus_dir(tmp_path)

    def racing(dest, timeout=600.0, utterances=20):
        _fake_builder(dest)
        # another builder (without our lock) finishes first
        (target / "wavs").mkdir(parents=True)
        (target / "manifest.tsv").write_text("winner\n")

    monkeypatch.setattr(demo_corpus, "_run_builder", racing)
    assert demo_corpus.ensure_synthetic_corpus(tmp_path) == target
    assert (target / "manifest.tsv").read_text() == "winner\n"
    assert not list(target.parent.glob(".*build*"))


def test_concurrent_builders(tmp_path, monkeypatch):
    calls = []

    def slow(dest, timeout=600.0, utterances=20):
        calls.append(dest)
        time.sleep(0.2)
        _fake_builder(dest)

    monkeypatch.setattr(demo_corpus, "_run_builder", slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        demo_corpus.ensure_synthetic_corpus(tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1
    if os.name == "posix":
        assert len(calls) == 1  # the lock serialised them; the others found the cache


def test_missing_espeakng_loader_is_explained(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import -> ImportError
    with pytest.raises(demo_corpus.EspeakError, match="pip install 'espeakng-loader"):
        demo_corpus.ensure_synthetic_corpus(tmp_path)
    with pytest.raises(DatasetError, match="synthetic corpus is not available.*pip install"):
        load_dataset("synthetic", tmp_path)
    assert not (tmp_path / "synthetic" / NAME).exists()


def test_utterance_plan_scales_to_400():
    plan = demo_corpus.utterance_plan(400)
    ids = [utt_id for utt_id, _, _ in plan]
    assert len(ids) == len(set(ids)) == 400
    speakers = [v.speaker for _, v, _ in plan]
    assert speakers == sorted(speakers, key=[x.speaker for x in demo_corpus.VOICES].index)
    assert {s: speakers.count(s) for s in set(speakers)} == {v.speaker: 100
                                                             for v in demo_corpus.VOICES}
    # 5 takes of 20 sentences x 4 voices; later takes change rate and pitch
    assert sum(i.endswith("_t4") for i in ids) == 80 and not any("_t5" in i for i in ids)
    settings = {(v.speaker, v.rate, v.pitch) for _, v, _ in plan}
    assert len(settings) == 4 * 5
    for _, v, _ in plan:
        assert 100 <= v.rate <= 260 and 0 <= v.pitch <= 100
    # the default build is the first 5 sentences read by every voice, take 0
    first = demo_corpus.utterance_plan()
    assert {t for _, _, t in first} == {t for _, t in demo_corpus.SENTENCES[:5]}
    assert all(v in demo_corpus.VOICES for _, v, _ in first)


def test_utterances_option(built, monkeypatch):
    home, ds, _ = built
    monkeypatch.setenv("RESYN_BENCH_HOME", str(home))
    more = load_dataset("synthetic", utterances=22)
    assert len(more) == 22 and more.root == home / "synthetic" / "v2-n22"
    assert {u.utt_id for u in ds} < {u.utt_id for u in more}
    extra = sorted({u.utt_id for u in more} - {u.utt_id for u in ds})
    assert extra == ["us_f3_h1_06", "us_m3_h1_06"]   # sentence-major: the next sentence
    for bad in (0, -3, "many", 1.5, True, demo_corpus.MAX_UTTERANCES + 1):
        with pytest.raises(DatasetError, match="utterances option must be an integer"):
            load_dataset("synthetic", utterances=bad)
