"""Package layout: the repository's top level is fixed (resyn_bench/ systems/ metrics/ reports/),
but systems/, metrics/ and reports/ ship as sub-packages of resyn_bench.

The package list is generated from the directory tree, so a new sub-package can never be
silently dropped from the wheel (tests/core/test_packaging.py checks the built wheel).
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
MAPPED = {"resyn_bench": "resyn_bench", "resyn_bench.systems": "systems",
          "resyn_bench.metrics": "metrics", "resyn_bench.reports": "reports"}


def _packages():
    package_dir, packages = {}, []
    for dotted, folder in MAPPED.items():
        package_dir[dotted] = folder
        packages.append(dotted)
        for sub in find_packages(where=str(HERE / folder)):
            # Sub-packages of a top-level mapped folder: resyn_bench.systems.models -> systems/models
            if dotted != "resyn_bench" or sub.split(".")[0] not in {"systems", "metrics", "reports"}:
                packages.append(f"{dotted}.{sub}")
                package_dir[f"{dotted}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return package_dir, packages


PACKAGE_DIR, PACKAGES = _packages()

setup(package_dir=PACKAGE_DIR, packages=PACKAGES,
      package_data={"resyn_bench": ["data/**/*"],
                    # the HTML report's stylesheet and script (reports/html_assets.py reads them)
                    "resyn_bench.reports": ["assets/*"]},
      include_package_data=False)
