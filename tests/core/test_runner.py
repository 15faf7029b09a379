"""The runner end to end on synthetic corpora: exact answers, failures, resume, cache, outputs:DIR."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import harmonic_tone, write_manifest

from resyn_bench import registry
from resyn_bench.audio import Audio
from resyn_bench.reports.collate import summarize_run
from resyn_bench.runner import RunConfig, RunError, run
from resyn_bench.store import read_manifest, read_records
from resyn_bench.systems.base import SystemFailure
from resyn_bench.systems.baselines import CopySystem


def _config(corpus, out, **kw):
    kw.setdefault("f0_preset", "dio")
    kw.setdefault("metrics", "pitch")
    return RunConfig(system=kw.pop("system", "copy"), dataset="manifest", data_root=str(corpus),
                     out=str(out), **kw)


def _by_id(run_dir):
    return {r["utt_id"]: r for r in read_records(run_dir)}


def test_copy_is_exactly_perfect(tiny_corpus, tmp_path, home):
    result = run(_config(tiny_corpus, tmp_path / "run"), progress=False)
    assert result.n_processed == 6 and result.n_failed == 0
    for rec in read_records(tmp_path / "run"):
        assert rec["status"] == "ok"
        assert rec["metrics"]["f0.gpe"] == 0.0
        assert rec["metrics"]["f0.vde"] == 0.0
        assert rec["metrics"]["f0.ffe"] == 0.0
        assert rec["metrics"]["f0.rmse_cents"] == 0.0
    s = summarize_run(tmp_path / "run")
    for key in ("f0.gpe", "f0.vde", "f0.ffe"):
        assert s.metrics[key].mean == 0.0 and s.metrics[key].pooled == 0.0
        # the output is the reference file itself: pointed at, not copied
        assert rec["output_path"] == rec["reference_path"]
    assert not (tmp_path / "run" / "outputs").exists()
    manifest = read_manifest(tmp_path / "run")
    assert manifest["metrics"]["f0"]["settings"]["preset"] == "dio"
    assert manifest["environment"]["packages"]["numpy"]
    assert manifest["status"] == "complete"
    assert manifest["sessions"][-1]["n_processed"] == 6


def test_world_degrades_but_tracks_pitch(tiny_corpus, tmp_path, home):
    run(_config(tiny_corpus, tmp_path / "w", system="world"), progress=False)
    s = summarize_run(tmp_path / "w")
    assert s.n_ok == 6
    assert s.metrics["f0.gpe"].mean < 0.05        # WORLD keeps the contour of clean tones
    assert s.metrics["f0.corr"].mean > 0.95
    assert s.metrics["f0.rmse_cents"].mean > 0.0  # but it is not bit-exact


def _write_bad_files(corpus_tsv):
    root = corpus_tsv.parent
    bad = root / "bad"
    bad.mkdir()
    sf.write(bad / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(bad / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(bad / "short.wav", harmonic_tone(150, duration=0.05), 16000)
    nan = harmonic_tone(150, duration=0.5)
    nan[100:110] = np.nan
    sf.write(bad / "nan.wav", nan, 16000, subtype="FLOAT")
    (bad / "garbage.wav").write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
    lines = corpus_tsv.read_text().splitlines()
    extra = [("b_empty", "empty"), ("b_silent", "silent"), ("b_short", "short"), ("b_nan", "nan"),
             ("b_garbage", "garbage"), ("b_missing", "missing")]
    lines += [f"{uid}\tspkB\tbad/{name}.wav\t" for uid, name in extra]
    corpus_tsv.write_text("\n".join(lines) + "\n")
    return {"b_empty": "empty", "b_silent": "silent", "b_short": "too_short", "b_nan": "non_finite",
            "b_garbage": "unreadable", "b_missing": "missing"}


def test_bad_inputs_fail_with_reasons_and_run_goes_on(tiny_corpus, tmp_path, home):
    expected = _write_bad_files(tiny_corpus)
    result = run(_config(tiny_corpus, tmp_path / "run"), progress=False)
    assert result.n_failed == len(expected)
    records = _by_id(tmp_path / "run")
    assert len(records) == 6 + len(expected)
    for uid, kind in expected.items():
        rec = records[uid]
        assert rec["status"] == "failed" and rec["stage"] == "reference"
        assert rec["error_kind"] == kind, rec
        assert rec["reason"]
        assert rec["metrics"] == {}  # never a fake score
    assert sum(r["status"] == "ok" for r in records.values()) == 6
    s = summarize_run(tmp_path / "run")
    assert s.metrics["f0.gpe"].n == 6          # failed utterances do not enter any mean
    assert s.failures == {f"reference: {k}": 1 for k in expected.values()}


class _FlakySystem(CopySystem):
    """Fails on one utterance, returns silence on another, noise on a third."""

    def resynthesize(self, audio, utterance):
        if utterance.utt_id == "spkA_000":
            raise SystemFailure("decoder exploded")
        if utterance.utt_id == "spkA_001":
            return Audio(np.zeros_like(audio.samples), audio.sample_rate)
        if utterance.utt_id == "spkA_002":
            rng = np.random.default_rng(0)
            return Audio((0.1 * rng.standard_normal(len(audio.samples))).astype(np.float32),
                         audio.sample_rate)
        return audio


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setitem(registry.SYSTEMS, "flaky", registry.Entry("flaky", _FlakySystem, "test"))
    return "flaky"


def test_system_and_output_failures_are_recorded(tiny_corpus, tmp_path, home, flaky):
    run(_config(tiny_corpus, tmp_path / "run", system=flaky), progress=False)
    recs = _by_id(tmp_path / "run")
    assert recs["spkA_000"]["status"] == "failed" and recs["spkA_000"]["stage"] == "system"
    assert "decoder exploded" in recs["spkA_000"]["reason"]
    assert recs["spkA_001"]["stage"] == "output" and recs["spkA_001"]["error_kind"] == "silent"
    noise = recs["spkA_002"]
    assert noise["status"] == "ok"
    # unpitched output: no frame is voiced in both, so GPE is undefined - not 0, not 1
    assert noise["metrics"]["f0.gpe"] is None
    assert noise["metrics"]["f0.vde"] > 0.5
    assert all(recs[u]["status"] == "ok" for u in ("spkB_000", "spkB_001", "spkB_002"))


def test_resume_skips_finished_and_never_duplicates(tiny_corpus, tmp_path, home):
    out = tmp_path / "run"
    first = run(_config(tiny_corpus, out, limit=2), progress=False)
    assert first.n_processed == 2
    # a torn last line, as left by a kill in the middle of a write
    with open(out / "records.jsonl", "a") as fh:
        fh.write('{"utt_id": "spkB_000", "status": "o')
    with pytest.raises(RunError, match="settings differ"):  # another system: another run
        run(_config(tiny_corpus, out, system="world", limit=2), progress=False)
    second = run(_config(tiny_corpus, out, limit=2), progress=False)
    assert second.n_processed == 0 and second.n_done_before == 2
    # the full dataset continues where the limited run stopped (limit is not part of identity)
    third = run(_config(tiny_corpus, out), progress=False)
    assert third.n_processed == 4
    lines = (out / "records.jsonl").read_text().splitlines()
    keys = [(json.loads(line)["utt_id"], json.loads(line)["part"]) for line in lines]
    assert len(keys) == len(set(keys)) == 12  # synthesis + f0 for each of 6
    assert len(read_manifest(out)["sessions"]) == 3
    with pytest.raises(RunError, match="already holds a run"):
        run(_config(tiny_corpus, out, resume=False), progress=False)
    again = run(_config(tiny_corpus, out, overwrite=True), progress=False)
    assert again.n_processed == 6


def test_retry_failed(tiny_corpus, tmp_path, home, flaky, monkeypatch):
    out = tmp_path / "run"
    run(_config(tiny_corpus, out, system=flaky), progress=False)
    assert run(_config(tiny_corpus, out, system=flaky), progress=False).n_processed == 0
    monkeypatch.setitem(registry.SYSTEMS, "flaky", registry.Entry("flaky", CopySystem, "fixed"))
    redo = run(_config(tiny_corpus, out, system=flaky, retry_failed=True), progress=False)
    assert redo.n_processed == 2
    recs = _by_id(out)
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs.values())


def test_kill_and_resume_leaves_no_duplicate_or_missing(tmp_path, home):
    root = tmp_path / "corpus"
    (root / "w").mkdir(parents=True)
    rows = []
    for i in range(12):
        sf.write(root / "w" / f"u{i:02d}.wav", harmonic_tone(100 + 10 * i, duration=1.5), 16000)
        rows.append({"utt_id": f"u{i:02d}", "speaker": "s", "path": f"w/u{i:02d}.wav"})
    tsv = write_manifest(root, rows)
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from resyn_bench.cli import main; sys.exit(main())",
           "run", "--system", "world", "--metrics", "pitch", "--dataset", "manifest", "--data-root", str(tsv),
           "--out", str(out), "--f0-preset", "harvest", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "records.jsonl"

    def parts():
        return [json.loads(line) for line in records.read_text().splitlines()] if records.exists() else []

    deadline = time.time() + 120
    while time.time() < deadline:
        if len(parts()) >= 3:
            break
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = sum(p["part"] == "synthesis" for p in parts())
    assert 3 <= n_before < 12
    result = run(RunConfig(system="world", dataset="manifest", data_root=str(tsv), out=str(out),
                           f0_preset="harvest", metrics="pitch"), progress=False)
    assert result.n_done_before == n_before
    assert result.n_processed == 12 - n_before
    keys = [(p["utt_id"], p["part"], p.get("group")) for p in parts()]
    assert len(keys) == len(set(keys)) == 24  # every part exactly once
    assert sorted(k[0] for k in keys if k[1] == "synthesis") == [f"u{i:02d}" for i in range(12)]
    assert all(r["status"] == "ok" for r in read_records(out))


def test_second_system_reuses_reference_cache(tiny_corpus, tmp_path, home):
    run(_config(tiny_corpus, tmp_path / "a"), progress=False)
    s1 = read_manifest(tmp_path / "a")["sessions"][-1]["reference_cache"]
    assert s1 == {"hits": 0, "misses": 6}
    run(_config(tiny_corpus, tmp_path / "b", system="world"), progress=False)
    s2 = read_manifest(tmp_path / "b")["sessions"][-1]["reference_cache"]
    assert s2 == {"hits": 6, "misses": 0}
    # other settings -> other cache entries
    run(_config(tiny_corpus, tmp_path / "c", f0_preset="harvest"), progress=False)
    assert read_manifest(tmp_path / "c")["sessions"][-1]["reference_cache"]["misses"] == 6
    # cached and fresh reference analyses give identical numbers
    run(_config(tiny_corpus, tmp_path / "d", system="world", use_cache=False), progress=False)
    b, d = _by_id(tmp_path / "b"), _by_id(tmp_path / "d")
    assert {k: r["metrics"] for k, r in b.items()} == {k: r["metrics"] for k, r in d.items()}


def test_outputs_dir_reproduces_saved_run(tiny_corpus, tmp_path, home):
    run(_config(tiny_corpus, tmp_path / "world", system="world"), progress=False)
    out_dir = tmp_path / "world" / "outputs"
    run(_config(tiny_corpus, tmp_path / "replay", system=f"outputs:{out_dir}"), progress=False)
    a, b = _by_id(tmp_path / "world"), _by_id(tmp_path / "replay")
    assert a.keys() == b.keys()
    for uid in a:
        assert a[uid]["metrics"] == b[uid]["metrics"]
    # a name pattern, and a missing file recorded as a failure
    gen = tmp_path / "gen"
    gen.mkdir()
    for uid in list(a)[:-1]:
        (gen / f"{uid}_gen.wav").write_bytes((out_dir / f"{uid}.wav").read_bytes())
    run(_config(tiny_corpus, tmp_path / "pattern", system=f"outputs:{gen}",
                system_options={"pattern": "{stem}_gen.wav"}), progress=False)
    c = _by_id(tmp_path / "pattern")
    missing = list(a)[-1]
    assert c[missing]["status"] == "failed" and "no output file" in c[missing]["reason"]
    for uid in list(a)[:-1]:
        assert c[uid]["metrics"] == a[uid]["metrics"]


def test_resampling_is_recorded_for_48k_input(tmp_path, home):
    root = tmp_path / "c48"
    root.mkdir()
    sf.write(root / "a.wav", harmonic_tone(140, duration=1.0, sr=48000), 48000)
    tsv = write_manifest(root, [{"utt_id": "a", "speaker": "s", "path": "a.wav"}])
    run(_config(tsv, tmp_path / "run", system="world"), progress=False)
    rec = read_records(tmp_path / "run")[0]
    assert rec["status"] == "ok" and rec["metrics"]["f0.gpe"] < 0.05
    assert rec["output_sample_rate"] == 48000
    resampling = read_manifest(tmp_path / "run")["resampling"]
    assert resampling == {"metric f0 (reference): 48000 Hz -> 16000 Hz": 1,
                          "metric f0 (output): 48000 Hz -> 16000 Hz": 1}


def test_parallel_jobs_give_identical_numbers(tiny_corpus, tmp_path, home):
    run(_config(tiny_corpus, tmp_path / "one", system="world", use_cache=False), progress=False)
    run(_config(tiny_corpus, tmp_path / "two", system="world", use_cache=False, jobs=2),
        progress=False)
    a, b = _by_id(tmp_path / "one"), _by_id(tmp_path / "two")
    assert {k: r["metrics"] for k, r in a.items()} == {k: r["metrics"] for k, r in b.items()}
    assert summarize_run(tmp_path / "one").metrics["f0.ffe"].pooled == \
        summarize_run(tmp_path / "two").metrics["f0.ffe"].pooled


def test_configuration_errors_surface_before_any_work(tiny_corpus, tmp_path, home):
    with pytest.raises(registry.RegistryError, match="Did you mean 'world'"):
        run(_config(tiny_corpus, tmp_path / "x", system="wrold"), progress=False)
    with pytest.raises(registry.RegistryError, match="harvest"):
        run(_config(tiny_corpus, tmp_path / "x", f0_preset="harvset"), progress=False)
    with pytest.raises(registry.RegistryError, match="f0_method"):
        run(_config(tiny_corpus, tmp_path / "x", system="world",
                    system_options={"f0_metod": "dio"}), progress=False)
    assert not (tmp_path / "x" / "records.jsonl").exists()
    assert not os.path.exists(tmp_path / "x" / "manifest.json")


EVENTS: list[str] = []


class _FakeGroup:
    """A metric group recording its lifecycle; `corpus` and `text` toggle the needs_* flags."""

    needs_corpus = False
    needs_text = False
    sample_rate = 16000

    def __init__(self, label="a"):
        from resyn_bench.metrics.base import MetricSpec

        self.name = f"fake{label}"
        self.specs = (MetricSpec(f"{self.name}.len", "Len", True),)
        self.fitted = None

    def settings(self):
        return {"label": self.name}

    def load(self):
        EVENTS.append(f"load {self.name}")

    def release(self):
        EVENTS.append(f"release {self.name}")

    def analyse_reference(self, audio):
        return {"n": np.array(len(audio.samples))}

    def fit_corpus(self, utterances, references):
        EVENTS.append(f"fit {self.name} {len(references)}")
        self.fitted = len(references)

    def score(self, reference, output, utterance):
        from resyn_bench.metrics.base import Score

        EVENTS.append(f"score {self.name}")
        return Score({f"{self.name}.len": float(reference["n"])}, {"n": 1}, {"fitted": self.fitted})

    def aggregate(self, entries):
        return {f"{self.name}.len": float(sum(e["counts"]["n"] for e in entries))}


class _CorpusGroup(_FakeGroup):
    needs_corpus = True


class _TextGroup(_FakeGroup):
    needs_text = True


def test_metric_groups_are_loaded_one_at_a_time(tiny_corpus, tmp_path, home, monkeypatch):
    for name, cls in (("fakea", _FakeGroup), ("fakeb", _CorpusGroup), ("fakec", _TextGroup)):
        label = name[-1]
        monkeypatch.setitem(registry.METRIC_GROUPS, name,
                            registry.Entry(name, lambda label=label, cls=cls: cls(label), "test"))
    # one utterance without a transcript
    lines = tiny_corpus.read_text().splitlines()
    lines[1] = "\t".join(lines[1].split("\t")[:3] + [""])
    tiny_corpus.write_text("\n".join(lines) + "\n")
    EVENTS.clear()
    run(_config(tiny_corpus, tmp_path / "run", metrics="fakea,fakeb,fakec", jobs=1), progress=False)
    # each group's models are loaded, used and released before the next group is loaded
    loads = [e for e in EVENTS if e.split()[0] in ("load", "release")]
    assert loads == ["load fakea", "release fakea", "load fakeb", "release fakeb",
                     "load fakec", "release fakec"]
    assert "fit fakeb 6" in EVENTS   # the corpus model saw every real utterance
    recs = _by_id(tmp_path / "run")
    first = min(recs)
    assert recs[first]["skipped"] == {"fakec": "fakec needs a transcript; this utterance has none"}
    assert recs[first]["status"] == "ok"
    assert all(r["extra"]["fakeb"]["fitted"] == 6 for r in recs.values())
    s = summarize_run(tmp_path / "run")
    assert s.metrics["fakea.len"].pooled == 6.0 and s.metrics["fakec.len"].pooled == 5.0
    # resuming with nothing missing loads no model at all
    EVENTS.clear()
    run(_config(tiny_corpus, tmp_path / "run", metrics="fakea,fakeb,fakec"), progress=False)
    assert EVENTS == []


def test_speaker_metrics_on_a_one_speaker_corpus_are_skipped_not_failed(tiny_corpus, tmp_path, home,
                                                                        caplog):
    lines = tiny_corpus.read_text().splitlines()
    tiny_corpus.write_text("\n".join([lines[0]] + [x for x in lines[1:] if "spkA" in x]) + "\n")
    with caplog.at_level("WARNING", logger="resyn_bench.runner"):
        run(_config(tiny_corpus, tmp_path / "run", metrics="f0,spk"), progress=False)
    assert "metric group 'spk' skipped for 3 utterances" in caplog.text
    for rec in read_records(tmp_path / "run"):
        assert rec["status"] == "ok" and not rec["errors"]
        assert "2 speakers" in rec["skipped"]["spk"] or ">= 2" in rec["skipped"]["spk"]
