"""Decoding DICOM pixel data into modality units: pydicom's plugins, the modality LUT or rescale,
colour to grey, and one-line errors for what cannot be decoded.

- Pixels are float32 in modality units, from the stored values by the standard's order: the
  (0028,3000) ModalityLUTSequence, else (0028,1053) RescaleSlope and (0028,1052) RescaleIntercept,
  applied with pydicom's ``apply_modality_lut``; a file with only one of the two takes the
  other's identity value (slope 1, intercept 0). Enhanced multi-frame files take them from the
  per-frame / shared functional groups. ``Slice.modality_lut`` records which applied.
- Colour images (RGB, YBR, PALETTE COLOR) are converted to grey luminance (ITU-R BT.601 weights
  0.299, 0.587, 0.114) with a ``UserWarning``.
- Pixels whose stored value is (0028,0120) PixelPaddingValue (to (0028,0121)
  PixelPaddingRangeLimit, both included) are not part of the image (PS3.3 C.7.5.1.1.2): a CT's
  corners outside the reconstruction circle, often -2000 stored (-3024 HU). They take the
  darkest displayed value of the other pixels (their lowest; highest for MONOCHROME1), as a
  scanner that pads with air shows them, so they move no z-score, quantile or lowest value.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.uid import UID, RLELossless

from sliceseg.errors import DicomReadError
from sliceseg.io.dicom_files import READ_ERRORS
from sliceseg.io.dicom_headers import (
    frame_value,
    named_warnings,
    one_line,
    photometric_interpretation,
)

__all__ = ["LUMINANCE_WEIGHTS", "decode_frames", "modality_pixels", "to_modality_units"]

LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
_DECODER_HINT = (
    "install the pixel data plugins (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg "
    "pylibjpeg-rle), or convert the file to uncompressed DICOM (e.g. `gdcmconv --raw in out`)"
)
# decoders raise pyo3's PanicException, a BaseException, on corrupt streams; see _is_panic).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    *READ_ERRORS,
    RuntimeError,
    KeyError,
    IndexError,
    StopIteration,  # fewer encapsulated frames than NumberOfFrames says
)
_CORRUPT_HINT = (
    "the installed decoders refused it, so the compressed pixel data is corrupt or truncated; "
    "export the image again from the scanner/PACS"
)
# pylibjpeg and Pillow refuse some valid streams GDCM decodes (12-bit JPEG Extended, say).
_GDCM_HINT = (
    "the installed decoders refused it: the pixel data is corrupt or truncated, or a variant "
    "only GDCM decodes; try `pip install python-gdcm`, else export the image again from the "
    "scanner/PACS"
)
_TRUNCATED_HINT = (
    "the file is truncated or its header (Rows, Columns, BitsAllocated) does not match the pixel "
    "data; copy it again from the scanner or PACS"
)


def decode_frames(ds: Dataset, path: Path, *, index: int | None) -> np.ndarray:
    """Return (frames, rows, cols[, samples]) stored values, decoded by pydicom's plugins."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        with _native_stderr_muted(syntax == RLELossless), named_warnings(path):
            arr = pydicom.pixels.pixel_array(ds, index=index)
    except BaseException as exc:
        if not (isinstance(exc, _DECODE_ERRORS) or _is_panic(exc)):
            raise
        hint = _TRUNCATED_HINT
        if syntax.is_compressed:
            hint = _failed_decoder_hint(syntax)
        raise DicomReadError(
            f"{path}: cannot decode pixel data with transfer syntax {syntax.name} ({syntax}): "
            f"{one_line(exc)}; {hint}."
        ) from exc
    samples = int(ds.get("SamplesPerPixel", 1))
    if arr.ndim == (3 if samples > 1 else 2):
        arr = arr[np.newaxis]
    return arr


@contextlib.contextmanager
def _native_stderr_muted(is_muted: bool) -> Iterator[None]:
    """Keep native code from writing on stderr (file descriptor 2) inside the block.

    The Rust RLE plugin (pylibjpeg-rle) prints its panic message on stderr before raising;
    the DicomReadError already says what failed, in one line. Anything else written there (not
    a panic) is passed on afterwards.
    """
    if not is_muted:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        panicked = False
        try:
            yield
        except BaseException as exc:
            panicked = _is_panic(exc)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            written = sink.read()
            if written and not panicked:
                sys.stderr.write(written.decode(errors="replace"))


def _failed_decoder_hint(syntax: UID) -> str:
    """What to do when no installed plugin decoded compressed ``syntax``: install one, try
    GDCM as well, or export again."""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:  # no decoder exists for this syntax at all
        return _DECODER_HINT
    if not decoder.is_available:
        return _DECODER_HINT
    is_gdcm_missing = any(m.startswith("gdcm") for m in decoder.missing_dependencies)
    # pydicom's own RLE decoder reads every valid RLE stream
    return _GDCM_HINT if is_gdcm_missing and syntax != RLELossless else _CORRUPT_HINT


def _is_panic(exc: BaseException) -> bool:
    """True for pyo3's PanicException: a Rust decoder plugin gave up on a corrupt stream."""
    return type(exc).__name__ == "PanicException"


def modality_pixels(ds: Dataset, path: Path, raw: np.ndarray, frame: int) -> tuple[np.ndarray, str]:
    """Return one decoded frame in modality units, all finite, and how they were made.

    Args:
        ds: the file's dataset (`sliceseg.io.dicom_headers.read_dataset`).
        path: the file, named in errors and warnings.
        raw: the frame's stored values from `decode_frames`.
        frame: the frame index (for per-frame functional groups).

    Returns:
        (pixels (rows, cols) float32, ``Slice.modality_lut``).

    Raises:
        DicomReadError: the palette or modality LUT cannot be applied, or values are not finite.
    """
    try:
        pixels, modality_lut = to_modality_units(ds, path, raw, frame)
    # pydicom's LUT checks; AttributeError: a palette's lookup table data is missing
    except (ValueError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        raise DicomReadError(
            f"{path}: cannot apply the colour palette or modality LUT ({one_line(exc)}); the "
            "header is damaged; export the image again."
        ) from exc
    bad = np.count_nonzero(~np.isfinite(pixels))
    if bad:
        raise DicomReadError(
            f"{path}: {bad} of {pixels.size} pixels are NaN or infinite after the rescale "
            f"(RescaleSlope {ds.get('RescaleSlope', 'absent')}, RescaleIntercept "
            f"{ds.get('RescaleIntercept', 'absent')}); expected finite values; fix the rescale "
            "or the float pixel data, or export the image again."
        )
    return pixels, modality_lut


def to_modality_units(
    ds: Dataset, path: Path, raw: np.ndarray, frame: int
) -> tuple[np.ndarray, str]:
    """Return the frame in modality units and which transform gave them (Slice.modality_lut);
    (0028,0120) PixelPaddingValue pixels take the darkest displayed value of the others."""
    photometric = photometric_interpretation(ds)
    if photometric == "PALETTE COLOR" or raw.ndim == 3:
        rgb = apply_color_lut(raw, ds) if photometric == "PALETTE COLOR" else raw
        warnings.warn(
            f"{path}: colour image ({photometric}) converted to grey luminance "
            "(0.299 R + 0.587 G + 0.114 B); export grey images for best results.",
            UserWarning,
            stacklevel=5,
        )
        grey = rgb[..., :3].astype(np.float64) @ np.asarray(LUMINANCE_WEIGHTS)
        return grey.astype(np.float32), "colour"
    values = raw.astype(np.int64) if raw.dtype.kind in "iub" else raw
    modality, how = _apply_rescale(values, ds, frame)
    return _without_padding(modality, _padding_mask(ds, raw), photometric), how


def _padding_mask(ds: Dataset, raw: np.ndarray) -> np.ndarray | None:
    """The stored values (0028,0120) PixelPaddingValue to (0028,0121) PixelPaddingRangeLimit mark
    as padding; None when the header marks none (or the pixels are not whole numbers)."""
    found = [ds.get(k) for k in ("PixelPaddingValue", "PixelPaddingRangeLimit")]
    ends = [_as_stored(v, raw.dtype) for v in found if isinstance(v, int)]
    if not ends or raw.dtype.kind not in "iu" or not isinstance(found[0], int):
        return None
    return (raw >= min(ends)) & (raw <= max(ends))


def _as_stored(value: int, dtype: np.dtype) -> int:
    """The padding value as the pixels hold it: a signed -2000 written as US 63536 (GE, with
    PixelRepresentation 1) wraps to -2000 beside signed pixels, and back beside unsigned ones."""
    bits = 8 * dtype.itemsize
    value %= 2**bits
    return value - 2**bits if dtype.kind == "i" and value >= 2 ** (bits - 1) else value


def _without_padding(
    pixels: np.ndarray, padding: np.ndarray | None, photometric: str
) -> np.ndarray:
    """float32 pixels whose padding took the darkest displayed value of the others."""
    pixels = pixels.astype(np.float32)
    if padding is None or padding.all() or not padding.any():
        return pixels
    image = pixels[~padding]
    pixels[padding] = image.max() if photometric == "MONOCHROME1" else image.min()
    return pixels


def _apply_rescale(values: np.ndarray, ds: Dataset, frame: int) -> tuple[np.ndarray, str]:
    """Apply the modality LUT or the rescale; one of RescaleSlope / Intercept alone is enough."""
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(values, ds), "lut"
    slope = frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    if slope is None and intercept is None:
        return values, "none"
    if isinstance(slope, int | float) and slope == 0:  # ValueError: the caller names the file
        raise ValueError(
            f"(0028,1053) RescaleSlope is {slope}, which would make every pixel "
            f"RescaleIntercept {intercept}"
        )
    rescale = Dataset()  # the other's identity value: slope 1, intercept 0
    rescale.RescaleSlope = 1.0 if slope is None else slope
    rescale.RescaleIntercept = 0.0 if intercept is None else intercept
    return apply_modality_lut(values, rescale), "rescale"
