"""The optional metric models with their real weights on real speech (slow tier).

Each test runs only where the model's files are already in the catalogue folder of this
environment (``resyn-bench fetch NAME``; nothing is downloaded here) and the shared corpora are
present; otherwise it skips. Bounds are loose sanity limits for ground truth (the ``copy``
system), not the paper's figures."""
from __future__ import annotations

import pytest
from conftest import SHARED

CORPORA = SHARED / "corpora"

pytestmark = pytest.mark.slow


def _need(*names: str) -> None:
    from resyn_bench import catalogue

    for name in names:
        entry = catalogue.get_entry(name)
        for n in (name, *entry.requires):
            if not catalogue.is_present(n):
                pytest.skip(f"{n} is not at {catalogue.catalogue_path(n)} "
                            f"(`resyn-bench fetch {name}`)")


def _corpus(name: str):
    path = CORPORA / name / "manifest.tsv"
    if not path.exists():
        pytest.skip(f"shared corpus {name} not available at {path.parent}")
    return path


def _run_copy(tmp_path, corpus: str, metrics: str, options: dict, limit: int | None = None):
    from resyn_bench.reports.collate import summarize_run
    from resyn_bench.runner import RunConfig, run

    out = tmp_path / metrics.replace(",", "_")
    run(RunConfig(system="copy", dataset="manifest", data_root=str(_corpus(corpus)), out=str(out),
                  metrics=metrics, metric_options=options, limit=limit), progress=False)
    return summarize_run(out)


@pytest.mark.parametrize("corpus", ["vctk_autovc_16k", "ljspeech_coqui_subset"])
def test_wav2vec2_large_ground_truth_wer(corpus, tmp_path):
    _need("wav2vec2-large-960h-lv60-self")
    s = _run_copy(tmp_path, corpus, "asr",
                  {"asr": {"backend": "wav2vec2", "per": False}})
    assert s.metrics["asr.wer"].pooled < 0.10


def test_phone_ctc_per_ground_truth(tmp_path):
    _need("wav2vec2-lv-60-espeak-cv-ft")
    s = _run_copy(tmp_path, "vctk_autovc_16k", "phn", {})
    assert s.metrics["phn.per"].pooled < 0.35


def test_utmos_ground_truth(tmp_path):
    _need("utmos22-strong")
    s = _run_copy(tmp_path, "vctk_autovc_16k", "utmos", {})
    assert 3.3 < s.metrics["utmos.mos"].mean <= 5.0


@pytest.mark.parametrize("embedding,name", [("wavlm-ecapa", "wavlm-large-sv"),
                                            ("ecapa", "spkrec-ecapa-voxceleb")])
def test_speaker_id_on_ground_truth(embedding, name, tmp_path):
    _need(name)
    s = _run_copy(tmp_path, "vctk_autovc_16k", "spk", {"spk": {"embedding": embedding}})
    assert s.metrics["spk.acc"].pooled > 0.9
