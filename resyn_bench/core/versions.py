"""Installed package versions, for the settings and manifests that record what produced a number.

Reads distribution metadata only (never imports the package itself, so asking about torch costs
nothing)."""
from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata


def package_version(name: str, default: str | None = None) -> str | None:
    """The installed version of distribution ``name`` (e.g. ``"openai-whisper"``), or
    ``default`` when it is not installed or its metadata cannot be read."""
    try:
        return metadata.version(name)
    except (metadata.PackageNotFoundError, ValueError, OSError):
        return default


def package_versions(names: Iterable[str], default: str | None = None) -> dict[str, str | None]:
    """``{name: version or default}`` for each distribution name, in the order given."""
    return {name: package_version(name, default) for name in names}


__all__ = ["package_version", "package_versions"]
