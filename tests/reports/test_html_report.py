"""The HTML report (resyn_bench.reports.html) without a browser: data blob, escaping, audio links
and embedding, worst-k, manifest checksums; the word alignment; the F0 display contour stored by
the f0 metric group. The browser checks are in test_html_browser.py."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from conftest import harmonic_signal, write_manifest

from resyn_bench.dsp.pitch import F0Track
from resyn_bench.metrics.f0 import F0Metrics, align_to_reference, display_contour
from resyn_bench.reports.collate import summarize_run
from resyn_bench.reports.html import (
    align_words,
    build_data,
    estimate_audio_size,
    write_html,
)
from resyn_bench.reports.stats import significant
from resyn_bench.reports.tables import significance
from resyn_bench.runner import RunConfig, run
from resyn_bench.store import read_records

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from bench_html import synthetic_run  # noqa: E402

MARKUP = "<script>alert(1)</script> & <b>x</b>"


def _blob(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.DOTALL)
    assert m, "no data blob"
    return json.loads(m.group(1))


# --------------------------------------------------------------------------------------------
# Word alignment
# --------------------------------------------------------------------------------------------

def test_align_words_known_answers():
    assert align_words("a b c d", "a x c") == [("=", "a", "a"), ("s", "b", "x"), ("=", "c", "c"),
                                               ("d", "d", None)]
    assert align_words("a b", "a y b z") == [("=", "a", "a"), ("i", None, "y"), ("=", "b", "b"),
                                             ("i", None, "z")]
    assert align_words("", "p q") == [("i", None, "p"), ("i", None, "q")]
    assert align_words("p q", "") == [("d", "p", None), ("d", "q", None)]
    assert align_words("", "") == []


def test_align_words_edit_count_is_jiwers():
    jiwer = pytest.importorskip("jiwer")
    rng = random.Random(1)
    vocab = list("abcdefg")
    for _ in range(300):
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 9))]
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 9))]
        ops = align_words(ref, hyp)
        out = jiwer.process_words(" ".join(ref), " ".join(hyp) or "")
        assert sum(op != "=" for op, _, _ in ops) == out.substitutions + out.deletions + out.insertions
        # the alignment spells out both sequences
        assert [r for _, r, _ in ops if r is not None] == ref
        assert [h for _, _, h in ops if h is not None] == hyp


# --------------------------------------------------------------------------------------------
# The F0 display contour (metrics/f0.py)
# --------------------------------------------------------------------------------------------

def test_display_contour_decimates_and_rounds():
    times = 0.01 + 0.005 * np.arange(12)
    ref = np.array([0, 100.04, 100.06, 0, 120.0, 121.0, 122.0, 0, 0, 130.0, 131.0, 132.0])
    syn = np.array([0, 99.95, 0, 0, 119.0, 0, 0, 0, 5.0, 131.0, 0, 0])
    c = display_contour(F0Track(times, ref), syn)
    assert c["dt"] == pytest.approx(0.02) and c["t0"] == pytest.approx(0.01)
    # every 4th frame (20 ms / 5 ms), never an average: unvoiced stays exactly 0
    assert c["ref"] == [0.0, 120.0, 0.0]
    assert c["out"] == [0.0, 119.0, 5.0]
    c2 = display_contour(F0Track(times[:3], ref[:3]), syn[:3], step_s=0.005)
    assert c2["ref"] == [0.0, 100.0, 100.1] and c2["out"] == [0.0, 100.0, 0.0]
    json.dumps(c)


def test_f0_group_stores_the_compared_tracks():
    from resyn_bench.audio import Audio

    group = F0Metrics("dio")
    ref_audio, out_audio = Audio(harmonic_signal(), 16000), Audio(harmonic_signal(mult=1.1, seed=3), 16000)
    ref = group.analyse_reference(ref_audio)
    score = group.score(ref, out_audio, None)
    c = score.extra["contour"]
    track = F0Track(ref["times"], ref["f0"])
    syn = group._track(out_audio, "output")
    k = round(0.02 / float(np.median(np.diff(ref["times"]))))
    np.testing.assert_allclose(c["ref"], np.round(ref["f0"][::k], 1))
    np.testing.assert_allclose(c["out"], np.round(align_to_reference(track, syn)[::k], 1))
    assert len(c["ref"]) == len(c["out"]) == len(ref["f0"][::k])
    assert c["dt"] == pytest.approx(0.02, rel=0.3)
    # compact: ~50 values per second of audio per side
    assert len(json.dumps(c)) < 2000


# --------------------------------------------------------------------------------------------
# Reports from real runs
# --------------------------------------------------------------------------------------------

@pytest.fixture
def real_runs(tiny_corpus, tmp_path, home):
    """copy and world on the tiny corpus (f0 only, dio), one transcript carrying markup."""
    rows = []
    for line in tiny_corpus.read_text(encoding="utf-8").splitlines()[1:]:
        uid, spk, path, text = line.split("\t")
        rows.append({"utt_id": uid, "speaker": spk, "path": path,
                     "text": MARKUP if uid == "spkA_000" else text})
    write_manifest(tiny_corpus.parent, rows)
    runs = []
    for system in ("copy", "world"):
        out = tmp_path / "runs" / system
        run(RunConfig(system=system, dataset="manifest", data_root=str(tiny_corpus), out=str(out),
                      metrics="pitch", f0_preset="dio"), progress=False)
        runs.append(out)
    return runs


def test_report_from_real_runs(real_runs, tmp_path):
    summaries = [summarize_run(r) for r in real_runs]
    out = write_html(summaries, tmp_path / "report" / "index.html")
    text = out.read_text(encoding="utf-8")
    # the transcript never appears as markup: only escaped inside the JSON blob
    assert "<script>alert" not in text and "<b>x</b>" not in text
    assert text.count("<script") == 2  # the data blob and the page's own script
    data = _blob(text)
    by_id = {u["id"]: u for u in data["utts"]}
    assert by_id["spkA_000"]["text"] == MARKUP
    assert [s["system"] for s in data["systems"]] == ["copy", "world"]
    # linked audio: relative to the report's folder, resolving to the stored files
    for s_i, run_dir in enumerate(real_runs):
        for rec in read_records(run_dir):
            u = by_id[rec["utt_id"]]
            ref = (out.parent / urllib.parse.unquote(u["ref"]["href"])).resolve()
            assert ref == Path(rec["reference_path"]).resolve()
            o = u["s"][s_i]["out"]
            target = Path(rec["output_path"])
            target = target if target.is_absolute() else run_dir / target
            assert (out.parent / urllib.parse.unquote(o["href"])).resolve() == target.resolve()
            assert not o["href"].startswith("/")
            # F0 contour: the reference track once per utterance, the output's per system
            e = u["s"][s_i]
            contour = rec["extra"]["f0"]["contour"]
            assert u["f0r"][e["f0"]["r"]] == contour["ref"] and e["f0"]["o"] == contour["out"]
    # copy is the ground truth: its output contour equals the reference one
    assert all(u["s"][0]["f0"]["o"] == u["f0r"][u["s"][0]["f0"]["r"]] for u in data["utts"])
    assert all(len(u["f0r"]) == 1 for u in data["utts"])  # same preset: stored once
    # summary numbers are the summaries' (6 significant digits)
    keys = [m["key"] for m in data["metrics"]]
    assert keys == list(summaries[0].metrics)
    for s, d in zip(summaries, data["systems"], strict=True):
        for key, m in s.metrics.items():
            got = d["summary"][key]
            assert got["mean"] == pytest.approx(m.mean, rel=1e-5, abs=1e-12)
            assert got["pooled"] == pytest.approx(m.pooled, rel=1e-5, abs=1e-12)
            assert got["ci_mean"] == pytest.approx([m.ci_mean.low, m.ci_mean.high], rel=1e-5, abs=1e-12)
    # significance marks: world vs copy, as reports.tables computes them
    sig = significance(summaries, "auto")
    for (row, key), res in sig.items():
        assert data["systems"][row]["summary"][key]["sig"]["mark"] == significant(res)
        assert data["systems"][row]["summary"][key]["sig"]["baseline"] == "copy"
    assert any(data["systems"][1]["summary"][k]["sig"] for k in keys)
    assert all(data["systems"][0]["summary"][k]["sig"] is None for k in keys)


def test_embedded_audio_is_the_files_and_the_estimate_is_exact(real_runs, tmp_path):
    summaries = [summarize_run(r, n_boot=0) for r in real_runs]
    estimate = estimate_audio_size(summaries)
    # copy points at the references themselves and world writes 6 outputs: 12 distinct files
    files = {Path(r["reference_path"]) for r in read_records(real_runs[0])}
    files |= {real_runs[1] / r["output_path"] for r in read_records(real_runs[1])}
    assert len(files) == 12
    assert estimate == sum(4 * -(-f.stat().st_size // 3) for f in files)
    out = write_html(summaries, tmp_path / "embed.html", audio="embed", sig={})
    text = out.read_text(encoding="utf-8")
    payloads = dict(re.findall(r'<script type="text/plain" id="audio-(a\d+)">([A-Za-z0-9+/=]*)</script>', text))
    assert len(payloads) == 12 and sum(len(p) for p in payloads.values()) == estimate
    data = _blob(text)
    for s_i, run_dir in enumerate(real_runs):
        for rec in read_records(run_dir):
            u = next(x for x in data["utts"] if x["id"] == rec["utt_id"])
            e = u["s"][s_i]["out"]
            path = Path(rec["output_path"])
            path = path if path.is_absolute() else run_dir / path
            assert base64.b64decode(payloads[e["embed"]]) == path.read_bytes()
            assert e["mime"] == "audio/wav"
    assert "audio embedded" in text and out.stat().st_size > estimate


def test_page_is_self_contained_and_script_pinned(real_runs, tmp_path):
    out = write_html([summarize_run(r, n_boot=0) for r in real_runs], tmp_path / "r.html", sig={})
    text = out.read_text(encoding="utf-8")
    # no URL other than the SVG namespace (an identifier, never fetched)
    assert set(re.findall(r"https?://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe)\b|@import|url\(", text)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1)
    assert "default-src 'none'" in csp
    script = re.findall(r"<script>(.*?)</script>", text, re.DOTALL)
    assert len(script) == 1
    digest = base64.b64encode(hashlib.sha256(script[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    # the inlined stylesheet and script are the package's asset files, verbatim
    assets = Path(__file__).resolve().parents[2] / "reports" / "assets"
    assert script[0] == "\n" + (assets / "report.js").read_text(encoding="utf-8")
    assert "<style>\n" + (assets / "report.css").read_text(encoding="utf-8") + "</style>" in text


def test_manifest_section_has_versions_settings_and_checksums(real_runs, tmp_path):
    summaries = [summarize_run(r, n_boot=0) for r in real_runs]
    data, _ = build_data(summaries, tmp_path, sig={})
    for run_dir, mf in zip(real_runs, data["manifests"], strict=True):
        facts = dict(mf["facts"])
        assert facts["sha256 records.jsonl"] == hashlib.sha256((run_dir / "records.jsonl").read_bytes()).hexdigest()
        assert facts["sha256 manifest.json"] == hashlib.sha256((run_dir / "manifest.json").read_bytes()).hexdigest()
        assert '"preset": "dio"' in facts["f0 settings"]
        assert "numpy" in facts["packages"]
        assert mf["manifest"]["config"]["system"] == run_dir.name


# --------------------------------------------------------------------------------------------
# Synthetic runs: transcripts, failures, worst-k
# --------------------------------------------------------------------------------------------

@pytest.fixture
def synthetic(tmp_path):
    return [synthetic_run(tmp_path / name, name, 40, seed=i, error_rate=0.1 + 0.3 * i,
                          fail_every=10, partial_every=10, texts={"spk03_00003": MARKUP})
            for i, name in enumerate(["copy", "hubert"])]


def test_word_errors_failures_and_worst_k(synthetic, tmp_path):
    summaries = [summarize_run(r, n_boot=0) for r in synthetic]
    data, _ = build_data(summaries, tmp_path, sig={}, worst_k=3)
    keys = [m["key"] for m in data["metrics"]]
    for s_i, run_dir in enumerate(synthetic):
        recs = {r["utt_id"]: r for r in read_records(run_dir)}
        for u in data["utts"]:
            e, rec = u["s"][s_i], recs[u["id"]]
            assert e["st"] == rec["status"]
            if rec["status"] == "failed":
                assert e["reason"] == rec["reason"] and e["stage"] == "output"
                assert "w" not in e and "f0" not in e
                continue
            if rec["status"] == "partial":
                assert e["errors"] == {"asr": "RuntimeError: decoder crashed"}
                assert "w" not in e
                continue
            ops = e["w"]
            # the highlighted edits are the counts WER was computed from
            n_err = sum(op != "=" for op, _, _ in ops)
            assert n_err == rec["counts"]["asr.word_edits"]
            assert e["v"][keys.index("asr.wer")] == pytest.approx(rec["metrics"]["asr.wer"], rel=1e-5)
        # worst-k: the k highest WERs (lower is better), worst first
        wer = sorted(((r["metrics"]["asr.wer"], uid) for uid, r in recs.items()
                      if r.get("metrics", {}).get("asr.wer") is not None), key=lambda t: (-t[0], t[1]))
        worst = data["systems"][s_i]["worst"]["asr.wer"]
        assert [data["utts"][ui]["id"] for ui, _ in worst] == [uid for _, uid in wer[:3]]
        # F0 correlation: higher is better, so the lowest come first
        corr = data["systems"][s_i]["worst"]["f0.corr"]
        assert [v for _, v in corr] == sorted(v for _, v in corr)
    markup = next(u for u in data["utts"] if u["id"] == "spk03_00003")
    assert markup["text"] == MARKUP
    assert data["systems"][1]["n_failed"] == 4 and data["systems"][1]["n_partial"] == 4


def test_options_and_errors(synthetic, tmp_path):
    summaries = [summarize_run(r, n_boot=0) for r in synthetic]
    text = write_html(summaries, tmp_path / "r.html", page_size=7, worst_k=2, title=MARKUP,
                      sig={}).read_text(encoding="utf-8")
    data = _blob(text)
    assert data["page_size"] == 7 and data["worst_k"] == 2 and data["title"] == MARKUP
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;</title>" in text
    # reference files do not exist here: the report says so instead of linking nowhere
    assert all("href" not in u["ref"] for u in data["utts"])
    with pytest.raises(ValueError, match="audio must be one of"):
        write_html(summaries, tmp_path / "x.html", audio="inline")
    with pytest.raises(ValueError, match="at least one"):
        write_html([], tmp_path / "x.html")


def test_same_system_on_two_datasets_gets_distinct_labels(synthetic, tmp_path):
    from resyn_bench.reports.html import _labels

    s = [summarize_run(r, n_boot=0) for r in synthetic]
    s[1].system = s[1].system_label = "copy"  # system_label: the row label, where collate has it
    s[1].dataset = s[1].dataset_key = "other"
    # the report's one naming rule (reports.labels.run_titles), as in the plots
    assert _labels(s) == ["synthetic/copy", "other/copy"]
    s[1].dataset, s[1].dataset_key = s[0].dataset, s[0].dataset_key
    assert _labels(s) == ["copy [copy]", "copy [hubert]"]   # + the run folder, as in the tables


def test_rendering_imports_no_torch_or_model_code(synthetic, tmp_path):
    code = (
        "import sys\n"
        "from resyn_bench.reports.collate import summarize_run\n"
        "from resyn_bench.reports.html import write_html\n"
        f"runs = {[str(r) for r in synthetic]!r}\n"
        f"write_html([summarize_run(r) for r in runs], {str(tmp_path / 'r.html')!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'pocketsphinx', 'whisper', 'resemblyzer', 'onnxruntime', 'speechmos', 'sklearn'))\n"
        "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_display_contour_keeps_a_drawable_step_for_degenerate_frame_times():
    from resyn_bench.dsp.pitch import F0Track
    from resyn_bench.metrics.f0 import CONTOUR_STEP_S, display_contour

    track = F0Track(times=np.zeros(5), f0=np.full(5, 120.0))   # no increasing frame times
    c = display_contour(track, np.full(5, 121.0))
    assert c["dt"] == CONTOUR_STEP_S and c["ref"] == [120.0] * 5 and c["out"] == [121.0] * 5
