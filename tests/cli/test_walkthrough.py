"""The offline walkthrough of docs/training.md (logmel100 trained end to end), shortened: slow tier.

Real speech (../shared/corpora/vctk_autovc_16k), the real CLI, every part trained here: a
log-mel k-means, the F0 quantizer, a ``tiny`` vocoder whose validation mel-L1 must fall clearly
below its untrained value, then ``resyn-bench run --system logmel100`` and a report.
"""
from __future__ import annotations

import json

import pytest
from conftest import SHARED

pytestmark = pytest.mark.slow

CORPUS = SHARED / "corpora" / "vctk_autovc_16k" / "manifest.tsv"


def _validation(log_path):
    out = {}
    for line in log_path.read_text().splitlines():
        rec = json.loads(line)
        if "validation" in rec and "mel_l1" in rec["validation"]:
            out[rec["step"]] = rec["validation"]["mel_l1"]
    return out


def test_logmel100_trained_offline_end_to_end(tmp_path, home, capsys):
    if not CORPUS.exists():
        pytest.skip(f"shared corpus not available at {CORPUS.parent}")
    from resyn_bench.cli import main

    data = ["--dataset", "manifest", "--data-root", str(CORPUS.parent)]
    km = home / "kmeans" / "logmel100.npz"
    f0q, voc = home / "vocoders" / "logmel100-f0", home / "vocoders" / "logmel100"
    assert main(["train", "kmeans", "--encoder", "logmel", "--k", "100", *data, "--out", str(km)]) == 0
    assert main(["train", "f0-quantizer", "--config", "tiny-f0", *data, "--out", str(f0q),
                 "--max-steps", "60", "--threads", "1", "--quiet"]) == 0
    assert main(["train", "vocoder", "--config", "tiny", *data, "--units", str(km),
                 "--f0-quantizer", str(f0q), "--out", str(voc), "--max-steps", "300",
                 "--threads", "1", "--quiet", "--set", "validation_interval=150",
                 "checkpoint_interval=150"]) == 0
    mel = _validation(voc / "train_log.jsonl")
    assert set(mel) >= {0, 300}
    assert mel[300] < 0.6 * mel[0], mel          # clearly better than the untrained start

    run_dir = tmp_path / "runs" / "logmel100"
    assert main(["run", "--system", "logmel100", *data, "--limit", "6", "--metrics", "pitch",
                 "--out", str(run_dir), "--quiet"]) == 0
    from resyn_bench.store import read_manifest, read_records

    records = read_records(run_dir)
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    # the k-means was fitted on these very clips: the run says so (docs/training.md walkthrough note)
    overlap = read_manifest(run_dir)["training_overlap"]
    kmeans = [p for p in overlap["parts"] if p["part"] == f"k-means {km}"]
    assert kmeans and kmeans[0]["n_overlap"] == 6 and kmeans[0]["n_evaluated"] == 6
    assert "training-set overlap" in capsys.readouterr().err + overlap["note"]
    system = read_manifest(run_dir)["system"]
    assert system["checkpoint"]["step"] == 300
    assert {s["name"] for s in system["streams"]} == {"units", "f0_codes", "speaker"}
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report"), "--no-plots"]) == 0
    assert (tmp_path / "report" / "report.html").is_file()
