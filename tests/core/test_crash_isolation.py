"""Crash isolation (resyn_bench.supervisor): a native crash, a hang or an exception in the system
or a metric group costs one utterance, recorded with its cause; every other number is the one a
clean in-process run gives; resuming is a no-op; --retry-failed redoes the lost utterances.

Faults are injected by tests/crash_plugins.py (SIGSEGV, an endless sleep, an exception on chosen
utterances), registered the way plugins are: by "module:attr" name, so worker processes can
rebuild them.
"""
from __future__ import annotations

import json
import os
import signal
import sys

import pytest
import soundfile as sf
from conftest import harmonic_tone

from resyn_bench import registry
from resyn_bench.reports.collate import summarize_run
from resyn_bench.reports.report import format_summary
from resyn_bench.runner import RunConfig, run
from resyn_bench.store import RecordStore, read_records
from resyn_bench.supervisor import culprit, time_limit

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or sys.platform == "win32",
                                reason="POSIX signals")

TIMEOUT = 3.0   # --utt-timeout for the runs with a hang


@pytest.fixture
def plugins(monkeypatch):
    for name, attr in (("segv", "segv_group"), ("hang", "hang_group"), ("boom", "boom_group"),
                       ("corpusfault", "corpus_group")):
        monkeypatch.setitem(registry.METRIC_GROUPS, name,
                            registry.Entry(name, f"crash_plugins:{attr}", "test fault injection"))
    monkeypatch.setitem(registry.SYSTEMS, "faulty",
                        registry.Entry("faulty", "crash_plugins:FaultSystem", "test fault injection"))
    monkeypatch.delenv("CRASH_PLUGINS_DISARM", raising=False)


def _config(corpus, out, **kw):
    kw.setdefault("f0_preset", "dio")
    return RunConfig(system=kw.pop("system", "copy"), dataset="manifest", data_root=str(corpus),
                     out=str(out), **kw)


def _parts(run_dir) -> dict[tuple, dict]:
    """Every record part by (utt_id, part, group), last one wins, without timings, the settings
    key (fault options are settings) and cache use (a second run finds the first one's reference
    analyses)."""
    out = {}
    for ev in RecordStore(run_dir).events():
        ev = {k: v for k, v in ev.items() if k not in ("timings", "cache", "key")}
        out[(ev["utt_id"], ev.get("part"), ev.get("group"))] = ev
    return out


def _lines(run_dir) -> bytes:
    return (run_dir / "records.jsonl").read_bytes()


def test_metric_group_crash_hang_and_error_cost_one_utterance_each(tiny_corpus, tmp_path, home,
                                                                    plugins, monkeypatch):
    metrics = "f0,segv,hang,boom"
    # the reference: the same groups without faults, in this process (no worker at all)
    clean = tmp_path / "clean"
    run(_config(tiny_corpus, clean, metrics=metrics, isolate=False), progress=False)
    faults = {"segv": {"faults": {"spkA_001": "segv"}}, "hang": {"faults": {"spkB_000": "hang"}},
              "boom": {"faults": {"spkB_002": "raise"}}}
    out = tmp_path / "faulty"
    cfg = _config(tiny_corpus, out, metrics=metrics, metric_options=faults, utt_timeout=TIMEOUT)
    result = run(cfg, progress=False)
    assert result.n_processed == 6
    got, want = _parts(out), _parts(clean)
    assert got.keys() == want.keys()
    lost = {("spkA_001", "metric", "segv"), ("spkB_000", "metric", "hang"),
            ("spkB_002", "metric", "boom")}
    for key in want:
        if key not in lost:
            assert got[key] == want[key], key   # numbers equal the in-process run's exactly
    segv = got["spkA_001", "metric", "segv"]
    assert segv["status"] == "failed" and segv["error_kind"] == "crashed"
    assert segv["reason"] == "crashed: SIGSEGV in segv (crash_plugins)"
    hang = got["spkB_000", "metric", "hang"]
    assert hang["status"] == "failed" and hang["error_kind"] == "timed_out"
    assert hang["reason"] == f"timed out after {TIMEOUT:g} s in hang (crash_plugins)"
    boom = got["spkB_002", "metric", "boom"]
    assert boom["status"] == "failed" and "error_kind" not in boom
    assert boom["reason"] == "RuntimeError: injected failure in score"
    # the summary says what each group lost, and why; pooled values skip only the lost ones
    s = summarize_run(out, n_boot=0)
    assert {k: dict(v) for k, v in s.losses.items()} == {
        "segv": {"crashed": 1}, "hang": {"timed_out": 1}, "boom": {"error": 1}}
    assert "lost     segv: 1 crashed; hang: 1 timed out; boom: 1 error" in format_summary(s)
    assert s.metrics["segv.rms_ratio"].n == 5 and s.metrics["f0.gpe"].n == 6
    assert s.metrics["f0.ffe"].pooled == summarize_run(clean, n_boot=0).metrics["f0.ffe"].pooled

    # resuming is a no-op: nothing is retried, nothing written
    before = _lines(out)
    again = run(cfg, progress=False)
    assert again.n_processed == 0 and _lines(out) == before

    # --retry-failed redoes exactly the lost parts (faults now off): the clean run's numbers
    monkeypatch.setenv("CRASH_PLUGINS_DISARM", "1")
    run(_config(tiny_corpus, out, metrics=metrics, metric_options=faults, utt_timeout=TIMEOUT,
                retry_failed=True), progress=False)
    new = [json.loads(line) for line in _lines(out)[len(before):].decode().splitlines()]
    assert sorted((e["utt_id"], e["part"], e["group"]) for e in new) == sorted(lost)
    final = _parts(out)
    for key in lost:
        assert {k: v for k, v in final[key].items() if k != "cache"} == \
               {k: v for k, v in want[key].items() if k != "cache"}
    assert all(r["status"] == "ok" for r in read_records(out, metrics.split(",")))


def test_system_crash_hang_and_error_fail_that_synthesis(tiny_corpus, tmp_path, home, plugins,
                                                         monkeypatch):
    clean = tmp_path / "clean"
    run(_config(tiny_corpus, clean, system="faulty", metrics="f0", isolate=False,
                system_options={"faults": {}}), progress=False)
    faults = {"spkA_000": "segv", "spkA_002": "hang", "spkB_001": "raise"}
    out = tmp_path / "faulty"
    cfg = _config(tiny_corpus, out, system="faulty", metrics="f0", utt_timeout=TIMEOUT,
                  system_options={"faults": faults})
    result = run(cfg, progress=False)
    assert result.n_processed == 6 and result.n_failed == 3
    got, want = _parts(out), _parts(clean)
    failed = {(u, "synthesis", None) for u in faults}
    assert got.keys() == want.keys() - {(u, "metric", "f0") for u in faults}
    for key in got.keys() - failed:
        assert got[key] == want[key], key
    assert got["spkA_000", "synthesis", None]["reason"] == \
        "crashed: SIGSEGV in system faulty (crash_plugins)"
    assert got["spkA_000", "synthesis", None]["error_kind"] == "crashed"
    assert got["spkA_002", "synthesis", None]["reason"] == \
        f"timed out after {TIMEOUT:g} s in system faulty (crash_plugins)"
    assert got["spkA_002", "synthesis", None]["error_kind"] == "timed_out"
    assert got["spkB_001", "synthesis", None]["reason"] == \
        "RuntimeError: injected failure in resynthesize"
    for key in failed:
        assert got[key]["status"] == "failed" and got[key]["stage"] == "system"
    s = summarize_run(out, n_boot=0)
    assert {k: dict(v) for k, v in s.losses.items()} == {
        "system": {"crashed": 1, "timed_out": 1, "error": 1}}

    before = _lines(out)
    assert run(cfg, progress=False).n_processed == 0 and _lines(out) == before

    monkeypatch.setenv("CRASH_PLUGINS_DISARM", "1")
    redo = run(_config(tiny_corpus, out, system="faulty", metrics="f0", utt_timeout=TIMEOUT,
                       system_options={"faults": faults}, retry_failed=True), progress=False)
    assert redo.n_processed == 3
    final = _parts(out)
    assert final.keys() == want.keys()
    for key in want:
        assert {k: v for k, v in final[key].items() if k != "cache"} == \
               {k: v for k, v in want[key].items() if k != "cache"}, key


def test_crash_in_a_reference_analysis_fails_that_utterance_for_that_group(tiny_corpus, tmp_path,
                                                                           home, plugins):
    # one reference of a distinct length: the group's analyse_reference sees only the audio
    wav = tiny_corpus.parent / "wavs" / "spkA_001.wav"
    sf.write(wav, harmonic_tone(160, duration=0.7), 16000, subtype="PCM_16")
    n = sf.info(str(wav)).frames
    opts = {"corpusfault": {"reference_faults": {str(n): "segv"}}}
    out = tmp_path / "run"
    run(_config(tiny_corpus, out, metrics="f0,corpusfault", metric_options=opts, jobs=2),
        progress=False)
    recs = {r["utt_id"]: r for r in read_records(out)}
    lost = recs["spkA_001"]["scores"]["corpusfault"]
    assert lost["status"] == "failed" and lost["error_kind"] == "crashed"
    assert lost["reason"] == "crashed: SIGSEGV in corpusfault (crash_plugins) (reference analysis)"
    assert recs["spkA_001"]["status"] == "partial" and "f0.gpe" in recs["spkA_001"]["metrics"]
    others = [r for u, r in recs.items() if u != "spkA_001"]
    assert len(others) == 5 and all(r["status"] == "ok" for r in others)
    # the corpus model was fitted (in every worker) on the five references that survived
    assert all(r["extra"]["corpusfault"]["fitted"] == 5 for r in others)
    # the same numbers as one in-process worker
    ref = tmp_path / "inproc"
    run(_config(tiny_corpus, ref, metrics="f0,corpusfault", metric_options={}, isolate=False),
        progress=False)
    base = {r["utt_id"]: r for r in read_records(ref)}
    for u, r in recs.items():
        want = base[u]["metrics"]
        if u == "spkA_001":
            want = {k: v for k, v in want.items() if k.startswith("f0.")}
        assert r["metrics"] == want, u
    assert resumed_no_op(out, _config(tiny_corpus, out, metrics="f0,corpusfault",
                                      metric_options=opts, jobs=2))


def resumed_no_op(out, cfg) -> bool:
    before = _lines(out)
    return run(cfg, progress=False).n_processed == 0 and _lines(out) == before


def test_crash_while_loading_fails_the_group_not_the_run(tiny_corpus, tmp_path, home, plugins):
    out = tmp_path / "run"
    run(_config(tiny_corpus, out, metrics="f0,segv",
                metric_options={"segv": {"load_fault": "segv"}}), progress=False)
    recs = read_records(out)
    assert len(recs) == 6
    for r in recs:
        ev = r["scores"]["segv"]
        assert ev["status"] == "failed" and ev["error_kind"] == "crashed"
        assert ev["reason"] == "loading the model: crashed: SIGSEGV in segv (crash_plugins)"
        assert r["scores"]["f0"]["status"] == "ok"


def test_unexpected_exit_and_jobs_two(tiny_corpus, tmp_path, home, plugins):
    out = tmp_path / "run"
    run(_config(tiny_corpus, out, metrics="boom", jobs=2,
                metric_options={"boom": {"faults": {"spkA_000": "exit", "spkB_001": "nullptr"}}}),
        progress=False)
    recs = {r["utt_id"]: r for r in read_records(out)}
    assert recs["spkA_000"]["scores"]["boom"]["reason"] == \
        "crashed: exit status 3 in boom (score)"  # no Python stack: the step it was in
    assert recs["spkB_001"]["scores"]["boom"]["reason"] == "crashed: SIGSEGV in boom (crash_plugins)"
    assert sum(r["status"] == "ok" for r in recs.values()) == 4


def test_a_full_disk_met_in_a_worker_stops_the_run_cleanly(tiny_corpus, tmp_path, home, plugins,
                                                            monkeypatch):
    from resyn_bench.runner import RunStopped
    from resyn_bench.store import read_manifest

    out = tmp_path / "run"
    cfg = _config(tiny_corpus, out, system="faulty", metrics="f0",
                  system_options={"faults": {"spkA_002": "enospc"}})
    with pytest.raises(RunStopped, match="disk full"):
        run(cfg, progress=False)
    assert read_manifest(out)["status"] == "stopped: disk full"
    assert "spkA_002" not in {r["utt_id"] for r in read_records(out)}   # not a failure: redone
    monkeypatch.setenv("CRASH_PLUGINS_DISARM", "1")
    run(cfg, progress=False)
    assert all(r["status"] == "ok" for r in read_records(out)) and len(read_records(out)) == 6


def test_culprit_names_the_innermost_library():
    site = os.path.join(sys.prefix, "lib", "python3", "site-packages")
    import resyn_bench.metrics

    own = os.path.join(os.path.dirname(resyn_bench.metrics.__file__), "quality.py")
    dump = (f"Fatal Python error: Segmentation fault\n\n"
            f"Thread 0x00007f0000000001 (most recent call first):\n"
            f'  File "{site}/onnxruntime/capi/session.py", line 10 in run\n\n'
            f"Current thread 0x00007f0000000002 (most recent call first):\n"
            f'  File "{site}/pesq/__init__.py", line 71 in pesq\n'
            f'  File "{own}", line 548 in _pesq\n')
    sys.path.append(site)
    try:
        assert culprit(dump) == ("pesq", None)
        # a C extension called straight from this package: the location in the package
        library, where = culprit(dump.replace(f'  File "{site}/pesq/__init__.py", line 71 in pesq\n', ""))
        assert library is None and where.endswith("quality.py:548 in _pesq")
    finally:
        sys.path.remove(site)
    assert culprit("") == (None, None)


def test_time_limit_default_and_option():
    assert time_limit(None, 1.0) == 60.0
    assert time_limit(None, 30.0) == 300.0
    assert time_limit(None, None) == 60.0
    assert time_limit(0, 30.0) is None
    assert time_limit(5, 30.0) == 5.0


def test_cli_option_and_console_losses(tiny_corpus, tmp_path, home, plugins, capsys):
    from resyn_bench.cli import main

    out = tmp_path / "cli"
    rc = main(["run", "--system", "copy", "--dataset", "manifest", "--data-root", str(tiny_corpus),
               "--out", str(out), "--metrics", "segv", "--quiet", "--utt-timeout", "30",
               "--max-failed", "0.5", "-m", 'segv.faults={"spkA_000": "segv"}'])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "lost utterances: segv: 1 crashed (--retry-failed redoes them)" in printed
    with pytest.raises(SystemExit):
        main(["run", "--system", "copy", "--dataset", "manifest", "--out", str(out),
              "--utt-timeout", "-1"])
    assert "expected seconds >= 0" in capsys.readouterr().err


def test_a_factory_workers_cannot_rebuild_runs_in_process_with_a_warning(tiny_corpus, tmp_path,
                                                                         home, monkeypatch, caplog):
    from crash_plugins import FaultGroup

    monkeypatch.setitem(registry.METRIC_GROUPS, "inline",
                        registry.Entry("inline", lambda: FaultGroup("inline"), "a lambda"))
    with caplog.at_level("WARNING", logger="resyn_bench.runner"):
        run(_config(tiny_corpus, tmp_path / "run", metrics="inline"), progress=False)
    assert "inline cannot be rebuilt in a worker process" in caplog.text
    assert all(r["status"] == "ok" for r in read_records(tmp_path / "run"))


def test_isolation_default_follows_the_environment(monkeypatch):
    monkeypatch.delenv("RESYN_BENCH_ISOLATION", raising=False)
    assert RunConfig(system="copy", dataset="demo", out="x").isolate is True
    monkeypatch.setenv("RESYN_BENCH_ISOLATION", "0")
    assert RunConfig(system="copy", dataset="demo", out="x").isolate is False
    assert RunConfig(system="copy", dataset="demo", out="x", isolate=True).isolate is True


def test_several_workers_take_the_longest_utterances_first(tmp_path, home, plugins):
    # a group's last utterance decides when it ends: with the long ones first, no worker waits
    # long for the others at the end
    from conftest import write_manifest

    root = tmp_path / "corpus"
    (root / "wavs").mkdir(parents=True)
    seconds = {"u0": 0.4, "u1": 2.0, "u2": 0.7, "u3": 1.6, "u4": 0.5, "u5": 1.1}
    rows = []
    for uid, s in seconds.items():
        sf.write(root / "wavs" / f"{uid}.wav", harmonic_tone(lambda t: 140 + 0 * t, duration=s),
                 16000, subtype="PCM_16")
        rows.append({"utt_id": uid, "speaker": "spk", "path": f"wavs/{uid}.wav", "text": "x"})
    write_manifest(root, rows)
    log = tmp_path / "order.txt"
    cfg = _config(root / "manifest.tsv", tmp_path / "run", metrics="boom", jobs=2,
                  metric_options={"boom": {"order_log": str(log)}})
    run(cfg, progress=False)
    calls = [line.split() for line in log.read_text().splitlines()]
    assert sorted(uid for _, uid in calls) == sorted(seconds)
    per_worker: dict[str, list[float]] = {}
    for pid, uid in calls:
        per_worker.setdefault(pid, []).append(seconds[uid])
    for lengths in per_worker.values():             # each worker: ever shorter utterances
        assert lengths == sorted(lengths, reverse=True), per_worker


@pytest.mark.parametrize("jobs,isolate", [(2, True), (1, True), (1, False), (2, False)])
def test_batched_scoring_gives_the_one_at_a_time_records(tiny_corpus, tmp_path, home, plugins,
                                                         jobs, isolate):
    one = tmp_path / "one"
    run(_config(tiny_corpus, one, metrics="boom", jobs=1, isolate=False), progress=False)
    many = tmp_path / "many"
    run(_config(tiny_corpus, many, metrics="boom", jobs=jobs, isolate=isolate,
                metric_options={"boom": {"batch_size": 4}}), progress=False)
    got, want = _parts(many), _parts(one)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    sizes = sorted(ev["timings"]["batch"] for ev in RecordStore(many).events()
                   if ev.get("part") == "metric")
    assert sizes == [2, 2, 4, 4, 4, 4]                     # 6 utterances: a batch of 4 and of 2


def test_a_crash_inside_a_batch_costs_only_its_utterance(tiny_corpus, tmp_path, home, plugins):
    clean = tmp_path / "clean"
    run(_config(tiny_corpus, clean, metrics="segv", jobs=1, isolate=False), progress=False)
    out = tmp_path / "batched"
    run(_config(tiny_corpus, out, metrics="segv", jobs=2,
                metric_options={"segv": {"batch_size": 3, "faults": {"spkA_001": "segv"}}}),
        progress=False)
    got, want = _parts(out), _parts(clean)
    lost = got["spkA_001", "metric", "segv"]
    assert lost["status"] == "failed" and lost["error_kind"] == "crashed"
    assert lost["reason"] == "crashed: SIGSEGV in segv (crash_plugins)"
    for key in want:
        if key != ("spkA_001", "metric", "segv"):
            assert got[key] == want[key], key


def test_a_batch_that_fails_as_a_whole_is_scored_one_at_a_time(tiny_corpus, tmp_path, home,
                                                               plugins):
    clean = tmp_path / "clean"
    run(_config(tiny_corpus, clean, metrics="boom", jobs=1, isolate=False), progress=False)
    out = tmp_path / "broken"
    run(_config(tiny_corpus, out, metrics="boom", jobs=1, isolate=False,
                metric_options={"boom": {"batch_size": 3, "broken_batches": True,
                                         "faults": {"spkB_002": "raise"}}}), progress=False)
    got, want = _parts(out), _parts(clean)
    assert got["spkB_002", "metric", "boom"]["reason"] == "RuntimeError: injected failure in score"
    for key in want:
        if key != ("spkB_002", "metric", "boom"):
            assert got[key] == want[key], key
