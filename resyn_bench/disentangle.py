"""``resyn-bench disentangle``: how much content, speaker and pitch each stream of a
speaker-conditioned system carries, one summary row per system with 95 % CIs.

For every ``--system`` it drives ordinary run folders under ``--out`` (resumable like any run:
the same command again finishes what is missing and re-scores nothing; the reference-analysis
cache is shared)::

    OUT/<label>/resynthesis   the system's own resynthesis        --metrics as given
    OUT/<label>/vc            --vc-targets N random target voices  --metrics as given
    OUT/<label>/f0_flat       -o f0_edit=flat                      f0 only
    OUT/<label>/f0_shift      -o f0_edit=shift:+N   (--shift N)    f0 only
    OUT/<label>/f0_scale      -o f0_edit=scale:X    (--scale X)    f0 only

and then reads them back (:mod:`resyn_bench.reports.disentangle`). The summary reads only run
folders, so runs made any other way - ``resyn-bench run --experiment vc`` by hand, or scored
outputs of another tool whose records carry target speakers - are summarised the same way with
``--runs RUN...`` (runs grouped by their label, each run's role from its experiment).

A system that cannot do one of the runs (an F0 edit on a system without an F0 stream, no
choice of speakers for VC) gets that run skipped with the reason; its figures are "–".
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resyn_bench.errors import UsageError

log = logging.getLogger("resyn_bench.disentangle")

EPILOG = """examples:
  resyn-bench disentangle --system ckpt:ckpt/hubert100-vctk --dataset vctk \\
      --data-root VCTK-Corpus-0.92 --limit 100 --out runs/disent
  resyn-bench disentangle --system ckpt:a --system ckpt:b --dataset manifest \\
      --data-root corpus/manifest.tsv --metrics spk,f0 --shift 4 --scale 0.5 --out runs/disent
  resyn-bench disentangle --system outputs:mytool/out --conversions mytool/pairs.tsv \
      --dataset vctk --data-root VCTK-Corpus-0.92 --label mytool --out runs/disent
  resyn-bench disentangle --runs runs/disent/*/* runs/mytool-vc --report rep/

Per system: resynthesis, voice conversion (--vc-targets random targets per utterance), and F0
edits (flat, shift:+N semitones, scale:X) as ordinary run folders OUT/<label>/<experiment>,
then one summary row: content kept (ASR of VC vs resynthesis), target similarity and source
leakage (speaker ID/EER/cosine against the target and against the source speaker), prosody
(F0 register and range vs the target, intonation kept from the source) and the F0 carried by
the units (flat-F0 VDE/FFE; achieved vs requested shift and range), each with its 95 %
bootstrap CI. Tables (md, tex, csv, json) and a bar plot per system go to --report
(default OUT/summary). The same command again resumes.

Exit status: 0; 2 bad command; 3 no figure could be computed.
"""

#: groups the summary uses; others given in --metrics are scored on resynthesis and VC too
USED_GROUPS = ("asr", "spk", "f0")


@dataclass
class PlannedRun:
    system: str
    label: str
    experiment: str
    out: Path
    system_options: dict[str, Any] = field(default_factory=dict)
    metrics: str = "f0"
    vc_targets: int = 0


def _folder_name(label: str) -> str:
    """A system's folder under OUT: the run folder's own rule for file names from user data
    (plain labels as they are; others a bounded, readable prefix + hash, never a path)."""
    from resyn_bench.runfolder import output_name

    return output_name(label, suffix="")


def system_row_label(spec: str) -> str:
    """The row label of a system spec, as reports label its runs (``ckpt:/x/run7`` ->
    ``ckpt:run7``); the shared ``-o`` options are not part of it."""
    from resyn_bench.reports.labels import path_system_label

    return path_system_label(spec) or spec


def plan_runs(systems: list[str], out: Path, metrics: str, vc_targets: int = 2,
              shift: float | None = 2.0, scale: float | None = 0.5,
              options: dict[str, Any] | None = None, labels: list[str] | None = None
              ) -> list[PlannedRun]:
    """The runs of every system (see the module notes). ``metrics`` are the groups of the
    resynthesis and VC runs; the F0-edit runs score ``f0`` only (and are left out when f0 is
    not among the metrics)."""
    from resyn_bench.registry import resolve_metric_names

    groups = resolve_metric_names(metrics)
    if not groups:
        raise UsageError("--metrics selects no metric group")
    if vc_targets < 1:
        raise UsageError("--vc-targets must be >= 1 (the summary needs converted speech)")
    labels = list(labels or [])
    if labels and len(labels) != len(systems):
        raise UsageError(f"--label given {len(labels)} times for {len(systems)} --system; give "
                         "one label per system, in the same order")
    options = dict(options or {})
    if "f0_edit" in options or "speaker" in options:
        raise UsageError("-o f0_edit= and -o speaker= are chosen by disentangle itself (--shift, "
                         "--scale, --vc-targets); drop them")
    plan: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for i, spec in enumerate(systems):
        label = labels[i] if labels else system_row_label(spec)
        folder = _folder_name(label)
        if folder in seen:
            raise UsageError(f"systems {seen[folder]!r} and {spec!r} would share the run folder "
                             f"{out / folder}; give each a --label")
        seen[folder] = spec
        root = out / folder
        both = ",".join(groups)
        plan.append(PlannedRun(spec, label, "resynthesis", root / "resynthesis", dict(options), both))
        plan.append(PlannedRun(spec, label, "vc", root / "vc", dict(options), both, vc_targets))
        if "f0" in groups:
            edits = [("f0_flat", "flat")]
            if shift is not None:
                edits.append(("f0_shift", f"shift:{shift:+g}"))
            if scale is not None:
                edits.append(("f0_scale", f"scale:{scale:g}"))
            for exp, edit in edits:
                plan.append(PlannedRun(spec, label, exp, root / exp,
                                       {**options, "f0_edit": edit}, "f0"))
    return plan


def plan_conversions(listing: str | Path, system: str, out: Path, metrics: str, utterances,
                     options: dict[str, Any] | None = None, label: str | None = None
                     ) -> list[PlannedRun]:
    """The runs of another tool's conversion list (``--system outputs:DIR --conversions LIST``):
    its rows split by experiment - an ``f0_edit`` makes the row part of ``f0_flat``/``f0_shift``/
    ``f0_scale`` (scored ``f0`` only, as built-in edits), a row whose target is the source's own
    speaker is ``resynthesis``, any other ``vc``. Each experiment's rows are written to
    ``OUT/<label>/lists/<experiment>.jsonl`` (reference paths made absolute, the original line
    numbers kept for messages) and run as ``outputs:DIR --conversions`` that list. A list that
    cannot be used is a ConversionListError (ValueError) before any work."""
    import json

    from resyn_bench.conversions import EDIT_EXPERIMENTS, edit_kind, read_rows, row_edit
    from resyn_bench.core.atomic import write_text_atomic

    if not system.startswith("outputs:"):
        raise UsageError(f"--conversions lists another tool's outputs: give --system outputs:DIR "
                         f"(got {system!r})")
    groups = [g for g in metrics.split(",") if g]
    options = dict(options or {})
    if "f0_edit" in options or "speaker" in options or "conversions" in options:
        raise UsageError("-o f0_edit=, -o speaker= and -o conversions= come from the list itself; "
                         "drop them")
    listing = Path(listing).expanduser().resolve()
    base = listing.parent
    speaker_of = {u.utt_id: u.speaker for u in utterances}
    by_exp: dict[str, list[dict[str, Any]]] = {}
    for row in read_rows(listing):
        edit, _ = row_edit(row)   # an invalid edit stays in its experiment and fails its row
        kind = edit_kind(edit)
        if kind is None and not (row.get("f0_edit") or "").strip():
            own = speaker_of.get(row["source"].strip())
            exp = "resynthesis" if own is not None and own == row["target"].strip() else "vc"
        else:
            exp = EDIT_EXPERIMENTS.get(kind, "vc")
        refs = [str((base / r.strip()).resolve()) for r in (row.get("target_ref") or "").split(";")
                if r.strip()]
        entry = {k: v for k, v in row.items() if k not in ("_line", "target_ref")}
        entry.update(_line=row["_line"], **({"target_ref": refs} if refs else {}))
        by_exp.setdefault(exp, []).append(entry)
    label = label or system_row_label(system)
    root = out / _folder_name(label)
    plan = []
    for exp in ("resynthesis", "vc", "f0_flat", "f0_shift", "f0_scale"):
        rows = by_exp.get(exp)
        if not rows:
            continue
        if exp.startswith("f0_") and "f0" not in groups:
            log.warning("%s: %d %s rows left out (--metrics has no f0)", listing, len(rows), exp)
            continue
        derived = root / "lists" / f"{exp}.jsonl"
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if not derived.is_file() or derived.read_text(encoding="utf-8") != text:
            write_text_atomic(derived, text)
        plan.append(PlannedRun(system, label, exp, root / exp,
                               {**options, "conversions": str(derived)},
                               "f0" if exp.startswith("f0_") else metrics))
    return plan


@dataclass
class RunOutcome:
    planned: PlannedRun
    status: str                   # done | skipped
    reason: str = ""
    n_failed: int = 0
    n_total: int = 0


def execute(plan: list[PlannedRun], dataset: dict[str, Any], metric_options: dict, f0_preset,
            jobs: int = 1, progress: bool = True, vc_seed: int = 0, use_cache: bool = True,
            out=None) -> list[RunOutcome]:
    """Run (or resume) every planned run; a run that cannot start is skipped with its reason,
    the others go on. Ctrl-C stops at once (finished utterances are kept)."""
    from resyn_bench.registry import RegistryError
    from resyn_bench.runner import RunConfig, RunError, RunStopped, run

    out = out or sys.stdout
    outcomes = []
    for p in plan:
        config = RunConfig(system=p.system, out=str(p.out), metrics=p.metrics,
                           metric_options=metric_options, f0_preset=f0_preset,
                           system_options=p.system_options, experiment=p.experiment,
                           label=p.label, vc_targets=p.vc_targets, vc_seed=vc_seed, jobs=jobs,
                           use_cache=use_cache, **dataset)
        try:
            result = run(config, progress=progress)
        except RunStopped:
            raise
        except (RunError, RegistryError, TypeError, ValueError, OSError, ImportError, RuntimeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            print(f"{p.label} {p.experiment}: skipped ({reason})", file=out)
            outcomes.append(RunOutcome(p, "skipped", reason))
            continue
        print(f"{p.label} {p.experiment}: {result.n_processed} evaluated, {result.n_done_before} "
              f"already done, {result.n_failed} failed of {result.n_total} -> {p.out}", file=out)
        outcomes.append(RunOutcome(p, "done", n_failed=result.n_failed, n_total=result.n_total))
    return outcomes


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

#: the RunConfig fields disentangle sets on every run it makes (with its own defaults)
DISENTANGLE_RUN_OPTIONS = ("metrics", "metric_options", "f0_preset", "system_options",
                           "vc_targets", "vc_seed")


def configure_parser(p: argparse.ArgumentParser) -> None:
    from resyn_bench.cli.args import add_dataset_args
    from resyn_bench.cli.run_options import add_run_options

    p.epilog = EPILOG
    p.add_argument("--system", action="append", default=[], metavar="SPEC",
                   help="a speaker-conditioned system (repeatable), e.g. ckpt:DIR or a named "
                        "unit system")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN",
                   help="summarise these existing run folders instead of running systems "
                        "(grouped by row label; each run's role from its experiment: "
                        "resynthesis, vc, f0_flat, f0_shift, f0_scale)")
    p.add_argument("--conversions", metavar="LIST",
                   help="with one --system outputs:DIR: another tool's conversion list (the "
                        "columns of `resyn-bench run --conversions`); its rows are split by "
                        "experiment - f0_edit rows into f0_flat/f0_shift/f0_scale, rows whose "
                        "target is the source's own speaker into resynthesis, the others into "
                        "vc - and each part is run (--vc-targets, --shift, --scale do not apply)")
    p.add_argument("--label", action="append", default=[],
                   help="row label of each --system, in order (default: the system name)")
    add_dataset_args(p)
    p.set_defaults(dataset=None)
    for action in p._actions:    # --dataset is not needed with --runs
        if action.dest == "dataset":
            action.required = False
    p.add_argument("--out", help="root of the run folders (OUT/<label>/<experiment>); required "
                                 "with --system")
    p.add_argument("--report", help="folder for the summary tables and plots (default "
                                    "OUT/summary; with --runs: required)")
    # RunConfig's options (resyn_bench.run_config) with disentangle's defaults and help
    add_run_options(p, DISENTANGLE_RUN_OPTIONS,
                    defaults={"metrics": "asr,spk,f0", "metric_options": [], "system_options": [],
                              "vc_targets": 2, "vc_seed": 0},
                    helps={"metrics": "metric groups of the resynthesis and VC runs (default "
                                      "asr,spk,f0: content, speaker, F0; e.g. spk,f0 skips ASR)",
                           "metric_options": "metric option, e.g. -m asr.backend=whisper",
                           "f0_preset": "pitch extractor preset of the f0 group",
                           "system_options": "system option for every run, e.g. -o device=cuda",
                           "vc_targets": "target voices per utterance in the VC run (default 2; "
                                         "the paper: 5)",
                           "vc_seed": "seed of the target choice"})
    p.add_argument("--shift", type=float, default=2.0, metavar="SEMITONES",
                   help="requested F0 shift of the shift run (default +2)")
    p.add_argument("--scale", type=float, default=0.5, metavar="X",
                   help="requested F0 range factor of the scale run (default 0.5)")
    p.add_argument("--no-shift", dest="shift", action="store_const", const=None,
                   help="no shift run")
    p.add_argument("--no-scale", dest="scale", action="store_const", const=None,
                   help="no scale run")
    p.add_argument("--enroll-dataset", metavar="NAME",
                   help="cross-dataset conversion: enrol the speaker models (speaker ID, EER, "
                        "similarity) also from this dataset's real recordings, e.g. the voices "
                        "of a system trained on another corpus (-m spk.enroll_dataset=NAME)")
    p.add_argument("--enroll-root", metavar="DIR", help="data root of --enroll-dataset")
    p.add_argument("--enroll-split", metavar="FILE", help="split file of --enroll-dataset")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    add_run_options(p, ("jobs", "use_cache"), defaults=True,
                    helps={"jobs": "worker processes per run"})
    p.add_argument("--no-plots", dest="plots", action="store_false", help="no bar plots")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_command(args) -> int:
    from resyn_bench.cli.common import check_out_dir, metric_options_from_args
    from resyn_bench.reports import disentangle as summary

    if args.n_boot < 0:
        raise UsageError("--n-boot must be >= 0")
    if bool(args.system) == bool(args.runs):
        raise UsageError("give --system (run and summarise) or --runs (summarise existing run "
                         "folders), not both and not neither")
    if args.runs:
        if not args.report:
            raise UsageError("--runs needs --report FOLDER for the tables and plots")
        groups = summary.collect_runs(args.runs)
        report = Path(args.report)
    else:
        if not args.dataset:
            raise UsageError("--system needs --dataset (and usually --data-root)")
        if not args.out:
            raise UsageError("--system needs --out ROOT (the run folders go under it)")
        check_out_dir(args.out)
        if args.scale is not None and args.scale < 0:
            raise UsageError(f"--scale must be >= 0, got {args.scale:g}")
        out = Path(args.out)
        dataset = {"dataset": args.dataset, "data_root": args.data_root, "split": args.split,
                   "limit": args.limit, "dataset_options": dict(args.dataset_options)}
        if args.conversions:
            from resyn_bench.datasets import load_dataset

            if len(args.system) != 1 or len(args.label) > 1:
                raise UsageError("--conversions goes with exactly one --system outputs:DIR (and "
                                 "at most one --label)")
            utterances = load_dataset(args.dataset, args.data_root, args.split, args.limit,
                                      **dict(args.dataset_options)).utterances
            plan = plan_conversions(args.conversions, args.system[0], out, args.metrics,
                                    utterances, dict(args.system_options),
                                    args.label[0] if args.label else None)
        else:
            plan = plan_runs(args.system, out, args.metrics, args.vc_targets, args.shift,
                             args.scale, dict(args.system_options), args.label)
        metric_options = metric_options_from_args(args.metric_options)
        if args.enroll_dataset:
            metric_options.setdefault("spk", {}).update(
                {k: v for k, v in (("enroll_dataset", args.enroll_dataset),
                                   ("enroll_root", args.enroll_root),
                                   ("enroll_split", args.enroll_split)) if v is not None})
        elif args.enroll_root or args.enroll_split:
            raise UsageError("--enroll-root/--enroll-split need --enroll-dataset NAME")
        outcomes = execute(plan, dataset, metric_options,
                           args.f0_preset, jobs=args.jobs, progress=not args.quiet,
                           vc_seed=args.vc_seed, use_cache=args.use_cache)
        groups = {}
        for o in outcomes:
            if o.status == "done":
                groups.setdefault(o.planned.label, {})[o.planned.experiment] = o.planned.out
        report = Path(args.report) if args.report else out / "summary"
    check_out_dir(report, "--report")
    rows = summary.summarize(groups, n_boot=args.n_boot)
    if not args.runs:
        for o in outcomes:
            row = next((r for r in rows if r.label == o.planned.label), None)
            if o.status == "skipped":
                if row is None:
                    row = summary.DisentangleRow(o.planned.label)
                    rows.append(row)
                row.notes.append(f"{o.planned.experiment} run skipped: {o.reason}")
    paths = summary.write_outputs(rows, report, plots=args.plots)
    if args.json:
        import json

        print(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False))
    else:
        print()
        print(summary.render_text(rows), end="")
    for kind, path in paths.items():
        print(f"{kind + ':':24s}{path}")
    any_value = any(f.value is not None for r in rows for f in r.figures)
    return 0 if any_value else 3


__all__ = ["plan_runs", "plan_conversions", "execute", "PlannedRun", "RunOutcome", "configure_parser", "run_command"]
