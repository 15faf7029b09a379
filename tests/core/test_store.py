import json
import math

from resyn_bench.store import RecordStore, read_records, write_json_atomic


def _synth(uid, status="ok"):
    return {"part": "synthesis", "utt_id": uid, "speaker": "s", "status": status}


def _metric(uid, group, status="ok", **kw):
    return {"part": "metric", "utt_id": uid, "group": group, "status": status, **kw}


def test_parts_merge_into_one_record(tmp_path):
    store = RecordStore(tmp_path)
    store.append(_synth("a"))
    store.append(_metric("a", "f0", values={"f0.gpe": 0.5}, counts={"n": 2}, extra={"k": 1}))
    store.append(_metric("a", "asr", values={"asr.wer": float("nan")}, counts={"e": 1}))
    rec = store.load()["a"]
    # JSON has no NaN: an undefined value is stored as null, never as a number
    assert rec["metrics"] == {"f0.gpe": 0.5, "asr.wer": None}
    assert rec["counts"] == {"f0.n": 2, "asr.e": 1}
    assert rec["extra"]["f0"] == {"k": 1}
    assert rec["status"] == "ok"
    for line in (tmp_path / "records.jsonl").read_text().splitlines():
        json.loads(line)  # strict JSON


def test_status_from_parts(tmp_path):
    store = RecordStore(tmp_path)
    store.append(_synth("bad", "failed"))
    store.append(_synth("partial"))
    store.append(_metric("partial", "f0"))
    store.append(_metric("partial", "asr", "failed", reason="boom"))
    store.append(_synth("allfail"))
    store.append(_metric("allfail", "f0", "failed", reason="x"))
    store.append(_synth("waiting"))
    store.append(_metric("waiting", "f0"))
    store.append(_synth("skip"))
    store.append(_metric("skip", "asr", "skipped", reason="no text"))
    recs = store.load(groups=["f0", "asr"])
    assert recs["bad"]["status"] == "failed"
    assert recs["partial"]["status"] == "partial" and recs["partial"]["errors"] == {"asr": "boom"}
    assert recs["allfail"]["status"] == "failed" and recs["allfail"]["stage"] == "metrics"
    assert recs["waiting"]["status"] == "incomplete"
    assert store.load()["waiting"]["status"] == "ok"
    assert recs["skip"]["skipped"] == {"asr": "no text"}


def test_repair_cuts_only_a_torn_last_line(tmp_path):
    store = RecordStore(tmp_path)
    store.append(_synth("a"))
    store.append(_synth("b"))
    assert store.repair() == 0
    with open(store.path, "a") as fh:
        fh.write('{"utt_id": "c", "met')
    assert store.repair() == len('{"utt_id": "c", "met')
    assert list(store.load()) == ["a", "b"]
    store.append(_synth("c"))
    assert list(store.load()) == ["a", "b", "c"]


def test_a_later_part_replaces_an_earlier_one(tmp_path):
    store = RecordStore(tmp_path)
    store.append(_synth("a", "failed"))
    store.append(_synth("a", "ok"))
    store.append(_metric("a", "f0", "failed", reason="x"))
    store.append(_metric("a", "f0", values={"f0.gpe": 0.0}))
    [rec] = read_records(tmp_path)
    assert rec["status"] == "ok" and rec["metrics"] == {"f0.gpe": 0.0} and not rec["errors"]


def test_numpy_scalars_and_atomic_json(tmp_path):
    import numpy as np

    write_json_atomic(tmp_path / "m.json", {"a": np.float64(2.5), "b": np.int64(3), "c": math.nan})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2.5, "b": 3, "c": None}
    assert not list(tmp_path.glob(".*.tmp"))
