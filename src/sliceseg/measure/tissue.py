"""Intensity statistics of each ROI in modality units, and CT muscle composition (IMAT, density).

Every ROI gets the mean, standard deviation and median of its pixels in modality units
((0028,1052) RescaleIntercept and (0028,1053) RescaleSlope applied: Hounsfield units on CT).
On CT ((0008,0060) Modality "CT") every muscle ROI also gets the thresholds of the L3
body-composition literature (Mitsiopoulos et al. 1998; Aubrey et al. 2014; Comp2Comp):

- ``imat_fraction``: the share of the ROI's pixels between −190 and −30 HU (intramuscular
  adipose tissue), and ``imat_mm2``, their area;
- ``muscle_radiodensity_hu``: the mean of the ROI's pixels between −29 and +150 HU (the muscle
  proper, without its fat).

An ROI is a muscle when its name holds a muscle word (:data:`MUSCLE_WORDS`: "psoas",
"multifidus", "erector", ...) unless `TissueSettings.muscle_rois` names them.

A CT slice whose lowest value is above :data:`HU_FAT_CEILING` (no rescale, or one that left
the stored values, such as RescaleIntercept 0) is not in HU, so its CT columns are left empty
(NaN) and `hu_problem` says why; a series without (0008,0060) Modality gets no CT columns at
all. A run says each of these once for all its series, as it does CT options that measure
nothing on series of another Modality (`sliceseg.measure.tissue_notes`). HU ranges changed
while no ROI is a muscle are refused (`check_muscle_rois`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sliceseg.errors import ConfigError, option_name
from sliceseg.io.dicom import Slice
from sliceseg.wording import few_of

MUSCLE_WORDS: tuple[str, ...] = (
    "muscle",
    "muscles",
    "psoas",
    "multifidus",
    "erector",
    "spinae",
    "paraspinal",
    "paravertebral",
    "quadratus",
    "lumborum",
    "rectus",
    "oblique",
    "obliques",
    "transversus",
    "abdominis",
    "iliacus",
    "iliopsoas",
    "gluteus",
    "latissimus",
    "longissimus",
    "iliocostalis",
    "skeletal",
)
"""Words (lower case, whole tokens of an ROI name) that make an ROI a muscle."""

CT_COLUMNS: tuple[str, ...] = ("imat_fraction", "imat_mm2", "muscle_radiodensity_hu")
"""Columns added for muscle ROIs on CT slices (NaN elsewhere)."""

HU_FAT_CEILING = -50.0
"""A CT slice in HU has air (−1000 HU) or at least fat (about −100 HU, lower with noise) below
this, even one cropped inside the body; stored values (air 0 or 24) never are."""

FLAGS: dict[str, str] = {
    "adipose_hu": "--adipose-hu",
    "muscle_hu": "--muscle-hu",
    "muscle_rois": "--muscle-rois",
}
"""The flag of `measure` and `predict` that sets each `TissueSettings` field."""


@dataclass(frozen=True)
class TissueSettings:
    """Thresholds of the CT muscle composition.

    Messages name a field by its flag and its name (``--adipose-hu (adipose_hu)``): the CLI and
    Python build it alike.

    Attributes:
        adipose_hu: (low, high) HU of intramuscular adipose tissue, both included.
        muscle_hu: (low, high) HU of muscle for the radiodensity, both included; it may not
            share a value with ``adipose_hu``, or a pixel would be fat and muscle at once.
        muscle_rois: names of the ROIs that are muscles (one string is one name); None finds
            them by name.

    Raises:
        ConfigError: a range has low ≥ high, or the two ranges overlap.
    """

    adipose_hu: tuple[float, float] = (-190.0, -30.0)
    muscle_hu: tuple[float, float] = (-29.0, 150.0)
    muscle_rois: tuple[str, ...] | str | None = None  # a str becomes a one-name tuple

    def __post_init__(self) -> None:
        for name in ("adipose_hu", "muscle_hu"):
            # a notebook's [-190, -30] is the default (-190.0, -30.0): `changed_options` sees it
            low, high = (float(v) for v in getattr(self, name))
            object.__setattr__(self, name, (low, high))
            if not low < high:
                raise ConfigError(
                    f"{_named(name)} must be LOW HIGH with LOW < HIGH, got {low:g} {high:g}; "
                    f"give e.g. {FLAGS[name]} {_range(getattr(TissueSettings, name))}."
                )
        (fat_low, fat_high), (muscle_low, muscle_high) = self.adipose_hu, self.muscle_hu
        shared = (max(fat_low, muscle_low), min(fat_high, muscle_high))
        if shared[0] <= shared[1]:  # both ranges include their ends
            raise ConfigError(
                f"{_named('adipose_hu')} {_range(self.adipose_hu)} and {_named('muscle_hu')} "
                f"{_range(self.muscle_hu)} overlap ({_range(shared, ' to ')} HU), so a pixel "
                "there would count as both fat and muscle; give ranges that do not overlap "
                f"(default {_range(TissueSettings.adipose_hu)} and "
                f"{_range(TissueSettings.muscle_hu)})."
            )
        if isinstance(self.muscle_rois, str):  # a notebook's "psoas" is one name, not letters
            object.__setattr__(self, "muscle_rois", (self.muscle_rois,))
        elif self.muscle_rois is not None:
            object.__setattr__(self, "muscle_rois", tuple(str(n) for n in self.muscle_rois))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TissueSettings:
        """The settings a record keeps as plain data (`dataclasses.asdict`: lists for tuples),
        the defaults for what it lacks (a record written before a field was added).

        Raises:
            ConfigError: a range as `TissueSettings` refuses it.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in (data or {}).items() if name in known})

    def is_muscle(self, roi_name: str) -> bool:
        """Whether an ROI is a muscle: named in ``muscle_rois``, else by a muscle word.

        Example:
            >>> TissueSettings().is_muscle("left psoas major"), TissueSettings().is_muscle("L3")
            (True, False)
        """
        if self.muscle_rois is not None:
            return roi_name in self.muscle_rois
        tokens = re.split(r"[^0-9a-z]+", roi_name.lower())
        return any(token in MUSCLE_WORDS for token in tokens)


def check_muscle_rois(settings: TissueSettings, roi_names: Sequence[str]) -> None:
    """Refuse `TissueSettings.muscle_rois` that name no measured ROI (``--muscle-rois``), and
    HU ranges changed from the defaults (``--adipose-hu``, ``--muscle-hu``) with no muscle ROI.

    Such a name would match nothing, and the muscle's CT columns would be missing unsaid; such
    ranges would measure nothing, as ``--matrix`` without ``--fov`` would change nothing.

    Raises:
        ConfigError: a name is not one of ``roi_names``, or changed ranges find no muscle;
            the message lists the ROIs.

    Example:
        >>> check_muscle_rois(TissueSettings(muscle_rois=("psoas",)), ["psoas", "disc"])
    """
    unknown = [name for name in settings.muscle_rois or () if name not in roi_names]
    if unknown:
        raise ConfigError(
            f"{_named('muscle_rois')}: {', '.join(map(repr, unknown))} "
            f"{'is not an ROI' if len(unknown) == 1 else 'are not ROIs'} of this run; its ROIs "
            f"are {', '.join(map(repr, roi_names))}: give their names exactly."
        )
    ranges = changed_options(settings, ("adipose_hu", "muscle_hu"))
    if ranges and not any(map(settings.is_muscle, roi_names)):  # like --matrix without --fov
        one = len(ranges) == 1
        raise ConfigError(
            f"{' and '.join(ranges)}: no ROI of this run is a muscle by its name "
            f"({', '.join(map(repr, roi_names))}), so {'it' if one else 'they'} would measure "
            f"nothing; name the muscles with {_named('muscle_rois')}, or leave "
            f"{'it' if one else 'them'} out."
        )


def changed_options(settings: TissueSettings, fields: Sequence[str]) -> list[str]:
    """The ``fields`` of ``settings`` changed from the defaults (the options a user gave), as
    messages name them: ``--adipose-hu (adipose_hu) -200 -40``, ``--muscle-rois (muscle_rois)``."""
    given = [name for name in fields if getattr(settings, name) != getattr(TissueSettings, name)]
    return [
        _named(name) + ("" if name == "muscle_rois" else f" {_range(getattr(settings, name))}")
        for name in given
    ]


def tissue_statistics(
    values: np.ndarray,
    *,
    roi_name: str,
    modality: str,
    pixel_mm2: float | None,
    settings: TissueSettings = TissueSettings(),
    is_hu: bool = True,
) -> dict[str, float]:
    """Return the intensity statistics of one ROI on one slice.

    Args:
        values: the ROI's pixel values in modality units (any shape; flattened).
        roi_name: the ROI's name (decides whether it is a muscle).
        modality: (0008,0060) Modality of the slice; "CT" adds the muscle composition.
        pixel_mm2: area of one pixel (row × column spacing), None when unknown.
        settings: the CT thresholds and which ROIs are muscles.
        is_hu: False when a CT slice's values are not HU (see `hu_problem`): its
            :data:`CT_COLUMNS` are NaN rather than wrong.

    Returns:
        ``mean_intensity``, ``std_intensity`` (of the pixels, ddof 0), ``median_intensity``
        (NaN for an empty ROI); on CT for a muscle also :data:`CT_COLUMNS`.

    Example:
        >>> tissue_statistics(np.array([-100.0, 50, 50, 50, 50]), roi_name="psoas",
        ...                   modality="CT", pixel_mm2=1.0)["imat_fraction"]
        0.2
    """
    pixels = np.asarray(values, dtype=np.float64).ravel()
    empty = pixels.size == 0
    stats = {
        "mean_intensity": np.nan if empty else float(pixels.mean()),
        "std_intensity": np.nan if empty else float(pixels.std()),
        "median_intensity": np.nan if empty else float(np.median(pixels)),
    }
    if is_ct(modality) and settings.is_muscle(roi_name):
        if is_hu:
            stats.update(_muscle_composition(pixels, pixel_mm2, settings))
        else:
            stats.update(dict.fromkeys(CT_COLUMNS, np.nan))
    return stats


def roi_tissue(
    image: Slice,
    mask: np.ndarray,
    roi_name: str,
    spacing_mm: tuple[float, float] | None,
    *,
    settings: TissueSettings = TissueSettings(),
    is_hu: bool = True,
) -> dict[str, float]:
    """Return :func:`tissue_statistics` of the pixels of ``image`` under ``mask``.

    Args:
        image: the slice (its pixels in modality units and its (0008,0060) Modality).
        mask: (rows, cols) boolean mask of the ROI on the slice's grid.
        roi_name: the ROI's name.
        spacing_mm: (row, col) spacing used for the areas, None when unknown.
        settings: the CT thresholds and which ROIs are muscles.
        is_hu: as for :func:`tissue_statistics`.
    """
    pixel_mm2 = None if spacing_mm is None else spacing_mm[0] * spacing_mm[1]
    return tissue_statistics(
        image.pixels[mask],
        roi_name=roi_name,
        modality=image.modality,
        pixel_mm2=pixel_mm2,
        settings=settings,
        is_hu=is_hu,
    )


@dataclass(frozen=True)
class HuProblem:
    """The CT slices of one series whose values cannot be Hounsfield units (`hu_problem`).

    Attributes:
        note: the sentence that says which, why and what to do.
        slices: their positions in the series given to `hu_problem`, in order.
        lowest: the lowest value of those slices.
        ct_slices: how many slices of the series are CT (`is_ct`).
    """

    note: str
    slices: tuple[int, ...]
    lowest: float
    ct_slices: int


def hu_problem(series: Sequence[Slice]) -> HuProblem | None:
    """Say which CT slices of a series cannot be in Hounsfield units, and why; None when all can.

    A slice cannot when its own lowest value is above :data:`HU_FAT_CEILING`: no air and no
    fat, so stored values, whether its file has no (0028,1052) RescaleIntercept / (0028,1053)
    RescaleSlope or one that leaves them as they are (an intercept of 0, or an empty one). The
    rule is per slice, so one file that lost its rescale among rescaled ones is found too; the
    note speaks of the series when every CT slice is such. Each slice's pixels are read once.

    Args:
        series: the slices of one series.

    Example:
        >>> hu_problem(read_series(Path("ct_without_rescale"))).note
        'CT without a rescale ... lowest value is 0 ...'
    """
    lowest = {i: float(s.pixels.min()) for i, s in enumerate(series) if is_ct(s.modality)}
    stored = [i for i, low in lowest.items() if low > HU_FAT_CEILING]
    if not stored:
        return None
    slices, low = [series[i] for i in stored], min(lowest[i] for i in stored)
    if len(stored) == len(lowest):
        note = _series_not_hu(slices, low)
    else:
        note = _slices_not_hu(slices, low, len(lowest))
    return HuProblem(note=note, slices=tuple(stored), lowest=low, ct_slices=len(lowest))


def _series_not_hu(ct: Sequence[Slice], lowest: float) -> str:
    """`hu_problem`'s sentence when no CT slice of the series is in HU."""
    columns = f"its CT columns ({', '.join(CT_COLUMNS)}) are left empty"
    if all(s.modality_lut == "none" for s in ct):
        return (
            "CT without (0028,1052) RescaleIntercept / (0028,1053) RescaleSlope whose lowest "
            f"value is {lowest:g} (air is -1000 HU), so its values are not Hounsfield units: "
            f"its intensity columns hold stored values and {columns}; export the series again "
            "with its rescale."
        )
    applied = sorted({_APPLIED[s.modality_lut] for s in ct if s.modality_lut in _APPLIED})
    return (
        f"CT whose lowest value{' after ' if applied else ''}{' and '.join(applied)} is "
        f"{lowest:g} (air is -1000 HU, fat about -100 HU), so its values are not Hounsfield "
        f"units: its intensity columns hold these values and {columns}; export the series "
        "again with its scanner's rescale (stored values from 0 usually take RescaleIntercept "
        "-1024)."
    )


def _slices_not_hu(bad: Sequence[Slice], lowest: float, ct_count: int) -> str:
    """`hu_problem`'s sentence when some CT slices of the series are in HU and ``bad`` are not."""
    one = len(bad) == 1
    names = few_of(
        [s.source.name + (f" frame {s.frame}" if s.num_frames > 1 else "") for s in bad], shown=5
    )
    applied = sorted({_APPLIED[s.modality_lut] for s in bad if s.modality_lut in _APPLIED})
    how = (
        f"a lowest value of {lowest:g} after {' and '.join(applied)}"
        if applied
        else f"no (0028,1052) RescaleIntercept / (0028,1053) RescaleSlope and a lowest value of "
        f"{lowest:g}"
    )
    its = "its" if one else "their"
    return (
        f"{len(bad)} of its {ct_count} CT slices ({names}) {'has' if one else 'have'} {how} "
        "(air is -1000 HU, fat about -100 HU) while the others reach air or fat, so "
        f"{its} values are not Hounsfield units: {its} intensity columns hold these values and "
        f"{its} CT columns ({', '.join(CT_COLUMNS)}) are left empty; export "
        f"{'that file' if one else 'those files'} again with the rescale of the other slices."
    )


def modality_values(modalities: Iterable[str]) -> tuple[str, ...]:
    """The distinct (0008,0060) Modality values, upper-cased and sorted; blanks left out: the
    one reading of a series' or the training slices' Modality.

    Example:
        >>> modality_values(["ct", "CT ", "", "MR"])
        ('CT', 'MR')
    """
    return tuple(sorted({m.strip().upper() for m in modalities} - {""}))


_APPLIED = {
    "rescale": "(0028,1052) RescaleIntercept / (0028,1053) RescaleSlope",
    "lut": "(0028,3000) ModalityLUTSequence",
}
"""`Slice.modality_lut` kinds that turn stored values into HU, as `hu_problem` names them."""


def is_ct(modality: str) -> bool:
    """True when a (0008,0060) Modality value says CT, case and padding aside: the one test of
    the CT columns, `hu_problem`, the CT display window, the CT normalisation's "auto" and the
    modality check.

    Example:
        >>> is_ct(" ct"), is_ct("MR"), is_ct("")
        (True, False, False)
    """
    return modality.strip().upper() == "CT"


def _named(field: str) -> str:
    """A `TissueSettings` field as a message names it: ``--adipose-hu (adipose_hu)``."""
    return option_name(FLAGS[field], field)


def _range(values: tuple[float, float], between: str = " ") -> str:
    """``-190 -30`` as the flag takes it (or ``-30`` when both ends are one value)."""
    low, high = values
    return f"{low:g}" if low == high else f"{low:g}{between}{high:g}"


def _muscle_composition(
    hu: np.ndarray, pixel_mm2: float | None, settings: TissueSettings
) -> dict[str, float]:
    low, high = settings.adipose_hu
    adipose = int(np.count_nonzero((hu >= low) & (hu <= high)))
    low, high = settings.muscle_hu
    muscle = hu[(hu >= low) & (hu <= high)]
    return {
        "imat_fraction": adipose / hu.size if hu.size else np.nan,
        "imat_mm2": np.nan if pixel_mm2 is None else adipose * pixel_mm2,
        "muscle_radiodensity_hu": float(muscle.mean()) if muscle.size else np.nan,
    }
