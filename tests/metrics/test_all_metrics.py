"""Every metric group through the runner on a slice of the synthetic corpus (real models, offline).

The espeak `synthetic` dataset keeps this fast (short utterances); the real-speech `demo` is
covered end to end by test_demo_speech.py (slow tier) and `tox -e demo`."""
from __future__ import annotations

import pytest

from resyn_bench.reports.collate import summarize_run
from resyn_bench.reports.report import write_report
from resyn_bench.runner import RunConfig, run
from resyn_bench.store import read_manifest, read_records


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import os

    base = tmp_path_factory.mktemp("allmetrics")
    old = os.environ.get("RESYN_BENCH_HOME")
    os.environ["RESYN_BENCH_HOME"] = str(base / "home")
    try:
        out = {}
        for system in ("copy", "world"):
            out[system] = base / system
            run(RunConfig(system=system, dataset="synthetic", out=str(out[system]), limit=10,
                          metrics="all", f0_preset="dio",
                          # pocketsphinx: this test is about the runner, not the recogniser
                          # (the default Whisper is tested in test_whisper_asr.py)
                          metric_options={"asr": {"mode": "differential",
                                                  "backend": "pocketsphinx"}}), progress=False)
        yield out
    finally:
        if old is None:
            os.environ.pop("RESYN_BENCH_HOME", None)
        else:
            os.environ["RESYN_BENCH_HOME"] = old


def test_every_group_scores_every_utterance(runs):
    for path in runs.values():
        recs = read_records(path, ["f0", "asr", "spk", "dnsmos", "intrusive"])
        assert len(recs) == 10
        assert all(r["status"] == "ok" for r in recs), [r.get("errors") for r in recs]
        manifest = read_manifest(path)
        assert sorted(manifest["metrics"]) == ["asr", "dnsmos", "f0", "intrusive", "spk"]
        # group-at-a-time: the resampling log and sessions are complete
        assert manifest["status"] == "complete"


def test_known_answers_for_the_copy_row(runs):
    s = summarize_run(runs["copy"])
    m = s.metrics
    assert m["f0.ffe"].pooled == 0.0
    assert m["asr.dwer"].pooled == 0.0 and m["asr.dper"].pooled == 0.0   # same audio, same transcript
    assert m["intrusive.mcd"].mean == 0.0
    assert m["intrusive.stoi"].mean == pytest.approx(1.0, abs=1e-6)
    assert m["intrusive.pesq"].mean > 4.5
    assert 1.0 <= m["dnsmos.ovrl"].mean <= 5.0
    assert m["spk.n_target_trials"].pooled == 10 and m["spk.n_nontarget_trials"].pooled == 10
    for key in ("f0.ffe", "asr.dwer", "spk.eer", "dnsmos.ovrl"):
        ci = m[key].ci_pooled or m[key].ci_mean
        assert ci is not None and ci.low <= ci.high


def test_world_is_worse_than_copy_and_the_report_says_so(runs, tmp_path):
    copy, world = summarize_run(runs["copy"]), summarize_run(runs["world"])
    assert world.metrics["intrusive.mcd"].mean > 0.5
    assert world.metrics["intrusive.pesq"].mean < copy.metrics["intrusive.pesq"].mean
    assert world.metrics["f0.ffe"].pooled > 0.0
    paths = write_report([runs["copy"], runs["world"]], tmp_path / "rep")
    paper = paths["markdown"].read_text()
    for label in ("PER", "WER", "VDE", "FFE", "EER", "OVRL"):
        assert label in paper
    assert "| synthetic | world |" in paper and "*" in paper.split("| synthetic | world |")[1].splitlines()[0]
    # dWER is shown pooled over the corpus (never a mean of per-utterance rates); FFE as the mean
    from resyn_bench.reports.tables import format_value

    row = paper.split("| synthetic | world |")[1].splitlines()[0]
    dwer = world.metrics["asr.dwer"]
    header = [c.strip() for c in paper.splitlines()[0].split("|")]
    col = next(i for i, c in enumerate(header) if c.startswith("dWER"))
    assert row.split("|")[col - 3].strip().startswith(format_value(dwer.spec, dwer.pooled))
    assert "dWER" in paper.splitlines()[0] and "corpus-level values for dPER, dWER" in paper


def test_a_missing_model_fails_its_group_only(tmp_path, home, caplog):
    with caplog.at_level("WARNING", logger="resyn_bench.runner"):
        run(RunConfig(system="copy", dataset="synthetic", out=str(tmp_path / "run"), limit=3,
                      metrics="f0,asr", f0_preset="dio",
                      metric_options={"asr": {"backend": "whisper", "model": "base.en",
                                              "mode": "differential"}}), progress=False)
    assert "metric group 'asr' failed for 3 utterances" in caplog.text
    recs = read_records(tmp_path / "run", ["f0", "asr"])
    for r in recs:
        assert r["status"] == "partial"
        assert r["metrics"]["f0.ffe"] == 0.0
        reason = r["errors"]["asr"]
        assert "base.en.pt" in reason and "https://" in reason   # where to get it, where to put it


def test_corpus_wer_equals_jiwer_on_the_stored_transcripts(runs):
    import jiwer

    s = summarize_run(runs["world"])
    pairs = [(r["extra"]["asr"]["ref"], r["extra"]["asr"]["hyp"]) for r in s.records]
    pairs = [(ref, hyp) for ref, hyp in pairs if ref.strip()]
    expected = jiwer.wer([p[0] for p in pairs], [p[1] for p in pairs])
    assert s.metrics["asr.dwer"].pooled == pytest.approx(expected, abs=1e-12)
    per_utt = [r["metrics"]["asr.dwer"] for r in s.records if r["metrics"]["asr.dwer"] is not None]
    assert s.metrics["asr.dwer"].mean == pytest.approx(sum(per_utt) / len(per_utt))
