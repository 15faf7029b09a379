"""Typed, versioned run files (resyn_bench.runfiles): round trips of what the runner writes,
the upgrade of older runs, errors naming the file and field, newer-schema refusal, and the
pooling-version warning of a re-render."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
from golden.fixture_runs import build_golden_runs

from resyn_bench.reports.collate import POOLING_VERSION, summarize_run
from resyn_bench.runfiles import (
    SCHEMA_VERSION,
    Manifest,
    MetricPart,
    NewerSchemaError,
    RunFileError,
    SynthesisPart,
    iter_parts,
    iter_records,
    parse_manifest,
    parse_part,
    pooling_warning,
    read_manifest,
    upgrade,
    write_manifest,
)
from resyn_bench.runner import RunConfig, RunError, run
from resyn_bench.store import RecordsError, RecordStore, merge_events, metric_key, read_records


def _raw(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def _set_manifest(run_dir: Path, **fields) -> None:
    data = _raw(run_dir)
    data.update(fields)
    (run_dir / "manifest.json").write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture(scope="module")
def runner_run(tmp_path_factory):
    """A real run of the copy system with the pitch group (the runner writes every field)."""
    import os

    import soundfile as sf
    from conftest import harmonic_tone

    tmp = tmp_path_factory.mktemp("runfiles")
    old_home = os.environ.get("RESYN_BENCH_HOME")
    os.environ["RESYN_BENCH_HOME"] = str(tmp / "home")
    try:
        (tmp / "corpus").mkdir()
        rows = ["utt_id\tspeaker\tpath\ttext"]
        for i, (spk, f0) in enumerate([("a", 120), ("a", 160), ("b", 200)]):
            sf.write(tmp / "corpus" / f"u{i}.wav", harmonic_tone(f0, duration=0.6), 16000)
            rows.append(f"u{i}\t{spk}\tu{i}.wav\thello")
        (tmp / "corpus" / "manifest.tsv").write_text("\n".join(rows) + "\n")
        out = tmp / "run"
        run(RunConfig(system="copy", dataset="manifest", data_root=str(tmp / "corpus" / "manifest.tsv"),
                      out=str(out), metrics="pitch", f0_preset="dio", isolate=False), progress=False)
    finally:
        if old_home is None:
            os.environ.pop("RESYN_BENCH_HOME", None)
        else:
            os.environ["RESYN_BENCH_HOME"] = old_home
    return out


# ----------------------------------------------------------------------------- round trips

def test_runner_writes_the_versions_and_the_manifest_round_trips(runner_run):
    raw = _raw(runner_run)
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["pooling_version"] == POOLING_VERSION
    m = read_manifest(runner_run)
    assert m.to_json() == raw                     # every field kept, nothing added
    assert Manifest.from_json(m.to_json()) == m
    # the typed fields are the stored ones
    assert m.config.system == "copy" and m.config.dataset == "manifest"
    assert m.dataset.n_utterances == 3 and m.status == "complete"
    assert m.metrics["f0"].key == raw["metrics"]["f0"]["key"]
    assert m.metrics["f0"].key == metric_key("f0", raw["metrics"]["f0"])
    assert m.metrics["f0"].settings["preset"] == "dio"
    # the workers the run used (default --jobs auto: one per usable CPU)
    assert m.sessions[-1].n_processed == 3 and m.sessions[-1].jobs == raw["config"]["jobs"] >= 1
    assert set(m.sessions[-1].group_wall_s) == {"synthesis", "f0"}
    assert m.system is not None and m.system.name == "copy" and m.system.streams
    # written back, it is the same file (stamped with the current schema)
    write_manifest(runner_run.parent / "copy_of_manifest", m)
    assert _raw(runner_run.parent / "copy_of_manifest") == raw


def test_record_parts_round_trip_and_records_match_the_store(runner_run):
    lines = _lines(runner_run)
    parts = list(iter_parts(runner_run))
    assert [p.to_json() for p in parts] == lines
    synth = [p for p in parts if isinstance(p, SynthesisPart)]
    metric = [p for p in parts if isinstance(p, MetricPart)]
    assert len(synth) == 3 and len(metric) == 3
    assert synth[0].status == "ok" and synth[0].output_sample_rate == 16000
    assert all(p.group == "f0" and p.key and p.values["f0.gpe"] == 0.0 for p in metric)

    records = list(iter_records(runner_run))
    assert [r.to_dict() for r in records] == read_records(runner_run, ["f0"])
    # records come in the order the workers finished (--jobs auto may run two at a time)
    assert sorted(r.utt_id for r in records) == ["u0", "u1", "u2"]
    r0 = next(r for r in records if r.utt_id == "u0")
    assert r0.utt_id == "u0" and r0.status == "ok" and r0.speaker == "a"
    assert r0.scores["f0"].counts["n_frames"] > 0
    assert r0.metrics["f0.gpe"] == 0.0 and r0.counts["f0.n_frames"] == r0.scores["f0"].counts["n_frames"]
    assert r0.synthesis.reference_path.endswith("u0.wav")


def test_unknown_fields_survive_a_round_trip():
    raw = {"schema_version": SCHEMA_VERSION, "config": {"system": "copy", "new_option": [1, 2]},
           "dataset": {"n_utterances": 2, "speakers": 4},
           "metrics": {"f0": {"key": "f0@abc", "settings": {}, "specs": [], "options": {},
                              "future": True}},
           "sessions": [{"started": "x", "gpu": "h100"}], "something_new": {"a": 1}}
    m = Manifest.from_json(raw)
    assert m.to_json() == raw
    part = {"part": "metric", "group": "f0", "utt_id": "u", "status": "ok", "values": {},
            "counts": {}, "error_kind": None, "shard": 3}
    assert parse_part(part).to_json() == part


# ----------------------------------------------------------------------------- old runs

def test_golden_runs_without_schema_version_read_unchanged(tmp_path):
    runs = build_golden_runs(tmp_path)
    for run_dir in runs:
        raw = _raw(run_dir)
        assert "schema_version" not in raw and not any("key" in e for e in raw["metrics"].values())
        m = read_manifest(run_dir)
        assert m.schema_version == SCHEMA_VERSION and m.pooling_version is None
        for group, entry in m.metrics.items():
            assert entry.key == metric_key(group, raw["metrics"][group])
        # merged records: the same as the store gives (parts of any settings)
        groups = list(raw["metrics"])
        assert [r.to_dict() for r in iter_records(run_dir)] == read_records(run_dir, groups)
        assert _raw(run_dir) == raw     # reading never rewrites the file
    s = summarize_run(runs[0], n_boot=0)
    assert s.manifest is not None and s.manifest.schema_version == SCHEMA_VERSION
    assert s.n_ok == 24 and s.metrics["f0.gpe"].n == 24


def test_upgrade_from_version_0():
    entry = {"settings": {"preset": "dio"}, "specs": [], "options": {"preset": "dio"}}
    manifest = {"config": {"system": "copy"}, "metrics": {"f0": copy.deepcopy(entry)}}
    parts = [{"part": "synthesis", "utt_id": "u", "status": "ok"},
             {"part": "metric", "group": "f0", "utt_id": "u", "status": "ok",
              "values": {"f0.gpe": 0.5}, "counts": {}}]
    before = copy.deepcopy((manifest, parts))
    new, new_parts = upgrade(manifest, parts)
    assert (manifest, parts) == before                      # the arguments are left alone
    key = metric_key("f0", entry)
    assert new["schema_version"] == 1 and new["metrics"]["f0"]["key"] == key
    assert new["legacy_metric_keys"] == {"f0": key}
    assert new_parts[1]["key"] == key and "key" not in new_parts[0]
    # upgrading the current version changes nothing
    again = upgrade(new, new_parts)
    assert again == (new, new_parts)
    # the upgraded parts merge as the store merges the old ones (their parts now name the key)
    merged_new, merged_old = merge_events(new_parts, {"f0": key}), merge_events(parts, ["f0"])
    assert merged_new["u"]["scores"]["f0"].pop("key") == key
    assert merged_new == merged_old


def test_old_run_resumed_by_a_newer_runner_keeps_its_keyless_parts(tmp_path):
    """A manifest of the current version whose early parts have no key (the runner names
    their key in legacy_metric_keys): those parts still count."""
    entry = {"settings": {}, "specs": [], "options": {}}
    key = metric_key("asr", entry)
    run_dir = tmp_path / "r"
    write_manifest(run_dir, {"config": {"system": "copy"}, "dataset": {"n_utterances": 2},
                             "metrics": {"asr": {**entry, "key": key}},
                             "legacy_metric_keys": {"asr": key}})
    store = RecordStore(run_dir)
    for uid, with_key in (("u1", False), ("u2", True)):
        store.append({"part": "synthesis", "utt_id": uid, "status": "ok"})
        store.append({"part": "metric", "group": "asr", "utt_id": uid, "status": "ok",
                      "values": {"asr.wer": 0.25}, "counts": {"word_edits": 1, "ref_words": 4},
                      **({"key": key} if with_key else {})})
    records = list(iter_records(run_dir))
    assert [r.status for r in records] == ["ok", "ok"]
    assert all(r.scores["asr"].key == key for r in records)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("field, value, named", [
    ("config", {"system": 3}, "config.system"),
    ("config", {"system": "copy", "system_options": "f0=1"}, "config.system_options"),
    ("metrics", {"f0": ["not", "an", "entry"]}, "metrics.f0"),
    ("metrics", {"f0": {"settings": [], "specs": []}}, "metrics.f0.settings"),
    ("metrics", {"f0": {"specs": [{"label": "no key"}]}}, "metrics.f0.specs[0]"),
    ("dataset", {"n_utterances": "12"}, "dataset.n_utterances"),
    ("sessions", [{"started": "x"}, "later"], "sessions[1]"),
    ("sessions", [{"wall_s": "slow"}], "sessions[0].wall_s"),
    ("pooling_version", "1", "pooling_version"),
    ("schema_version", "1", "schema_version"),
    ("schema_version", -1, "schema_version"),
    ("legacy_metric_keys", {"f0": 5}, "legacy_metric_keys.f0"),
    ("training_overlap", "yes", "training_overlap"),
])
def test_a_damaged_manifest_names_the_file_and_field(runner_run, tmp_path, field, value, named):
    import shutil

    run_dir = tmp_path / "damaged"
    shutil.copytree(runner_run, run_dir)
    _set_manifest(run_dir, **{field: value})
    with pytest.raises(RunFileError) as err:
        read_manifest(run_dir)
    msg = str(err.value)
    assert str(run_dir / "manifest.json") in msg and repr(named) in msg, msg
    with pytest.raises(ValueError, match="manifest.json"):   # what the reports catch
        summarize_run(run_dir, n_boot=0)


def test_a_manifest_that_is_not_an_object(tmp_path):
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(RecordsError, match="not an object"):
        read_manifest(tmp_path)
    with pytest.raises(RunFileError, match="not an object"):
        parse_manifest("text", "somewhere/manifest.json")


def test_a_damaged_record_part_names_the_line_and_field(tmp_path):
    write_manifest(tmp_path, {"config": {"system": "copy"}, "metrics": {}})
    store = RecordStore(tmp_path)
    store.append({"part": "synthesis", "utt_id": "u1", "status": "ok"})
    store.append({"part": "synthesis", "utt_id": "u2", "status": "ok", "output_duration_s": "2 s"})
    with pytest.raises(RunFileError) as err:
        list(iter_parts(tmp_path))
    assert f"{tmp_path / 'records.jsonl'}: synthesis part of 'u2': field 'output_duration_s' must be " \
        "a number, got a string" in str(err.value)
    # a line that is not a record at all: the store's own check, with its line number
    with (tmp_path / "records.jsonl").open("a") as fh:
        fh.write(json.dumps({"part": "metric", "utt_id": "u1", "values": {}}) + "\n")
    with pytest.raises(RecordsError, match=r"records.jsonl line 3: metric part of 'u1' has no group"):
        list(iter_records(tmp_path))
    with pytest.raises(RunFileError, match="x.jsonl line 7: metric part of 'u' has no group"):
        parse_part({"part": "metric", "utt_id": "u"}, "x.jsonl", 7)


# ----------------------------------------------------------------------------- newer runs

def test_a_run_of_a_newer_schema_is_refused_everywhere(runner_run, tmp_path):
    import shutil

    run_dir = tmp_path / "future"
    shutil.copytree(runner_run, run_dir)
    _set_manifest(run_dir, schema_version=SCHEMA_VERSION + 1, renamed_everything=True)
    for read in (read_manifest, lambda d: list(iter_records(d)), lambda d: summarize_run(d, n_boot=0),
                 lambda d: RecordStore(d).load(["f0"])):
        with pytest.raises(NewerSchemaError, match="upgrade resyn-bench") as err:
            read(run_dir)
        assert f"schema version {SCHEMA_VERSION + 1}" in str(err.value)
    with pytest.raises(NewerSchemaError):
        upgrade(_raw(run_dir))
    # the runner does not resume it (that would rewrite it in the older layout)
    before = _raw(run_dir)
    cfg = before["config"]
    with pytest.raises(RunError, match="upgrade resyn-bench"):
        run(RunConfig(system="copy", dataset="manifest", data_root=cfg["data_root"], out=str(run_dir),
                      metrics="pitch", f0_preset="dio", isolate=False), progress=False)
    assert _raw(run_dir) == before


# ----------------------------------------------------------------------------- pooling version

def test_pooling_version_warning(runner_run, tmp_path, caplog):
    import shutil

    from resyn_bench.reports.report import write_report

    m = read_manifest(runner_run)
    assert pooling_warning(m) is None                        # scored with this code
    old = Manifest.from_json({**m.to_json(), "pooling_version": None})
    assert pooling_warning(old) is None                      # before versions were recorded
    other = Manifest.from_json({**m.to_json(), "pooling_version": POOLING_VERSION + 1})
    msg = pooling_warning(other, "RUN")
    assert msg and msg.startswith("RUN: ") and f"pooling code version {POOLING_VERSION + 1}," in msg \
        and f"pools with version {POOLING_VERSION}:" in msg

    run_dir = tmp_path / "pooled-elsewhere"
    shutil.copytree(runner_run, run_dir)
    _set_manifest(run_dir, pooling_version=POOLING_VERSION + 1)
    with caplog.at_level(logging.WARNING):
        write_report([runner_run], tmp_path / "same", formats=["md"], plots=False, n_boot=0)
    assert "pooling code version" not in caplog.text
    with caplog.at_level(logging.WARNING):
        write_report([run_dir], tmp_path / "rep", formats=["md"], plots=False, n_boot=0)
    assert "pooling code version" in caplog.text and str(run_dir) in caplog.text


def test_validate_names_a_damaged_manifest_field_and_a_newer_schema(runner_run, tmp_path):
    import shutil

    from resyn_bench.cli.validate import validate_run

    assert validate_run(runner_run)[0] == []
    run_dir = tmp_path / "v"
    shutil.copytree(runner_run, run_dir)
    _set_manifest(run_dir, dataset={"n_utterances": "three"})
    messages, _ = validate_run(run_dir)
    assert len(messages) == 1 and "'dataset.n_utterances' must be an integer" in messages[0]
    _set_manifest(run_dir, dataset={}, schema_version=SCHEMA_VERSION + 5)
    messages, _ = validate_run(run_dir)
    assert len(messages) == 1 and "upgrade resyn-bench" in messages[0]


def test_a_manifest_built_in_code_writes_the_runner_fields(tmp_path):
    """What a tool that makes runs (a shard merge) builds: every field the runner writes."""
    from resyn_bench.runfiles import DatasetInfo, MetricEntry, RunSettings, Session, SystemInfo

    m = Manifest(config=RunSettings({"system": "copy", "dataset": "demo"}),
                 system=SystemInfo("copy", [{"name": "waveform", "kind": "waveform"}]),
                 dataset=DatasetInfo("demo", None, 2, 2),
                 metrics={"f0": MetricEntry("f0", key="f0@x", settings={"preset": "dio"})},
                 pooling_version=POOLING_VERSION, status="complete",
                 sessions=[Session(started="t0", finished="t1", n_processed=2, wall_s=1.5)])
    data = m.to_json()
    assert data["schema_version"] == SCHEMA_VERSION and data["status"] == "complete"
    assert data["dataset"] == {"name": "demo", "root": None, "n_utterances": 2, "n_source_utterances": 2}
    assert data["metrics"]["f0"] == {"key": "f0@x", "settings": {"preset": "dio"}, "specs": [],
                                     "options": {}, "analysis_sample_rate": None}
    assert data["sessions"][0]["interrupted"] is False and data["sessions"][0]["n_failed"] is None
    assert "legacy_metric_keys" not in data and "training_overlap" not in data
    write_manifest(tmp_path, m)
    assert read_manifest(tmp_path) == Manifest.from_json(data)
    assert read_manifest(tmp_path).to_json() == data


def test_the_html_report_names_the_pooling_version(runner_run):
    from resyn_bench.reports.html import _manifest_entry

    facts = dict(_manifest_entry(summarize_run(runner_run, n_boot=0))["facts"])
    assert facts["pooling code"] == f"version {POOLING_VERSION}"
    assert facts["status"] == "complete"


def test_shards_and_their_merge_are_typed_run_files(runner_run, tmp_path):
    import os

    from resyn_bench.sharding import Shard, ShardError, merge_runs, shard_dir
    from resyn_bench.store import write_json_atomic

    corpus = runner_run.parent / "corpus" / "manifest.tsv"
    old_home = os.environ.get("RESYN_BENCH_HOME")
    os.environ["RESYN_BENCH_HOME"] = str(tmp_path / "home")
    try:
        dirs = [shard_dir(tmp_path / "sharded", Shard(i, 2)) for i in range(2)]
        for i, d in enumerate(dirs):
            run(RunConfig(system="copy", dataset="manifest", data_root=str(corpus), out=str(d),
                          metrics="pitch", f0_preset="dio", isolate=False, shard=f"{i}/2"),
                progress=False)
    finally:
        if old_home is None:
            os.environ.pop("RESYN_BENCH_HOME", None)
        else:
            os.environ["RESYN_BENCH_HOME"] = old_home
    for i, d in enumerate(dirs):
        m = read_manifest(d)
        assert (m.shard["index"], m.shard["count"]) == (i, 2) and m.merged_from is None
        assert m.to_json() == _raw(d)
    merged = tmp_path / "merged"
    merge_runs(dirs, merged)
    m = read_manifest(merged)
    assert m.shard is None and m.merged_from["count"] == 2 and m.to_json() == _raw(merged)
    assert m.schema_version == SCHEMA_VERSION and m.pooling_version == POOLING_VERSION
    assert [r.to_dict() for r in iter_records(merged)] == read_records(merged, ["f0"])
    assert sorted(r.utt_id for r in iter_records(merged)) == ["u0", "u1", "u2"]

    # a shard of another pooling code, or of a newer schema, is not merged
    def edit(d, **fields):
        data = _raw(d)
        data.update(fields)
        write_json_atomic(d / "manifest.json", data)

    edit(dirs[1], pooling_version=POOLING_VERSION + 1)
    with pytest.raises(ShardError, match="code version differs: pooling_version"):
        merge_runs(dirs, tmp_path / "m2")
    edit(dirs[1], pooling_version=POOLING_VERSION, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(ShardError, match="upgrade resyn-bench"):
        merge_runs(dirs, tmp_path / "m2")
    edit(dirs[1], schema_version=SCHEMA_VERSION, shard={"index": "one", "count": 2})
    with pytest.raises(ShardError, match="field 'shard' must be an object with whole numbers"):
        merge_runs(dirs, tmp_path / "m2")


def test_a_record_parses_its_parts_when_asked_and_names_a_bad_field(tmp_path):
    write_manifest(tmp_path, {"config": {"system": "copy"}, "metrics": {}})
    store = RecordStore(tmp_path)
    store.append({"part": "synthesis", "utt_id": "u1", "status": "ok", "speaker": "a"})
    store.append({"part": "metric", "group": "f0", "utt_id": "u1", "status": "ok",
                  "values": {"f0.gpe": 0.1}, "counts": {}, "cache": 7})
    (rec,) = list(iter_records(tmp_path, ["f0"]))
    assert rec.status == "ok" and rec.metrics == {"f0.gpe": 0.1} and rec.speaker == "a"
    with pytest.raises(RunFileError, match=r"records.jsonl: metric part of 'u1': field 'cache' must be "
                                           r"a string, got a number 7"):
        _ = rec.scores
