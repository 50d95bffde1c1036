"""The failure benchmark's tables (issue 21): markdown from the JSON ``bench/failures.py`` writes.

Usage::

    python bench/failures_tables.py spine.json [more.json ...]

Per file, per strength: the slices that failed, the AUROC of the reported confidence (`TODAY`)
for "failed" and "degraded", the series warning's hits per kind and its false alarms on the
clean series, and the clean-set Spearman ρ; then the other uncertainties' AUROCs.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

CONFIDENCE = "confidence (1 − least confident ROI's)"
"""The uncertainty `predict` reports (its slice confidence), as `failures.py` names it."""
TODAY = (CONFIDENCE, "today (1 − mean soft Dice)")
"""Its name in the JSON files: since session 10, and before (the mean over ROIs then used)."""
WRONG = ("contrast", "fov", "level")
"""The kinds the goal asks the warning to catch: degraded contrast and wrong region."""


def _number(value: float) -> str:
    return (
        "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
    )


def _hits(series: dict) -> tuple[int, int]:
    flags = [item["flagged"] for item in series.values()]
    return sum(bool(f) for f in flags), len(flags)


def summary_table(result: dict) -> str:
    """The main table: one row per strength."""
    kinds = result.get("kinds") or list(next(iter(result["strengths"].values()))["series"])
    clean_hits, clean_n = _hits(result["clean_series"])
    head = (
        "| strength | failed (degraded / clean slices) | AUROC failed | AUROC degraded | "
        + " | ".join(kinds)
        + " | contrast + wrong region | false alarms (clean series) | clean ρ |"
    )
    lines = [head, "|" + "---|" * (len(kinds) + 7)]
    for strength, data in result["strengths"].items():
        slices, series = data["slices"], data["series"]
        score = next(slices["scores"][name] for name in TODAY if name in slices["scores"])
        hits = [_hits(series[k]) for k in kinds]
        wrong = [_hits(series[k]) for k in WRONG if k in series]
        caught, total = sum(h for h, _ in wrong), sum(n for _, n in wrong)
        lines.append(
            f"| {strength} | {slices['n_failed_degraded']}/{slices['n_degraded']} / "
            f"{slices['n_failed_clean']}/{slices['n'] - slices['n_degraded']} | "
            f"{_number(score['auroc_failed'])} | {_number(score['auroc_degraded'])} | "
            + " | ".join(f"{h}/{n}" for h, n in hits)
            + f" | {caught}/{total} | {clean_hits}/{clean_n} | {_number(score['spearman_clean'])} |"
        )
    return "\n".join(lines)


def scores_table(result: dict) -> str:
    """Every uncertainty's AUROCs per strength, and its clean ρ."""
    strengths = list(result["strengths"])
    names = list(result["strengths"][strengths[0]]["slices"]["scores"])
    head = "| uncertainty | " + " | ".join(f"{s}: failed | {s}: degraded" for s in strengths)
    lines = [head + " | clean ρ |", "|" + "---|" * (2 * len(strengths) + 2)]
    for name in names:
        cells = []
        for strength in strengths:
            score = result["strengths"][strength]["slices"]["scores"][name]
            cells += [_number(score["auroc_failed"]), _number(score["auroc_degraded"])]
        rho = result["strengths"][strengths[0]]["slices"]["scores"][name]["spearman_clean"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_number(rho)} |")
    return "\n".join(lines)


def reasons(result: dict) -> str:
    """Why the clean series were flagged, and the failures per kind."""
    lines = []
    for name, item in result["clean_series"].items():
        if item["flagged"]:
            lines.append(f"- clean {name}: " + "; ".join(item["reasons"]))
    for strength, data in result["strengths"].items():
        by_kind = data["slices"]["failed_by_kind"]
        lines.append(
            f"- {strength} failed slices per kind: "
            + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in by_kind.items())
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the tables of each JSON file given."""
    for path in map(Path, argv if argv is not None else sys.argv[1:]):
        result = json.loads(path.read_text())
        print(f"### {path.name} ({result.get('data', '?')}, {result.get('seconds', 0):.0f} s)\n")
        print(summary_table(result) + "\n\n" + scores_table(result) + "\n\n" + reasons(result))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
