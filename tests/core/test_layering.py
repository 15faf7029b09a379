"""The package layering, checked statically (no module is imported).

Every module's imports are read with ``ast`` - top-level and function-level ones alike, since the
package imports heavy or optional modules lazily inside functions - and mapped to the
``resyn_bench.*`` package they name. The rules (``A -> B``: A may import B):

* ``resyn_bench.core`` imports nothing of ``resyn_bench`` outside ``core``;
* ``resyn_bench.dsp`` (signal processing shared by systems, metrics and reports) imports only
  ``core``;
* ``resyn_bench.nn`` (pretrained speech networks used by systems and metrics alike) imports
  neither ``systems``, ``metrics`` nor ``reports``;
* ``metrics`` does not import ``systems``, and ``systems`` does not import ``metrics``;
* ``reports`` imports neither ``systems`` nor ``torch``.

The source folders are the repository's (``systems/``, ``metrics/``, ``reports/`` ship as
``resyn_bench.systems`` etc.; see setup.py).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: source folder -> the dotted package it ships as
FOLDERS = {"resyn_bench": "resyn_bench", "systems": "resyn_bench.systems",
           "metrics": "resyn_bench.metrics", "reports": "resyn_bench.reports"}

#: layer -> dotted prefixes (of resyn_bench, or top-level packages) it must not import
FORBIDDEN = {
    "core": ("resyn_bench",),                      # everything but core itself, see _allowed
    "dsp": ("resyn_bench",),                       # everything but core and dsp
    "nn": ("resyn_bench.systems", "resyn_bench.metrics", "resyn_bench.reports"),
    "metrics": ("resyn_bench.systems",),
    "systems": ("resyn_bench.metrics",),
    "reports": ("resyn_bench.systems", "torch"),
}

#: imports a layer may make although a rule above covers them
ALLOWED = {
    "core": ("resyn_bench.core",),
    "dsp": ("resyn_bench.core", "resyn_bench.dsp"),
}

#: (module, imported name): violations kept for now, each with the reason. Empty: none.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for folder, dotted in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out.append((".".join([dotted, *parts]), path))
    return out


def _layer(module: str) -> str | None:
    for layer in ("core", "dsp", "nn", "systems", "metrics", "reports"):
        prefix = f"resyn_bench.{layer}"
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # "from resyn_bench import systems" imports the sub-package, not only a name; for
            # "from a.b import c" the rules see "a.b.c", which a rule on "a.b" also matches
            found.extend((node.lineno, f"{stem}.{alias.name}") for alias in node.names)
    return found


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations_of(module: str, path: Path, root: Path = ROOT) -> list[str]:
    layer = _layer(module)
    if layer is None:
        return []
    bad = []
    for line, name in imports_of(module, path):
        if not any(_matches(name, p) for p in FORBIDDEN[layer]):
            continue
        if any(_matches(name, p) for p in ALLOWED.get(layer, ())):
            continue
        if layer in ("core", "dsp") and name == "resyn_bench":
            continue  # the bare package (its __init__ imports nothing of the layers)
        if (module, name) in KNOWN_EXCEPTIONS:
            continue
        bad.append(f"{path.relative_to(root)}:{line}: {module} ({layer}) imports {name}")
    return sorted(set(bad))


def test_the_layering_holds():
    bad = [v for module, path in _modules() for v in violations_of(module, path)]
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_the_layers_exist_and_are_scanned():
    layers = {_layer(m) for m, _ in _modules()}
    assert {"core", "dsp", "nn", "systems", "metrics", "reports"} <= layers


def test_known_exceptions_are_still_needed():
    """An allow-listed import that disappeared must leave the list (it would hide a return)."""
    present = {(m, name) for m, path in _modules() for _, name in imports_of(m, path)}
    stale = [k for k in KNOWN_EXCEPTIONS if k not in present]
    assert not stale, f"remove these from KNOWN_EXCEPTIONS: {stale}"


# ------------------------------------------------------------- the checker itself is checked

def _check_source(tmp_path, module: str, source: str) -> list[str]:
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    return violations_of(module, path, root=tmp_path)


@pytest.mark.parametrize("module,source,bad", [
    # function-level imports count as much as top-level ones
    ("resyn_bench.metrics.x", "def f():\n    from resyn_bench.systems.base import System\n", True),
    ("resyn_bench.metrics.x", "def f():\n    import resyn_bench.systems.world\n", True),
    ("resyn_bench.metrics.x", "from resyn_bench import systems\n", True),
    ("resyn_bench.metrics.x", "from ..systems import base\n", True),     # relative
    ("resyn_bench.metrics.x", "from resyn_bench.dsp.pitch import extract_f0\n", False),
    ("resyn_bench.systems.x", "from resyn_bench.metrics.base import MetricError\n", True),
    ("resyn_bench.systems.x", "from resyn_bench.core.atomic import atomic_open\n", False),
    ("resyn_bench.reports.x", "def f():\n    import torch\n", True),
    ("resyn_bench.reports.x", "from torch import nn\n", True),
    ("resyn_bench.reports.x", "import torchaudio\n", False),           # another package
    ("resyn_bench.reports.x", "from resyn_bench.metrics.base import MetricSpec\n", False),
    ("resyn_bench.core.x", "from resyn_bench.paths import resyn_bench_home\n", True),
    ("resyn_bench.core.x", "from resyn_bench.core.hashing import sha256_file\n", False),
    ("resyn_bench.core.x", "from . import hashing\n", False),
    ("resyn_bench.dsp.x", "from resyn_bench.metrics.base import MetricError\n", True),
    ("resyn_bench.dsp.x", "from resyn_bench.audio import resample\n", True),
    ("resyn_bench.dsp.x", "from resyn_bench.core.errors import AnalysisError\n", False),
    ("resyn_bench.nn.x", "from resyn_bench.safeload import plain\n", False),
    ("resyn_bench.nn.x", "from resyn_bench.systems.encoders.base import x\n", True),
    ("resyn_bench.metrics.x", "from resyn_bench.nn.hubert import HubertModel\n", False),
    ("resyn_bench.runner", "from resyn_bench.systems.base import System\n", False),  # not layered
])
def test_the_checker_finds_what_it_should(tmp_path, module, source, bad):
    assert bool(_check_source(tmp_path, module, source)) is bad
