"""The spacing a slice's areas are measured with: its own, else the user's ``--fov`` /
``--matrix`` (`SpacingFallback`), else pixel counts (``--pixels``), else a refusal naming the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import USER_OVER_MALFORMED_SOURCE, USER_SPACING_SOURCE, Slice
from sliceseg.io.dicom_headers import FILM_SPACING_SOURCE, MALFORMED_SPACING_SOURCE
from sliceseg.io.ultrasound_regions import ULTRASOUND_DISAGREE_SOURCE, ULTRASOUND_NOT_CM_SOURCE


@dataclass(frozen=True)
class SpacingFallback:
    """Spacing for files without (0028,0030) PixelSpacing, from the user manual's FOV / matrix.

    Attributes:
        fov_mm: field of view (rows mm, columns mm); one number means a square FOV.
        matrix: acquisition matrix (rows, columns); None means the image's own shape.
        pixels_only: measure in pixels instead when no spacing is known.
    """

    fov_mm: tuple[float, float] | None = None
    matrix: tuple[int, int] | None = None
    pixels_only: bool = False

    def __post_init__(self) -> None:
        if self.fov_mm is not None:  # one number (or a 1-tuple): a square FOV, as --fov MM
            fov = (self.fov_mm,) if isinstance(self.fov_mm, int | float) else tuple(self.fov_mm)
            if len(fov) not in (1, 2):
                raise ConfigError(
                    f"--fov (fov_mm) takes one or two numbers (rows mm [cols mm]), got {len(fov)}: "
                    f"{' '.join(f'{v:g}' for v in fov)}; give e.g. 240 or (240, 180)."
                )
            object.__setattr__(self, "fov_mm", (float(fov[0]), float(fov[-1])))
        if self.fov_mm is not None and any(v <= 0 for v in self.fov_mm):
            raise ConfigError(f"--fov (fov_mm) must be positive millimetres, got {self.fov_mm}.")
        if self.matrix is not None and (
            isinstance(self.matrix, int | float | str) or len(self.matrix) != 2
        ):
            raise ConfigError(
                f"--matrix (matrix) takes two whole numbers (rows, cols), got "
                f"{self.matrix!r}; give e.g. (256, 256), the matrix the images were stored with."
            )
        if self.matrix is not None and any(v <= 0 for v in self.matrix):
            raise ConfigError(
                f"--matrix (matrix) must be positive pixel counts, got {self.matrix}."
            )

    @classmethod
    def from_flags(
        cls,
        fov_mm: Sequence[float] | None = None,
        matrix: Sequence[int] | None = None,
        *,
        pixels_only: bool = False,
    ) -> SpacingFallback:
        """Build the fallback from ``--fov MM [MM]``, ``--matrix ROWS COLS`` and ``--pixels``.

        Raises:
            ConfigError: ``--fov`` has more than two values, or a value is not positive.

        Example:
            >>> SpacingFallback.from_flags([90.0]).fov_mm
            (90.0, 90.0)
        """
        fov = tuple(float(v) for v in fov_mm) if fov_mm else None
        if fov is not None and len(fov) > 2:
            raise ConfigError(
                f"--fov takes one or two numbers (rows mm [cols mm]), got {len(fov)}: "
                f"{' '.join(f'{v:g}' for v in fov)}; give e.g. --fov 240 or --fov 240 180."
            )
        return cls(
            fov_mm=None if fov is None else (fov[0], fov[-1]),
            matrix=(int(matrix[0]), int(matrix[1])) if matrix else None,
            pixels_only=pixels_only,
        )


def resolve_spacing(
    image: Slice, fallback: SpacingFallback = SpacingFallback()
) -> tuple[tuple[float, float] | None, str]:
    """Return a slice's (row, col) spacing in mm and where it came from.

    Args:
        image: the slice; its own spacing wins when present.
        fallback: FOV / matrix for files without spacing.

    Returns:
        ``(spacing_mm, source)``: source is the DICOM keyword, ``"fov/matrix"`` (``"fov/matrix
        (PixelSpacing malformed)"`` where the file's PixelSpacing is malformed), or
        ``"pixels"`` (then spacing is None and areas are pixel counts).

    Raises:
        ConfigError: the file has no spacing and no fallback was given, or ``--matrix`` does
            not match the image's shape.
    """
    if image.spacing_mm is not None:
        return image.spacing_mm, image.spacing_source
    if fallback.fov_mm is not None:
        matrix = fallback.matrix or image.shape
        if tuple(matrix) != tuple(image.shape):
            raise ConfigError(
                f"{image.source}: image is {image.shape[0]}×{image.shape[1]} pixels but --matrix "
                f"says {matrix[0]}×{matrix[1]}; give the matrix the image was stored with."
            )
        spacing = (fallback.fov_mm[0] / matrix[0], fallback.fov_mm[1] / matrix[1])
        if image.spacing_source == MALFORMED_SPACING_SOURCE:  # there, not absent: say so
            return spacing, USER_OVER_MALFORMED_SOURCE
        return spacing, USER_SPACING_SOURCE
    if fallback.pixels_only:
        return None, "pixels"
    raise ConfigError(no_spacing_message(image))


def with_fallback_spacing(image: Slice, fallback: SpacingFallback) -> Slice:
    """Return the slice with the spacing the user gave when its file has none.

    From then on it is THE spacing of the slice: resampling to the model's target spacing,
    areas and exports all use it, and ``spacing_source`` says ``"fov/matrix"``. A slice with
    its own spacing, or one measured in pixels (``--pixels``), comes back unchanged.

    Raises:
        ConfigError: as for :func:`resolve_spacing`.

    Example:
        >>> image = with_fallback_spacing(image, SpacingFallback(fov_mm=(90.0, 90.0)))
        >>> image.spacing_mm, image.spacing_source    # a 200 × 200 slice
        ((0.45, 0.45), 'fov/matrix')
    """
    spacing, source = resolve_spacing(image, fallback)
    if image.spacing_mm is not None or spacing is None:
        return image
    return dataclasses.replace(image, spacing_mm=spacing, spacing_source=source)


def pixels_beside_mm_message(pixels: Slice, measured: Slice, *, slices: str) -> str:
    """The line refusing pixel counts beside areas in mm² (``--pixels`` where some slices have a
    spacing): ``pixels`` has none (`missing_spacing` says why), ``measured`` has one.

    Example:
        >>> pixels_beside_mm_message(bare, image, slices="test slices")
        'b.dcm: no PixelSpacing (0028,0030) in the file, while other test slices have a ...'
    """
    return (
        f"{pixels.source}: {missing_spacing(pixels)}, while other {slices} have a spacing in mm "
        f"(e.g. {measured.source}); give {spacing_fix(pixels)} so every slice is measured in "
        "mm²."
    )


_NO_SPACING_FOUND = {
    FILM_SPACING_SOURCE: (
        "no PixelSpacing (0028,0030), only (0018,2010) NominalScannedPixelSpacing, a scanned "
        "film's spacing, which is not used: it measures the film, not the patient (a film "
        "shows the anatomy at a print scale the file does not record)"
    ),
    ULTRASOUND_DISAGREE_SOURCE: (
        "no PixelSpacing (0028,0030), and the regions of its (0018,6011) "
        "SequenceOfUltrasoundRegions have different spacings (PhysicalDeltaX / PhysicalDeltaY), "
        "so no one spacing holds for the whole image"
    ),
    ULTRASOUND_NOT_CM_SOURCE: (
        "no PixelSpacing (0028,0030), and a region of its (0018,6011) "
        "SequenceOfUltrasoundRegions is not in cm (a Doppler or M-mode strip in seconds or "
        "cm/s) or has a PhysicalDeltaX / PhysicalDeltaY not > 0, so no one spacing holds for "
        "the whole image"
    ),
}
_NO_SPACING_FIX = {
    FILM_SPACING_SOURCE: (
        "--fov MM (the anatomy's extent across the image, e.g. from the film's scale bar)"
    ),
    ULTRASOUND_DISAGREE_SOURCE: "--fov ROWS_MM COLS_MM (the whole image's height and width)",
    ULTRASOUND_NOT_CM_SOURCE: "--fov ROWS_MM COLS_MM (the whole image's height and width)",
}


def missing_spacing(image: Slice) -> str:
    """Why a slice has no spacing in mm, in words, for each line that refuses it: absent,
    malformed (naming the value, as a refusal may be the only line the user sees), a scanned
    film's, or ultrasound regions that give no one spacing.

    Example:
        >>> missing_spacing(image)
        'its PixelSpacing (0028,0030) "0.7\\abc" is malformed or not > 0 (expected two ...)'
    """
    if image.spacing_source == MALFORMED_SPACING_SOURCE:
        return (
            f'its PixelSpacing (0028,0030) "{image.malformed_spacing}" is malformed or not > 0 '
            "(expected two positive numbers, row mm and column mm)"
        )
    return _NO_SPACING_FOUND.get(image.spacing_source, "no PixelSpacing (0028,0030) in the file")


def spacing_fix(image: Slice) -> str:
    """The ``--fov`` (and ``--matrix``) that gives a slice without a spacing in mm one."""
    return _NO_SPACING_FIX.get(image.spacing_source, "--fov MM (and --matrix ROWS COLS)")


def no_spacing_message(image: Slice) -> str:
    """The one line refusing to measure a slice without a spacing in mm, and the fix.

    A scanned film's (0018,2010) NominalScannedPixelSpacing is named and not used: it is the
    spacing on the film, which shows the anatomy at a print scale that the file does not record.
    An ultrasound image whose regions give no one spacing in cm says which way they fail.

    Example:
        >>> no_spacing_message(image)
        'scans/a.dcm: no PixelSpacing (0028,0030) in the file, so areas in mm² are unknown; ...'
    """
    return (
        f"{image.source}: {missing_spacing(image)}, so areas in mm² are unknown; give "
        f"{spacing_fix(image)}, or --pixels to report pixel counts."
    )
