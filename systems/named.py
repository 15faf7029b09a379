"""Build the named systems of :mod:`resyn_bench.named_systems` (hubert100-vctk, logmel100, ...).

Every named system is a unit vocoder checkpoint folder plus the unit encoder of its name: a
published vocoder from the catalogue, or one trained locally into
``$RESYN_BENCH_HOME/vocoders/<name>/``. When a part is missing the error says exactly what to
fetch or train, instead of failing later on a missing file.
"""
from __future__ import annotations

from pathlib import Path

from resyn_bench.errors import UserError
from resyn_bench.named_systems import NamedSystem, get_named_system


class NamedSystemError(UserError, FileNotFoundError):
    """A named system's files are not there yet (the message says how to get them)."""


def _vocoder_dir(ns: NamedSystem, checkpoint: str | None) -> Path:
    if checkpoint:
        return Path(checkpoint).expanduser()
    if ns.trained_locally:
        folder = ns.checkpoint_dir()
        if not folder.is_dir() or not any(folder.glob("g_*")):
            raise NamedSystemError(
                f"{ns.name} needs a trained vocoder, looked for one in {folder} (no published "
                f"checkpoint exists). Train it: {ns.train_hint()} - or point to another folder "
                f"with -o checkpoint=DIR")
        return folder
    from resyn_bench.catalogue import catalogue_path, get_entry, is_present, missing_file_error

    # the generator and the files fetched with it (config.json, speakers/styles lists)
    for name in (ns.vocoder, *get_entry(ns.vocoder).requires):
        if not is_present(name):
            raise missing_file_error(name, what=f"the named system {ns.name!r}")
    return catalogue_path(ns.vocoder)


def make_named_system(name: str, checkpoint: str | None = None, units: str | None = None,
                      speaker: str | None = None, f0_stats: str | None = None,
                      device: str = "cpu", trust_sha256: str | None = None,
                      f0_edit: str | None = None, style: str | None = None):
    """The system called ``name``: its vocoder checkpoint (``-o checkpoint=DIR`` overrides the
    default location) with the unit encoder of its name (``-o units=SPEC`` overrides it)."""
    from resyn_bench.systems.vocoder.system import CheckpointSystem

    ns = get_named_system(name)
    folder = _vocoder_dir(ns, checkpoint)
    spec = units or ns.unit_spec()
    if spec and ns.quantizer.startswith("local:") and not units and not Path(spec).is_file():
        raise NamedSystemError(f"{ns.name}: its k-means {spec} does not exist; train it: "
                               f"{ns.train_hint()}")
    if trust_sha256 is None and not checkpoint and not ns.trained_locally:
        from resyn_bench.catalogue import known_sha256

        trust_sha256 = known_sha256(ns.vocoder)  # documented for the Expresso generator
    system = CheckpointSystem(str(folder), units=spec, speaker=speaker, f0_stats=f0_stats,
                              device=device, trust_sha256=trust_sha256, f0_edit=f0_edit,
                              **({"style": style} if style is not None else {}))
    system.named = ns
    return system
