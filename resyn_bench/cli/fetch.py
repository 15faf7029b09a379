"""``resyn-bench fetch NAME... | --list``: download catalogue checkpoints (HuBERT, CPC, GSLM
k-means, the public unit HiFi-GAN) into ``$RESYN_BENCH_HOME/checkpoints`` with a progress bar
and a sha256 check, and speech test sets into ``$RESYN_BENCH_HOME/datasets``.

Exit status: 0; 1 when a download failed (the others go on); 2 bad command.
"""
from __future__ import annotations

import argparse
import json
import sys

EPILOG_FETCH = """examples:
  resyn-bench fetch --list
  resyn-bench fetch hubert-base-ls960 hubert-l6-km100
  resyn-bench fetch vocoder-hubert100-lj          # also fetches its config.json
  resyn-bench fetch hubert-l6-km100 --url file:///mnt/mirror/km.bin
  resyn-bench fetch librispeech-test-clean   # test sets: ljspeech-1.1, vctk-0.92, librispeech-test-clean

Files go to $RESYN_BENCH_HOME/checkpoints (default ~/.cache/resyn-bench/checkpoints). Nothing
is ever downloaded at run time: on an offline machine, copy each file to the path `--list`
shows. Where no sha256 is documented, the computed one is written to FILE.sha256; loading a
pickle from such a file needs --trust-sha256 HASH.

Test sets are downloaded into $RESYN_BENCH_HOME/datasets/.downloads (a stopped download resumes
with an HTTP Range request when run again), checked against their sha256, extracted into
$RESYN_BENCH_HOME/datasets/<name>/ and the archive deleted (--keep-archive keeps it).
"""


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``resyn-bench fetch``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG_FETCH
    p.add_argument("names", nargs="*", metavar="NAME", help="catalogue names (see --list)")
    p.add_argument("--list", action="store_true",
                   help="show every catalogue name, whether it is present, and its path")
    p.add_argument("--json", action="store_true", help="with --list: machine-readable output")
    p.add_argument("--verify", action="store_true",
                   help="with --list: also hash the present files against the documented sha256")
    p.add_argument("--url", help="download the (single) NAME from this URL instead (a mirror, "
                                 "or file:///path of a copy); the sha256 check is the same")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--keep-archive", action="store_true",
                   help="test sets: keep the downloaded archive after extracting it")


def _list_table(rows: list[dict]) -> str:
    table = [("name", "present", "sha256", "path")]
    for r in rows:
        if r["sha256"]:
            digest = "documented"
            if r.get("verified") is not None:
                digest += ", ok" if r["verified"] else ", MISMATCH"
        elif r["recorded_sha256"]:
            digest = "recorded " + r["recorded_sha256"][:12]
        else:
            digest = "none"
        shown = "yes" if r["present"] else ("converted" if r.get("converted") else "no")
        table.append((r["name"], shown, digest, r["path"]))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(row[:3], widths, strict=True)] + [row[3]]) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Download the named files, or list the catalogue; returns the exit code."""
    from resyn_bench import catalogue

    if args.list:
        rows = catalogue.list_entries()
        if getattr(args, "verify", False):
            for r in rows:
                ok, digest = catalogue.verify(r["name"]) if r["present"] else (None, None)
                r["verified"], r["computed_sha256"] = ok, digest
        if getattr(args, "json", False):
            print(json.dumps(rows + _test_set_rows(), indent=2))
        else:
            print(_list_table(rows))
            print(f"\nroot: {catalogue.checkpoints_root()} (set RESYN_BENCH_HOME to move it)")
            print("\n" + _test_set_table())
        return 0
    if not args.names:
        _err("name at least one file to fetch (see `resyn-bench fetch --list`)")
        return 2
    test_sets = [n for n in args.names if catalogue.dataset_archive_name(n)]
    if test_sets:  # speech test sets: resumable download + extraction (resyn_bench.downloads)
        if len(test_sets) != len(args.names):
            _err("fetch test sets and checkpoints in separate commands")
            return 2
        return _fetch_test_sets(test_sets, args)
    if args.url and len(args.names) != 1:
        _err("--url applies to a single NAME")
        return 2
    try:
        names = [catalogue.resolve_name(n) for n in args.names]
    except catalogue.CatalogueError as exc:
        _err(str(exc))
        return 2
    failed = 0
    for name in names:
        try:
            was_there = catalogue.is_present(name) and not args.force
            path = catalogue.fetch(name, progress=not args.quiet, url_override=args.url,
                                   force=args.force)
        except catalogue.CatalogueError as exc:
            _err(str(exc))
            failed += 1
            continue
        entry = catalogue.get_entry(name)
        if entry.sha256:
            note = "sha256 ok"
        else:
            recorded = catalogue.recorded_sha256(name)
            note = (f"no documented sha256; computed {recorded} (in {path}.sha256)" if recorded
                    else "no documented sha256")
        print(f"{name}: {'already present' if was_there else 'downloaded'} {path} ({note})")
    return 1 if failed else 0


def _test_set_rows() -> list[dict]:
    from resyn_bench import catalogue, downloads

    return [{"name": e.name, "kind": "test set", "present": downloads.is_fetched(e.name),
             "data_root": str(catalogue.dataset_data_root(e.name)), "dataset": e.loader,
             "url": e.url, "sha256": e.sha256, "size": e.size, "hash_source": e.hash_source,
             "description": e.description, "licence": e.licence}
            for e in catalogue.DATASET_ARCHIVES.values()]


def _test_set_table() -> str:
    from resyn_bench import catalogue

    rows = _test_set_rows()
    table = [("test set", "present", "check", "then use")]
    for r in rows:
        check = "sha256" if r["sha256"] else ("size only" if r["size"] else "none")
        table.append((r["name"], "yes" if r["present"] else "no", check,
                      f"--dataset {r['dataset']} --data-root {r['data_root']}"))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(row[:3], widths, strict=True)] + [row[3]]) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  --------")
    return "\n".join(lines) + (f"\n\ntest sets are extracted under {catalogue.datasets_root()}; "
                               "a stopped download resumes where it stopped")


def _fetch_test_sets(names: list[str], args: argparse.Namespace) -> int:
    from resyn_bench import catalogue, downloads

    if args.url and len(names) != 1:
        _err("--url applies to a single NAME")
        return 2
    failed = 0
    for name in names:
        entry = catalogue.get_dataset_archive(name)
        was_there = downloads.is_fetched(entry.name) and not args.force
        try:
            root = downloads.fetch_dataset(entry.name, progress=not args.quiet,
                                           url_override=args.url, force=args.force,
                                           keep_archive=getattr(args, "keep_archive", False))
        except catalogue.CatalogueError as exc:
            _err(f"{entry.name}: {exc}")
            failed += 1
            continue
        check = "sha256 ok" if entry.sha256 else "no documented sha256 (size-checked only)"
        print(f"{entry.name}: {'already present' if was_there else 'fetched'} ({check}); "
              f"use: --dataset {entry.loader} --data-root {root}")
    return 1 if failed else 0


def register(subparsers) -> None:
    p = subparsers.add_parser("fetch", help="download catalogue checkpoints (HuBERT, k-means, "
                                            "vocoders) and test sets, verify them")
    configure_parser(p)
    p.set_defaults(handler=run)
