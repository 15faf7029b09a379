"""The stylesheet and script inlined into every HTML report (see :mod:`resyn_bench.reports.html`).

They live as package data files, ``reports/assets/report.css`` and ``reports/assets/report.js``
(shipped in the wheel by setup.py's ``package_data``), read with :mod:`importlib.resources`, and
are inlined so the report needs no network: no libraries, fonts or CDNs. The script reads the
report's data from ``<script type="application/json" id="report-data">`` and builds every element
with ``createElement``/``textContent``; data never passes through ``innerHTML``, so a transcript
containing markup shows as text.
"""
from __future__ import annotations

from functools import cache
from importlib import resources

#: the asset files, under the ``assets`` folder of the ``resyn_bench.reports`` package
ASSETS = ("report.css", "report.js")


@cache
def asset(name: str) -> str:
    """The text of one asset file, with a newline first (so an inlined ``<style>``/``<script>``
    body starts on its own line). A missing file means a broken install: the error says so."""
    if name not in ASSETS:
        raise ValueError(f"unknown report asset {name!r}; known: {', '.join(ASSETS)}")
    try:
        text = (resources.files("resyn_bench.reports") / "assets" / name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"the HTML report's {name} is missing from the installed package "
            f"(resyn_bench/reports/assets/{name}); reinstall resyn-bench") from exc
    return "\n" + text


def style() -> str:
    """The report's stylesheet (``assets/report.css``)."""
    return asset("report.css")


def script() -> str:
    """The report's script (``assets/report.js``)."""
    return asset("report.js")
