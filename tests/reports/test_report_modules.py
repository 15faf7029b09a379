"""The reports package talks to itself through public names only, and keeps one statistics
module (resyn_bench.reports.stats) with a documented public API."""
from __future__ import annotations

import ast
from pathlib import Path

REPORTS = Path(__file__).resolve().parents[2] / "reports"


def private_imports(folder: Path) -> list[str]:
    """``file:line: from X import _name`` for every import of a private name from another module
    of the project (``resyn_bench.*`` or a relative import); ``import ... as _alias`` is fine."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = node.module or ""
            if not (node.level or module == "resyn_bench" or module.startswith("resyn_bench.")):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno}: from {'.' * node.level}{module} "
                                 f"import {alias.name}")
    return found


def test_no_private_names_imported_across_report_modules():
    assert REPORTS.is_dir()
    assert private_imports(REPORTS) == []


def test_the_scan_finds_a_private_import(tmp_path):
    """The scan itself: a module importing a private name is reported, public ones are not."""
    (tmp_path / "a.py").write_text("from resyn_bench.reports.stats import _as_value, CI\n"
                                   "from .tables import _helper\n"
                                   "from numpy import _private_but_not_ours\n"
                                   "from resyn_bench.reports.plots import new_figure as _nf\n")
    assert private_imports(tmp_path) == [
        "a.py:1: from resyn_bench.reports.stats import _as_value",
        "a.py:2: from .tables import _helper"]


def test_one_statistics_module_with_documented_public_api():
    from resyn_bench.reports import stats

    assert not (REPORTS / "uncertainty.py").exists()
    for name in stats.__all__:
        obj = getattr(stats, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"stats.{name} has no docstring"
    for name in ("group_cis", "compare", "compare_corpus", "corpus_replicates", "bootstrap_ci",
                 "paired_bootstrap", "holm", "replicate_ci", "uses_count_path"):
        assert name in stats.__all__
    # no other report module computes replicates of its own
    for path in REPORTS.glob("*.py"):
        if path.name != "stats.py":
            text = path.read_text()
            assert "bootstrap_weights(" not in text and "iter_bootstrap_indices(" not in text, \
                path.name
