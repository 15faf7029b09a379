"""Name -> implementation tables for systems and metric groups.

Entries are ``"module:Attr"`` strings imported only when used, so ``resyn-bench ls`` and report
rendering never import torch or model code. Third-party packages add systems through the
``resyn_bench.systems`` entry-point group (``name = "module:Attr"``).

A system spec is ``NAME`` or ``NAME:ARG`` (e.g. ``outputs:/path/to/dir``); the argument is
passed to the factory as its first positional parameter.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resyn_bench.core.suggest import did_you_mean
from resyn_bench.errors import UserError


class RegistryError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class OptionValueError(UserError, ValueError):
    """A system or metric group refused the value of one of its options (-o / -m)."""


@dataclass(frozen=True)
class Entry:
    name: str
    target: str | Callable[..., Any]    # "module:Attr", or the factory itself
    description: str
    takes_argument: str | None = None   # name of the ":ARG" part, if the entry takes one
    #: "module:Attr" of the options dataclass (resyn_bench.systems.options); default: the
    #: ``Options`` attribute of the target, if it has one
    options: str | None = None

    def load(self) -> Callable[..., Any]:
        return _resolve(self.target)

    def option_class(self) -> type | None:
        """The system's options dataclass (the one declaration of its ``-o`` options)."""
        if self.options is not None:
            return _resolve(self.options)
        return getattr(self.load(), "Options", None)


def _resolve(target: str | Callable[..., Any]) -> Any:
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


SYSTEMS: dict[str, Entry] = {e.name: e for e in [
    Entry("copy", "resyn_bench.systems.baselines:CopySystem",
          "ground truth: output = input (the topline row of every table)"),
    Entry("world", "resyn_bench.systems.world:WorldSystem",
          "WORLD vocoder analysis/synthesis (pyworld): weight-free baseline"),
    Entry("outputs", "resyn_bench.systems.outputs:OutputsSystem",
          "evaluate audio files another tool produced, matched by utterance id "
          "(wav/flac/ogg/mp3)", takes_argument="DIR"),
    Entry("ckpt", "resyn_bench.systems.vocoder.system:CheckpointSystem",
          "a trained unit vocoder folder (g_XXXXXXXX + config.json, ours or the reference "
          "layout)", takes_argument="DIR"),
    # the paper's codec baselines (extra `codecs`); bitrate measured from the encoder's output
    Entry("codec2", "resyn_bench.systems.codecs:Codec2System",
          "Codec2 speech codec, 8 kHz (pycodec2); bitrate measured from its frames"),
    Entry("opus", "resyn_bench.systems.codecs:OpusSystem",
          "Opus wideband, 16 kHz (PyAV libopus); bitrate measured from its packets"),
]}


NAMED_OPTIONS = "resyn_bench.systems.named:NamedSystemOptions"


def _named_factory(name: str) -> Callable[..., Any]:
    """The factory of a named system; its options are ``NamedSystemOptions`` (checked by
    make_system before the call)."""
    def factory(**options):
        from resyn_bench.systems.named import make_named_system

        return make_named_system(name, **options)
    factory.__name__ = f"make_{name.replace('-', '_')}"
    return factory


def _add_named_systems() -> None:
    from resyn_bench.named_systems import ALIASES, NAMED_SYSTEMS

    for name, ns in NAMED_SYSTEMS.items():
        SYSTEMS[name] = Entry(name, _named_factory(name), ns.description, options=NAMED_OPTIONS)
    for alias, target in ALIASES.items():
        SYSTEMS[alias] = Entry(alias, _named_factory(target), f"= {target}", options=NAMED_OPTIONS)


_add_named_systems()

METRIC_GROUPS: dict[str, Entry] = {e.name: e for e in [
    Entry("f0", "resyn_bench.metrics.f0:F0Metrics",
          "intonation: GPE, VDE, FFE, F0 RMSE (cents), F0 correlation"),
    Entry("asr", "resyn_bench.metrics.intelligibility:IntelligibilityMetrics",
          "content: WER, CER, PER through ASR (embedded Whisper base on faster-whisper; "
          "-m asr.backend=pocketsphinx as a weak fallback); "
          "-m asr.mode=differential for dWER/dPER without text"),
    Entry("spk", "resyn_bench.metrics.speaker:SpeakerMetrics",
          "speaker identity: held-out speaker-ID accuracy, EER, minDCF, cosine similarity"),
    Entry("dnsmos", "resyn_bench.metrics.quality:DNSMOSMetrics",
          "quality (non-intrusive MOS proxy): DNSMOS P.835 SIG/BAK/OVRL and P.808"),
    Entry("intrusive", "resyn_bench.metrics.quality:IntrusiveQualityMetrics",
          "quality against the reference: PESQ, STOI, ESTOI, MCD (dB, DTW)"),
    Entry("phn", "resyn_bench.metrics.wav2vec2:PhoneCTCMetrics",
          "content: PER (phone CTC) - phones recognised from audio by wav2vec2 espeak phoneme "
          "CTC against espeak phones of the text (needs `resyn-bench fetch "
          "wav2vec2-lv-60-espeak-cv-ft`)"),
    Entry("utmos", "resyn_bench.metrics.utmos:UTMOSMetrics",
          "quality (non-intrusive MOS proxy): UTMOS22 strong predicted MOS (needs "
          "`resyn-bench fetch utmos22-strong`)"),
]}

#: named metric selections for ``--metrics``
METRIC_SUITES: dict[str, list[str]] = {
    # the paper's Table 1 columns: PER, WER, VDE, FFE, speaker-ID/EER, MOS proxy
    "paper": ["asr", "f0", "spk", "dnsmos"],
    # everything but ASR
    "fast": ["f0", "spk", "dnsmos", "intrusive"],
    "all": ["f0", "asr", "spk", "dnsmos", "intrusive"],
    # pitch only: no models at all
    "pitch": ["f0"],
}


#: metric names users type -> the group that gives them (``--metrics wer`` suggests ``asr``)
METRIC_OWNERS: dict[str, str] = {
    **dict.fromkeys(("gpe", "vde", "ffe", "rmse", "rmse_cents", "f0_rmse", "corr", "f0_corr",
                     "pitch_error"), "f0"),
    **dict.fromkeys(("wer", "cer", "per", "dwer", "dcer", "dper", "intelligibility"), "asr"),
    **dict.fromkeys(("acc", "accuracy", "eer", "min_dcf", "mindcf", "dcf", "cos", "cos_ref",
                     "cosine", "similarity", "speaker", "spkid", "spk_acc"), "spk"),
    **dict.fromkeys(("mos", "ovrl", "sig", "bak", "p808", "p835", "quality"), "dnsmos"),
    **dict.fromkeys(("pesq", "stoi", "estoi", "mcd"), "intrusive"),
}


def register_system(name: str, target: str | Callable[..., Any], description: str = "",
                    takes_argument: str | None = None, replace: bool = False) -> None:
    """Register a system in-process (packages can also use the entry-point group)."""
    if name in SYSTEMS and not replace:
        raise RegistryError(f"system {name!r} is already registered")
    SYSTEMS[name] = Entry(name, target, description, takes_argument)


def _suggest(name: str, choices) -> str:
    hint = did_you_mean(name, choices, n=3, cutoff=0.5)
    return f"{hint} Known: {', '.join(sorted(choices))}."


def _plugin_systems() -> dict[str, Entry]:
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group="resyn_bench.systems"):
        found[ep.name] = Entry(ep.name, ep.value, f"plugin from {ep.dist.name if ep.dist else '?'}")
    return found


def all_systems() -> dict[str, Entry]:
    table = dict(SYSTEMS)
    for name, entry in _plugin_systems().items():
        table.setdefault(name, entry)
    return table


def system_entry(spec: str) -> tuple[Entry, str | None]:
    name, sep, arg = spec.partition(":")
    table = all_systems()
    if name not in table:
        raise RegistryError(f"unknown system {name!r}.{_suggest(name, table)}")
    entry = table[name]
    if entry.takes_argument and not arg:
        raise RegistryError(f"system {name!r} needs an argument: {name}:{entry.takes_argument}")
    if arg and not entry.takes_argument:
        raise RegistryError(f"system {name!r} takes no ':' argument (got {spec!r})")
    return entry, (arg if sep else None)


def _option_error(what: str, flag: str, key: str, valid: list[str]) -> RegistryError:
    hint = did_you_mean(key, valid, n=2, joiner=" or ")
    return RegistryError(f"{what}: unknown option {key!r} ({flag.format(key=key)}).{hint} - "
                         f"its options are: {', '.join(valid) or 'none'}")


def _call(factory: Callable[..., Any], args: tuple, options: dict[str, Any]):
    try:
        return factory(*args, **options)
    except ValueError as exc:
        if isinstance(exc, UserError):
            raise
        # a system or metric group refusing an option value it was given: the user's to fix
        raise OptionValueError(str(exc)) from exc


def _instantiate(what: str, factory: Callable[..., Any], args: tuple, options: dict[str, Any],
                 flag: str = "{key}=VALUE", option_class: type | None = None):
    """Call ``factory``, turning a wrong option name into a clear error listing the valid ones
    with a did-you-mean. The valid names are the fields of ``option_class`` (a system's options
    dataclass) when given; otherwise the factory's signature, or, for a factory taking
    ``**options`` (the ASR group passes them to its backend), its ``option_names(options)``."""
    import inspect

    if option_class is not None:
        from resyn_bench.systems.options import option_names

        valid = option_names(option_class)
        for key in options:
            if key not in valid:
                raise _option_error(what, flag, key, valid)
        return _call(factory, args, options)

    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature available (C callables): let the call check
        return _call(factory, args, options)
    params = [n for n, p in signature.parameters.items() if n != "self"
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    named = [n for n, p in signature.parameters.items() if p.kind in (p.KEYWORD_ONLY,
                                                                       p.POSITIONAL_OR_KEYWORD)]
    takes_more = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    valid: list[str] | None = None if takes_more else params
    if takes_more and callable(getattr(factory, "option_names", None)):
        try:
            extra = factory.option_names(options)
        except Exception:  # noqa: BLE001 - the call below reports a bad option itself
            extra = None
        if extra is not None:
            valid = list(dict.fromkeys([*params, *extra]))
    if valid is not None:
        for key in options:
            if key not in valid or (key not in named and key in params):
                raise _option_error(what, flag, key, valid)
    try:
        signature.bind(*args, **options)
    except TypeError as exc:
        raise RegistryError(f"{what}: {exc}; its options are: {', '.join(params) or 'none'}") from None
    return _call(factory, args, options)


def takes_option(factory: Callable[..., Any], key: str, options: dict[str, Any] | None = None,
                 option_class: type | None = None) -> bool:
    """Whether ``factory`` (a system or metric group factory) accepts the option ``key``: a named
    parameter, or one its ``option_names(options)`` lists (the ASR and speaker groups pass
    options on to their backends), or a field of ``option_class`` (a system's options
    dataclass, :meth:`Entry.option_class`). The runner gives ``--device`` only to those that do."""
    import inspect

    if option_class is not None:
        from resyn_bench.systems.options import option_names

        return key in option_names(option_class)

    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    if key in signature.parameters and signature.parameters[key].kind in (
            inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return True
    if key in getattr(factory, "forwarded_options", ()):   # every backend of it takes the option
        return True
    if any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        listed = getattr(factory, "option_names", None)
        if callable(listed):
            try:
                names = listed(dict(options or {}))
            except Exception:  # noqa: BLE001 - unknown: do not pass it
                return False
            return names is not None and key in names
    return False


def make_system(spec: str, **options: Any):
    """Instantiate a system from ``NAME`` or ``NAME:ARG``; an unknown option is an error."""
    entry, arg = system_entry(spec)
    args = (arg,) if arg is not None else ()
    system = _instantiate(f"system {spec!r}", entry.load(), args, options, flag="-o {key}=VALUE",
                          option_class=entry.option_class())
    system.name = spec
    return system


def resolve_metric_names(selection: str | list[str]) -> list[str]:
    """``"fast"`` / ``"f0,..."`` / list -> ordered, de-duplicated metric group names."""
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        expanded = METRIC_SUITES.get(item, [item])
        for name in expanded:
            if name not in METRIC_GROUPS:
                group, dot, metric = name.lower().partition(".")
                owner = METRIC_OWNERS.get(metric if dot else group) or (
                    group if dot and group in METRIC_GROUPS else None)
                if owner:
                    fixed = ",".join(dict.fromkeys(owner if i.strip() == item else i.strip()
                                                   for i in items if i.strip()))
                    raise RegistryError(
                        f"--metrics takes metric groups or suites; {name!r} is a metric of the "
                        f"group {owner!r}: use --metrics {fixed}. "
                        f"Groups: {', '.join(METRIC_GROUPS)}; suites: {', '.join(METRIC_SUITES)}.")
                raise RegistryError(f"unknown metric or suite {name!r}."
                                    f"{_suggest(name, list(METRIC_GROUPS) + list(METRIC_SUITES))}")
            if name not in names:
                names.append(name)
    if not names:
        raise RegistryError("no metrics selected")
    return names


def make_metric(name: str, **options: Any):
    if name not in METRIC_GROUPS:
        raise RegistryError(f"unknown metric group {name!r}.{_suggest(name, METRIC_GROUPS)}")
    try:
        return _instantiate(f"metric group {name!r}", METRIC_GROUPS[name].load(), (), options,
                            flag=f"-m {name}.{{key}}=VALUE")
    except RegistryError:
        raise
    except KeyError as exc:  # e.g. an unknown pitch preset: the message names the choices
        raise RegistryError(f"metric group {name!r}: {exc.args[0] if exc.args else exc}") from None
