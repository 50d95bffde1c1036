"""The spacing a slice's areas are measured with: its own, else the user's ``--fov`` /
``--matrix`` (`SpacingFallback`), else pixel counts (``--pixels``), else a refusal naming the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import (
    USER_OVER_MALFORMED_SOURCE,
    USER_SPACING_SOURCE,
    Slice,
    missing_spacing,
    no_spacing_message,
    spacing_fix,
)
from sliceseg.io.dicom_headers import MALFORMED_SPACING_SOURCE


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
