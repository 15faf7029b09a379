"""What a report calls a run: one rule for the tables, the HTML report, the plots and the
disentanglement and codec studies.

* :func:`run_label` - the label of a run from its manifest: ``config.label`` (``run --label``)
  if set, else the system name with its options (``world (f0_method=dio)``), with a path spec
  shortened to its folder (``outputs:/x/hifigan_gen`` -> ``hifigan_gen``, ``ckpt:./runs/v7`` ->
  ``ckpt:v7``). ``report --rename`` replaces it in a summary (:func:`summary_label`).
* :func:`run_names` - the name of each run in one report, where dataset and experiment have
  columns of their own (table rows, the HTML table): the label, plus the run folder's name in
  brackets when another run of the same data and experiment carries the same label.
* :func:`run_titles` - the same name where no column says the data or the experiment (plot
  legends, the HTML report's charts and lists): prefixed by the dataset when the report spans
  several, followed by the experiment when it is not resynthesis.

Pure functions of manifests and summaries: no torch, no matplotlib.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resyn_bench.runfiles import Manifest

__all__ = ["run_label", "path_system_label", "summary_label", "run_names", "run_titles"]


def path_system_label(system: str) -> str | None:
    """Short name of a ``NAME:PATH`` system spec (``outputs:/x/y/hifigan_gen`` ->
    ``hifigan_gen``, ``ckpt:/x/run7/`` -> ``ckpt:run7``); None for other specs."""
    name, sep, arg = system.partition(":")
    if not sep or not arg or ("/" not in arg and "\\" not in arg and not arg.startswith(".")):
        return None
    folder = Path(arg.rstrip("/\\")).name or arg
    return folder if name == "outputs" else f"{name}:{folder}"


def run_label(manifest: Manifest | dict[str, Any]) -> str:
    """The label of a run: ``config.label`` if set, else the system name with its options
    (``world (f0_method=dio)``) so two settings of one system stay apart."""
    cfg = manifest.config.data if isinstance(manifest, Manifest) else manifest.get("config", {})
    if cfg.get("label"):
        return str(cfg["label"])
    opts = cfg.get("system_options") or {}
    name = str(cfg.get("system"))
    short = path_system_label(name)
    if short is not None:
        # outputs:DIR -> the folder's name (other NAME:PATH systems -> NAME:folder); the
        # file-name pattern and the full path stay in the manifest, not in the row name
        name, opts = short, {k: v for k, v in opts.items() if k != "pattern"}
    if not opts:
        return name
    return f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(opts.items()))})"


def summary_label(summary) -> str:
    """The label of a collated run (``run_label``, or its ``--rename``), else its system."""
    return getattr(summary, "system_label", "") or summary.system


def _data_key(summary) -> str:
    return getattr(summary, "dataset_key", "") or summary.dataset


def run_names(summaries: Sequence[Any]) -> list[str]:
    """Each run's name in a report whose rows also show dataset and experiment: its label,
    and ``[run folder]`` after it when another run of the same data and experiment has the
    same label."""
    labels = [summary_label(s) for s in summaries]
    keys = [(_data_key(s), s.experiment, label) for s, label in zip(summaries, labels, strict=True)]
    count = Counter(keys)
    return [f"{label} [{s.run_dir.name}]" if count[k] > 1 else label
            for s, label, k in zip(summaries, labels, keys, strict=True)]


def run_titles(summaries: Sequence[Any]) -> list[str]:
    """Each run's name where nothing else shows its data or experiment: :func:`run_names`,
    prefixed by ``dataset/`` when the report spans several datasets and followed by
    ``(experiment)`` when that is not resynthesis."""
    several = len({s.dataset for s in summaries}) > 1
    out = []
    for s, name in zip(summaries, run_names(summaries), strict=True):
        if s.experiment != "resynthesis":
            name += f" ({s.experiment})"
        out.append(f"{s.dataset}/{name}" if several else name)
    return out
