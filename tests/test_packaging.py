"""The installed distribution must contain every module of the mapped source folders.

tox installs the built wheel and runs the tests from outside the tree, so this checks the wheel
itself: a sub-package missing from setup.py's generated list fails here.
"""
import json
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
