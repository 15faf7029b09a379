"""What a finished ``resyn-bench run`` tells the console, and its exit status.

A run goes on past failures (each is recorded with its stage and reason), so the end of the
run must say how many utterances failed and why, and the command must fail when the numbers
cannot be trusted:

* exit 0: something was scored and at most ``--max-failed`` of the utterances failed;
* exit 3 (:data:`EXIT_FAILED`): nothing was scored, or more than ``--max-failed`` of the
  utterances failed - in synthesis, in every metric, in any one metric group, or because the
  split file names them but the dataset does not have them.

Default ``--max-failed`` is 0.1 (:data:`DEFAULT_MAX_FAILED`): past 10 % the averages describe
a subset chosen by what failed (failures are rarely random: the longest, noisiest or oddest
utterances), so the row is no longer comparable with other systems' rows, while the few
unreadable or too-short files of a real corpus stay well below it. An all-failed run is always
an error.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

EXIT_FAILED = 3
DEFAULT_MAX_FAILED = 0.1

_PATH = re.compile(r"(?:[A-Za-z]:)?[\w.~+-]*(?:/[\w.~+{}-]+)+/?")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?")


def reason_class(reason: str | None, utt_id: str = "") -> str:
    """A failure reason with its utterance-specific parts (id, paths, numbers) masked, so that
    equal causes count together."""
    text = str(reason or "no reason recorded")
    text = _PATH.sub("<path>", text)
    if utt_id:
        text = text.replace(utt_id, "<utt>")
    text = _NUMBER.sub("N", text)
    text = re.sub(r"(<path>)(, <path>)+", r"\1, ...", text)
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass
class Outcome:
    n_total: int                    # utterances the run was asked for (work list)
    n_scored: int                   # utterances with at least one metric value
    n_failed: int                   # utterances with status failed (no number at all)
    n_incomplete: int               # synthesized, some group not scored yet (interrupted?)
    n_not_synthesized: int          # no output stored (score-only runs)
    split_missing: int              # split entries the dataset does not have
    split_examples: list[str] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)          # "where: reason" -> count
    examples: dict[str, str] = field(default_factory=dict)    # "where: reason" -> an utterance
    group_failed: dict[str, int] = field(default_factory=dict)  # group -> utterances failed
    group_skipped: dict[str, int] = field(default_factory=dict)

    @property
    def failed_fraction(self) -> float:
        """The worst of: utterances failed (split entries missing count as failed) and the
        utterances any one metric group failed on."""
        denominator = self.n_total + self.split_missing
        if denominator == 0:
            return 0.0
        worst = self.n_failed + self.split_missing
        if self.n_total:
            worst = max([worst] + [n for n in self.group_failed.values()])
        return worst / denominator

    def verdict(self, max_failed: float = DEFAULT_MAX_FAILED) -> str | None:
        """None if the run counts as a success, else why it does not."""
        if self.n_total + self.split_missing == 0:
            return "the run had no utterances"
        if self.n_scored == 0:
            return "nothing was scored"
        if self.failed_fraction > max_failed:
            return (f"{self.failed_fraction:.0%} of the utterances failed, more than "
                    f"--max-failed {max_failed:g}")
        return None

    def lines(self, top: int = 5) -> list[str]:
        out = []
        failed = self.n_failed + sum(self.group_failed.values()) + self.split_missing
        if failed == 0 and not self.n_incomplete and not self.n_not_synthesized:
            out.append(f"all {self.n_total} utterances scored")
        else:
            out.append(f"{self.n_scored} of {self.n_total} utterances scored, {self.n_failed} "
                       f"failed outright" + (f", {self.n_incomplete} not fully scored yet"
                                             if self.n_incomplete else ""))
        if self.split_missing:
            shown = ", ".join(self.split_examples[:3])
            out.append(f"  {self.split_missing} entries of the split file are not in the dataset "
                       f"(e.g. {shown}); they count as failed")
        if self.n_not_synthesized:
            out.append(f"  {self.n_not_synthesized} utterances have no stored output (run "
                       "`resyn-bench run` with the same --out to make them)")
        for group, n in self.group_failed.items():
            if n:
                out.append(f"  metric group {group} failed on {n} utterances")
        for group, n in self.group_skipped.items():
            if n:
                out.append(f"  metric group {group} skipped {n} utterances (not applicable)")
        if self.reasons:
            out.append("top failure reasons:")
            for reason, n in self.reasons.most_common(top):
                out.append(f"  {n:5d} x {reason} (e.g. {self.examples[reason]})")
            rest = len(self.reasons) - top
            if rest > 0:
                out.append(f"  ... and {rest} other reasons (see `resyn-bench summary RUN --utterances`)")
        return out


def assess(records: dict[str, dict[str, Any]], work_ids: list[str],
           dataset_info: dict[str, Any] | None = None) -> Outcome:
    """Count the failures of a run's merged records (``RecordStore.load``) over its work list."""
    info = dataset_info or {}
    missing = info.get("split_missing") or {}
    outcome = Outcome(n_total=len(work_ids), n_scored=0, n_failed=0, n_incomplete=0,
                      n_not_synthesized=0, split_missing=int(missing.get("count") or 0),
                      split_examples=list(missing.get("first") or []))

    def note(where: str, reason: Any, utt_id: str) -> None:
        key = f"{where}: {reason_class(reason, utt_id)}"
        outcome.reasons[key] += 1
        outcome.examples.setdefault(key, utt_id)

    for uid in work_ids:
        rec = records.get(uid)
        if rec is None or (rec.get("status") == "incomplete" and "stage" not in rec
                           and "output_path" not in rec):
            outcome.n_not_synthesized += 1
            continue
        if rec.get("metrics"):
            outcome.n_scored += 1
        status = rec.get("status")
        if status == "failed":
            outcome.n_failed += 1
        elif status == "incomplete":
            outcome.n_incomplete += 1
        stage = rec.get("stage")
        if status == "failed" and stage and stage != "metrics":
            kind = rec.get("error_kind")
            note(stage, f"{kind}: {rec.get('reason')}" if kind else rec.get("reason"), uid)
        for group, reason in (rec.get("errors") or {}).items():
            outcome.group_failed[group] = outcome.group_failed.get(group, 0) + 1
            note(f"metric {group}", reason, uid)
        for group in (rec.get("skipped") or {}):
            outcome.group_skipped[group] = outcome.group_skipped.get(group, 0) + 1
    return outcome
