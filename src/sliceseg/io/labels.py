"""Label maps: reading (.npy/.png/.tif/.jpg), detecting damage, normalising values to 0..K;
writing the PNGs `predict` saves.

A label map holds one ROI number per pixel (0 background). Damaged maps (non-whole floats,
negative values, coloured overlays, transparency, wrong dimensionality) raise `LabelError`; they
are never passed on silently. `infer_label_scheme` decides, once for the whole dataset, which stored
values mean ROI 0..K: plain maps store 0..K; maps saved for viewing store evenly spaced values
(0, 40, 80, ... or 0/255) and are "display-scaled". JPEG maps are lossy and are snapped to the
scheme's nearest stored value (`io/lossy_labels.py`), or refused where the values are too close
(ROI numbers 0..K) for JPEG noise to be told from another ROI.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import tokenize
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from PIL import Image

from sliceseg.errors import ConfigError, LabelError, option_name
from sliceseg.io.files import atomic_path

LABEL_SUFFIXES = (".npy", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
_LOSSY_SUFFIXES = (".jpg", ".jpeg")
_FLOAT_NOISE = 1e-3  # a float map this close to whole numbers was rounded, not interpolated
_MAX_LOSSY_CHANNEL_SPREAD = 16  # JPEG chroma noise tolerated in a grey map saved as RGB
# How a message asks for K: check / train take it as a flag, Python callers as an argument.
NUM_LABELS_OPTION = option_name("--num-labels", "num_labels")
_WHERE_K_IS_SET = (
    "check / train: --num-labels; measure: one name per ROI in --labels; labels.txt: one name "
    "per line"
)
"""Where each command takes the number of ROIs K from, for a message asking to raise it."""
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


@dataclass(frozen=True)
class LabelScheme:
    """Which stored values mean ROI 0..K, the same for every file of a dataset.

    Attributes:
        stored_values: sorted stored values, 0 first; position k holds the value of ROI k.
        is_display_scaled: True when the maps were saved for viewing (0, 40, 80, ... or 0/255).
    """

    stored_values: tuple[int, ...]
    is_display_scaled: bool = False

    def __post_init__(self) -> None:
        values = self.stored_values
        if not values or values[0] != 0 or list(values) != sorted(set(values)) or len(values) > 256:
            raise LabelError(
                f"stored_values={values}: expected strictly increasing values starting at 0, "
                "at most 256 of them (background + 255 ROIs)."
            )

    @property
    def num_labels(self) -> int:
        """K, the number of ROIs (background excluded)."""
        return len(self.stored_values) - 1

    def describe(self) -> str:
        """Return the scheme in words, e.g. ``0..6`` or ``0, 40, 80 (display-scaled)``."""
        values = self.stored_values
        if values == tuple(range(len(values))):
            return f"0..{values[-1]}"
        shown = ", ".join(str(v) for v in values[:4]) + (f", ..., {values[-1]}" * (len(values) > 4))
        return shown + (" (display-scaled)" if self.is_display_scaled else "")

    def to_classes(self, values: np.ndarray, *, source: Path | None = None) -> np.ndarray:
        """Map stored values to class indices 0..K.

        Args:
            values: integer array of stored values, any shape.
            source: the file the values came from, named in the error message.

        Returns:
            uint8 array of the same shape, values 0..K.

        Raises:
            LabelError: a value is not one of ``stored_values``.

        Example:
            >>> LabelScheme((0, 40, 80), is_display_scaled=True).to_classes(np.array([0, 80]))
            array([0, 2], dtype=uint8)
        """
        stored = np.asarray(self.stored_values, dtype=np.int64)
        index = np.minimum(np.searchsorted(stored, values), len(stored) - 1)
        known = stored[index] == values
        if not np.all(known):
            unknown = np.unique(np.asarray(values)[~known])
            fix = "fix those pixels"
            if unknown.tolist() == [255] and not self.is_display_scaled:  # a viewer's 0/255 mask
                k = self.num_labels
                fix = (
                    "a mask saved for viewing (0/255)? save the ROI's number "
                    f"({f'1..{k}' if k > 1 else '1'}) in place of 255"
                )
            elif not self.is_display_scaled and unknown.min() > self.num_labels:
                fix += (
                    f", or, if the dataset has ROIs up to {unknown.max()}, raise num_labels to "
                    f"{unknown.max()} ({_WHERE_K_IS_SET})"
                )
            raise LabelError(
                f"{source or 'label map'}: values {_short_list(unknown)} in "
                f"{np.count_nonzero(~known)} pixels are not in the dataset's label scheme "
                f"{self.describe()}; {fix}."
            )
        return index.astype(np.uint8)


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


def parse_roi_names(names: str | Sequence[str]) -> tuple[str, ...]:
    """Return the names of ROIs 1..K as a tuple; a string is a comma-separated list, as in
    ``--labels`` and a settings file, so ``"psoas"`` is one name, never its letters.

    Example:
        >>> parse_roi_names("muscle"), parse_roi_names("psoas, disc"), parse_roi_names(["a"])
        (('muscle',), ('psoas', 'disc'), ('a',))
    """
    if isinstance(names, str):
        return tuple(name.strip() for name in names.split(","))
    return tuple(str(name) for name in names)


def check_class_map(
    label: np.ndarray, image_shape: tuple[int, ...], num_labels: int, *, name: str
) -> None:
    """Refuse a label map that cannot be measured as ROIs 1..K on its image's grid.

    Areas count the pixels equal to 1..K, so any other value (a 0/255 mask, a map with more
    ROIs than names, a resized map's fractions) would be measured as no ROI at all.

    Args:
        label: the label map (rows, cols), any integer, bool or whole-number float dtype.
        image_shape: the shape of its slice's pixels.
        num_labels: K, the number of ROI names given.
        name: the slice's name, for the messages.

    Raises:
        ConfigError: the label map's shape is not its image's.
        LabelError: a value is not a whole number in 0..K.

    Example:
        >>> check_class_map(np.array([[0, 255]]), (1, 2), 1, name="s1")
        Traceback (most recent call last):
        LabelError: s1: label values [255] are not ROIs 0..1 (1 ROI names given); ...
    """
    if label.shape != image_shape:
        raise ConfigError(
            f"{name}: label map is {'×'.join(map(str, label.shape))} but the image is "
            f"{'×'.join(map(str, image_shape))}; a label must be on its image's own grid."
        )
    values = whole_numbers(np.asarray(label), name)
    outside = (values < 0) | (values > num_labels)
    if np.any(outside):
        raise LabelError(
            f"{name}: label values {_short_list(np.unique(values[outside]))} are not ROIs "
            f"0..{num_labels} ({num_labels} ROI names given); give one name per ROI in label "
            "order, or map the values to 0..K first (a 0/255 mask: label // 255)."
        )


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


def infer_label_scheme(
    value_sets: Sequence[set[int]], *, num_labels: int | None = None
) -> LabelScheme:
    """Decide, for the whole dataset, which stored values mean ROI 0..K.

    Plain maps store 0..K. Maps whose non-zero values are evenly spaced with a step of 2 or more
    (0, 40, 80, ...; rounding by 1 allowed, so 0, 42, 85, ... fits; or exactly 0/255) are
    display-scaled and mapped to 0..K in order, with a ``UserWarning``. When ``num_labels`` is
    given and every value is <= it, the maps are plain 0..num_labels (ROIs absent from the whole
    dataset still count).

    Args:
        value_sets: the set of values of each lossless label file.
        num_labels: K, the number of ROIs, when known.

    Returns:
        The scheme.

    Raises:
        LabelError: the values are not one consistent scheme (e.g. 0..6 mixed with 0, 40, 80), a
            value is above ``num_labels``, or no map holds any ROI (only background).
        ConfigError: ``num_labels`` < 1.

    Example:
        >>> infer_label_scheme([{0, 40, 80}, {0, 80}]).stored_values
        (0, 40, 80)
    """
    if num_labels is not None and num_labels < 1:
        raise ConfigError(f"num_labels={num_labels}: expected at least 1 ROI.")
    values = sorted({int(v) for s in value_sets for v in s} | {0})
    top = values[-1]
    if values[0] < 0:
        raise LabelError(f"label values {_short_list(values)}: negative values are not ROIs.")
    if top == 0:  # even with num_labels given: nothing to learn from or to measure
        raise LabelError(
            "no label map contains any ROI: the label maps hold only background (0); "
            "expected ROIs 1..K; check that the labels were exported with their ROIs."
        )
    if num_labels is not None and top <= num_labels:
        return LabelScheme(tuple(range(num_labels + 1)))
    smallest_step = int(np.diff(values).min())
    if smallest_step == 1:
        _check_num_rois(values, top, num_labels)
        return LabelScheme(tuple(range(top + 1)))
    step = top / round(top / smallest_step)
    ks = [round(v / step) for v in values]
    if any(abs(v - k * step) > 1 for v, k in zip(values, ks, strict=True)):
        raise _inconsistent(values)
    _check_num_rois(values, ks[-1], num_labels)
    num_rois = num_labels if num_labels is not None else ks[-1]
    observed = dict(zip(ks, values, strict=True))
    stored = tuple(observed.get(k, round(k * step)) for k in range(num_rois + 1))
    warnings.warn(
        f"label values {_short_list(values)} look saved for viewing (display-scaled, step "
        f"{step:g}); mapping them to ROIs 0..{num_rois} in order.",
        UserWarning,
        stacklevel=2,
    )
    return LabelScheme(stored, is_display_scaled=True)


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


def _check_num_rois(values: list[int], top_roi: int, num_labels: int | None) -> None:
    if num_labels is not None and top_roi > num_labels:
        raise LabelError(
            f"label values {_short_list(values)} reach ROI {top_roi}, above num_labels="
            f"{num_labels}; expected values 0..{num_labels}; fix the files holding higher "
            f"values, or raise num_labels ({_WHERE_K_IS_SET})."
        )
    missing = top_roi + 1 - len(values)
    if num_labels is None and 2 * missing > top_roi:
        raise _inconsistent(values)


def _inconsistent(values: list[int]) -> LabelError:
    return LabelError(
        f"label values {_short_list(values)} do not form one scheme; expected 0..K (ROI numbers) "
        "or evenly spaced display values (0, 40, 80, ...) in every file; re-export the odd "
        f"files the same way as the rest, or set {NUM_LABELS_OPTION} to K if ROIs are absent."
    )


def _short_list(values: Sequence[int] | np.ndarray, limit: int = 12) -> str:
    items = [int(v) for v in values]
    shown = ", ".join(str(v) for v in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"
