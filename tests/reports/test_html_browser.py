"""The HTML report in a real browser: headless Chromium loads it from disk (file://), with no
console errors, no exceptions and no network request; sorting, pagination, the detail panel
(audio that loads, word errors, F0 contours) and escaping work; a screenshot is saved.

Skipped, with the reason, where no Chromium binary is found (Debian: ``apt-get install
chromium``; or set RESYN_BENCH_CHROMIUM). Screenshots go to ``$RESYN_BENCH_ARTIFACTS`` when set,
else to pytest's temporary folder; their paths are printed.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from resyn_bench.reports.browser import Browser, find_chromium, screenshot
from resyn_bench.reports.collate import summarize_run
from resyn_bench.reports.html import align_words, write_html
from resyn_bench.store import read_records

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from bench_html import synthetic_run  # noqa: E402

pytestmark = pytest.mark.skipif(find_chromium() is None, reason=(
    "no Chromium binary found (install Debian's 'chromium' package or set RESYN_BENCH_CHROMIUM): "
    "the browser checks of the HTML report did not run"))

MARKUP = '<script>alert(1)</script> & <b>x</b> <img src=x onerror="window.__pwned=1">'
MARKUP_ID = "spk03_00003"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("RESYN_BENCH_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[Path]]:
    """3 systems x 30 utterances with real (short) WAV files, page size 10."""
    work = tmp_path_factory.mktemp("html")
    audio = work / "corpus"
    audio.mkdir()
    runs = [synthetic_run(work / name, name, 30, seed=i, error_rate=0.1 + 0.3 * i, audio_dir=audio,
                          fail_every=10, partial_every=10, texts={MARKUP_ID: MARKUP})
            for i, name in enumerate(["copy", "world", "hubert"])]
    out = write_html([summarize_run(r, n_boot=200) for r in runs], work / "report" / "index.html",
                     page_size=10, worst_k=5)
    return out, runs


@pytest.fixture(scope="module")
def page(report):
    with Browser() as browser:
        pg = browser.open(report[0], 1280, 900)
        pg.wait_for("document.body.getAttribute('data-ready') === '1'")
        yield pg


def _column(page, table: str, col: str) -> list:
    """The cells of one column (by data-col) of a table, as shown."""
    return page.evaluate(f"""(() => {{
        const t = document.querySelector({json.dumps(table)});
        const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.dataset.col === {json.dumps(col)});
        return Array.from(t.tBodies[0].rows).map(r => r.cells[i].textContent);
    }})()""")


def _numbers(cells: list[str]) -> list[float | None]:
    return [None if c == "–" else float(c.split(" ")[0].rstrip("*")) for c in cells]


def test_loads_from_disk_without_errors_or_network(page):
    assert page.evaluate("location.protocol") == "file:"
    assert page.problems() == []
    assert page.evaluate("document.querySelectorAll('#summary-table tbody tr').length") == 3
    assert page.evaluate("document.querySelectorAll('#compare-plots svg').length") == 7  # 7 metrics
    assert page.evaluate("document.querySelectorAll('#system-plots .card').length") == 3


def test_summary_sorts_numerically(page):
    th = "#summary-table th[data-col='asr.wer']"
    page.click(th)
    up = _numbers(_column(page, "#summary-table", "asr.wer"))
    assert up == sorted(up) and up[0] < up[-1]
    assert page.evaluate(f"document.querySelector({json.dumps(th)}).getAttribute('aria-sort')") == "ascending"
    page.click(th)
    down = _numbers(_column(page, "#summary-table", "asr.wer"))
    assert down == sorted(down, reverse=True)
    assert _column(page, "#summary-table", "system")[0] == "hubert"   # the most errors
    page.click("#summary-table th[data-col='system']")
    assert _column(page, "#summary-table", "system") == ["copy", "hubert", "world"]


def test_drilldown_sorts_with_missing_values_last_and_paginates(page):
    th = "#drill th[data-col='asr.wer']"
    page.click(th)
    assert page.evaluate("document.getElementById('drill-pos').textContent").startswith("rows 1–10 of 90")
    page.click(th)  # descending
    first = _numbers(_column(page, "#drill", "asr.wer"))
    assert len(first) == 10 and first == sorted(first, reverse=True)
    # page through: every number in order, then the undefined values (failed/partial utterances)
    shown = first
    for _ in range(8):
        page.click("#drill-next")
        shown += _numbers(_column(page, "#drill", "asr.wer"))
    assert page.evaluate("document.getElementById('drill-next').disabled") is True
    assert len(shown) == 90
    n_missing = 3 * (3 + 3)  # 3 systems x (3 failed + 3 asr-failed) of 30
    nums = shown[:-n_missing]
    assert shown[-n_missing:] == [None] * n_missing and None not in nums
    assert nums == sorted(nums, reverse=True) and nums[0] > nums[-1]


def test_filter_and_detail_panel(page, report):
    runs = report[1]
    page.evaluate(f"""(() => {{ const s = document.getElementById('drill-search');
        s.value = {json.dumps(MARKUP_ID)}; s.dispatchEvent(new Event('input')); }})()""")
    assert _column(page, "#drill", "utt") == [MARKUP_ID] * 3
    page.click("#drill tbody tr[data-s='2']")
    page.wait_for("!document.getElementById('detail').hidden")
    # the transcript shows as text: no element and no script came out of it
    assert page.evaluate("document.querySelector('#detail .utt-text').textContent") == MARKUP
    assert page.evaluate("document.querySelectorAll('#detail b, #detail img, #detail script, body > b').length") == 0
    assert page.evaluate("document.scripts.length") == 2
    assert page.evaluate("window.__pwned === undefined")
    # cards: the clicked system first; each with its audio, word alignment and F0 contour
    assert page.evaluate("document.querySelector('#detail .card').dataset.s") == "2"
    rec = {r["utt_id"]: r for r in read_records(runs[2])}[MARKUP_ID]
    ops = align_words(rec["extra"]["asr"]["ref"], rec["extra"]["asr"]["hyp"])
    card = "#detail .card[data-s='2']"
    phone_ops = align_words(rec["extra"]["asr"]["ref_phones"], rec["extra"]["asr"]["hyp_phones"])
    assert {o for o, _, _ in phone_ops} >= {"=", "s"}   # the check below sees real errors
    for op, cls in (("s", "w-sub"), ("d", "w-del"), ("i", "w-ins"), ("=", "w-eq")):
        in_phones = page.evaluate(f"document.querySelectorAll(\"{card} .phone-diff .{cls}\").length")
        assert in_phones == sum(o == op for o, _, _ in phone_ops)
        assert page.evaluate(f"document.querySelectorAll(\"{card} .{cls}\").length") - in_phones == \
            sum(o == op for o, _, _ in ops) + (op != "=")  # + the legend's sample
    phones = page.evaluate(f"Array.from(document.querySelectorAll(\"{card} table.phones td.transcript\")).map(t => t.textContent)")
    assert phones == [rec["extra"]["asr"]["ref_phones"], rec["extra"]["asr"]["hyp_phones"]]
    assert page.evaluate(f"document.querySelectorAll(\"{card} svg.f0 polyline.f0-ref\").length") >= 2
    assert page.evaluate(f"document.querySelectorAll(\"{card} svg.f0 polyline.f0-out\").length") >= 1
    # the linked reference and output files load from disk (relative links, CSP allows them)
    loaded = page.evaluate("""(async () => Promise.all(Array.from(
        document.querySelectorAll('#detail audio')).map(a => new Promise(res => {
            a.onloadedmetadata = () => res(a.duration); a.onerror = () => res('error ' + a.error.code);
            a.preload = 'auto'; a.load(); setTimeout(() => res('timeout'), 5000); }))))()""",
                           await_promise=True)
    assert len(loaded) == 4 and all(d == pytest.approx(0.2, abs=0.01) for d in loaded), loaded
    assert page.problems() == []


def test_worst_k_links_open_the_detail(page):
    link = "#sys-1 table.worst a"
    uid = page.evaluate(f"document.querySelector({json.dumps(link)}).textContent")
    page.click(link)
    page.wait_for(f"document.querySelector('#detail .utt-id') && "
                  f"document.querySelector('#detail .utt-id').textContent === {json.dumps(uid)}")
    assert page.evaluate("document.querySelectorAll('#sys-1 table.worst tr:first-child a').length") == 5
    assert page.problems() == []


def test_failures_and_manifest_sections(page):
    reasons = page.evaluate("Array.from(document.querySelectorAll('#failures td:last-child')).map(t => t.textContent)")
    assert "output: system output is silent (peak 0)" in reasons
    assert "asr: RuntimeError: decoder crashed" in reasons
    facts = page.evaluate("Array.from(document.querySelectorAll('#manifest .kv td:first-child')).map(t => t.textContent)")
    assert "sha256 records.jsonl" in facts and "git" in facts and "packages" in facts


def test_screenshot_artifact(page, report, artifacts):
    page.evaluate("location.hash = ''")
    page.evaluate("window.scrollTo(0, 0)")
    png = page.screenshot(artifacts / "html_report.png")
    full = screenshot(report[0], artifacts / "html_report_full.png", width=1280, height=900, full_page=True)
    for p in (png, full):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"screenshots: {png} {full}")


def test_embedded_audio_plays_from_a_lone_file(report, tmp_path):
    """Embedded: the file works copied anywhere (e.g. mailed) - the audio comes with it."""
    runs = report[1]
    lone = write_html([summarize_run(r, n_boot=0) for r in runs[:2]], tmp_path / "lone" / "r.html",
                      audio="embed", sig={}, page_size=5)
    with Browser() as browser:
        pg = browser.open(lone)
        pg.wait_for("document.body.getAttribute('data-ready') === '1'")
        pg.evaluate("location.hash = 'u=0&s=1'")
        pg.wait_for("!document.getElementById('detail').hidden")
        src = pg.evaluate("document.querySelector('#detail audio').src")
        assert src.startswith("data:audio/wav;base64,")
        dur = pg.evaluate("""(async () => { const a = document.querySelector('#detail audio');
            return new Promise(res => { a.onloadedmetadata = () => res(a.duration);
            a.onerror = () => res('error'); a.preload = 'auto'; a.load(); }); })()""", await_promise=True)
        assert dur == pytest.approx(0.2, abs=0.01)
        assert pg.problems() == []


def test_the_checker_reports_errors_exceptions_and_fetches(tmp_path):
    """problems() is what the report tests rely on: it must see each kind of problem."""
    page_file = tmp_path / "bad.html"
    page_file.write_text("<!DOCTYPE html><html><body><p id=p>x</p>"
                         "<img src='http://127.0.0.1:9/nothing.png'>"
                         "<script>console.error('boom'); undefinedFunction();</script>"
                         "</body></html>", encoding="utf-8")
    with Browser() as browser:
        pg = browser.open(page_file, 400, 300)
        assert pg.evaluate("document.getElementById('p').textContent") == "x"
        found = "\n".join(pg.problems())
        assert "console.error: boom" in found
        assert "undefinedFunction" in found
        assert "network request: http://127.0.0.1:9/nothing.png" in found
