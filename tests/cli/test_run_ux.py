"""What a user sees around a run: exit codes and failure summaries, metric groups added to a
finished run (``score`` / ``run`` with more groups), and one-line errors for wrong options."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resyn_bench import registry
from resyn_bench.cli import main
from resyn_bench.reports.collate import summarize_run
from resyn_bench.run_outcome import EXIT_FAILED, assess, reason_class
from resyn_bench.runner import RunConfig, run
from resyn_bench.store import RecordStore, read_manifest, read_records
from resyn_bench.systems.base import SystemFailure
from resyn_bench.systems.baselines import CopySystem


def _config(corpus, out, **kw):
    kw.setdefault("f0_preset", "dio")
    kw.setdefault("metrics", "pitch")
    return RunConfig(system=kw.pop("system", "copy"), dataset="manifest", data_root=str(corpus),
                     out=str(out), **kw)


def _values(run_dir) -> dict[str, dict]:
    return {r["utt_id"]: r["metrics"] for r in read_records(run_dir, list(read_manifest(run_dir)["metrics"]))}


def _parts(run_dir) -> list[dict]:
    return RecordStore(run_dir).events()


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# --- incremental metric groups --------------------------------------------------------------


def test_adding_a_group_equals_a_full_run_and_does_not_resynthesize(tiny_corpus, tmp_path, home):
    step = tmp_path / "step"
    run(_config(tiny_corpus, step, system="world", metrics="f0", limit=3), progress=False)
    outputs = {p.name: p.stat().st_mtime_ns for p in (step / "outputs").iterdir()}
    n_synth = sum(e["part"] == "synthesis" for e in _parts(step))
    # `run` on the same folder with one more group: only the new group is computed
    added = run(_config(tiny_corpus, step, system="world", metrics="f0,intrusive", limit=3),
                progress=False)
    assert added.n_processed == 0 and added.n_done_before == 3
    assert added.n_metric_parts == 3                       # intrusive only, f0 not redone
    assert sum(e["part"] == "synthesis" for e in _parts(step)) == n_synth
    assert {p.name: p.stat().st_mtime_ns for p in (step / "outputs").iterdir()} == outputs

    full = tmp_path / "full"
    run(_config(tiny_corpus, full, system="world", metrics="f0,intrusive", limit=3), progress=False)
    a, b = _values(step), _values(full)
    assert a.keys() == b.keys() and len(a) == 3
    for uid in a:
        assert set(a[uid]) >= {"f0.gpe", "intrusive.pesq", "intrusive.stoi"}
        assert a[uid] == pytest.approx(b[uid], rel=1e-9, abs=1e-12), uid
    manifest = read_manifest(step)
    assert list(manifest["metrics"]) == ["f0", "intrusive"]
    # the summary (what every report reads) gives the same figures
    sa, sb = summarize_run(step, n_boot=0), summarize_run(full, n_boot=0)
    for key in ("f0.ffe", "intrusive.pesq", "intrusive.stoi"):
        assert sa.metrics[key].mean == pytest.approx(sb.metrics[key].mean)
    # asking for fewer groups later removes nothing: groups are additive
    run(_config(tiny_corpus, step, system="world", metrics="intrusive", limit=3), progress=False)
    assert list(read_manifest(step)["metrics"]) == ["f0", "intrusive"]
    assert _values(step) == a


def test_changed_group_settings_keep_their_records_apart(tiny_corpus, tmp_path, home, capsys):
    out = tmp_path / "run"
    run(_config(tiny_corpus, out, system="world", metrics="f0", f0_preset="dio", limit=3),
        progress=False)
    dio = _values(out)
    dio_key = read_manifest(out)["metrics"]["f0"]["key"]
    rc, text, err = _cli(capsys, "score", out, "--metrics", "f0", "--f0-preset", "harvest", "--quiet")
    assert rc == 0, err
    assert "3 metric parts scored on stored outputs" in text
    manifest = read_manifest(out)
    harvest_key = manifest["metrics"]["f0"]["key"]
    assert harvest_key != dio_key and manifest["metrics"]["f0"]["settings"]["preset"] == "harvest"
    # both settings are listed, each with its own records
    assert {k: v["settings"]["preset"] for k, v in manifest["metric_sets"].items()} == {
        dio_key: "dio", harvest_key: "harvest"}
    f0_parts = [e for e in _parts(out) if e["part"] == "metric"]
    assert sorted(e["key"] for e in f0_parts) == sorted([dio_key] * 3 + [harvest_key] * 3)
    harvest = _values(out)
    assert harvest != dio                                   # different extractor, other numbers
    assert {u: r["metrics"] for u, r in RecordStore(out).load({"f0": dio_key}).items()} == dio
    # going back to dio scores nothing new: its records are there
    again = run(_config(tiny_corpus, out, system="world", metrics="f0", f0_preset="dio", limit=3),
                progress=False)
    assert again.n_metric_parts == 0 and _values(out) == dio
    # the synthesis was never redone
    assert sum(e["part"] == "synthesis" for e in _parts(out)) == 3


def test_runs_written_before_records_were_keyed_still_read_and_extend(tiny_corpus, tmp_path, home):
    out = tmp_path / "old"
    run(_config(tiny_corpus, out, metrics="f0"), progress=False)
    before = _values(out)
    # make it look like a run of the previous version: no keys anywhere, metric fields in identity
    lines = []
    for line in (out / "records.jsonl").read_text().splitlines():
        event = json.loads(line)
        event.pop("key", None)
        lines.append(json.dumps(event))
    (out / "records.jsonl").write_text("\n".join(lines) + "\n")
    manifest = read_manifest(out)
    for entry in manifest["metrics"].values():
        entry.pop("key")
    del manifest["metric_sets"]
    manifest["config"]["identity"].update(metrics="f0", f0_preset="dio", metric_options={})
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert _values(out) == before
    assert summarize_run(out, n_boot=0).metrics["f0.gpe"].n == 6
    result = run(_config(tiny_corpus, out, metrics="f0,intrusive"), progress=False)
    assert result.n_metric_parts == 6                  # the keyless f0 parts count as done
    after = _values(out)
    for uid in before:
        assert {k: v for k, v in after[uid].items() if k.startswith("f0.")} == before[uid]
        assert "intrusive.stoi" in after[uid]


def test_score_needs_an_existing_run(tmp_path, home, capsys):
    rc, _, err = _cli(capsys, "score", tmp_path / "nothing", "--metrics", "f0")
    assert rc == 2 and "not a run folder" in err


# --- failures and exit codes ------------------------------------------------------------------


def _replay_dir(tiny_corpus, tmp_path, keep: int) -> Path:
    """outputs named <stem>_gen.wav for the first ``keep`` utterances (copies of the references)."""
    gen = tmp_path / "gen"
    gen.mkdir()
    wavs = sorted((tiny_corpus.parent / "wavs").glob("*.wav"))
    for wav in wavs[:keep]:
        (gen / f"{wav.stem}_gen.wav").write_bytes(wav.read_bytes())
    return gen


def test_outputs_dir_matching_nothing_says_what_was_tried(tiny_corpus, tmp_path, home, capsys):
    gen = _replay_dir(tiny_corpus, tmp_path, keep=6)
    rc, _, err = _cli(capsys, "run", "--system", f"outputs:{gen}", "--dataset", "manifest",
                      "--data-root", tiny_corpus, "--metrics", "pitch", "--out", tmp_path / "r",
                      "--quiet")
    assert rc == 2
    assert "no output file matches any of the 6 utterances" in err
    assert "'{utt_id}.wav' (e.g. " in err                       # the patterns tried
    assert "spkA_000_gen.wav" in err                             # files that are there
    assert "--outputs-pattern '{stem}_gen.wav'" in err         # a pattern that works
    assert not (tmp_path / "r" / "records.jsonl").exists()      # nothing run


def test_too_many_failures_exit_3_with_the_reasons(tiny_corpus, tmp_path, home, capsys):
    gen = _replay_dir(tiny_corpus, tmp_path, keep=2)
    args = ["run", "--system", f"outputs:{gen}", "--outputs-pattern", "{stem}_gen.wav",
            "--dataset", "manifest", "--data-root", tiny_corpus, "--metrics", "pitch",
            "--f0-preset", "dio", "--quiet"]
    rc, out, err = _cli(capsys, *args, "--out", tmp_path / "a")
    assert rc == EXIT_FAILED
    assert "2 of 6 utterances scored, 4 failed outright" in out
    assert "4 x system: SystemFailure: no output file for <utt>; tried <path>" in out
    assert "67% of the utterances failed, more than --max-failed 0.1" in err
    # a tolerance above the failed fraction: success, the summary still says what failed
    rc, out, _ = _cli(capsys, *args, "--out", tmp_path / "b", "--max-failed", "0.7")
    assert rc == 0 and "4 failed outright" in out
    with pytest.raises(SystemExit) as exc:
        _cli(capsys, *args, "--out", tmp_path / "c", "--max-failed", "2")
    assert exc.value.code == 2 and "between 0 and 1" in capsys.readouterr().err


class _BrokenSystem(CopySystem):
    def resynthesize(self, audio, utterance):
        raise SystemFailure("decoder exploded")


def test_all_failed_is_an_error_even_with_full_tolerance(tiny_corpus, tmp_path, home, capsys,
                                                         monkeypatch):
    monkeypatch.setitem(registry.SYSTEMS, "broken", registry.Entry("broken", _BrokenSystem, "test"))
    rc, out, err = _cli(capsys, "run", "--system", "broken", "--dataset", "manifest", "--data-root",
                        tiny_corpus, "--metrics", "pitch", "--out", tmp_path / "r", "--quiet",
                        "--max-failed", "1")
    assert rc == EXIT_FAILED and "error: nothing was scored" in err
    assert "0 of 6 utterances scored, 6 failed outright" in out
    assert "6 x system: SystemFailure: decoder exploded" in out


def test_split_ids_not_in_the_dataset_are_reported(tiny_corpus, tmp_path, home, capsys):
    split = tmp_path / "split.txt"
    split.write_text("spkA_000\nspkA_001\nspkZ_404\n")
    rc, out, err = _cli(capsys, "run", "--system", "copy", "--dataset", "manifest", "--data-root",
                        tiny_corpus, "--split", split, "--metrics", "pitch", "--f0-preset", "dio",
                        "--out", tmp_path / "r", "--quiet")
    assert "1 entries of the split file are not in the dataset (e.g. spkZ_404)" in out
    assert rc == EXIT_FAILED                          # 1 of 3 asked for = 33% > 10%
    rc, out, _ = _cli(capsys, "run", "--system", "copy", "--dataset", "manifest", "--data-root",
                      tiny_corpus, "--split", split, "--metrics", "pitch", "--f0-preset", "dio",
                      "--out", tmp_path / "r", "--quiet", "--max-failed", "0.5")
    assert rc == 0


def test_a_clean_run_exits_0(tiny_corpus, tmp_path, home, capsys):
    rc, out, _ = _cli(capsys, "run", "--system", "copy", "--dataset", "manifest", "--data-root",
                      tiny_corpus, "--metrics", "pitch", "--f0-preset", "dio",
                      "--out", tmp_path / "r", "--quiet")
    assert rc == 0 and "all 6 utterances scored" in out


def test_reason_classes_count_equal_causes_together():
    a = reason_class("SystemFailure: no output file for u1; tried /x/u1.wav, /x/u1.flac", "u1")
    b = reason_class("SystemFailure: no output file for u22; tried /y/z/u22.wav, /y/z/u22.flac", "u22")
    assert a == b == "SystemFailure: no output file for <utt>; tried <path>, ..."
    assert reason_class("too short: 0.01 s (< 0.1 s)") == "too short: N s (< N s)"
    records = {"u1": {"status": "failed", "stage": "system", "reason": "boom u1", "metrics": {}},
               "u2": {"status": "partial", "metrics": {"f0.gpe": 0.1}, "errors": {"asr": "E: x"}},
               "u3": {"status": "ok", "metrics": {"f0.gpe": 0.0}}}
    outcome = assess(records, ["u1", "u2", "u3", "u4"])
    assert (outcome.n_scored, outcome.n_failed, outcome.n_not_synthesized) == (2, 1, 1)
    assert outcome.group_failed == {"asr": 1}
    assert outcome.reasons == {"system: boom <utt>": 1, "metric asr: E: x": 1}
    assert outcome.verdict(0.5) is None and "more than --max-failed 0.1" in outcome.verdict(0.1)


# --- command-line errors ------------------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["-m", "asr.backnd=whisper", "--metrics", "asr"],
     ["unknown option 'backnd' (-m asr.backnd=VALUE)", "Did you mean 'backend'?", "its options are:",
      "mode"]),
    (["-m", "f0.presett=dio", "--metrics", "f0"], ["Did you mean 'preset'?"]),
    (["-m", "asrr.backend=whisper"], ["unknown metric group 'asrr'", "Did you mean 'asr'"]),
    (["--metrics", "f0,wer"], ["'wer' is a metric of the group 'asr'", "use --metrics f0,asr"]),
    (["--metrics", "pesq"], ["group 'intrusive'"]),
])
def test_option_errors_name_the_valid_keys(tiny_corpus, tmp_path, home, capsys, argv, expected):
    rc, _, err = _cli(capsys, "run", "--system", "copy", "--dataset", "manifest", "--data-root",
                      tiny_corpus, "--out", tmp_path / "r", *argv)
    assert rc == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err


def test_system_option_did_you_mean(tiny_corpus, tmp_path, home, capsys):
    rc, _, err = _cli(capsys, "run", "--system", "world", "-o", "f0_methd=dio", "--dataset",
                      "manifest", "--data-root", tiny_corpus, "--out", tmp_path / "r")
    assert rc == 2 and "unknown option 'f0_methd' (-o f0_methd=VALUE)" in err
    assert "Did you mean 'f0_method'?" in err and "mcep_dims" in err


def test_out_naming_a_file(tiny_corpus, tmp_path, home, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    rc, _, err = _cli(capsys, "run", "--system", "copy", "--dataset", "manifest", "--data-root",
                      tiny_corpus, "--out", a_file)
    assert rc == 2 and "is an existing file, not a folder" in err and "Traceback" not in err
    rc, _, err = _cli(capsys, "report", tmp_path, "--out", a_file)
    assert rc == 2 and "is an existing file" in err
    assert a_file.read_text() == "x"


def test_summary_into_a_closed_pipe_is_quiet(tiny_corpus, tmp_path, home):
    out = tmp_path / "r"
    run(_config(tiny_corpus, out), progress=False)
    read_end, write_end = os.pipe()
    os.close(read_end)            # the reader (`head`) has gone before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "resyn_bench.cli", "summary", str(out),
                               "--utterances"], stdout=write_end, stderr=subprocess.PIPE,
                              timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert err == ""
    assert proc.returncode == 141


def test_score_adds_groups_to_a_voice_conversion_run(tiny_corpus, tmp_path, home, monkeypatch):
    from test_vc import ToneVoices

    monkeypatch.setitem(registry.SYSTEMS, "tone-voices", registry.Entry("tone-voices", ToneVoices, "t"))
    out = tmp_path / "vc"
    run(_config(tiny_corpus, out, system="tone-voices", vc_targets=2, experiment="vc", limit=3),
        progress=False)
    # the system is not needed to score: make it impossible to build
    monkeypatch.setitem(registry.SYSTEMS, "tone-voices", registry.Entry("tone-voices", "nowhere:X", "t"))
    config = _config(tiny_corpus, out, system="tone-voices", vc_targets=2, experiment="vc",
                     limit=3, metrics="intrusive")
    result = run(config, progress=False, score_only=True)
    assert result.n_total == 6 and result.n_metric_parts == 6 and result.n_processed == 0
    records = read_records(out, ["f0", "intrusive"])
    assert len(records) == 6 and all("intrusive.stoi" in r["metrics"] and "f0.vde" in r["metrics"]
                                     for r in records)
    assert all(r["utt_id"].partition("__to_")[2] == r["target_speaker"] for r in records)


def test_score_reports_utterances_without_an_output(tiny_corpus, tmp_path, home, capsys):
    out = tmp_path / "run"
    run(_config(tiny_corpus, out), progress=False)
    # as if the run had been stopped before synthesizing two utterances
    kept = [line for line in (out / "records.jsonl").read_text().splitlines()
            if json.loads(line)["utt_id"] not in ("spkB_001", "spkB_002")]
    (out / "records.jsonl").write_text("\n".join(kept) + "\n")
    rc, text, _ = _cli(capsys, "score", out, "--metrics", "intrusive", "--quiet")
    assert rc == 0
    assert "4 metric parts scored on stored outputs" in text
    assert "2 utterances have no stored output" in text


def test_manifest_with_missing_files_exits_3_and_names_them(tiny_corpus, tmp_path, home, capsys):
    for name in ("spkA_001", "spkB_002"):
        (tiny_corpus.parent / "wavs" / f"{name}.wav").unlink()
    rc, out, err = _cli(capsys, "run", "--system", "copy", "--dataset", "manifest", "--data-root",
                        tiny_corpus, "--metrics", "pitch", "--f0-preset", "dio",
                        "--out", tmp_path / "r", "--quiet")
    assert rc == EXIT_FAILED
    assert "4 of 6 utterances scored, 2 failed outright" in out
    reason = re.search(r"^\s+2 x reference: missing: .* \(e\.g\. spkA_001\)$", out, re.M)
    assert reason, out
