import json
import math

from resyn_bench.store import RecordStore, read_records, write_json_atomic


def test_append_and_load_roundtrip(tmp_path):
    store = RecordStore(tmp_path)
    store.append({"utt_id": "a", "metrics": {"x": 1.5}})
    store.append({"utt_id": "b", "metrics": {"x": float("nan"), "y": float("inf")}})
    recs = store.load()
    assert recs["a"]["metrics"]["x"] == 1.5
    # JSON has no NaN: an undefined value is stored as null, never as a number
    assert recs["b"]["metrics"] == {"x": None, "y": None}
    for line in (tmp_path / "records.jsonl").read_text().splitlines():
        json.loads(line)  # strict JSON


def test_repair_cuts_only_a_torn_last_line(tmp_path):
    store = RecordStore(tmp_path)
    store.append({"utt_id": "a"})
    store.append({"utt_id": "b"})
    assert store.repair() == 0
    with open(store.path, "a") as fh:
        fh.write('{"utt_id": "c", "met')
    assert store.repair() == len('{"utt_id": "c", "met')
    assert list(store.load()) == ["a", "b"]
    store.append({"utt_id": "c"})
    assert list(store.load()) == ["a", "b", "c"]


def test_duplicate_ids_resolve_to_last(tmp_path):
    store = RecordStore(tmp_path)
    store.append({"utt_id": "a", "status": "failed"})
    store.append({"utt_id": "a", "status": "ok"})
    assert [r["status"] for r in read_records(tmp_path)] == ["ok"]


def test_numpy_scalars_and_atomic_json(tmp_path):
    import numpy as np

    write_json_atomic(tmp_path / "m.json", {"a": np.float64(2.5), "b": np.int64(3), "c": math.nan})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2.5, "b": 3, "c": None}
    assert not list(tmp_path.glob(".*.tmp"))
