"""Label map files: reading (.npy/.png/.tif/.jpg) and detecting damage; writing the PNGs
`predict` saves.

A label map holds one ROI number per pixel (0 background). Damaged maps (non-whole floats,
negative values, coloured overlays, transparency, wrong dimensionality) raise `LabelError`; they
are never passed on silently. Which stored values mean ROI 0..K: `sliceseg.io.roi_values`.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import tokenize
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from PIL import Image

from sliceseg.errors import LabelError
from sliceseg.io.files import atomic_path

LABEL_SUFFIXES = (".npy", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
_LOSSY_SUFFIXES = (".jpg", ".jpeg")
_FLOAT_NOISE = 1e-3  # a float map this close to whole numbers was rounded, not interpolated
_MAX_LOSSY_CHANNEL_SPREAD = 16  # JPEG chroma noise tolerated in a grey map saved as RGB
_SAVE_HINT = "save the label map as a single-channel PNG or NPY of ROI numbers 0..K"
# What numpy, Pillow, imageio and tifffile raise on a damaged or mislabelled file (Pillow raises
# SyntaxError for a broken PNG chunk, zlib.error for bad compressed data). Anything else is a bug.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes PIL.UnidentifiedImageError
    EOFError,
    ValueError,  # includes tifffile.TiffFileError, a pickled .npy refused by allow_pickle=False
    SyntaxError,
    zlib.error,
    struct.error,
    MemoryError,
    OverflowError,
    IndexError,
    KeyError,
    Image.DecompressionBombError,
)
# np.load parses a damaged .npy header with tokenize; tifffile raises TypeError / ZeroDivisionError
# on corrupt tag values. Caught only around those libraries' own calls.
_NPY_ERRORS: tuple[type[BaseException], ...] = (*_READ_ERRORS, tokenize.TokenError)  # header
_TIFF_ERRORS: tuple[type[BaseException], ...] = (*_READ_ERRORS, TypeError, ArithmeticError)


@dataclass(frozen=True, eq=False)
class RawLabel:
    """A label map exactly as stored.

    Attributes:
        values: (rows, cols) int64, or (frames, rows, cols) for a 3D .npy / multi-page .tif.
        source: the file it came from.
        is_lossy: True for JPEG files, whose values near edges are blurred.
    """

    values: np.ndarray
    source: Path
    is_lossy: bool


def read_label_file(path: Path) -> RawLabel:
    """Read one label map and check that its values can be ROI numbers.

    Args:
        path: a .npy (integer, bool, or float holding whole numbers; a trailing length-1
            channel axis, (rows, cols, 1), is dropped), .png (8/16-bit grey, or
            palette: the palette indices are the values, but the grey levels shown where a grey
            palette is out of index order), .tif/.tiff or .jpg/.jpeg file.

    Returns:
        The values as stored (int64), with ``is_lossy`` set for JPEG.

    Raises:
        LabelError: the file is unreadable or damaged: non-whole or non-finite floats, negative
            values, RGB channels that differ, a transparent alpha channel, or not 2D (3D allowed
            for .npy and multi-page .tif, one map per frame).

    Example:
        >>> read_label_file(Path("labels/p01/slice_1.png")).values.shape
        (64, 64)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise LabelError(
            f"{path}: suffix '{path.suffix}' is not a label format; expected one of "
            f"{', '.join(LABEL_SUFFIXES)}."
        )
    is_lossy = suffix in _LOSSY_SUFFIXES
    array, has_channels, allows_frames = _load(path, suffix)
    if has_channels:
        array = _merge_channels(array, path, is_lossy=is_lossy)
    values = whole_numbers(array, path)
    if (values.ndim != 2 and not (allows_frames and values.ndim == 3)) or values.size == 0:
        raise LabelError(
            f"{path}: label array of shape {values.shape}; expected (rows, cols), or (frames, "
            "rows, cols) in a .npy/.tif for a multi-frame DICOM; save one 2D map per slice."
        )
    if values.min() < 0:
        raise LabelError(
            f"{path}: negative values (minimum {values.min()}, in {np.count_nonzero(values < 0)} "
            f"pixels); expected ROI numbers 0..K with 0 background; {_SAVE_HINT}."
        )
    return RawLabel(values=values, source=path, is_lossy=is_lossy)


LABEL_PNG_LEVEL = 1
"""zlib level of the label PNGs ``predict`` writes (lossless at every level)."""


def write_label_png(path: Path, label: np.ndarray) -> Path:
    """Write a label map as a lossless 8-bit PNG, pixel value = ROI number (0 background).

    The file reads back unchanged with `read_label_file`: ``predict``'s label maps can be
    measured (``sliceseg measure``) or used as training labels. zlib level
    `LABEL_PNG_LEVEL`: on a 512² label map 2.5 ms instead of 7 ms at the default level 6, for
    files about 40 % larger (tens of KB; a cohort writes one per slice).

    Example:
        >>> write_label_png(Path("out/labels/p01/slice_1.png"), label)
    """
    with atomic_path(path) as tmp:
        Image.fromarray(label.astype(np.uint8)).save(
            tmp, format="PNG", compress_level=LABEL_PNG_LEVEL
        )
    return path


def _load(path: Path, suffix: str) -> tuple[np.ndarray, bool, bool]:
    """Return (array, has channels last, may hold frames); LabelError when the file is damaged."""
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except _NPY_ERRORS as exc:
            raise _unreadable(path, exc) from exc
        # (rows, cols, 1), as Keras-style code saves a mask: a channel axis (no image is 1 wide)
        return array, array.ndim >= 3 and array.shape[-1] == 1, True
    if suffix in (".tif", ".tiff"):
        try:
            with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return series.asarray(), series.axes.endswith("S"), True
        except _TIFF_ERRORS as exc:
            raise _unreadable(path, exc) from exc
    try:
        if suffix == ".png":
            with Image.open(path) as image:
                if image.mode == "P":
                    return _palette_values(image), False, False
        array = iio.imread(path)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    return array, array.ndim == 3, False


def _palette_values(image: Image.Image) -> np.ndarray:
    """A palette PNG's indices; or, when the indices used show distinct greys in another order,
    those greys: Pillow's quantize (and editors' "optimum palette") reorder a grey label map's
    levels, so background 0 may be stored as index 6 and ROI 6 as index 0."""
    indices = np.asarray(image)
    palette = np.asarray(image.getpalette("RGB") or [], dtype=np.int64).reshape(-1, 3)
    used = np.unique(indices)
    if used.size == 0 or used[-1] >= len(palette):
        return indices
    greys = palette[used]
    is_grey = bool(np.all(greys == greys[:, :1]))
    levels = greys[:, 0]
    if not is_grey or np.all(np.diff(levels) > 0) or len(set(levels.tolist())) < len(levels):
        return indices  # colours (VOC-style class palette), greys in index order, or ambiguous
    return palette[indices, 0]


def _unreadable(path: Path, exc: BaseException) -> LabelError:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return LabelError(
        f"{path}: cannot read the label map ({detail}); expected a readable "
        f"{path.suffix.lower()} file; export it again."
    )


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log lines about a damaged file: the LabelError says it in one line."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _merge_channels(array: np.ndarray, path: Path, *, is_lossy: bool) -> np.ndarray:
    """Reduce (..., channels) grey-as-RGB / LA / RGBA data to one channel; refuse colour."""
    channels = array.shape[-1]
    if channels in (2, 4):
        alpha = array[..., -1]
        opaque = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "iu" else 1.0
        if np.any(alpha != opaque):
            raise LabelError(
                f"{path}: alpha channel is not fully opaque ({np.count_nonzero(alpha != opaque)} "
                f"transparent pixels); expected a label map without transparency; {_SAVE_HINT}."
            )
        array = array[..., :-1]
    if array.shape[-1] == 1:
        return array[..., 0]
    spread = array.max(axis=-1).astype(np.int64) - array.min(axis=-1)
    if not np.any(spread):
        return array[..., 0]
    if is_lossy and spread.max() <= _MAX_LOSSY_CHANNEL_SPREAD:
        return np.rint(array.mean(axis=-1))
    where = tuple(int(i) for i in np.argwhere(spread > 0)[0])
    raise LabelError(
        f"{path}: colour label map whose R, G, B channels differ in {np.count_nonzero(spread)} "
        f"pixels (e.g. {tuple(int(c) for c in array[where])} at row {where[-2]}, col {where[-1]}); "
        f"expected one grey channel of ROI numbers; export the label map, not a coloured "
        f"overlay; {_SAVE_HINT}."
    )


def whole_numbers(
    array: np.ndarray, path: Path | str, *, save_hint: str = _SAVE_HINT
) -> np.ndarray:
    """The ROI numbers of a label array as int64, or a one-line `LabelError` naming ``path``:
    a non-numeric type, NaN or infinite values, or values off whole numbers (float rounding
    noise named as such, with its fix); ``save_hint`` says how to save it right."""
    kind = array.dtype.kind
    if kind in "biu":
        return array.astype(np.int64)
    if kind != "f":
        raise LabelError(
            f"{path}: values of type {array.dtype}; expected integer ROI numbers; {save_hint}."
        )
    finite = np.isfinite(array)
    if not np.all(finite):
        raise LabelError(
            f"{path}: {np.count_nonzero(~finite)} values are NaN or infinite; expected whole ROI "
            f"numbers 0..K; {save_hint}."
        )
    whole = array == np.round(array)
    if not np.all(whole):
        odd = array[~whole]
        # each in as many digits as it needs: 1.0000001 is not shown as the 1 it is not
        shown = ", ".join(np.format_float_positional(v) for v in np.unique(odd)[:3])
        found = f"float values that are not whole numbers ({odd.size} pixels, e.g. {shown})"
        if np.all(np.abs(odd - np.round(odd)) <= _FLOAT_NOISE):
            dtype = "uint8" if array.max() < 255.5 else "uint16"  # 300 as uint8 is 44
            raise LabelError(
                f"{path}: {found}, all within {_FLOAT_NOISE:g} of one (float rounding); save "
                f"np.rint(label).astype(np.{dtype}) as the label map."
            )
        raise LabelError(
            f"{path}: {found}; expected whole ROI numbers 0..K (was the map resized with "
            f"interpolation?); {save_hint}."
        )
    return array.astype(np.int64)
