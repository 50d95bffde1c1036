"""What a run says once for all its series about the tissue columns they lack.

Series without a (0008,0060) Modality, CT series not in Hounsfield units, CT options that
measure nothing on series not CT. A cohort of hundreds of series got each of these once per
series; a run now says each in one line naming how many series and the first `SHOWN_SERIES`
(`tissue_lines`), from what measuring found in each series (`SeriesTissue`, kept on the area
table so that a cohort says them for the series its writers measured, and each series'
``record.json`` keeps its Modality values and its own HU note: `recorded_tissue`, read by a
resumed run and by the merge, which says the cohort's lines once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sliceseg.io.dicom import Slice
from sliceseg.io.identity import series_key, slices_series_names, top_series_name
from sliceseg.measure.tissue import (
    CT_COLUMNS,
    TissueSettings,
    changed_options,
    hu_problem,
    is_ct,
    modality_values,
)
from sliceseg.wording import few_of

SHOWN_SERIES = 3
"""How many series a line of `tissue_lines` names before it counts the rest."""


class TissueWarning(UserWarning):
    """A line of `tissue_lines`: one a run (a cohort's writers silence their series' own and
    the run says it for them all)."""


@dataclass(frozen=True)
class SeriesTissue:
    """What measuring one series found that leaves tissue columns out (`tissue_lines`).

    Attributes:
        modality: its (0008,0060) Modality values (`modality_values`); none: no Modality.
        not_hu: `hu_problem`'s note when CT slices of it are not in HU, else "".
    """

    modality: tuple[str, ...] = ()
    not_hu: str = ""

    @property
    def is_noted(self) -> bool:
        """Whether a line of `tissue_lines` may name it (no Modality, not in HU, or not CT):
        the others add nothing to them, so a merge keeps only these."""
        return not self.modality or bool(self.not_hu) or not any(map(is_ct, self.modality))


def recorded_tissue(summary: Mapping[str, Any]) -> SeriesTissue | None:
    """A cohort series' `SeriesTissue` as its ``record.json`` summary keeps it (``modality``,
    ``not_hu``): the one reading of a resumed run and of the merge; None for a record written
    before sliceseg kept them."""
    modality = summary.get("modality")
    if not isinstance(modality, list):
        return None
    return SeriesTissue(tuple(map(str, modality)), str(summary.get("not_hu") or ""))


def series_tissue(
    images: Sequence[Slice], names: Sequence[str]
) -> tuple[dict[str, SeriesTissue], set[int]]:
    """Find what each series lacks of its tissue columns, one pass over the pixels.

    Args:
        images: the slices measured.
        names: the slices' keys, which name the series as the tables do.

    Returns:
        Per series name, in order of first appearance (the area table's series numbers), its
        `SeriesTissue`; and the positions of the slices not in HU (CT columns left empty).
    """
    groups: dict[str, list[int]] = {}
    for position, image in enumerate(images):
        groups.setdefault(series_key(image), []).append(position)
    top = [image.source.parent for image, key in zip(images, names, strict=True) if "/" not in key]
    root_name = top_series_name(top[0]) if top else "series"  # a top slice's key has no folder
    series = slices_series_names(images, names, root_name=root_name)
    found: dict[str, SeriesTissue] = {}
    not_hu: set[int] = set()
    for key, positions in groups.items():
        members = [images[i] for i in positions]
        problem = hu_problem(members)
        if problem is not None:
            not_hu.update(positions[i] for i in problem.slices)
        modality = modality_values(image.modality for image in members)
        found[series[key]] = SeriesTissue(modality, "" if problem is None else problem.note)
    return found, not_hu


def tissue_lines(
    series: Mapping[str, SeriesTissue], roi_names: Sequence[str], settings: TissueSettings
) -> list[str]:
    """Say once for a run which of its series lack tissue columns, and why.

    Args:
        series: per series name (in the tables' order), what measuring it found.
        roi_names: the ROIs measured (no muscle among them: no CT columns to miss).
        settings: the run's tissue settings; only those changed from the defaults are named.

    Returns:
        Up to three lines, each naming how many series and the first `SHOWN_SERIES`: those
        with no (0008,0060) Modality, those whose CT values are not Hounsfield units (said
        without muscles too: their intensity columns hold those values), and those not CT
        given CT options.

    Example:
        >>> tissue_lines({"p1": SeriesTissue(("MR",))}, ["psoas"], TissueSettings(adipose_hu=(-200, -40)))
        ['1 series is not CT (p1; Modality MR), so --adipose-hu (adipose_hu) -200 -40 measures nothing on it: ...']
    """  # noqa: E501
    has_muscle = any(map(settings.is_muscle, roi_names))
    no_modality = [name for name, found in series.items() if not found.modality and has_muscle]
    not_hu = {name: found.not_hu for name, found in series.items() if found.not_hu}
    lines = [
        _no_modality_line(no_modality),
        _not_hu_line(not_hu),
        _ct_options_line(series, settings) if has_muscle else "",
    ]
    return [line for line in lines if line]


def _no_modality_line(names: Sequence[str]) -> str:
    """`tissue_lines`' line on the series without (0008,0060) Modality ("" when none)."""
    if not names:
        return ""
    one = len(names) == 1
    its, it = ("its", "it is") if one else ("their", "they are")
    return (
        f"{len(names)} series {'has' if one else 'have'} no (0008,0060) Modality in {its} files "
        f"({_few(names)}), so {its} muscle ROIs get no CT columns ({', '.join(CT_COLUMNS)}); "
        f"if {it} CT, set Modality to CT in the files."
    )


def _not_hu_line(notes: Mapping[str, str]) -> str:
    """`tissue_lines`' line on the CT series not in HU: how many, the first few, and the first
    one's `hu_problem` note (what was found and what to do); "" when none."""
    if not notes:
        return ""
    names, one = list(notes), len(notes) == 1
    said = (
        f"{len(names)} CT series {'has' if one else 'have'} values that are not Hounsfield "
        f"units ({_few(names)})"
    )
    return f"{said}{':' if one else f'; the first, {names[0]}:'} {notes[names[0]]}"


def _ct_options_line(series: Mapping[str, SeriesTissue], settings: TissueSettings) -> str:
    """`tissue_lines`' line on CT options changed from the defaults while series are not CT
    (a series with no Modality, or with a CT slice, is not named); "" when none is such."""
    named = {
        name: found.modality
        for name, found in series.items()
        if found.modality and not any(map(is_ct, found.modality))
    }
    given = changed_options(settings, ("adipose_hu", "muscle_hu", "muscle_rois"))
    if not named or not given:
        return ""
    kinds = " and ".join(sorted({m for found in named.values() for m in found}))
    one = len(named) == 1
    return (
        f"{len(named)} series {'is' if one else 'are'} not CT ({_few(list(named))}; "
        f"Modality {kinds}), so {' and '.join(given)} measure{'s' * (len(given) == 1)} nothing "
        f"on {'it' if one else 'them'}: the CT columns ({', '.join(CT_COLUMNS)}) are for CT "
        "slices only."
    )


def _few(names: Sequence[str]) -> str:
    """``p1, p2, p3 and 8 more``: the first `SHOWN_SERIES` names (`few_of`)."""
    return few_of(list(names), shown=SHOWN_SERIES)
