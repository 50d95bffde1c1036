"""Is a series of the modality a model was trained on? Its (0008,0060) Modality, and CT's HU.

A model normalises intensities for the modality it was trained on (`model_space.intensity`):
a CT model clips and scales Hounsfield units, an MR model z-scores each slice. On another
modality its input means something else and its areas cannot be trusted, whatever they look
like. :func:`modality_reason` gives the reason a series is unlike the training data in this
respect (the caller adds it to the familiarity verdict, `inference.familiarity`):

- CT against not CT: the series' Modality values are compared with the training slices' as
  CT or not CT (an MR model on a series exported as "OT" is not flagged; a CT model on MR is);
- a model that expects HU (CT normalisation) checks that a CT series' values are HU, since
  a CT series whose RescaleSlope/Intercept were lost says CT but holds stored values: by the
  rule of the CT tissue columns (`sliceseg.measure.tissue.hu_problem`), a CT slice whose
  lowest value is above −50 HU (no air, no fat) is not in HU; a series with any such slice
  is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence

from sliceseg.io.dicom import Slice
from sliceseg.measure.tissue import hu_problem, is_ct, modality_values

__all__ = ["is_ct_only", "modality_reason"]

_UNTRUSTED = "its areas are not trustworthy"


def is_ct_only(modalities: Sequence[str]) -> bool:
    """True when there are Modality values and every one is CT (`is_ct`)."""
    return bool(modalities) and all(map(is_ct, modalities))


def modality_reason(
    slices: Sequence[Slice],
    trained: Sequence[str] | None,
    *,
    expects_hu: bool,
) -> str | None:
    """Why a series is not of the model's modality, as a verdict's phrase (None: it is).

    Args:
        slices: the series' slices, pixels in modality units (HU on CT).
        trained: the training slices' Modality values (`modality_values`); None or empty:
            unknown, so the series' Modality is not compared.
        expects_hu: the model normalises Hounsfield units (CT normalisation): the series'
            CT slices are checked to be in HU.

    Example:
        >>> modality_reason(mr_slices, ("CT",), expects_hu=True)  # doctest: +SKIP
        'its Modality is MR but the model was trained on CT: its areas are not trustworthy'
    """
    series = modality_values(s.modality for s in slices)
    if trained and series and not set(map(is_ct, series)) <= set(map(is_ct, trained)):
        return (
            f"its Modality is {', '.join(series)} but the model was trained on "
            f"{', '.join(trained)}: {_UNTRUSTED}"
        )
    problem = hu_problem(slices) if expects_hu else None
    if problem is None:
        return None
    return (
        f"{len(problem.slices)} of its {problem.ct_slices} CT slices are not in Hounsfield "
        f"units (lowest value {problem.lowest:g}; air is -1000 HU, fat about -100 HU) but the "
        f"model was trained on CT in HU (RescaleSlope/Intercept lost?): {_UNTRUSTED}"
    )
