"""Real speech from ../shared/corpora (skipped cleanly where absent)."""
from __future__ import annotations

import pytest
from conftest import SHARED

from resyn_bench.reports.collate import summarize_run
from resyn_bench.runner import RunConfig, run
from resyn_bench.store import read_manifest, read_records

CORPORA = SHARED / "corpora"


def _corpus(name):
    path = CORPORA / name / "manifest.tsv"
    if not path.exists():
        pytest.skip(f"shared corpus {name} not available at {path.parent}")
    return path


def test_world_on_48k_vctk(tmp_path, home):
    tsv = _corpus("vctk_againvc_48k")
    out = tmp_path / "run"
    run(RunConfig(system="world", dataset="manifest", data_root=str(tsv), out=str(out), limit=3,
                  f0_preset="dio", metrics="pitch"), progress=False)
    recs = read_records(out)
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs)
    assert all(r["reference_sample_rate"] == 48000 == r["output_sample_rate"] for r in recs)
    assert read_manifest(out)["resampling"]["metric f0 (reference): 48000 Hz -> 16000 Hz"] == 3
    s = summarize_run(out)
    # WORLD keeps intonation of clean read speech well but not perfectly
    assert 0.0 < s.metrics["f0.ffe"].mean < 0.25
    assert s.metrics["f0.corr"].mean > 0.8


@pytest.mark.parametrize("corpus", ["ljspeech_coqui_subset", "vctk_autovc_16k", "fsdd_subset"])
def test_copy_is_exactly_zero_on_real_speech(corpus, tmp_path, home):
    tsv = _corpus(corpus)
    out = tmp_path / "run"
    run(RunConfig(system="copy", dataset="manifest", data_root=str(tsv), out=str(out), limit=2,
                  f0_preset="dio", metrics="pitch"), progress=False)
    for rec in read_records(out):
        assert rec["status"] == "ok", rec
        assert (rec["metrics"]["f0.gpe"], rec["metrics"]["f0.vde"], rec["metrics"]["f0.ffe"]) == (0, 0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["harvest", "dio", "yaapt", "yin-fairseq"])
def test_copy_and_world_on_vctk_every_preset(preset, tmp_path, home):
    tsv = _corpus("vctk_autovc_16k")
    for system in ("copy", "world"):
        run(RunConfig(system=system, dataset="manifest", data_root=str(tsv), out=str(tmp_path / system),
                      f0_preset=preset, metrics="pitch"), progress=False)
    copy, world = summarize_run(tmp_path / "copy"), summarize_run(tmp_path / "world")
    assert copy.n_ok == world.n_ok == 40
    assert copy.metrics["f0.ffe"].pooled == 0.0
    assert world.metrics["f0.ffe"].pooled > 0.0
