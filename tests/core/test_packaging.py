"""The installed distribution must contain every module of the mapped source folders.

tox installs the built wheel and runs the tests from outside the tree, so this checks the wheel
itself: a sub-package missing from setup.py's generated list fails here.
"""
import json
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAPPED = {"resyn_bench": "resyn_bench", "systems": "resyn_bench/systems",
          "metrics": "resyn_bench/metrics", "reports": "resyn_bench/reports"}


def _editable() -> bool:
    direct = metadata.distribution("resyn-bench").read_text("direct_url.json")
    return bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))


def test_wheel_contains_every_module():
    if _editable():
        pytest.skip("editable install (imports come from the source tree); tox tests the wheel")
    installed = {str(f) for f in metadata.files("resyn-bench") or []}
    missing = []
    for folder, target in MAPPED.items():
        for src in (REPO / folder).rglob("*.py"):
            rel = src.relative_to(REPO / folder).as_posix()
            if f"{target}/{rel}" not in installed:
                missing.append(f"{folder}/{rel}")
    assert not missing, f"not in the installed wheel: {missing}"


def test_console_script_is_declared():
    eps = metadata.entry_points(group="console_scripts")
    assert any(ep.name == "resyn-bench" and ep.value == "resyn_bench.cli:main" for ep in eps)


def test_subpackages_import_under_package_names():
    import resyn_bench.metrics.base
    import resyn_bench.reports.collate
    import resyn_bench.systems.base  # noqa: F401


def _data_files() -> list[str]:
    base = REPO / "resyn_bench"
    return sorted(p.relative_to(base).as_posix() for p in (base / "data").rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def _package_data() -> dict[str, list[str]]:
    import ast

    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    return next(ast.literal_eval(kw.value) for node in ast.walk(tree)
                if isinstance(node, ast.Call) for kw in node.keywords if kw.arg == "package_data")


def _report_assets() -> list[str]:
    return sorted(p.name for p in (REPO / "reports" / "assets").iterdir() if p.is_file())


def test_package_data_globs_cover_the_report_assets():
    """setup.py ships the HTML report's CSS/JS files (reports/assets/) with resyn_bench.reports,
    and every file the loader knows is there."""
    import glob

    from resyn_bench.reports.html_assets import ASSETS

    patterns = _package_data()["resyn_bench.reports"]
    matched = {Path(m).name for pat in patterns for m in glob.glob(pat, root_dir=REPO / "reports")}
    assert set(ASSETS) <= set(_report_assets()) <= matched


def test_wheel_contains_the_report_assets():
    if _editable():
        pytest.skip("editable install (assets come from the source tree); tox tests the wheel")
    installed = {str(f) for f in metadata.files("resyn-bench") or []}
    missing = [a for a in _report_assets() if f"resyn_bench/reports/assets/{a}" not in installed]
    assert not missing, f"not in the installed wheel: {missing}"
    from resyn_bench.reports.html_assets import script, style

    # read through importlib.resources from the installed package
    assert "--fg" in style() and '"use strict"' in script()


def test_package_data_globs_cover_the_demo_corpus():
    """setup.py's package_data patterns match every file under resyn_bench/data (the embedded
    demo corpus: FLAC files two folders down, manifest, attribution)."""
    import ast
    import glob

    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    patterns = next(ast.literal_eval(kw.value) for node in ast.walk(tree)
                    if isinstance(node, ast.Call) for kw in node.keywords
                    if kw.arg == "package_data")["resyn_bench"]
    matched = {m.replace("\\", "/") for pat in patterns
               for m in glob.glob(pat, root_dir=REPO / "resyn_bench", recursive=True)}
    files = _data_files()
    assert any(f.endswith(".flac") for f in files) and "data/demo/ATTRIBUTION.md" in files
    assert not [f for f in files if f not in matched]


def test_wheel_contains_the_demo_corpus():
    if _editable():
        pytest.skip("editable install (data comes from the source tree); tox tests the wheel")
    installed = {str(f) for f in metadata.files("resyn-bench") or []}
    missing = [f for f in _data_files() if f"resyn_bench/{f}" not in installed]
    assert not missing, f"not in the installed wheel: {missing}"
    from resyn_bench.datasets import load_dataset

    ds = load_dataset("demo")   # loads from the installed package, not the checkout
    # the installed copy, not the source folder (tox's own venv may live inside the checkout)
    assert ds.root != REPO / "resyn_bench" / "data" / "demo" and len(ds) == 30
    assert "site-packages" in ds.root.parts


def test_test_modules_live_in_package_folders_with_unique_names():
    """Tests mirror the packages (tests/<folder>/test_*.py); conftest puts each folder on sys.path so
    modules share fixtures by bare name, which only works while every name is unique."""
    import conftest

    tests = REPO / "tests"
    loose = sorted(p.name for p in tests.glob("test_*.py"))
    assert not loose, f"test modules outside a package folder: {loose}"
    found = [p for p in tests.glob("*/test_*.py") if p.parent.name != "bench"]
    folders = {p.parent.name for p in found}
    assert folders <= set(conftest.TEST_FOLDERS), folders - set(conftest.TEST_FOLDERS)
    names = [p.name for p in found]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
