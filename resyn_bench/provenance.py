"""What produced a number: package versions, git revision, host. Never imports heavy packages."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

from resyn_bench.core.versions import package_versions as core_package_versions

TRACKED_PACKAGES = ("resyn-bench", "numpy", "scipy", "soundfile", "soxr", "pyworld", "AMFM-decompy",
                    "espeakng-loader", "torch", "tqdm")


def package_versions(names=TRACKED_PACKAGES) -> dict[str, str | None]:
    return core_package_versions(names)


def git_revision(path: str | Path | None = None) -> dict[str, object] | None:
    """HEAD and dirty flag of the checkout holding ``path`` (the package source by default);
    None when the code does not run from a git checkout (e.g. an installed wheel)."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, object]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "packages": package_versions(), "git": git_revision()}
