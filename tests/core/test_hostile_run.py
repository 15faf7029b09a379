"""A run folder nothing can corrupt (issue 19): hostile ids, concurrent runs, full disks,
--overwrite, embedded audio, long files, damaged records, exports and terminals.

Every test runs in a sandbox and checks at the end that nothing was written outside the run
folders (and report folders) it names. Fast: the ``copy`` system or a ``gain`` system (copy at
half amplitude, so outputs are written), the ``pitch`` suite with the ``dio`` preset, 0.3-s tones.
"""
from __future__ import annotations

import base64
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import harmonic_tone

from resyn_bench import registry
from resyn_bench.audio import Audio
from resyn_bench.cli import main
from resyn_bench.core import atomic as safe_io
from resyn_bench.runfolder import LOCK_FILE, RunLock, output_name
from resyn_bench.runner import RunConfig, RunStopped, run
from resyn_bench.store import QUARANTINE, RecordsError, read_manifest, read_records
from resyn_bench.systems.baselines import CopySystem

SR = 16000


class GainSystem(CopySystem):
    """The input at half amplitude: new samples, so the runner writes an output file."""

    def resynthesize(self, audio, utterance):
        return Audio((0.5 * audio.samples).astype(np.float32), audio.sample_rate)


@pytest.fixture
def gain(monkeypatch):
    monkeypatch.setitem(registry.SYSTEMS, "gain", registry.Entry("gain", GainSystem, "test"))
    return "gain"


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """tmp_path/sb holds the corpus and the runs. At teardown, every path created anywhere under
    tmp_path must lie under one of ``sandbox.allowed`` (default: the sb/run* folders)."""
    monkeypatch.setenv("RESYN_BENCH_HOME", str(tmp_path / "home"))
    sb = tmp_path / "sb"
    (sb / "corpus").mkdir(parents=True)

    class Box:
        root = sb
        corpus = sb / "corpus"
        allowed = ["sb/run"]

    before = _tree(tmp_path)
    yield Box
    created = sorted(_tree(tmp_path) - before)
    allowed = tuple(Box.allowed)
    outside = [p for p in created if not p.startswith(("sb/corpus",) + allowed)]
    assert not outside, f"written outside the run folders: {outside}"


def _corpus(box, rows, name="manifest.tsv") -> Path:
    """rows: (utt_id, f0 or None for an explicit path, text) -> manifest.tsv in box.corpus."""
    lines = ["utt_id\tspeaker\tpath\ttext"]
    for i, (uid, spec, text) in enumerate(rows):
        if isinstance(spec, (int, float)):
            rel = f"w{i:03d}.wav"
            sf.write(box.corpus / rel, harmonic_tone(spec, duration=0.3), SR, subtype="PCM_16")
        else:
            rel = spec
        lines.append(f"{uid}\ts\t{rel}\t{text}")
    path = box.corpus / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _config(tsv, out, system="copy", **kw):
    kw.setdefault("f0_preset", "dio")
    kw.setdefault("metrics", "pitch")
    kw.setdefault("use_cache", False)
    # one worker: these tests patch this process (a full disk) and read the records' order
    kw.setdefault("jobs", 1)
    return RunConfig(system=system, dataset="manifest", data_root=str(tsv), out=str(out), **kw)


def _cli_run(tsv, out, *extra):
    return main(["run", "--system", extra[0] if extra else "copy", "--dataset", "manifest",
                 "--data-root", str(tsv), "--out", str(out), "--metrics", "pitch",
                 "--f0-preset", "dio", "--no-cache", "--quiet", "--jobs", "1", *extra[1:]])


def _lines(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / "records.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------
# 1. ids -> file names

def test_output_names_are_safe_unique_bounded_and_stable():
    assert output_name("LJ001-0001") == "LJ001-0001.wav"          # plain ids unchanged
    assert output_name("p225_001__to_p226") == "p225_001__to_p226.wav"
    hostile = ["x", "sub/x", "sub\\x", "../../x", "/abs/x", ".hidden", "..", "a" * 300,
               "ünï_日本", "con", "a b", "x.wav/..", "~x"]
    names = [output_name(u) for u in hostile]
    assert len(set(names)) == len(names)
    for n in names:
        assert "/" not in n and "\\" not in n and not n.startswith(".")
        assert len(n.encode()) <= 120 and n.isascii()
    assert output_name("sub/x") == output_name("sub/x")  # a resumed run finds the same file


def test_hostile_ids_write_only_inside_out(sandbox, gain):
    box = sandbox
    abs_id = str(box.root / "abs" / "escape")    # an absolute id (inside the sandbox: checked)
    rows = [("x", 120, "a"), ("sub/x", 240, "b"), ("../../escape_rel", 150, "c"),
            (abs_id, 170, "d"), ("L" * 300, 200, "e"), ("ünï_日本語", 130, "f"),
            ("bad\x1b]0;pwn\x07id", 140, "g")]
    tsv = _corpus(box, rows)
    out = box.root / "run"
    result = run(_config(tsv, out, system=gain), progress=False)
    recs = {r["utt_id"]: r for r in read_records(out)}
    assert set(recs) == {r[0] for r in rows}                 # ids kept exactly in the records
    bad = recs["bad\x1b]0;pwn\x07id"]
    assert bad["status"] == "failed" and bad["stage"] == "input" and bad["error_kind"] == "bad_id"
    assert "control characters" in bad["reason"] and result.n_failed == 1
    paths = set()
    for uid, *_ in rows[:-1]:
        r = recs[uid]
        assert r["status"] == "ok", r
        # each output scored against its own audio (x and sub/x differ by an octave)
        assert r["metrics"]["f0.gpe"] < 0.05, (uid, r["metrics"])
        assert r["output_path"].startswith("outputs/") and r["output_path"].count("/") == 1
        assert (out / r["output_path"]).is_file()
        paths.add(r["output_path"])
    assert len(paths) == len(rows) - 1                       # no two ids share a file
    assert len(os.listdir(out / "outputs")) == len(rows) - 1
    assert not (box.root / "abs").exists() and not (box.root.parent / "escape_rel.wav").exists()
    # resume: same names, nothing redone
    again = run(_config(tsv, out, system=gain), progress=False)
    assert again.n_processed == 0
    assert {r["output_path"] for r in read_records(out) if r.get("output_path")} == paths


def test_outputs_system_does_not_read_outside_its_folder(sandbox):
    box = sandbox
    gen = box.corpus / "gen"
    gen.mkdir()
    sf.write(box.corpus / "secret.wav", harmonic_tone(150, duration=0.3), SR)
    tsv = _corpus(box, [("../secret", 150, ""), ("ok", 150, "")])
    sf.write(gen / "ok.wav", harmonic_tone(150, duration=0.3), SR)
    run(_config(tsv, box.root / "run", system=f"outputs:{gen}"), progress=False)
    recs = {r["utt_id"]: r for r in read_records(box.root / "run")}
    assert recs["ok"]["status"] == "ok"
    assert recs["../secret"]["status"] == "failed" and "outside" in recs["../secret"]["reason"]


# ------------------------------------------------------------------------------------------
# 2. the run lock

SLOW_RUN = textwrap.dedent("""
    import sys, time
    from resyn_bench import registry
    from resyn_bench.systems.baselines import CopySystem

    class Slow(CopySystem):
        def resynthesize(self, audio, utterance):
            if utterance.utt_id != "u0":
                time.sleep(60)
            return super().resynthesize(audio, utterance)

    registry.SYSTEMS["slow"] = registry.Entry("slow", Slow, "test")
    from resyn_bench.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_second_run_on_the_same_folder_is_refused(sandbox, capsys):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, ""), ("u1", 160, "")])
    out = box.root / "run"
    args = ["run", "--system", "slow", "--dataset", "manifest", "--data-root", str(tsv),
            "--out", str(out), "--metrics", "pitch", "--f0-preset", "dio", "--no-cache", "--quiet"]
    # SIGINT back to its default: a test session started in the background (`tox &`) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    first = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 60
        while not ((out / "records.jsonl").exists() and (out / "records.jsonl").stat().st_size):
            assert first.poll() is None, first.stderr.read().decode()
            assert time.time() < deadline, "the first run did not start"
            time.sleep(0.05)
        # the second run (other settings): refused, naming the holder; nothing written
        before = (out / "records.jsonl").read_bytes()
        rc = _cli_run(tsv, out, "copy", "--f0-preset", "yin-fairseq")
        err = capsys.readouterr().err
        assert rc == 2
        assert f"pid {first.pid}" in err and "in use by another run" in err and "slow" in err
        assert (out / "records.jsonl").read_bytes() == before
        assert read_manifest(out)["config"]["f0_preset"] == "dio"
        # RunLock itself, as validate --repair uses it
        with pytest.raises(Exception, match=f"pid {first.pid}"):
            RunLock(out).acquire()
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    # the lock dies with its process: the folder is usable again
    assert run(_config(tsv, out, system="copy", overwrite=True), progress=False).n_processed == 2
    assert read_manifest(out)["status"] == "complete"
    assert (out / LOCK_FILE).read_text() == ""     # released: no holder named


# ------------------------------------------------------------------------------------------
# 3. checked writes and a full disk

def _fd_path(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _inject(monkeypatch, decide):
    """Route every checked write through ``decide(path, data) -> int | Exception``."""
    real = safe_io._write

    def fake(fd, data):
        action = decide(_fd_path(fd), bytes(data))
        if isinstance(action, BaseException):
            raise action
        return real(fd, bytes(data)[:action] if action is not None else data)

    monkeypatch.setattr(safe_io, "_write", fake)


def _enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_short_writes_are_completed(sandbox, gain, monkeypatch):
    box = sandbox
    tsv = _corpus(box, [(f"u{i}", 120 + 20 * i, "") for i in range(3)])
    _inject(monkeypatch, lambda path, data: max(1, len(data) // 3))   # every write is short
    run(_config(tsv, box.root / "run", system=gain), progress=False)
    recs = read_records(box.root / "run")
    assert len(_lines(box.root / "run")) == 6 and all(r["status"] == "ok" for r in recs)
    for r in recs:
        assert sf.info(str(box.root / "run" / r["output_path"])).frames == int(0.3 * SR)


def test_disk_full_stops_cleanly_and_resumes(sandbox, gain, monkeypatch, capsys):
    box = sandbox
    tsv = _corpus(box, [(f"u{i}", 120 + 20 * i, "") for i in range(5)])
    out = box.root / "run"
    state = {"outputs": 0, "full": True}

    def decide(path, data):
        if state["full"] and "/outputs/" in path:
            state["outputs"] += 1
            if state["outputs"] >= 3:   # the third output file: half written, then no space
                return _enospc() if state["outputs"] > 3 else len(data) // 2
        return None

    _inject(monkeypatch, decide)
    # the injected write lives in this process: outputs are written here (--no-isolation;
    # test_crash_isolation covers a full disk met in a worker)
    rc = _cli_run(tsv, out, gain, "--no-isolation")
    err = capsys.readouterr().err
    assert rc == 2 and "disk full" in err and "Traceback" not in err and "resume" in err
    manifest = read_manifest(out)
    assert manifest["status"] == "stopped: disk full"
    assert "disk full" in manifest["sessions"][-1]["stopped"]
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and not (out / ".resyn-bench.reserve").exists()
    synth = [p for p in _lines(out) if p["part"] == "synthesis"]
    assert [p["utt_id"] for p in synth] == ["u0", "u1"]     # the log is complete lines only
    # space again: the same command resumes and finishes
    state["full"] = False
    assert _cli_run(tsv, out, gain, "--no-isolation") == 0
    parts = [(p["utt_id"], p["part"]) for p in _lines(out)]
    assert len(parts) == len(set(parts)) == 10
    assert all(r["status"] == "ok" for r in read_records(out))
    assert read_manifest(out)["status"] == "complete"


def test_disk_full_on_the_record_log_leaves_no_partial_line(sandbox, gain, monkeypatch):
    box = sandbox
    tsv = _corpus(box, [(f"u{i}", 120 + 20 * i, "") for i in range(4)])
    out = box.root / "run"
    state = {"n": 0}

    def decide(path, data):
        if path.endswith("records.jsonl"):
            state["n"] += 1
            if state["n"] == 3:
                return len(data) // 2           # a short write...
            if state["n"] == 4:
                return _enospc()                # ...then the disk is full
        return None

    _inject(monkeypatch, decide)
    with pytest.raises(RunStopped, match="disk full"):
        run(_config(tsv, out, system=gain), progress=False)
    text = (out / "records.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 2
    assert read_manifest(out)["status"] == "stopped: disk full"
    monkeypatch.setattr(safe_io, "_write", os.write)
    run(_config(tsv, out, system=gain), progress=False)
    assert len(_lines(out)) == 8 and all(r["status"] == "ok" for r in read_records(out))


def test_an_output_write_error_fails_only_that_utterance(sandbox, gain, monkeypatch):
    box = sandbox
    tsv = _corpus(box, [(f"u{i}", 120 + 20 * i, "") for i in range(3)])
    _inject(monkeypatch, lambda path, data: OSError(errno.EIO, "Input/output error")
            if "/outputs/.u1.wav" in path else None)
    # the injected write lives in this process: outputs are written here
    result = run(_config(tsv, box.root / "run", system=gain, isolate=False), progress=False)
    recs = {r["utt_id"]: r for r in read_records(box.root / "run")}
    assert result.n_failed == 1
    assert recs["u1"]["status"] == "failed" and recs["u1"]["stage"] == "output"
    assert recs["u1"]["error_kind"] == "write_error" and "Input/output error" in recs["u1"]["reason"]
    assert recs["u0"]["status"] == recs["u2"]["status"] == "ok"
    assert not [p for p in (box.root / "run").rglob("*.tmp")]


def test_disk_full_before_the_run_starts(sandbox, monkeypatch):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, "")])
    _inject(monkeypatch, lambda path, data: _enospc() if ".reserve" in path else None)
    with pytest.raises(RunStopped, match="nothing was evaluated if the run had not started"):
        run(_config(tsv, box.root / "run"), progress=False)
    assert not (box.root / "run" / ".resyn-bench.reserve").exists()
    assert not (box.root / "run" / "manifest.json").exists()


# ------------------------------------------------------------------------------------------
# 4. --overwrite

def test_overwrite_refuses_a_folder_that_is_not_a_run(sandbox, capsys):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, "")])
    out = box.root / "run"
    (out / "outputs").mkdir(parents=True)
    (out / "outputs" / "important.txt").write_text("keep me")
    (out / "notes.md").write_text("mine")
    assert _cli_run(tsv, out, "copy", "--overwrite") == 2
    assert "not a resyn-bench run folder" in capsys.readouterr().err
    assert (out / "outputs" / "important.txt").read_text() == "keep me"
    assert (out / "notes.md").exists()


def test_overwrite_deletes_only_the_suites_files(sandbox, gain):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, ""), ("u1", 170, "")])
    out = box.root / "run"
    run(_config(tsv, out, system=gain), progress=False)
    (out / "outputs" / "important.txt").write_text("keep me")
    (out / "outputs" / ".u9.wav.123.tmp").write_bytes(b"leftover")
    run(_config(tsv, out, system=gain, overwrite=True, limit=1), progress=False)
    assert (out / "outputs" / "important.txt").read_text() == "keep me"
    assert sorted(os.listdir(out / "outputs")) == ["important.txt", "u0.wav"]
    assert [p["utt_id"] for p in _lines(out)] == ["u0", "u0"]


def test_overwrite_refuses_outputs_inside_out(sandbox, gain, capsys):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, ""), ("u1", 170, "")])
    out = box.root / "run"
    run(_config(tsv, out, system=gain), progress=False)
    before = sorted(os.listdir(out / "outputs"))
    rc = _cli_run(tsv, out, f"outputs:{out / 'outputs'}", "--overwrite")
    assert rc == 2 and "inside --out" in capsys.readouterr().err
    assert sorted(os.listdir(out / "outputs")) == before == ["u0.wav", "u1.wav"]


# ------------------------------------------------------------------------------------------
# 5. report --audio embed

def test_embed_only_audio_the_run_decoded(sandbox):
    from resyn_bench.reports.report import write_report

    box = sandbox
    box.allowed.append("sb/report")
    secret = "TOP SECRET not audio " * 20
    (box.corpus / "notes.txt").write_text(secret)
    tsv = _corpus(box, [("good", 150, ""), ("text", "notes.txt", "")])
    out = box.root / "run"
    run(_config(tsv, out), progress=False)
    recs = {r["utt_id"]: r for r in read_records(out)}
    assert recs["text"]["status"] == "failed" and recs["text"]["error_kind"] == "unreadable"
    paths = write_report([out], box.root / "report", formats=["html"], audio="embed", plots=False)
    html = Path(paths["html"]).read_text()
    assert base64.b64encode(secret.encode()[:300]).decode()[:200] not in html
    good = base64.b64encode((box.corpus / "w000.wav").read_bytes()).decode()
    assert good in html                                        # the scored audio is embedded


# ------------------------------------------------------------------------------------------
# 6. maximum duration

def test_max_duration_fails_long_files_before_decoding(sandbox, monkeypatch, capsys):
    import resyn_bench.runner as runner

    box = sandbox
    tsv = _corpus(box, [("short", 150, "")])
    sf.write(box.corpus / "long.wav", harmonic_tone(150, duration=2.5), SR)
    with open(tsv, "a") as fh:
        fh.write("long\ts\tlong.wav\t\n")
    loaded = []
    real = runner.load_audio
    monkeypatch.setattr(runner, "load_audio", lambda p: (loaded.append(Path(p).name), real(p))[1])
    # one of the two fails: past the default --max-failed (exit 3), so tolerate it here
    # --no-isolation: the load_audio spy lives in this process
    assert _cli_run(tsv, box.root / "run", "copy", "--max-duration", "1", "--max-failed", "1",
                    "--no-isolation") == 0
    recs = {r["utt_id"]: r for r in read_records(box.root / "run")}
    assert recs["short"]["status"] == "ok"
    long = recs["long"]
    assert long["status"] == "failed" and long["error_kind"] == "too_long"
    assert "2.5 s" in long["reason"] and "--max-duration 1 s" in long["reason"]
    assert "long.wav" not in loaded                            # never decoded
    assert read_manifest(box.root / "run")["config"]["max_duration"] == 1.0
    assert RunConfig(system="copy", dataset="demo", out="x").max_duration == 600.0


# ------------------------------------------------------------------------------------------
# 7. damaged run files

DAMAGE = {
    "invalid UTF-8": (b'{"utt_id": "u\xff\xfe", "part": "synthesis", "status": "ok"}',
                      "invalid UTF-8"),
    "a list": (b"[1, 2, 3]", "a JSON list"),
    "a number": (b"42", "a JSON number"),
    "no group": (b'{"utt_id": "u0", "part": "metric", "status": "ok", "values": {}}',
                 "has no group"),
    "list utt_id": (b'{"utt_id": ["u0"], "part": "synthesis", "status": "ok"}',
                    "utt_id must be a non-empty string"),
    "string values": (b'{"utt_id": "u0", "part": "metric", "group": "f0", "status": "ok", '
                      b'"values": {"f0.gpe": "0.5"}}', "not a number"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_records_give_one_clear_message(sandbox, kind, capsys):
    box = sandbox
    box.allowed.append("sb/rep")
    tsv = _corpus(box, [("u0", 150, ""), ("u1", 170, "")])
    out = box.root / "run"
    run(_config(tsv, out), progress=False)
    records = out / "records.jsonl"
    lines = records.read_bytes().split(b"\n")
    line, expected = DAMAGE[kind]
    lines.insert(2, line)                     # becomes line 3
    records.write_bytes(b"\n".join(lines))
    with pytest.raises(RecordsError, match=rf"records.jsonl line 3: .*{expected}"):
        read_records(out)
    for argv in (["summary", str(out)], ["report", str(out), "--out", str(box.root / "rep"),
                                         "--no-plots", "--format", "md"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "records.jsonl line 3" in err and expected in err and "Traceback" not in err
    assert _cli_run(tsv, out) == 2            # the run refuses too, before writing anything
    assert "records.jsonl line 3" in capsys.readouterr().err
    assert main(["validate", str(out)]) == 1
    assert "line 3: damaged" in capsys.readouterr().out
    assert main(["validate", str(out), "--repair"]) == 0
    q = [json.loads(x) for x in (out / QUARANTINE).read_text().splitlines()]
    assert [e["line"] for e in q] == [3] and base64.b64decode(q[0]["bytes_base64"]) == line
    assert main(["validate", str(out)]) == 0
    assert _cli_run(tsv, out) == 0
    assert all(r["status"] == "ok" for r in read_records(out))


def test_a_torn_line_in_the_middle_is_named_and_redone(sandbox, caplog):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, ""), ("u1", 170, "")])
    out = box.root / "run"
    run(_config(tsv, out), progress=False)
    records = out / "records.jsonl"
    lines = records.read_text().splitlines()
    assert json.loads(lines[1])["part"] == "synthesis" and json.loads(lines[1])["utt_id"] == "u1"
    lines[1] = lines[1][: len(lines[1]) // 2]          # the synthesis part of u1, torn
    records.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING"):
        again = run(_config(tsv, out), progress=False)
    assert "records.jsonl line 2: torn line" in caplog.text and "redone" in caplog.text
    assert again.n_processed == 1 and again.n_done_before == 1     # u1 synthesised again
    assert all(r["status"] == "ok" and r["metrics"] for r in read_records(out))


# ------------------------------------------------------------------------------------------
# 8. exports and terminals

def test_csv_cells_cannot_be_formulas(sandbox):
    from resyn_bench.reports.report import write_report
    from resyn_bench.reports.tables import csv_text

    assert csv_text("=1+2") == "'=1+2" and csv_text("@SUM(A1)") == "'@SUM(A1)"
    assert csv_text("+x") == "'+x" and csv_text("-cmd|' /C calc'!A0") == "'-cmd|' /C calc'!A0"
    assert csv_text("-3.5") == "-3.5" and csv_text(-3.5) == -3.5 and csv_text("copy") == "copy"
    box = sandbox
    box.allowed.append("sb/rep")
    tsv = _corpus(box, [("u0", 150, "")])
    run(_config(tsv, box.root / "run", label='=HYPERLINK("http://x","y")'), progress=False)
    paths = write_report([box.root / "run"], box.root / "rep", formats=["csv"], plots=False)
    csvs = [p for k, p in paths.items() if str(p).endswith(".csv")]
    text = "".join(Path(p).read_text() for p in csvs)
    assert "'=HYPERLINK" in text and '\n"=HYPERLINK' not in text and "\n=HYPERLINK" not in text


def test_summary_escapes_terminal_control_codes(sandbox, capsys):
    box = sandbox
    evil = "u\x1b]0;owned\x07\x1b[2J\u202e"
    tsv = _corpus(box, [(evil, 150, ""), ("u1", 150, "")])
    run(_config(tsv, box.root / "run"), progress=False)
    assert main(["summary", str(box.root / "run"), "--utterances"]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "\\x1b" in shown
    assert main(["summary", str(box.root / "run"), "--utterances", "--json"]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\u202e" not in shown
    assert evil in [r["utt_id"] for r in json.loads(shown)["utterances"]]   # same JSON value


def test_a_one_megabyte_transcript_loads(sandbox):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, "word " * 200_000)])
    run(_config(tsv, box.root / "run"), progress=False)
    [rec] = read_records(box.root / "run")
    assert rec["status"] == "ok" and len(rec["text"]) > 999_000


def test_deeply_nested_split_and_unwritable_out_are_clear_errors(sandbox, capsys):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, "")])
    split = box.corpus / "split.txt"
    split.write_text('{"audio": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert _cli_run(tsv, box.root / "run", "copy", "--split", str(split)) == 2
    err = capsys.readouterr().err
    assert "split file" in err and "line 1" in err and "Traceback" not in err
    blocker = box.root / "run_file"
    blocker.write_text("a file where a folder should be")
    assert _cli_run(tsv, blocker / "sub", "copy") == 2
    err = capsys.readouterr().err
    assert "cannot write the run folder" in err and "Traceback" not in err
    run(_config(tsv, box.root / "run"), progress=False)
    assert main(["report", str(box.root / "run"), "--out", str(blocker / "rep"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "resyn-bench report: error:" in err and "Not a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_a_clear_error(sandbox, capsys):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, "")])
    ro = box.root / "run_ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _cli_run(tsv, ro, "copy") == 2
        assert "cannot write the run folder" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("pattern", ["{utt_id:>9999999999}", "{utt_id.__class__}", "{utt_id!r}",
                                     "{utt_id[0]}", "{0}", "../{utt_id}.wav", "/abs/{utt_id}"])
def test_outputs_pattern_allows_only_the_named_fields(sandbox, pattern, capsys):
    box = sandbox
    gen = box.root / "run_gen"
    gen.mkdir()
    tsv = _corpus(box, [("u0", 150, "")])
    assert _cli_run(tsv, box.root / "run", f"outputs:{gen}", "--outputs-pattern", pattern) == 2
    assert "bad --outputs-pattern" in capsys.readouterr().err
    assert not (box.root / "run").exists()


def test_an_unwritable_cache_does_not_fail_the_run(sandbox, caplog):
    box = sandbox
    tsv = _corpus(box, [("u0", 150, ""), ("u1", 170, "")])
    blocker = box.root / "run_cache_file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level("WARNING"):
        run(_config(tsv, box.root / "run", use_cache=True, cache_dir=str(blocker / "c")),
            progress=False)
    assert all(r["status"] == "ok" and r["metrics"] for r in read_records(box.root / "run"))
    assert "cannot write the analysis cache" in caplog.text


def test_an_unwritable_record_log_stops_the_run_honestly(sandbox, gain, monkeypatch):
    box = sandbox
    tsv = _corpus(box, [(f"u{i}", 120 + 20 * i, "") for i in range(3)])
    out = box.root / "run"
    state = {"n": 0}

    def decide(path, data):
        if path.endswith("records.jsonl"):
            state["n"] += 1
            if state["n"] >= 2:
                return OSError(errno.EIO, "Input/output error")
        return None

    _inject(monkeypatch, decide)
    with pytest.raises(RunStopped, match="cannot write the records.*records.jsonl writable"):
        run(_config(tsv, out, system=gain), progress=False)
    assert read_manifest(out)["status"] == "stopped: cannot write the records"
    assert len(_lines(out)) == 1
    monkeypatch.setattr(safe_io, "_write", os.write)
    run(_config(tsv, out, system=gain), progress=False)
    assert len(_lines(out)) == 6 and all(r["status"] == "ok" for r in read_records(out))


@pytest.mark.skipif(__import__("multiprocessing").get_start_method() != "fork",
                    reason="the injected write reaches workers only when they are forked")
def test_disk_full_in_a_worker_process_stops_the_run(sandbox, gain, monkeypatch):
    box = sandbox
    tsv = _corpus(box, [(f"u{i}", 120 + 20 * i, "") for i in range(4)])
    out = box.root / "run"
    # workers of the unsupervised pool (--no-isolation) are forked with the injected write: the
    # output of u2 finds the disk full (test_crash_isolation covers supervised workers)
    _inject(monkeypatch, lambda path, data: _enospc() if "/outputs/.u2.wav" in path else None)
    with pytest.raises(RunStopped, match="disk full"):
        run(_config(tsv, out, system=gain, jobs=2, isolate=False), progress=False)
    assert read_manifest(out)["status"] == "stopped: disk full"
    assert "u2" not in {p["utt_id"] for p in _lines(out)}       # not recorded as a failure
    assert not [p for p in out.rglob("*.tmp")]
    monkeypatch.setattr(safe_io, "_write", os.write)
    run(_config(tsv, out, system=gain, jobs=2, isolate=False), progress=False)
    assert all(r["status"] == "ok" for r in read_records(out)) and len(read_records(out)) == 4
