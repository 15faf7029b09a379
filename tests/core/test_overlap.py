"""A run warns when the system's k-means or vocoder was trained on the utterances it evaluates."""
from __future__ import annotations

import json
import logging

import numpy as np

from resyn_bench import registry
from resyn_bench.cli import main
from resyn_bench.overlap import describe_utterances, find_overlap
from resyn_bench.reports.collate import summarize_run
from resyn_bench.reports.report import format_summary
from resyn_bench.runner import RunConfig, run
from resyn_bench.store import read_manifest
from resyn_bench.systems.baselines import CopySystem


class _WithUnits(CopySystem):
    """A copy system that claims a k-means (as CheckpointSystem does through unit_spec)."""

    def __init__(self, units: str | None = None, ckpt: str | None = None):
        self.unit_spec = units
        if ckpt:
            self.checkpoint = {"path": ckpt, "step": 1}


def _register(monkeypatch):
    monkeypatch.setitem(registry.SYSTEMS, "withunits", registry.Entry("withunits", _WithUnits, "test"))


def test_kmeans_trained_on_the_evaluated_clips_is_reported(tiny_corpus, tmp_path, home, monkeypatch,
                                                           caplog, capsys):
    km = tmp_path / "km.npz"
    rc = main(["train", "kmeans", "--encoder", "logmel", "--k", "4", "--dataset", "manifest",
               "--data-root", str(tiny_corpus), "--limit", "4", "--out", str(km), "--quiet"])
    assert rc == 0
    with np.load(km, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"][()]))
    assert meta["training_data"]["utterance_ids"] == ["spkA_000", "spkA_001", "spkA_002", "spkB_000"]
    assert all(p.startswith("/") for p in meta["training_data"]["utterance_paths"])

    _register(monkeypatch)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        run(RunConfig(system="withunits", system_options={"units": str(km)}, dataset="manifest",
                      data_root=str(tiny_corpus), out=str(out), metrics="pitch", f0_preset="dio"),
            progress=False)
    assert any("training-set overlap" in r.getMessage() and "4 of the 6 evaluated" in r.getMessage()
               for r in caplog.records)
    found = read_manifest(out)["training_overlap"]
    assert found["parts"][0]["n_overlap"] == 4 and found["parts"][0]["examples"][0] == "spkA_000"
    assert "optimistic" in found["note"]
    assert "warning  training-set overlap: k-means" in format_summary(summarize_run(out, n_boot=0))


def test_vocoder_folder_record_and_no_false_alarm(tiny_corpus, tmp_path, home):
    from resyn_bench.datasets import load_dataset

    utts = load_dataset("manifest", str(tiny_corpus)).utterances
    folder = tmp_path / "voc"
    folder.mkdir()
    (folder / "data.json").write_text(json.dumps(
        {"training_utterances": describe_utterances(utts[:2], "manifest")}))
    system = _WithUnits(ckpt=str(folder / "g_00000001"))
    found = find_overlap(system, utts, "manifest")
    assert found["parts"][0]["part"] == f"vocoder {folder}"
    assert found["parts"][0]["n_overlap"] == 2
    # other utterances: nothing to say; "manifest" ids alone are not evidence (paths decide)
    assert find_overlap(system, utts[2:], "manifest") is None
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = [u.__class__(u.utt_id, u.speaker, other / "x.wav", u.text) for u in utts[:2]]
    assert find_overlap(system, moved, "manifest") is None
    # a named corpus (vctk): the same ids count on another machine
    (folder / "data.json").write_text(json.dumps(
        {"training_utterances": describe_utterances(utts[:2], "vctk")}))
    assert find_overlap(system, moved, "vctk")["parts"][0]["n_overlap"] == 2
    # systems without recorded parts (copy, world, published checkpoints): no check
    assert find_overlap(CopySystem(), utts, "manifest") is None
