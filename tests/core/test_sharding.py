"""Sharded runs and ``merge``: membership by id hash, and 2 shards + merge equal to one process
exactly (pitch, and the speaker classifier fitted on the corpus: the one corpus-level step);
merge refuses shards of different runs naming the field, and lists missing or incomplete ones.

The corpus holds a reference longer than --max-duration: an unsharded run leaves it out of the
speaker models, and so must the shard that does not evaluate it (else the centroids, and with
them spk.cos_centroid, would differ). Speaker embeddings come from the test backend of
test_disentangle (a log spectrum: no model), pitch from dio; the system is its
``pitch-follower`` (each output re-synthesised in the speaker's register: real, imperfect
outputs, written to the run folder)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, write_manifest
from test_disentangle import REGISTERS, SR, fakes, voice  # noqa: F401  (fixture)

from resyn_bench.reports.collate import summarize_run
from resyn_bench.runner import RunConfig, RunError, run
from resyn_bench.sharding import (
    Shard,
    ShardError,
    merge_runs,
    parse_shard,
    resolve_shard,
    select,
    selection_fingerprint,
    shard_dir,
    shard_from_env,
    shard_of,
)
from resyn_bench.store import read_manifest, read_records, write_json_atomic

N_PER_SPEAKER = 3
MAX_DURATION = 1.5
LONG_ID = "spkA_long"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard_voices")
    (root / "wavs").mkdir()
    rows = []
    for si, (spk, reg) in enumerate(REGISTERS.items()):
        for j in range(N_PER_SPEAKER):
            uid = f"{spk}_{j}"
            sf.write(root / "wavs" / f"{uid}.wav", voice(j, reg, seed=10 * si + j), SR,
                     subtype="PCM_16")
            rows.append({"utt_id": uid, "speaker": spk, "path": f"wavs/{uid}.wav"})
    # 2 s, over MAX_DURATION: fails at the reference stage, left out of the speaker models
    long = np.concatenate([voice(0, REGISTERS["spkA"], seed=7), voice(1, REGISTERS["spkA"], seed=8)])
    sf.write(root / "wavs" / f"{LONG_ID}.wav", long, SR, subtype="PCM_16")
    rows.append({"utt_id": LONG_ID, "speaker": "spkA", "path": f"wavs/{LONG_ID}.wav"})
    return write_manifest(root, rows)


def _config(corpus, out, **kw):
    kw.setdefault("metrics", "f0,spk")
    kw.setdefault("f0_preset", "dio")
    kw.setdefault("metric_options", {"spk": {"backend": "test-spectrum", "folds": 3}})
    return RunConfig(system=kw.pop("system", "pitch-follower"), dataset="manifest", data_root=str(corpus),
                     out=str(out), max_duration=MAX_DURATION, isolate=False, **kw)


def _summary(run_dir):
    d = summarize_run(run_dir).to_dict(with_records=True)
    d.pop("run_dir")
    return d


def _scores(run_dir):
    """Every utterance's metric values and speaker trials (the cosine to each speaker model)."""
    return {r["utt_id"]: (r["metrics"], (r["extra"].get("spk") or {}).get("trials"))
            for r in read_records(run_dir)}


def _sharded(corpus, base, count=2, **kw):
    for i in range(count):
        run(_config(corpus, shard_dir(base, Shard(i, count)), shard=f"{i}/{count}", **kw),
            progress=False)
    return [shard_dir(base, Shard(i, count)) for i in range(count)]


# ---- membership -------------------------------------------------------------------------------

class _U:
    def __init__(self, utt_id):
        self.utt_id = utt_id


def test_membership_partitions_and_is_stable_when_the_corpus_grows():
    ids = [f"p{s:03d}_{k:03d}" for s in range(20) for k in range(25)]
    for count in (1, 2, 3, 7):
        parts = [[u.utt_id for u in select(map(_U, ids), Shard(i, count))] for i in range(count)]
        assert sorted(sum(parts, [])) == sorted(ids)            # every id once: no duplicates
        assert sum(map(len, parts)) == len(ids)                 # no padding
        assert all(parts)                                       # 500 ids: no empty shard
    before = {u: shard_of(u, 4) for u in ids}
    grown = ids + [f"new_{k}" for k in range(300)]
    assert {u: shard_of(u, 4) for u in grown if u in before} == before
    # an independent computation of the documented rule
    import hashlib

    assert shard_of("p225_001", 5) == int(hashlib.sha256(b"p225_001").hexdigest()[:16], 16) % 5
    assert selection_fingerprint(["b", "a"]) == selection_fingerprint(["a", "b"])
    assert selection_fingerprint(["a"]) != selection_fingerprint(["a", "b"])


def test_shard_specs_and_environments():
    assert parse_shard("2/5") == Shard(2, 5) and Shard(3, 16).name == "shard-03-of-16"
    for bad in ("5/5", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ShardError, match="--shard|outside|count"):
            parse_shard(bad)
    torch_env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert shard_from_env(torch_env) == (Shard(1, 4), "torchrun")
    assert resolve_shard(None, torch_env) == (Shard(1, 4), "torchrun")   # default under torchrun
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "8",
             "SLURM_ARRAY_TASK_COUNT": "4"}
    assert resolve_shard("auto", slurm) == (Shard(2, 4), "slurm")
    assert resolve_shard(None, slurm) is None          # an array job is not sharded unasked
    assert resolve_shard(None, {"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert resolve_shard("1/3", {}) == (Shard(1, 3), "manual")
    with pytest.raises(ShardError, match="not contiguous"):
        shard_from_env({**slurm, "SLURM_ARRAY_TASK_MAX": "20"})
    with pytest.raises(ShardError, match="neither torchrun"):
        resolve_shard("auto", {})


# ---- 2 shards + merge == one process ------------------------------------------------------------

def test_two_shards_merged_equal_the_single_process_run(corpus, tmp_path, home, fakes):  # noqa: F811
    single = tmp_path / "single"
    run(_config(corpus, single), progress=False)
    base = tmp_path / "sharded"
    dirs = _sharded(corpus, base)
    ids = [[r["utt_id"] for r in read_records(d)] for d in dirs]
    assert all(ids) and not set(ids[0]) & set(ids[1])
    for i, d in enumerate(dirs):
        entry = read_manifest(d)["shard"]
        assert (entry["index"], entry["count"]) == (i, 2)
        assert entry["selection"]["n_utterances"] == 3 * N_PER_SPEAKER + 1
    result = merge_runs(dirs, base)
    assert result.n_utterances == 3 * N_PER_SPEAKER + 1

    a, b = _summary(single), _summary(base)
    assert b == a
    assert _scores(base) == _scores(single)
    assert a["metrics"]["spk.cos_centroid"]["mean"] is not None
    assert a["metrics"]["f0.ffe"]["mean"] > 0            # not a copy: real numbers
    long = next(u for u in a["utterances"] if u["utt_id"] == LONG_ID)
    assert long["status"] == "failed" and "too_long" in long["reason"]
    # the merged run is an ordinary run: its outputs are in its own folder
    for rec in read_records(base):
        if rec.get("output_path"):
            assert (base / rec["output_path"]).is_file()
    manifest = read_manifest(base)
    assert "shard" not in manifest and manifest["merged_from"]["count"] == 2
    assert manifest["config"]["identity"]["shard"] is None
    assert manifest["dataset"]["n_utterances"] == read_manifest(single)["dataset"]["n_utterances"]
    assert manifest["resampling"] == read_manifest(single)["resampling"]
    from resyn_bench import runfiles

    typed = runfiles.read_manifest(base)         # a valid run file of the current schema
    assert typed.schema_version == runfiles.SCHEMA_VERSION and typed.status == "complete"
    assert sorted(s.other["shard"] for s in typed.sessions) == [0, 1]
    # merging again (after resuming a shard, say) replaces the earlier merge
    merge_runs(dirs, base)
    assert _summary(base) == a


def test_shards_equal_the_single_run_with_the_default_speaker_embeddings(corpus, tmp_path, home):
    """The real default speaker backend (resemblyzer) with the default batch size: shards embed
    other sets of outputs side by side than one run does, and every value must still be equal
    to the last bit (batches of 8 outputs on CPU changed spkC_2's cosine in the 8th digit)."""
    options = {"metrics": "spk", "system": "copy", "metric_options": {"spk": {"folds": 3}}}
    single = tmp_path / "single"
    run(_config(corpus, single, **options), progress=False)
    base = tmp_path / "sharded"
    merge_runs(_sharded(corpus, base, **options), base)
    assert _scores(base) == _scores(single)
    assert _summary(base) == _summary(single)
    assert _summary(single)["metrics"]["spk.cos_ref"]["mean"] > 0.5


def test_the_corpus_step_needs_the_other_shards_reference_check(corpus, tmp_path, home, fakes,  # noqa: F811
                                                                 monkeypatch):
    """Without the other shards' reference check the long recording joins the speaker models
    of the shard that does not evaluate it, and the numbers differ: the check is what keeps
    them equal (this test fails if corpus_synthesis stops applying it)."""
    from resyn_bench import sharding

    single = tmp_path / "single"
    run(_config(corpus, single), progress=False)
    monkeypatch.setattr(sharding, "corpus_synthesis", lambda outside, synthesis, limit: synthesis)
    base = tmp_path / "sharded"
    merge_runs(_sharded(corpus, base), base)
    assert _scores(base) != _scores(single)


# ---- merge refuses ------------------------------------------------------------------------------

@pytest.fixture
def two_shards(corpus, tmp_path, home, fakes):  # noqa: F811
    return _sharded(corpus, tmp_path / "run", metrics="f0")


def _edit(run_dir, change):
    manifest = read_manifest(run_dir)
    change(manifest)
    write_json_atomic(Path(run_dir) / "manifest.json", manifest)


def test_merge_names_the_field_that_differs(corpus, two_shards, tmp_path):
    other = tmp_path / "other"
    run(_config(corpus, shard_dir(other, Shard(1, 2)), shard="1/2", metrics="f0",
                f0_preset="harvest"), progress=False)
    with pytest.raises(ShardError, match=r"configuration differs: metrics\.f0\.key"):
        merge_runs([two_shards[0], shard_dir(other, Shard(1, 2))], tmp_path / "m")
    _edit(two_shards[1], lambda m: m.update(resyn_bench_version="0.0.0-other"))
    with pytest.raises(ShardError, match="code version differs: resyn_bench_version"):
        merge_runs(two_shards, tmp_path / "m")
    _edit(two_shards[1], lambda m: m["environment"]["packages"].update(numpy="0.1"))
    with pytest.raises(ShardError, match=r"environment\.packages\.numpy"):
        merge_runs(two_shards, tmp_path / "m")


def test_merge_refuses_another_selection(corpus, two_shards, tmp_path):
    limited = tmp_path / "limited"
    run(_config(corpus, shard_dir(limited, Shard(1, 2)), shard="1/2", metrics="f0", limit=6),
        progress=False)
    with pytest.raises(ShardError, match=r"dataset selection differs: shard\.selection"):
        merge_runs([two_shards[0], shard_dir(limited, Shard(1, 2))], tmp_path / "m")


def test_merge_lists_missing_and_incomplete_shards(corpus, two_shards, tmp_path):
    with pytest.raises(ShardError, match=r"missing shards 1 of 2"):
        merge_runs(two_shards[:1], tmp_path / "m")
    with pytest.raises(ShardError, match="given twice"):
        merge_runs([two_shards[0], two_shards[0]], tmp_path / "m")
    _edit(two_shards[1], lambda m: m.update(status="interrupted"))
    with pytest.raises(ShardError, match=r"incomplete shards: 1 \(.*status 'interrupted'"):
        merge_runs(two_shards, tmp_path / "m")
    _edit(two_shards[1], lambda m: m.update(status="complete"))
    records = two_shards[1] / "records.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    records.write_text("".join(lines[:-1]))       # the last metric part is missing
    with pytest.raises(ShardError, match=r"incomplete shards: 1 \(.*1 utterances lack f0 scores"):
        merge_runs(two_shards, tmp_path / "m")
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_merge_refuses_non_shards_and_foreign_runs(corpus, two_shards, tmp_path):
    plain = tmp_path / "plain"
    run(_config(corpus, plain, metrics="f0"), progress=False)
    with pytest.raises(ShardError, match="made without --shard"):
        merge_runs([plain, *two_shards], tmp_path / "m")
    with pytest.raises(ShardError, match="already holds a run"):
        merge_runs(two_shards, plain)
    merge_runs(two_shards, plain, overwrite=True)
    assert read_manifest(plain)["merged_from"]["count"] == 2


def test_a_shard_folder_resumes_only_as_the_same_shard(corpus, two_shards):
    with pytest.raises(RunError, match="shard: run has '0/2', asked '1/2'"):
        run(_config(corpus, two_shards[0], shard="1/2", metrics="f0"), progress=False)
    again = run(_config(corpus, two_shards[0], shard="0/2", metrics="f0"), progress=False)
    assert again.n_processed == 0 and again.n_done_before == again.n_total


# ---- the command line ---------------------------------------------------------------------------

def test_cli_shards_and_merge(corpus, tmp_path, home, fakes, capsys):  # noqa: F811
    from resyn_bench.cli import main

    out = tmp_path / "run"
    common = ["run", "--system", "pitch-follower", "--dataset", "manifest", "--data-root", str(corpus),
              "--metrics", "f0", "--f0-preset", "dio", "--out", str(out), "--quiet",
              "--max-duration", str(MAX_DURATION), "--max-failed", "0.5"]
    assert main([*common, "--shard", "0/2"]) == 0
    assert "next: when all 2 shards are done: resyn-bench merge --out" in capsys.readouterr().out
    assert main(["merge", "--out", str(out)]) == 2
    assert "missing shards 1 of 2" in capsys.readouterr().err
    assert main([*common, "--shard", "1/2"]) == 0
    assert main(["merge", "--out", str(out), "--max-failed", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert f"merged 2 shards into {out}: {3 * N_PER_SPEAKER + 1} utterances" in printed
    assert main(["summary", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_total"] == 3 * N_PER_SPEAKER + 1 and summary["n_failed"] == 1
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--format", "md,html",
                 "--no-plots"]) == 0
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "outputs/spkB_0.wav" in html          # the merged run's own (linked) outputs
    assert main([*common, "--shard", "2/2"]) == 2
    assert "shard index 2 is outside 0..1" in capsys.readouterr().err


# ---- torchrun ----------------------------------------------------------------------------------

def _launch_env(tmp_path) -> dict[str, str]:
    """The environment of a launched run: its own home, one thread, no worker isolation, and
    none of the launcher variables of an outer torchrun or SLURM job."""
    env = {**os.environ, "RESYN_BENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
           "RESYN_BENCH_ISOLATION": "0"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_ARRAY_TASK_ID"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("system,metrics", [
    ("copy", "f0"),
    pytest.param("world", "f0,spk", marks=pytest.mark.slow),   # ~70 s on 2 busy cores
])
def test_torchrun_two_ranks_equal_the_single_process_run(corpus, tmp_path, system, metrics):
    """2 CPU ranks under torchrun (gloo): each rank its shard, rank 0 merges; the summary
    equals a single-process run of the same command. The slow case adds real speaker
    embeddings (resemblyzer) in subprocesses, one thread each, sharing the reference cache."""
    env = _launch_env(tmp_path)
    args = ["run", "--system", system, "--dataset", "manifest", "--data-root", str(corpus),
            "--metrics", metrics, "--f0-preset", "dio", "-m", "spk.folds=3",
            "--max-duration", str(MAX_DURATION), "--max-failed", "0.5", "--quiet"]
    if "spk" not in metrics:
        args.remove("-m")
        args.remove("spk.folds=3")
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "resyn_bench.cli", *args, "--out", str(single)],
                   env=env, check=True, capture_output=True, timeout=300)
    sharded = tmp_path / "torchrun"
    from resyn_bench.distributed import find_free_port

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(find_free_port()), "-m", "resyn_bench.cli", *args,
                           "--out", str(sharded)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"merged 2 shards into {sharded}" in proc.stdout
    assert sorted(p.name for p in (sharded / "shards").iterdir()) == ["shard-0-of-2", "shard-1-of-2"]
    assert _summary(sharded) == _summary(single)
    assert _scores(sharded) == _scores(single)


def test_torchrun_two_nodes_equal_the_single_process_run(corpus, tmp_path):
    """Multi-node: two torchrun launchers (``--nnodes 2``, one rank each) meet at a c10d
    rendezvous, as two hosts would; the global RANK decides the shard and the launcher of
    node 0 merges from the shared ``--out``. The summary equals a single-process run."""
    env = _launch_env(tmp_path)
    args = ["run", "--system", "copy", "--dataset", "manifest", "--data-root", str(corpus),
            "--metrics", "f0", "--f0-preset", "dio", "--max-duration", str(MAX_DURATION),
            "--max-failed", "0.5", "--quiet"]
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "resyn_bench.cli", *args, "--out", str(single)],
                   env=env, check=True, capture_output=True, timeout=300)
    sharded = tmp_path / "nodes"
    from resyn_bench.distributed import find_free_port

    endpoint = f"127.0.0.1:{find_free_port()}"
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                               "--nproc-per-node", "1", "--node-rank", str(rank),
                               "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
                               "--rdzv-id", "resyn-bench-test", "-m", "resyn_bench.cli", *args,
                               "--out", str(sharded)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    try:
        outputs = [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    merged = [out for out, _ in outputs if f"merged 2 shards into {sharded}" in out]
    assert len(merged) == 1                      # exactly one node merged
    assert sorted(p.name for p in (sharded / "shards").iterdir()) == ["shard-0-of-2", "shard-1-of-2"]
    assert _summary(sharded) == _summary(single)
    assert _scores(sharded) == _scores(single)


def test_without_a_process_group_rank_0_waits_for_the_shard_files(
        corpus, tmp_path, home, fakes, monkeypatch, capsys, caplog):  # noqa: F811
    """torchrun variables but no rendezvous (no MASTER_ADDR): rank 0 evaluates its shard,
    waits for the other shard's manifest to say it finished, then merges."""
    from resyn_bench import sharding

    base = tmp_path / "run"
    run(_config(corpus, shard_dir(base, Shard(1, 2)), shard="1/2", metrics="f0"), progress=False)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    status = sharding.run_shard(_config(corpus, base, metrics="f0"), Shard(0, 2), "torchrun",
                                progress=False, max_failed=0.5, wait_s=30)
    assert status == 0
    assert "no torch.distributed process group" in caplog.text
    assert f"merged 2 shards into {base}" in capsys.readouterr().out
    assert read_manifest(base)["merged_from"]["count"] == 2


def test_wait_for_shards_names_the_ones_still_running(tmp_path):
    from resyn_bench.sharding import wait_for_shards

    done, running = tmp_path / "a", tmp_path / "b"
    for d, status in ((done, "complete"), (running, "running")):
        d.mkdir()
        write_json_atomic(d / "manifest.json", {"status": status})
    wait_for_shards([done], timeout_s=0)
    write_json_atomic(done / "manifest.json", {"status": "complete", "sessions": [
        {"finished": "2026-01-01T10:00:00+00:00"}]})
    wait_for_shards([done], timeout_s=0, since="2026-01-01T09:59:00+00:00")
    with pytest.raises(ShardError, match=r"a \(not started in this launch\)"):
        wait_for_shards([done], timeout_s=0, since="2026-01-01T10:01:00+00:00")
    with pytest.raises(ShardError, match=r"still running: .*b \(running\), .*c \(not started\)"):
        wait_for_shards([done, running, tmp_path / "c"], timeout_s=0.2, poll_s=0.05)


FAKE_SBATCH = r'''#!PYTHON
"""A stand-in for sbatch: records its arguments, runs --wrap at once (each array task in turn,
with the variables SLURM sets), prints a job id as --parsable does."""
import os, subprocess, sys

opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
with open(os.environ["FAKE_SBATCH_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
    tasks = [None]
    if "array" in opts:
        lo, hi = map(int, opts["array"].split("-"))
        tasks = range(lo, hi + 1)
    for k in tasks:
        env = dict(os.environ)
        if k is not None:
            env.update(SLURM_ARRAY_TASK_ID=str(k), SLURM_ARRAY_TASK_MIN=str(lo),
                       SLURM_ARRAY_TASK_MAX=str(hi), SLURM_ARRAY_TASK_COUNT=str(hi - lo + 1),
                       SLURM_ARRAY_JOB_ID="1000")
        rc = subprocess.run(["bash", "-c", opts["wrap"]], env=env, stdout=log, stderr=log).returncode
        log.write(f"exit {rc}\n")
print(1000 + len(open(os.environ["FAKE_SBATCH_LOG"]).read().splitlines()))
'''


@pytest.mark.slow   # ~16 s: three resyn-bench processes
def test_the_slurm_example_shards_and_merges(corpus, tmp_path, home):
    """docs/examples/slurm_array.sh with a fake sbatch: the array tasks take their shards from
    the SLURM variables, the dependent job merges, the result equals one process."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(FAKE_SBATCH.replace("PYTHON", sys.executable))
    (fake / "sbatch").chmod(0o755)
    out = tmp_path / "slurm"
    args = (f"--system copy --dataset manifest --data-root {corpus} --metrics f0 --f0-preset dio "
            f"--max-duration {MAX_DURATION} --max-failed 0.5")
    env = {**os.environ, "PATH": f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "FAKE_SBATCH_LOG": str(tmp_path / "sbatch.log"), "SHARDS": "2", "OUT": str(out),
           "CPUS": "1", "RUN_ARGS": args, "RESYN_BENCH_ISOLATION": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "docs" / "examples" / "slurm_array.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    log = (tmp_path / "sbatch.log").read_text()
    assert proc.returncode == 0, proc.stderr + log
    assert "--dependency=afterany:" in log and log.count("exit 0") == 3, log
    single = tmp_path / "single"
    run(_config(corpus, single, system="copy", metrics="f0"), progress=False)
    assert _summary(out) == _summary(single)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-0-of-2", "shard-1-of-2"]


# ---- memory: the runner reads its record log line by line, without the parts' details -----------

def test_iter_events_reads_as_events_does(tmp_path, caplog):
    from resyn_bench.store import RecordsError, RecordStore, iter_events, lean_part

    store = RecordStore(tmp_path)
    good = [{"part": "synthesis", "utt_id": "a", "status": "ok", "timings": {"load": 0.1},
             "text": "hello", "output_path": "outputs/a.wav"},
            {"part": "metric", "group": "f0", "utt_id": "a", "status": "ok", "key": "f0@1",
             "values": {"f0.gpe": 0.5}, "counts": {"n": 3.0}, "extra": {"contour": [1.0] * 50}}]
    store.path.write_text(json.dumps(good[0]) + "\n" + '{"utt_id": "b", "sta\n'
                          + json.dumps(good[1]) + "\n" + '{"utt_id": "c"')   # torn, torn at end
    assert list(iter_events(store.path)) == store.events() == good
    assert caplog.text.count("torn line") >= 2
    assert lean_part(good[1]) == {"part": "metric", "group": "f0", "utt_id": "a", "status": "ok",
                                  "key": "f0@1", "values": {"f0.gpe": 0.5}}
    lean = store.load(["f0"], lean=True)["a"]
    assert lean["metrics"] == {"f0.gpe": 0.5} and lean["status"] == "ok"
    assert "text" not in lean and lean["extra"] == {} and lean["counts"] == {}
    store.path.write_text(json.dumps(good[0]) + "\n[1, 2]\n7\n")
    with pytest.raises(RecordsError) as events_error:
        store.events()
    with pytest.raises(RecordsError) as iter_error:
        list(iter_events(store.path))
    assert str(iter_error.value) == str(events_error.value)
    assert "line 2" in str(iter_error.value) and "1 more damaged" in str(iter_error.value)


def test_groups_added_to_shards_later_merge_like_a_single_run(corpus, two_shards, tmp_path):
    """`score` on a shard folder (score-only: the system is not run) scores its own utterances
    with the speaker models of the whole selection and keeps the shard's selection; until
    every shard has the group, merge names the difference."""
    import dataclasses

    base = two_shards[0].parent.parent
    run(dataclasses.replace(_config(corpus, two_shards[0], shard="0/2"), metrics="spk"),
        progress=False, score_only=True)
    assert read_manifest(two_shards[0])["shard"]["selection"] == \
        read_manifest(two_shards[1])["shard"]["selection"]
    with pytest.raises(ShardError, match=r"configuration differs: metrics\.spk\.key"):
        merge_runs(two_shards, base)
    run(dataclasses.replace(_config(corpus, two_shards[1], shard="1/2"), metrics="spk"),
        progress=False, score_only=True)
    merge_runs(two_shards, base)
    single = tmp_path / "single"
    run(_config(corpus, single), progress=False)      # f0 and spk in one go
    assert _summary(base) == _summary(single)
    assert _scores(base) == _scores(single)
