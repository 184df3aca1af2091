"""What a reader found: problems with item ids, skipped items, rows left out by design, counts.

Every reader returns ``(DatasetDict, DataReport)``. Nothing a reader drops goes unrecorded: a row
with bad input is a :class:`Problem` (``skipped=True`` when ``skip_bad`` let the reader go on), and
a row left out on purpose by the chosen setting (IEMOCAP "xxx" labels, MOSI zeros in the
zero-excluded binary setting) is counted in ``DataReport.excluded`` with its reason.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


class HCAMDataError(ValueError):
    """Bad input data: the message names the items and says what to do."""


@dataclass
class Problem:
    """One problem with one item.

    Args:
        item: id of the item, e.g. ``"train/train_dia3_utt4"`` or ``"train.csv:12"``.
        kind: short machine-readable kind: ``missing_audio``, ``corrupt_audio``, ``empty_audio``,
            ``silent_audio``, ``unknown_label``, ``empty_text``, ``duplicate_id``, ``bad_row``,
            ``bad_turn``, ``missing_transcript``, ``unknown_split``.
        message: what is wrong and what to do.
        split: the split the item belongs to, when known.
        skipped: True when the item was left out of the dataset.
    """

    item: str
    kind: str
    message: str
    split: str | None = None
    skipped: bool = False

    def __str__(self) -> str:
        return f"[{self.kind}] {self.item}{' (skipped)' if self.skipped else ''}: {self.message}"


@dataclass
class DataReport:
    """Problems, exclusions and statistics of one dataset read.

    ``counts``/``durations``/``speakers``/``dialogues`` are filled by :meth:`fill_stats` from the
    final DatasetDict, so they describe what a trainer will actually see.
    """

    dataset: str = ""
    corpus: str = ""
    setting: str | None = None
    protocol: str = ""
    labels: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    durations: dict[str, dict[str, float]] = field(default_factory=dict)
    speakers: dict[str, int] = field(default_factory=dict)
    dialogues: dict[str, int] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------------
    def add_problem(self, item: str, kind: str, message: str, split: str | None = None,
                    skipped: bool = False) -> Problem:
        problem = Problem(item=item, kind=kind, message=message, split=split, skipped=skipped)
        self.problems.append(problem)
        return problem

    def exclude(self, reason: str, n: int = 1) -> None:
        """Count rows left out on purpose (not a problem), keyed by a readable reason."""
        self.excluded[reason] = self.excluded.get(reason, 0) + n

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def merge(self, other: "DataReport") -> None:
        self.problems.extend(other.problems)
        for reason, n in other.excluded.items():
            self.exclude(reason, n)
        for text in other.notes:
            self.note(text)

    def fill_stats(self, dataset_dict) -> None:
        """Count rows per split and label, durations, speakers and dialogues of a DatasetDict."""
        for split, ds in dataset_dict.items():
            labels = ds["label"]
            self.counts[split] = dict(sorted(Counter(labels).items()))
            self.speakers[split] = len(set(ds["speaker"]))
            self.dialogues[split] = len(set(ds["dialogue_id"]))
            if "duration" in ds.column_names:
                known = [d for d in ds["duration"] if d is not None and not math.isnan(d) and d >= 0]
                if known:
                    self.durations[split] = {
                        "total_hours": round(sum(known) / 3600.0, 4),
                        "mean_s": round(sum(known) / len(known), 3),
                        "min_s": round(min(known), 3),
                        "max_s": round(max(known), 3),
                        "known": len(known),
                        "unknown": len(labels) - len(known),
                    }

    # -- reading ----------------------------------------------------------------------------
    @property
    def skipped(self) -> list[Problem]:
        return [p for p in self.problems if p.skipped]

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path=None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataReport":
        data = dict(data)
        data["problems"] = [Problem(**p) for p in data.get("problems", [])]
        return cls(**data)

    def format(self, max_problems: int | None = None) -> str:
        lines = [f"Dataset: {self.dataset or '?'}"]
        if self.protocol:
            lines.append(f"  protocol: {self.protocol}")
        if self.labels:
            lines.append(f"  labels (id order): {', '.join(self.labels)}")
        for split, per_label in self.counts.items():
            total = sum(per_label.values())
            lines.append(f"  {split}: {total} utterances, {self.dialogues.get(split, 0)} dialogues, "
                         f"{self.speakers.get(split, 0)} speakers")
            for label, n in per_label.items():
                share = 100.0 * n / total if total else 0.0
                lines.append(f"      {label:<20} {n:>7}  ({share:5.1f}%)")
            if split in self.durations:
                d = self.durations[split]
                lines.append(f"      duration: {d['total_hours']:.3f} h total, mean {d['mean_s']:.2f} s, "
                             f"min {d['min_s']:.2f} s, max {d['max_s']:.2f} s"
                             + (f", unknown for {d['unknown']}" if d.get("unknown") else ""))
        for text in self.notes:
            lines.append(f"  note: {text}")
        for reason, n in self.excluded.items():
            lines.append(f"  excluded by design: {n} ({reason})")
        if not self.problems:
            lines.append("Problems: none")
        else:
            by_kind = ", ".join(f"{k}: {n}" for k, n in self.problem_counts().items())
            lines.append(f"Problems: {len(self.problems)} ({by_kind}); skipped items: {len(self.skipped)}")
            shown = self.problems if max_problems is None else self.problems[:max_problems]
            lines.extend(f"  {p}" for p in shown)
            if len(shown) < len(self.problems):
                lines.append(f"  ... and {len(self.problems) - len(shown)} more (see the JSON report)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format(max_problems=50)


def raise_or_skip(problems: list[Problem], report: DataReport, skip_bad: bool, what: str = "") -> None:
    """With ``skip_bad`` record the problems as skipped; otherwise raise one error listing them."""
    if not problems:
        return
    if skip_bad:
        for p in problems:
            p.skipped = True
        report.problems.extend(problems)
        return
    shown = "\n".join(f"  {p}" for p in problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise HCAMDataError(
        f"{len(problems)} bad item(s){' in ' + what if what else ''}:\n{shown}{more}\n"
        "Fix these items, or leave them out and have them listed in the data report: --skip_bad on the command "
        "line (skip_bad=True in Python; the default of both)."
    )
