"""The documentation cannot rot silently: links resolve, the code map matches the tree, code
cites the repository's own docs, and the licence the package declares is there."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PACKAGE_FOLDERS = ("resyn_bench", "systems", "metrics", "reports")
CODE_FOLDERS = (*PACKAGE_FOLDERS, "tests")


def doc_files() -> list[Path]:
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]


_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks, inline code removed."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            yield n, _INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (hyphens and
    underscores kept), spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)     # links keep their text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slug_follows_github():
    assert slug("Codec study (`resyn-bench codec`)") == "codec-study-resyn-bench-codec"
    assert slug("3.4 F0 quantizer") == "34-f0-quantizer"
    assert slug("Disentanglement: `resyn-bench disentangle`") == "disentanglement-resyn-bench-disentangle"


def test_doc_files_exist():
    for name in ("README.md", "CONTRIBUTING.md", "docs/architecture.md", "docs/adding_a_system.md",
                 "docs/adding_a_metric.md", "docs/adding_a_dataset.md", "docs/adding_a_layout.md",
                 "docs/reference.md", "docs/metrics.md"):
        assert (REPO / name).is_file(), f"{name} is missing"


def test_relative_links_resolve():
    problems = []
    for doc in doc_files():
        for n, line in prose_lines(doc.read_text(encoding="utf-8")):
            for target in _LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto: ...
                    continue
                path_part, _, fragment = target.partition("#")
                dest = (doc.parent / path_part).resolve() if path_part else doc
                where = f"{doc.relative_to(REPO)}:{n}: {target}"
                if not dest.exists():
                    problems.append(f"{where}: no such file")
                elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                    problems.append(f"{where}: no heading with anchor #{fragment}")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_link_checker_sees_a_broken_link(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("# Title\n\nSee [a](missing.md) and [b](#title) and [c](#nope).\n"
                   "```\n[not a link](nowhere.md)\n```\n", encoding="utf-8")
    lines = list(prose_lines(doc.read_text(encoding="utf-8")))
    targets = [t for _, line in lines for t in _LINK.findall(line)]
    assert targets == ["missing.md", "#title", "#nope"]
    assert anchors(doc) == {"title"}


def code_map_modules() -> list[str]:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## Code map", 1)[1].split("\n## ", 1)[0]
    folders = "|".join(PACKAGE_FOLDERS)
    # the module is the first cell of a table row; the role may name other files
    return re.findall(rf"^\| `((?:{folders})/[\w/]+\.py)` \|", section, re.M)


def package_modules() -> list[str]:
    """Every module of the four package folders; an ``__init__.py`` holding nothing but a
    docstring need not be listed."""
    out = []
    for folder in PACKAGE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            if path.name == "__init__.py":
                body = ast.parse(path.read_text(encoding="utf-8")).body
                if all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                       for node in body):
                    continue
            out.append(path.relative_to(REPO).as_posix())
    return out


def test_code_map_lists_every_module_and_only_real_ones():
    listed = code_map_modules()
    assert len(listed) > 50, "docs/architecture.md: the code map section was not found"
    missing_files = sorted(m for m in listed if not (REPO / m).is_file())
    assert not missing_files, f"docs/architecture.md lists modules that do not exist: {missing_files}"
    unlisted = sorted(set(package_modules()) - set(listed))
    assert not unlisted, (f"modules missing from the code map of docs/architecture.md (add one "
                          f"line each): {unlisted}")
    duplicates = sorted({m for m in listed if listed.count(m) > 1})
    assert not duplicates, f"listed twice in the code map: {duplicates}"


# built from parts so that this file does not cite them itself
FORBIDDEN = ("reference" + "-system", "DESIGN" + ".md", "metrics" + "-reference",
             "environment" + "-probe", "style" + "-anchors")


def test_code_cites_the_repository_docs_not_outside_notes():
    """Design notes outside the repository are not available to a reader of the code: cite
    docs/reference.md, docs/metrics.md or the paper instead."""
    hits = []
    for folder in CODE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".md", ".toml", ".json", ".txt",
                                                          ".cfg", ".ini", ".sh"):
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                     .splitlines(), 1):
                if any(word in line for word in FORBIDDEN) or re.search(r"\breference §", line):
                    hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert not hits, "citations of notes outside the repository:\n" + "\n".join(hits)


def test_section_citations_exist():
    """Every ``docs/reference.md §N`` (and ``docs/metrics.md §N``) cited in code names a
    section that the page has."""
    sections = {}
    for page in ("reference.md", "metrics.md"):
        text = (DOCS / page).read_text(encoding="utf-8")
        sections[page] = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.M))
    bad = []
    for folder in CODE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for page, cited in re.findall(r"docs/(reference|metrics)\.md ((?:§[\d.]+[-/, and]*)+)",
                                          text):
                for number in re.findall(r"§?(\d+(?:\.\d+)?)", cited):
                    if number not in sections[f"{page}.md"]:
                        bad.append(f"{path.relative_to(REPO)}: docs/{page}.md §{number}")
    assert not bad, "cited sections that do not exist:\n" + "\n".join(sorted(set(bad)))


def test_licence_file_matches_pyproject():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project.get("license")
    declared = declared.get("text") if isinstance(declared, dict) else declared
    assert declared == "MIT"
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License")
    assert "Copyright (c) 2026 the resyn-bench authors" in licence
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in licence


def test_readme_keeps_the_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for line in readme.splitlines()]
    assert "tox -e demo" in lines and "tox" in lines


def test_metrics_page_defines_every_registered_metric():
    from resyn_bench.registry import METRIC_GROUPS

    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    missing = []
    for name, entry in METRIC_GROUPS.items():
        for spec in entry.load().specs:
            if f"`{spec.key}`" not in text:
                missing.append(spec.key)
        if f"`{name}`" not in text:
            missing.append(name)
    assert not missing, f"docs/metrics.md does not define: {missing}"


_REPO_PATH = re.compile(r"(?<![\w./-])((?:resyn_bench|systems|metrics|reports|tests|docs)/"
                        r"[\w./-]*\w\.(?:py|md|tsv|png|json|toml|sh))(?![\w/])")


def test_files_named_in_docs_and_code_exist():
    """A path the docs or a code comment names (``tests/core/test_runner.py``,
    ``resyn_bench/data/demo/ATTRIBUTION.md``) exists: moving a file cannot leave stale names."""
    sources = [*doc_files(), REPO / "setup.py", REPO / "tox.ini",
               *(p for folder in CODE_FOLDERS for p in sorted((REPO / folder).rglob("*.py")))]
    stale = []
    for path in sources:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in _REPO_PATH.findall(line):
                if not (REPO / name).exists():
                    stale.append(f"{path.relative_to(REPO)}:{n}: {name}")
    assert not stale, "names of files that do not exist:\n" + "\n".join(stale)
