"""Build the named systems of :mod:`resyn_bench.named_systems` (hubert100-vctk, logmel100, ...).

Every named system is a unit vocoder checkpoint folder plus the unit encoder of its name: a
published vocoder from the catalogue, or one trained locally into
``$RESYN_BENCH_HOME/vocoders/<name>/``. When a part is missing the error says exactly what to
fetch or train, instead of failing later on a missing file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from resyn_bench.errors import UserError
from resyn_bench.named_systems import NamedSystem, get_named_system
from resyn_bench.systems.options import option, parse_options
from resyn_bench.systems.vocoder.system import CheckpointOptions


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


@dataclass(frozen=True)
class NamedSystemOptions(CheckpointOptions):
    """The options of every named system: all of :class:`CheckpointOptions` (forwarded to the
    checkpoint system as given) plus where the vocoder folder is."""

    checkpoint: str | None = option(
        None, "the vocoder folder to use instead of the published or locally trained one",
        metavar="DIR")


def make_named_system(name: str, options: NamedSystemOptions | None = None, **values):
    """The system called ``name``: its vocoder checkpoint (``-o checkpoint=DIR`` overrides the
    default location) with the unit encoder of its name (``-o units=SPEC`` overrides it); every
    other option (:class:`NamedSystemOptions`) goes to the checkpoint system unchanged."""
    from resyn_bench.systems.vocoder.system import CheckpointSystem

    if options is None:
        options = parse_options(NamedSystemOptions, values, name)
    elif values:
        raise TypeError("make_named_system: give options= or keyword options, not both")
    ns = get_named_system(name)
    checkpoint, units = options.checkpoint, options.units
    folder = _vocoder_dir(ns, checkpoint)
    spec = units or ns.unit_spec()
    if spec and ns.quantizer.startswith("local:") and not units and not Path(spec).is_file():
        raise NamedSystemError(f"{ns.name}: its k-means {spec} does not exist; train it: "
                               f"{ns.train_hint()}")
    trust_sha256 = options.trust_sha256
    if trust_sha256 is None and not checkpoint and not ns.trained_locally:
        from resyn_bench.catalogue import known_sha256

        trust_sha256 = known_sha256(ns.vocoder)  # documented for the Expresso generator
    forwarded = {f.name: getattr(options, f.name) for f in dataclasses.fields(CheckpointOptions)}
    forwarded.update(units=spec, trust_sha256=trust_sha256)
    system = CheckpointSystem(str(folder), CheckpointOptions(**forwarded))
    system.named = ns
    return system
