"""Command-line options derived from :class:`resyn_bench.run_config.RunConfig`.

Each RunConfig field's :class:`~resyn_bench.run_config.OptionSpec` gives its flags, help, kind
and conversion; :func:`add_run_options` turns them into argparse options and
:func:`given_values` reads back the ones the user gave, converted to the field's type. So a new
run option appears in ``run`` (and in study files) without touching this package.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any

from resyn_bench.run_config import field_default, run_options, spec


def _fields(names: Iterable[str] | None) -> list[dataclasses.Field]:
    by_name = {f.name: f for f in run_options()}
    if names is None:
        return list(by_name.values())
    missing = [n for n in names if n not in by_name]
    if missing:
        raise KeyError(f"not RunConfig fields: {missing}")
    return [by_name[n] for n in names]


def add_run_options(p: argparse.ArgumentParser, names: Iterable[str] | None = None, *,
                    helps: dict[str, str] | None = None, required: Iterable[str] = (),
                    defaults: bool | dict[str, Any] = False) -> None:
    """Add the options of the RunConfig fields ``names`` (default: all) to ``p``.

    ``defaults=False``: an option not given reads None (so that a study file's value can
    stand, see :func:`given_values`); ``True``: the field's default; a dict: these defaults,
    others None. ``helps`` replaces help texts; ``required`` makes options required.
    """
    from resyn_bench.cli.args import parse_option

    helps = helps or {}
    required = set(required)
    for f in _fields(names):
        s = spec(f)
        if isinstance(defaults, dict):
            default = defaults.get(f.name)
        elif defaults:
            default = field_default(f)
            default = None if default is dataclasses.MISSING else default
        else:
            default = None
        kwargs: dict[str, Any] = {"dest": f.name, "help": helps.get(f.name, s.help),
                                  "default": default}
        if s.kind == "value":
            kwargs.update(type=s.type or str, metavar=s.metavar)
        elif s.kind == "flag":
            kwargs.update(action="store_const", const=True)
        elif s.kind == "no-flag":
            kwargs.update(action="store_const", const=False)
        elif s.kind == "bool":
            kwargs.update(action=argparse.BooleanOptionalAction)
        else:   # pairs, group-pairs: KEY=VALUE, repeatable
            kwargs.update(action="append", type=parse_option, metavar=s.metavar)
            if kwargs["default"] is not None:
                kwargs["default"] = []
        if f.name in required:
            kwargs["required"] = True
        p.add_argument(*s.flags, **kwargs)


def convert(name: str, value: Any) -> Any:
    """A parsed command-line value as the RunConfig field ``name`` holds it."""
    kind = spec(next(f for f in run_options() if f.name == name)).kind
    if kind == "pairs":
        return dict(value)
    if kind == "group-pairs":
        from resyn_bench.cli.common import metric_options_from_args

        return metric_options_from_args(value)
    return value


def given_values(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, Any]:
    """{field: value} of the run options given on the command line (not None), converted.
    Fields the command resolves itself (``direct=False``: ``--shard``) are left out."""
    out = {}
    for f in _fields(names):
        if not spec(f).direct:
            continue
        value = getattr(args, f.name, None)
        if value is not None:
            out[f.name] = convert(f.name, value)
    return out


def option_flag(name: str) -> str:
    """The long command-line spelling of a RunConfig field (for messages)."""
    return spec(next(f for f in run_options() if f.name == name)).flags[-1]
