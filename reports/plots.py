"""Report figures (matplotlib, Agg canvas; each saved as PNG and PDF) from run summaries.

Every plot function takes summaries (:class:`~resyn_bench.reports.collate.RunSummary`) and an
output *stem* (``plots/metric_bars`` -> ``metric_bars.png`` + ``metric_bars.pdf``) and returns the
paths written, or ``[]`` when the runs hold nothing to draw:

* :func:`plot_metric_bars`: one panel per metric, a bar per run with its 95 % CI;
* :func:`plot_quality_vs_bitrate`: a quality metric against transmitted bits/s (codec view);
* :func:`plot_f0_contours`: the reference F0 and every run's output F0 of one utterance, drawn
  from the contours the f0 group stored at scoring time (``extra.f0.contour`` of the records:
  the two tracks it compared, decimated to ~50 Hz); runs scored before contours were stored
  are re-analysed from their audio with a fast pitch preset, and the figure says so;
* :func:`plot_speaker_similarity`: voice conversion, mean cosine similarity of the output to the
  target speaker's centroid, source speaker x target speaker;
* :func:`plot_distributions`: per-utterance values of each metric, one box per run.

matplotlib is imported lazily and only its object API is used (``Figure`` + the Agg canvas), so
the global pyplot state of a caller is never touched. No torch, no model code.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.errors import MissingDependencyError
from resyn_bench.reports.collate import RunSummary
from resyn_bench.reports.labels import run_titles

log = logging.getLogger("resyn_bench.reports")

FORMATS = ("png", "pdf")
DPI = 100
#: metrics shown by default in bars / distributions (in this order, those present): the
#: paper's Table 1 columns and the intrusive quality metrics
DEFAULT_KEYS = ("asr.per", "asr.dper", "asr.wer", "asr.dwer", "f0.vde", "f0.ffe", "spk.eer",
                "spk.cos_centroid", "dnsmos.ovrl", "intrusive.pesq", "intrusive.mcd")


def new_figure(width: float, height: float):
    """A matplotlib Figure with an Agg canvas (no pyplot state), ``width`` x ``height`` inches."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError("plots need matplotlib: pip install matplotlib (or "
                          "pip install 'resyn-bench[reports]'), or pass --no-plots") from exc
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, stem: str | Path, tight: bool = True) -> list[Path]:
    """Write ``fig`` as ``stem.<fmt>`` for every format in :data:`FORMATS` (byte-stable
    metadata); returns the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if tight:   # multi-panel figures set their margins by hand: tight_layout costs ~1 s each
        fig.tight_layout()
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        # fixed metadata: the same runs give byte-stable PDFs (no creation date)
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        fig.savefig(path, format=fmt, metadata=meta)
        paths.append(path)
    return paths


def _mpl(text: str) -> str:
    """Text shown literally by matplotlib (a ``$`` would start mathtext)."""
    return str(text).replace("$", r"\$")


def _labels(summaries: Sequence[RunSummary]) -> list[str]:
    """Legend names: the report's one naming rule (labels.run_titles, as in the HTML)."""
    return [_mpl(title) for title in run_titles(summaries)]


def _scale(spec) -> float:
    return 100.0 if spec.percent else 1.0


def _axis_label(spec) -> str:
    unit = "%" if spec.percent else spec.unit
    return f"{spec.label}{f' ({unit})' if unit else ''} {spec.arrow}"


def _keys(summaries: Sequence[RunSummary], keys: Sequence[str] | None, per_utterance: bool = False
          ) -> list[str]:
    present = {k for s in summaries for k, m in s.metrics.items()
               if (m.mean is not None if per_utterance else m.value("auto") is not None)}
    if keys is not None:
        return [k for k in keys if k in present]
    return [k for k in DEFAULT_KEYS if k in present]


def _grid(n: int, cols: int = 3) -> tuple[int, int]:
    cols = min(cols, n)
    return math.ceil(n / cols), cols


def _panels(n_panels: int, labels: Sequence[str]):
    """A figure with a grid of ``n_panels`` axes and one legend row per ~3 runs at the bottom
    (runs are told apart by colour, not by rotated tick labels: far cheaper to lay out)."""
    rows, cols = _grid(n_panels)
    legend_rows = math.ceil(len(labels) / 3)
    height = 2.3 * rows + 0.18 * legend_rows + 0.3
    fig = new_figure(3.0 * cols, height)
    bottom = (0.18 * legend_rows + 0.3) / height
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.3 / height, bottom=bottom,
                        wspace=0.35, hspace=0.45)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return fig, axes, legend_rows


def _legend(fig, labels: Sequence[str]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=f"C{j % 10}", label=label) for j, label in enumerate(labels)]
    fig.legend(handles=handles, loc="lower center", ncol=min(3, len(labels)), fontsize=7,
               frameon=False)


def metric_bar_data(summaries: Sequence[RunSummary], key: str, stat: str = "auto"
                    ) -> tuple[list[float], list[float], list[float]]:
    """Per run: (value, distance down to the CI's low end, up to its high end) in display units
    (percent for percentages); NaN value / 0 distances where a run has no value or CI."""
    from resyn_bench.reports.tables import resolve_stat

    vals, lo, hi = [], [], []
    for s in summaries:
        m = s.metrics.get(key)
        v = ci = None
        if m is not None:
            use = resolve_stat(m.spec, stat)
            v, ci = m.value(use), m.ci(use)
        k = _scale(m.spec) if m is not None else 1.0
        vals.append(np.nan if v is None else v * k)
        ok = v is not None and ci is not None and ci.low is not None
        lo.append(max(0.0, (v - ci.low) * k) if ok else 0.0)
        hi.append(max(0.0, (ci.high - v) * k) if ok else 0.0)
    return vals, lo, hi


def plot_metric_bars(summaries: Sequence[RunSummary], stem: str | Path, keys: Sequence[str] | None = None,
                     stat: str = "auto") -> list[Path]:
    """A panel per metric, a bar per run (value with its 95 % CI as an error bar)."""
    keys = _keys(summaries, keys)
    if not keys:
        return []
    labels = _labels(summaries)
    fig, axes, _ = _panels(len(keys), labels)
    x = np.arange(len(summaries))
    for ax, key in zip(axes, keys, strict=True):
        spec = next(s.metrics[key].spec for s in summaries if key in s.metrics)
        vals, lo, hi = metric_bar_data(summaries, key, stat)
        err = [lo, hi]
        ax.bar(x, vals, yerr=np.array(err), capsize=3, color=[f"C{j % 10}" for j in x])
        ax.set_title(_axis_label(spec), fontsize=9)
        ax.set_xticks([])
        ax.tick_params(axis="y", labelsize=7)
    _legend(fig, labels)
    return save_figure(fig, stem, tight=False)


def plot_quality_vs_bitrate(summaries: Sequence[RunSummary], stem: str | Path,
                            key: str | None = None, stat: str = "auto") -> list[Path]:
    """Quality (default: DNSMOS OVRL, else PESQ, else the first metric present) against the
    transmitted bitrate, one point per run that has one (log-scaled bits/s)."""
    from resyn_bench.reports.tables import resolve_stat

    runs = [s for s in summaries if s.bitrate]
    if not runs:
        return []
    if key is None:
        for k in ("dnsmos.ovrl", "intrusive.pesq", "asr.wer", "f0.ffe"):
            if any(k in s.metrics for s in runs):
                key = k
                break
        else:
            return []
    spec = next((s.metrics[key].spec for s in runs if key in s.metrics), None)
    if spec is None:
        return []
    fig = new_figure(5.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    labels = _labels(summaries)
    for j, (s, label) in enumerate(zip(summaries, labels, strict=True)):   # colours as in the other plots
        if not s.bitrate:
            continue
        m = s.metrics.get(key)
        use = resolve_stat(spec, stat)
        v = m.value(use) if m is not None else None
        if v is None:
            continue
        k = _scale(spec)
        ci = m.ci(use)
        yerr = None
        if ci is not None and ci.low is not None:
            yerr = [[max(0.0, (v - ci.low) * k)], [max(0.0, (ci.high - v) * k)]]
        source = getattr(s, "bitrate_source", None)
        counted = source in ("measured", "declared")   # from the encoder's output: squares
        ax.errorbar([s.bitrate], [v * k], yerr=yerr, fmt="s" if counted else "o", capsize=3,
                    color=f"C{j % 10}", label=f"{label} ({source} bitrate)" if counted else label)
        ax.annotate(label, (s.bitrate, v * k), xytext=(4, 4), textcoords="offset points", fontsize=7)
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log")
    for axis in (ax.xaxis,):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="both", labelsize=7)
    ax.set_xlabel("bitrate (bits/s, log scale)")
    ax.set_ylabel(_axis_label(spec))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, stem)


def _audio_path(s: RunSummary, rec: dict[str, Any], which: str) -> Path | None:
    p = rec.get(f"{which}_path")
    if not p:
        return None
    path = Path(p)
    return path if path.is_absolute() else s.run_dir / path


def _f0(path: Path, preset: str):
    from resyn_bench.audio import load_audio
    from resyn_bench.dsp.pitch import extract_f0

    audio = load_audio(path)
    x = audio.samples if audio.samples.ndim == 1 else audio.samples.mean(axis=-1)
    return extract_f0(x, audio.sample_rate, preset)


def common_utterance(summaries: Sequence[RunSummary], with_contour: bool = False) -> str | None:
    """The first utterance id (sorted) that every run on the first run's data synthesised; with
    ``with_contour``, the first of those whose F0 contour every such run stored, when one has
    (else the first common one)."""
    if not summaries:
        return None
    key0 = summaries[0].dataset_key or summaries[0].dataset
    runs = [s for s in summaries if (s.dataset_key or s.dataset) == key0]
    ids = [{r["utt_id"] for r in s.records if r.get("status") in ("ok", "partial")} for s in runs]
    common = set.intersection(*ids)
    if with_contour and common:
        stored = set.intersection(*({r["utt_id"] for r in s.records if stored_contour(r)}
                                    for s in runs)) & common
        if stored:
            return min(stored)
    return min(common) if common else None


class Contour:
    """An F0 track to draw: frame ``times`` (s) and ``f0`` (Hz, 0 = unvoiced)."""

    def __init__(self, times: np.ndarray, f0: np.ndarray):
        self.times, self.f0 = times, f0


def stored_contour(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The f0 group's stored display contour of a record (``{"t0", "dt", "ref", "out"}``, see
    :func:`resyn_bench.metrics.f0.display_contour`), or None when the record has none (runs
    scored before contours were stored, f0 not scored, malformed)."""
    c = ((rec.get("extra") or {}).get("f0") or {}).get("contour")
    if not isinstance(c, dict) or not isinstance(c.get("ref"), list) \
            or not isinstance(c.get("out"), list) or len(c["ref"]) != len(c["out"]):
        return None
    return c


def _contour_track(c: dict[str, Any], side: str) -> Contour:
    f0 = np.array([np.nan if v is None else v for v in c[side]], dtype=np.float64)
    t0, dt = float(c.get("t0") or 0.0), float(c.get("dt") or 0.02)
    return Contour(t0 + dt * np.arange(f0.size), np.nan_to_num(f0, nan=0.0))


def stored_f0_contours(summaries: Sequence[RunSummary], utt_id: str
                       ) -> tuple[list[tuple[str, Contour, str]], list[str]]:
    """([(label, Contour, colour)], labels of runs without a stored contour) for ``utt_id``, from
    the records alone: the reference track of the first run that stored one, then each run's
    output track (aligned to that run's reference frames, as the f0 group compared them)."""
    lines: list[tuple[str, Contour, str]] = []
    missing: list[str] = []
    labels = _labels(summaries)
    for j, s in enumerate(summaries):
        rec = next((r for r in s.records if r["utt_id"] == utt_id
                    and r.get("status") in ("ok", "partial")), None)
        if rec is None:
            continue
        c = stored_contour(rec)
        if c is None:
            missing.append(labels[j])
            continue
        if not lines:
            lines.append(("reference", _contour_track(c, "ref"), "k"))
        lines.append((labels[j], _contour_track(c, "out"), f"C{j % 10}"))
    return lines, missing


def _f0_preset(summaries: Sequence[RunSummary]) -> str | None:
    for s in summaries:
        preset = (s.settings.get("f0") or {}).get("preset")
        if preset:
            return str(preset)
    return None


def f0_contours(summaries: Sequence[RunSummary], utt_id: str, preset: str = "dio"
                ) -> list[tuple[str, Any, str]]:
    """[(label, F0Track, colour)]: the reference (from the first run that has the utterance),
    then each run's output of ``utt_id``; files missing or unreadable are left out (logged)."""
    lines = []
    labels = _labels(summaries)
    for j, s in enumerate(summaries):
        rec = next((r for r in s.records if r["utt_id"] == utt_id
                    and r.get("status") in ("ok", "partial")), None)
        if rec is None:
            continue
        if not lines:
            ref = _audio_path(s, rec, "reference")
            if ref is not None and ref.exists():
                lines.append(("reference", ref, "k"))
        out = _audio_path(s, rec, "output")
        if out is not None and out.exists():
            lines.append((labels[j], out, f"C{j % 10}"))
    tracks = []
    for label, path, color in lines:
        try:
            tracks.append((label, _f0(path, preset), color))
        except Exception as exc:  # noqa: BLE001 - unreadable audio / failed analysis: drop the line
            log.warning("F0 contour of %s (%s) skipped: %s", label, path, exc)
    return tracks


def plot_f0_contours(summaries: Sequence[RunSummary], stem: str | Path, utt_id: str | None = None,
                     preset: str = "dio") -> list[Path]:
    """F0 of one utterance (default: :func:`common_utterance`, preferring one with stored
    contours) in the reference and in each run's output, drawn from the contours the f0 group
    stored in the records (no pitch analysis). When no run stored one (runs scored before
    contours were stored, or without the f0 group), the stored audio is re-analysed with
    ``preset`` instead, with a warning and a title that says so; audio missing on disk: that
    line is left out; nothing to draw: no file. Runs without a stored contour next to runs
    with one are left out, named in a warning and in the title."""
    utt_id = utt_id or common_utterance(summaries, with_contour=True)
    if utt_id is None:
        return []
    tracks, missing = stored_f0_contours(summaries, utt_id)
    if tracks:
        source = f"stored, {_f0_preset(summaries) or 'f0 group'}"
        if missing:
            log.warning("F0 contours of %s: no stored contour in %s (scored before contours "
                        "were stored, or without the f0 group); left out", utt_id,
                        ", ".join(missing))
            source += f"; {len(missing)} run(s) without a stored contour left out"
    else:
        tracks = f0_contours(summaries, utt_id, preset)
        if not tracks:
            return []
        log.warning("F0 contours of %s: the runs hold no stored contour (scored before contours "
                    "were stored, or without the f0 group); re-analysing their audio with the "
                    "%s preset", utt_id, preset)
        source = f"re-analysed from the audio, {preset}: the runs stored no contour"
    fig = new_figure(7.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for n, (label, track, color) in enumerate(tracks):
        f0 = np.where(track.f0 > 0, track.f0, np.nan)   # gaps where unvoiced
        ax.plot(track.times, f0, color=color, lw=1.6 if n == 0 else 1.0,
                ls="-" if n == 0 else "--", label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("F0 (Hz)")
    ax.set_title(_mpl(f"F0 contours: {utt_id} ({source})"), fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return save_figure(fig, stem)


def similarity_matrix(s: RunSummary, key: str = "spk.cos_centroid"
                      ) -> tuple[list[str], list[str], np.ndarray]:
    """(source speakers, target speakers, mean of ``key`` per pair; NaN where no utterance).
    The target is the speaker metric's trial target (``target_speaker`` of a VC utterance)."""
    sums: dict[tuple[str, str], list[float]] = {}
    for r in s.records:
        ev = (r.get("scores") or {}).get("spk") or {}
        v = (ev.get("values") or {}).get(key)
        if ev.get("status") != "ok" or v is None:
            continue
        target = (ev.get("extra") or {}).get("target") or r.get("target_speaker") or r.get("speaker")
        sums.setdefault((str(r.get("speaker")), str(target)), []).append(float(v))
    sources = sorted({a for a, _ in sums})
    targets = sorted({b for _, b in sums})
    mat = np.full((len(sources), len(targets)), np.nan)
    for (a, b), vals in sums.items():
        mat[sources.index(a), targets.index(b)] = float(np.mean(vals))
    return sources, targets, mat


def plot_speaker_similarity(summaries: Sequence[RunSummary], stem: str | Path,
                            key: str = "spk.cos_centroid") -> list[Path]:
    """One heat map per voice-conversion run (a run whose outputs have targets other than their
    source speaker): mean cosine similarity of output to target-speaker centroid."""
    panels = []
    for s, label in zip(summaries, _labels(summaries), strict=True):
        sources, targets, mat = similarity_matrix(s, key)
        if mat.size and (set(targets) - set(sources) or any(a != b for a in sources for b in targets
                                                             if not np.isnan(mat[sources.index(a), targets.index(b)]))):
            panels.append((label, sources, targets, mat))
    if not panels:
        return []
    rows, cols = _grid(len(panels), 2)
    side = max(max(len(p[1]), len(p[2])) for p in panels)
    size = min(12.0, 2.5 + 0.3 * side)
    fig = new_figure(size * cols, size * rows * 0.85)
    for i, (label, sources, targets, mat) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = ax.imshow(np.ma.masked_invalid(mat), cmap="viridis", vmin=np.nanmin(mat),
                       vmax=np.nanmax(mat), aspect="auto")
        fs = 7 if side <= 20 else 5
        ax.set_xticks(range(len(targets)), [_mpl(t) for t in targets], rotation=90, fontsize=fs)
        ax.set_yticks(range(len(sources)), [_mpl(t) for t in sources], fontsize=fs)
        ax.set_xlabel("target speaker")
        ax.set_ylabel("source speaker")
        ax.set_title(f"{label}: cosine to target centroid", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return save_figure(fig, stem)


def plot_distributions(summaries: Sequence[RunSummary], stem: str | Path,
                       keys: Sequence[str] | None = None) -> list[Path]:
    """Per-utterance values of each metric (those with per-utterance values), a box per run."""
    keys = _keys(summaries, keys, per_utterance=True)
    if not keys:
        return []
    labels = _labels(summaries)
    fig, axes, _ = _panels(len(keys), labels)
    for ax, key in zip(axes, keys, strict=True):
        spec = next(s.metrics[key].spec for s in summaries if key in s.metrics)
        k = _scale(spec)
        data, pos = [], []
        for j, s in enumerate(summaries):
            group = key.split(".", 1)[0]
            vals = [e["values"].get(key) for e in s.entries.get(group, [])]
            vals = np.array([v * k for v in vals if v is not None], dtype=float)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                data.append(vals)
                pos.append(j)
        if not data:
            continue
        parts = ax.boxplot(data, positions=pos, widths=0.6, showfliers=True, patch_artist=True,
                           flierprops={"markersize": 2}, medianprops={"color": "black"})
        for j, box in zip(pos, parts["boxes"], strict=True):
            box.set_facecolor(f"C{j % 10}")
        ax.set_xticks([])
        ax.set_title(_axis_label(spec), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    _legend(fig, labels)
    return save_figure(fig, stem, tight=False)


def write_plots(summaries: Sequence[RunSummary], out_dir: str | Path, f0_contours: bool = True
                ) -> list[Path]:
    """Every plot that has something to show, into ``out_dir`` (PNG + PDF each)."""
    out = Path(out_dir)
    written: list[Path] = []
    written += plot_metric_bars(summaries, out / "metric_bars")
    written += plot_distributions(summaries, out / "distributions")
    written += plot_quality_vs_bitrate(summaries, out / "quality_vs_bitrate")
    written += plot_speaker_similarity(summaries, out / "speaker_similarity")
    if f0_contours:
        written += plot_f0_contours(summaries, out / "f0_contours")
    return written
