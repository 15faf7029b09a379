"""System options (``-o key=value``) declared once, as a dataclass per system.

Each field of a system's options dataclass is declared with :func:`option`, which stores the
option's help text, value type and (optionally) its choices in the field's metadata. That one
declaration is read by

* the system's constructor (``parse_options``: unknown names with a did-you-mean, values
  coerced to the declared type, choices checked),
* the registry's factory (``resyn_bench.registry.make_system`` lists the valid names from it),
* the named systems (``hubert100`` etc.), whose options extend the checkpoint system's,
* ``resyn-bench ls systems`` (``describe_options``).

A system class exposes its dataclass as the class attribute ``Options``. Standard library only:
``resyn-bench ls systems`` reads it without importing torch.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from resyn_bench.errors import UserError

__all__ = ["OptionError", "OptionSpec", "option", "option_specs", "option_names",
           "parse_options", "describe_options"]

T = TypeVar("T")

_TYPES = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


class OptionError(UserError, ValueError):
    """A system option has an unknown name, a value of the wrong type, or an unknown choice."""


@dataclass(frozen=True)
class OptionSpec:
    """What ``ls systems`` and the factory know of one option."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    def usage(self) -> str:
        """``-o name=VALUE`` with the choices or the metavar as the value."""
        value = "|".join(self.choices) if self.choices else (self.metavar or self.type.__name__.upper())
        return f"-o {self.name}={value}"


def option(default: Any, help: str, *, type: type = str, choices: tuple[str, ...] | None = None,
           metavar: str | None = None, normalize: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field declaring one system option.

    ``type`` is what a value given on the command line is converted to (``-o`` values arrive
    JSON-parsed: ``-o speaker=225`` is the integer 225, the option may want the text "225");
    ``None`` stays None (the system's default). ``normalize`` maps a value (after the type
    conversion) onto its canonical spelling before the ``choices`` check (e.g. codec2's ``700``
    -> ``700C``)."""
    meta = {"help": help, "type": type, "choices": tuple(choices) if choices else None,
            "metavar": metavar, "normalize": normalize}
    return dataclasses.field(default=default, metadata=meta)


def option_specs(cls: type) -> list[OptionSpec]:
    """The options of an options dataclass, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option(...)")
        out.append(OptionSpec(f.name, meta["type"], f.default, meta["help"], meta["choices"],
                              meta["metavar"]))
    return out


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _did_you_mean(key: str, valid: list[str]) -> str:
    from resyn_bench.core.suggest import did_you_mean

    return did_you_mean(key, valid, n=2, joiner=" or ")


def _convert(what: str, spec: OptionSpec, value: Any) -> Any:
    if value is None:
        return None
    kind = spec.type
    if kind is str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, (str, int, float)) else value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    elif kind in (int, float):
        if isinstance(value, str) and value.strip() == "":
            return None
        try:
            number = kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if kind is int and number is None and isinstance(value, (str, float)):
            try:   # "3.0" / 3.0 are whole numbers too
                as_float = float(value)
                number = int(as_float) if as_float.is_integer() else None
            except (TypeError, ValueError):
                number = None
        if number is not None:
            return number
    else:
        return value
    raise OptionError(f"{what}: -o {spec.name}={value!r} is not {_TYPES.get(kind, kind.__name__)}"
                      f" ({spec.help.split(';')[0]})")


def parse_options(cls: type[T], values: Mapping[str, Any], what: str) -> T:
    """An instance of the options dataclass ``cls`` from ``-o`` values (a mapping).

    Unknown names are an :class:`OptionError` with a did-you-mean and the list of valid names;
    values are converted to the declared types and checked against the declared choices; names
    not given keep the dataclass defaults. ``what`` names the system in messages."""
    specs = {s.name: s for s in option_specs(cls)}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in specs:
            raise OptionError(f"{what}: unknown option {key!r} (-o {key}=VALUE)."
                              f"{_did_you_mean(key, list(specs))} - its options are: "
                              f"{', '.join(specs) or 'none'}")
        spec = specs[key]
        value = _convert(what, spec, value)
        normalize = fields[key].metadata.get("normalize")
        if normalize is not None and value is not None:
            value = normalize(value)
        if spec.choices and value is not None and value not in spec.choices:
            raise OptionError(f"{what}: {key} must be one of {', '.join(spec.choices)}, got "
                              f"{value!r}.{_did_you_mean(str(value), list(spec.choices))}")
        kwargs[key] = value
    return cls(**kwargs)


def describe_options(cls: type, indent: str = "    ") -> list[str]:
    """One line per option for ``resyn-bench ls systems``: usage, help, default."""
    specs = option_specs(cls)
    width = max((len(s.usage()) for s in specs), default=0)
    lines = []
    for s in specs:
        default = "" if s.default is None else f" (default {s.default})"
        lines.append(f"{indent}{s.usage():{width}s}  {s.help}{default}")
    return lines
