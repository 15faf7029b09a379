"""``resyn-bench ls datasets|systems|metrics|presets``."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("ls", help="list datasets, systems, metrics or pitch presets",
                              epilog="example:\n  resyn-bench ls systems",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("datasets", "systems", "metrics", "presets"))
    p.set_defaults(handler=run)


def _print_system_options(entry) -> None:
    """The ``-o`` options of a system, from its options dataclass (plugins: not imported)."""
    from resyn_bench import registry
    from resyn_bench.systems.options import describe_options

    if registry.SYSTEMS.get(entry.name) is not entry:
        return
    option_class = entry.option_class()
    if option_class is not None:
        print("\n".join(describe_options(option_class, indent=" " * 16)))


def run(args: argparse.Namespace) -> int:
    from resyn_bench import registry

    if args.what == "systems":
        from resyn_bench.named_systems import ALIASES, NAMED_SYSTEMS

        for name, entry in registry.all_systems().items():
            if name in NAMED_SYSTEMS or name in ALIASES:
                continue
            shown = f"{name}:{entry.takes_argument}" if entry.takes_argument else name
            print(f"{shown:16s}{entry.description}")
            _print_system_options(entry)
        print("\nnamed unit systems (encoder, layer, quantizer, vocabulary, vocoder); "
              "bitrate = units + F0 codes:")
        header = f"{'name':26s}{'units':22s}{'streams':24s}{'bps':>7s}  status"
        print(header)
        print("-" * len(header))
        for name, ns in NAMED_SYSTEMS.items():
            layer = f" L{ns.layer}" if ns.layer is not None else ""
            units = f"{ns.encoder}{layer} k={ns.vocab_size} {ns.unit_rate:g}Hz"
            streams = "units" + (" + f0 codes" if ns.f0 else "") + (
                " + speaker" if ns.speaker != "none" else "")
            print(f"{name:26s}{units:21s} {streams:24s}{ns.bitrate():7.1f}  {ns.status()}")
        print("aliases: " + ", ".join(f"{a} = {t}" for a, t in ALIASES.items()))
        print("options of every named system:")
        _print_system_options(registry.SYSTEMS[next(iter(NAMED_SYSTEMS))])
        print("a system that needs files says how to get them when run; "
              "see `resyn-bench fetch --list` and `resyn-bench train --help`")
    elif args.what == "metrics":
        for name, entry in registry.METRIC_GROUPS.items():
            print(f"{name:16s}{entry.description}")
        for suite, groups in registry.METRIC_SUITES.items():
            print(f"{suite:16s}suite: {', '.join(groups)}")
    elif args.what == "datasets":
        from resyn_bench.datasets import list_datasets

        for name, description in list_datasets():
            print(f"{name:16s}{description}")
    else:
        from resyn_bench.dsp.presets import ALIASES, NAMES, TRAINING_MEANING, training_names
        from resyn_bench.metrics.f0 import DEFAULT_PRESET

        width = max(16, *(len(n) + 2 for n in NAMES))
        for name, preset in NAMES.items():
            mark = " (default)" if name == DEFAULT_PRESET else ""
            text = f"= {preset.name}" if name in ALIASES else preset.description
            print(f"{name:{width}s}{text}{mark}")
        meaning = ", ".join(f"{k!r} is {v}" for k, v in TRAINING_MEANING.items())
        print(f"\n--f0-preset, --f0-extractor and -o f0_extractor= take these names; training and "
              f"checkpoint systems take those with a 5 ms hop ({', '.join(training_names())}), "
              f"and there {meaning}.")
    return 0
