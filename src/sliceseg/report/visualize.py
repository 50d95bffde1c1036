"""Pictures: one fixed colour per ROI in overlays, batch grids, GIFs and plots."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.io.files import atomic_path
from sliceseg.report.colours import roi_colour, roi_colour_hex
from sliceseg.report.display import (
    as_array,
    display_shape,
    resize_pair,
    shown_as,
    to_display,
    true_shape,
)
from sliceseg.report.figures import new_figure, save_figure

if TYPE_CHECKING:  # matplotlib is imported when a picture is drawn (`new_figure`)
    from matplotlib.figure import Figure


class TensorLike(Protocol):
    """A torch tensor, typed without importing torch into the report layer."""

    def detach(self) -> Any: ...


_BACKGROUND_RGB = (24, 24, 24)
_TEXT_RGB = (235, 235, 235)
_MAX_GIF_SIZE = 384
_MIN_GIF_SIZE = 256  # as overlays: a small grid is enlarged, so its legend and title fit


def _names(roi_names: Sequence[str], num_labels: int) -> list[str]:
    names = list(roi_names)
    return names + [f"ROI {k}" for k in range(len(names) + 1, num_labels + 1)]


def _edges(label: np.ndarray) -> np.ndarray:
    padded = np.pad(label, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    return (centre > 0) & differs


def _paint(grey: np.ndarray, label: np.ndarray, alpha: float, outline: bool) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2)
    mask = label > 0
    if not mask.any():
        return rgb
    lut = np.zeros((int(label.max()) + 1, 3), np.float64)
    lut[1:] = [roi_colour(k) for k in range(1, len(lut))]
    colours = lut[label]
    blended = np.rint(rgb * (1.0 - alpha) + colours * alpha).astype(np.uint8)
    out = np.where(mask[..., None], blended, rgb)
    if outline:
        edge = _edges(label)
        out[edge] = colours[edge].astype(np.uint8)
    return out


def _check_label(label: object, shape: tuple[int, ...]) -> np.ndarray:
    values = as_array(label)
    if values.shape != shape:
        raise ConfigError(f"label map is {values.shape} but the image is {shape}; they must match.")
    values = values.astype(np.int64)
    if values.size and values.min() < 0:
        raise ConfigError(f"label map has negative values (min {values.min()}); expected 0..K.")
    return values


def overlay(
    image: np.ndarray,
    label: np.ndarray,
    *,
    alpha: float = 0.45,
    outline: bool = True,
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """Colour each ROI over the grey image: filled with ``alpha`` and a 1-px contour at full colour.

    Args:
        image: (rows, cols) grey image, any numeric type (windowed with :func:`to_display`).
        label: (rows, cols) integer label map, 0 background (left untouched), 1..K ROIs.
        alpha: opacity of the fill, 0–1.
        outline: draw each ROI's inner border in its full colour.
        window: the (low, high) values shown black and white (`display_window`); None takes
            the image's percentiles.

    Returns:
        (rows, cols, 3) uint8 RGB.

    Raises:
        ConfigError: shapes differ, labels are negative, or ``alpha`` is outside 0–1.

    Example:
        >>> rgb = overlay(image.pixels, label)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be between 0 and 1, got {alpha}.")
    grey = to_display(image, window=window)
    return _paint(grey, _check_label(label, grey.shape), alpha, outline)


def _add_legend(fig: Figure, roi_names: Sequence[str], *, max_columns: int) -> None:
    """Put the ROI legend under the pictures in as many columns as fit the figure's width, and
    make the figure that much taller: a legend wider than the figure loses its first and last
    ROIs at the edges."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=roi_colour_hex(k), edgecolor="black", linewidth=0.5, label=name)
        for k, name in enumerate(roi_names, 1)
    ]
    renderer = FigureCanvasAgg(fig).get_renderer()
    for columns in range(min(len(handles), max_columns), 0, -1):
        legend = fig.legend(handles=handles, loc="outside lower center", ncol=columns)
        extent = legend.get_window_extent(renderer)
        if columns == 1 or extent.width <= 0.98 * fig.bbox.width:
            break
        legend.remove()
    fig.set_figheight(fig.get_figheight() + extent.height / fig.dpi + 0.1)


def overlay_figure(
    image: Slice | np.ndarray,
    label: np.ndarray,
    roi_names: Sequence[str],
    *,
    title: str | None = None,
    window: tuple[float, float] | None = None,
    spacing_mm: tuple[float, float] | None = None,
) -> Figure:
    """Draw the grey image beside its overlay, with a legend naming every ROI in its colour.

    A `Slice` is drawn as ``predict``'s overlays draw it (`shown_as`): CT in its soft-tissue
    window, and pixels at their true shape (a 0.5 × 1.0 mm grid twice as wide as tall).

    Args:
        image: a `Slice`, or a (rows, cols) grey image.
        label: (rows, cols) label map, 0..K.
        roi_names: names of ROIs 1..K.
        title: shown above the pictures (e.g. the slice's file name).
        window: the (low, high) values shown black and white; None takes a Slice's
            `display_window`, or an array's percentiles.
        spacing_mm: the (row, col) pixel spacing; None takes a Slice's, or shows an array's
            grid as it is.

    Returns:
        The figure (shown inline in a notebook).

    Raises:
        ConfigError: shapes differ or labels are negative.

    Example:
        >>> fig = overlay_figure(read_slice(Path("dicoms/s01.dcm")), label, ["vertebral body"])
    """
    if isinstance(image, Slice):
        image, slice_window, slice_spacing = shown_as(image)
        window = slice_window if window is None else window
        spacing_mm = slice_spacing if spacing_mm is None else spacing_mm
    grey = to_display(image, window=window)
    grey, labels = true_shape(grey, _check_label(label, grey.shape), spacing_mm)
    names = _names(roi_names, int(labels.max(initial=0)))
    aspect = grey.shape[0] / grey.shape[1]
    fig = new_figure(8.0, 4.0 * aspect + 0.5)
    left, right = fig.subplots(1, 2)
    left.imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    right.imshow(_paint(grey, labels, 0.45, True), interpolation="nearest")
    for ax, name in ((left, "image"), (right, "segmentation")):
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    _add_legend(fig, names, max_columns=4)
    return fig


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from matplotlib import font_manager

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:
        return ImageFont.load_default(size=size)


def _fitted(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> str:
    """``text``, or its start and end around "…" to fit ``width``: a long title keeps both its
    slice number and its file name."""
    full, kept = text, len(text)
    while kept > 0 and font.getlength(text) > width:
        kept -= 1
        text = f"{full[: (kept + 1) // 2]}…{full[len(full) - kept // 2 :]}" if kept else ""
    return text


def _text_strip(text: str, width: int, size: int) -> Image.Image:
    font = _font(size)
    text = _fitted(text, font, width - size)
    strip = Image.new("RGB", (width, int(size * 1.7)), _BACKGROUND_RGB)
    ImageDraw.Draw(strip).text((size // 2, size // 3), text, fill=_TEXT_RGB, font=font)
    return strip


def _legend_strip(roi_names: Sequence[str], width: int, size: int) -> Image.Image:
    font, pad, line = _font(size), size // 2, int(size * 1.6)
    spots, x, y = [], pad, pad // 2
    for k, name in enumerate(roi_names, 1):
        item = size + pad // 2 + int(font.getlength(name)) + size
        if x > pad and x + item > width:
            x, y = pad, y + line
        spots.append((k, name, x, y))
        x += item
    strip = Image.new("RGB", (width, y + line + pad // 2), _BACKGROUND_RGB)
    draw = ImageDraw.Draw(strip)
    for k, name, x, y in spots:
        draw.rectangle((x, y + 2, x + size - 2, y + size), fill=roi_colour(k))
        draw.text((x + size + pad // 2, y), name, fill=_TEXT_RGB, font=font)
    return strip


def _stack(parts: Sequence[Image.Image]) -> Image.Image:
    canvas = Image.new("RGB", (parts[0].width, sum(p.height for p in parts)), _BACKGROUND_RGB)
    y = 0
    for part in parts:
        canvas.paste(part, (0, y))
        y += part.height
    return canvas


def save_overlay(
    path: Path | str,
    image: np.ndarray,
    label: np.ndarray,
    roi_names: Sequence[str],
    *,
    title: str | None = None,
    window: tuple[float, float] | None = None,
    spacing_mm: tuple[float, float] | None = None,
) -> Path:
    """Save the image beside its overlay at native resolution, with a title and an ROI legend.

    Small images are enlarged by a whole factor (nearest neighbour for labels) to at least
    256 pixels, so that the picture stays faithful pixel for pixel; with ``spacing_mm``, the
    axis of coarser spacing is stretched so that the anatomy keeps its true shape.

    Args:
        path: output file; ``.jpg``/``.jpeg`` or ``.png`` chooses the format.
        image: (rows, cols) grey image.
        label: (rows, cols) label map, 0..K.
        roi_names: names of ROIs 1..K.
        title: written above the pictures (e.g. the slice's file name).
        window: the (low, high) values shown black and white (`display_window`); None takes
            the image's percentiles.
        spacing_mm: the (row, col) pixel spacing; None shows the grid as it is.

    Returns:
        ``path``.

    Raises:
        ConfigError: unknown suffix, shapes differ, or labels are negative.

    Example:
        >>> save_overlay("overlays/s01.png", image.pixels, label, ["vertebral body"])
    """
    target = Path(path)
    if target.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise ConfigError(f"{target}: overlays are saved as .jpg or .png, got {target.suffix!r}.")
    grey = to_display(image, window=window)
    grey, labels = true_shape(grey, _check_label(label, grey.shape), spacing_mm, min_side=256)
    gap = 8
    panel = Image.new("RGB", (2 * grey.shape[1] + gap, grey.shape[0]), _BACKGROUND_RGB)
    panel.paste(Image.fromarray(grey).convert("RGB"), (0, 0))
    panel.paste(Image.fromarray(_paint(grey, labels, 0.45, True)), (grey.shape[1] + gap, 0))
    size = max(12, panel.width // 45)
    names = _names(roi_names, int(labels.max(initial=0)))
    parts = [_text_strip(title, panel.width, size)] if title else []
    picture = _stack([*parts, panel, _legend_strip(names, panel.width, size)])
    with atomic_path(target) as tmp:
        picture.save(tmp, quality=92) if target.suffix.lower() != ".png" else picture.save(tmp)
    return target


def plot_batch(
    images: np.ndarray | TensorLike,
    labels: np.ndarray | TensorLike,
    roi_names: Sequence[str],
    *,
    path: Path | str | None = None,
    max_items: int = 8,
) -> Figure:
    """Draw a batch as the model sees it: each image above its overlay, one legend for all.

    Args:
        images: (B, I, H, W) or (B, H, W) array or tensor (e.g. the first augmented batch).
        labels: (B, H, W) label maps, 0..K.
        roi_names: names of ROIs 1..K.
        path: save the figure here (PNG) when given.
        max_items: draw at most this many samples.

    Returns:
        The figure.

    Raises:
        ConfigError: the batch shapes do not match.
    """
    pictures, maps = as_array(images), as_array(labels)
    if pictures.ndim == 4:  # a 2.5D batch's slices sit between their neighbours
        pictures = pictures[:, pictures.shape[1] // 2]
    if pictures.ndim != 3 or maps.shape != pictures.shape:
        raise ConfigError(
            f"expected images (B, I, H, W) and labels (B, H, W), got {as_array(images).shape} "
            f"and {maps.shape}."
        )
    count = max(1, min(len(pictures), max_items))
    names = _names(roi_names, int(maps[:count].max(initial=0)))
    aspect = pictures.shape[1] / pictures.shape[2]
    fig = new_figure(2.0 * count + 0.6, 4.0 * aspect + 0.7)
    axes = fig.subplots(2, count, squeeze=False)
    for i in range(count):
        grey = to_display(pictures[i])
        axes[0, i].imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[1, i].imshow(_paint(grey, _check_label(maps[i], grey.shape), 0.45, True))
        axes[0, i].set_title(f"sample {i + 1}", fontsize=9)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("labels", fontsize=9)
    fig.suptitle(f"First augmented batch ({count} of {len(pictures)} samples)", fontsize=11)
    _add_legend(fig, names, max_columns=6)
    if path is not None:
        save_figure(fig, path)
    return fig


def _gif_box(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The (rows, cols) every frame shares: each shape fitted to its longest side between
    `_MIN_GIF_SIZE` and `_MAX_GIF_SIZE` (its own size where that lies between)."""
    longest = min(_MAX_GIF_SIZE, max(_MIN_GIF_SIZE, max(max(shape) for shape in shapes)))
    fits = [(r * longest / max(r, c), c * longest / max(r, c)) for r, c in shapes]
    return round(max(f[0] for f in fits)), round(max(f[1] for f in fits))


def _gif_frame(
    grey: np.ndarray,
    label: np.ndarray,
    shown: tuple[int, int],
    box: tuple[int, int],
    title: str,
    names: list[str],
) -> Image.Image:
    scale = min(box[0] / shown[0], box[1] / shown[1])
    shape = (max(1, round(shown[0] * scale)), max(1, round(shown[1] * scale)))
    small, small_label = resize_pair(grey, label, shape)
    panel = Image.new("RGB", (box[1], box[0]), (0, 0, 0))
    offset = ((box[1] - shape[1]) // 2, (box[0] - shape[0]) // 2)
    panel.paste(Image.fromarray(_paint(small, small_label, 0.45, True)), offset)
    size = max(11, box[1] // 32)
    return _stack([_text_strip(title, box[1], size), panel, _legend_strip(names, box[1], size)])


def save_animation(
    path: Path | str,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    roi_names: Sequence[str],
    *,
    titles: Sequence[str] | None = None,
    fps: float = 4,
    window: tuple[float, float] | None = None,
    spacings_mm: Sequence[tuple[float, float] | None] | None = None,
) -> Path:
    """Save an animated GIF that steps through the slices in order, each with its overlay.

    Frames share one size: each slice is scaled (aspect kept) to fit a box of 256 to 384
    pixels (a small grid enlarged, a large one reduced) and centred on black. Each frame
    carries its title and an ROI legend.

    Args:
        path: output ``.gif``.
        images: (rows, cols) grey images in series order; shapes may differ.
        labels: the label maps, one per image on its grid.
        roi_names: names of ROIs 1..K.
        titles: one title per slice (e.g. file names); default "slice i".
        fps: frames per second.
        window: the (low, high) values shown black and white (`display_window`); None takes
            each image's percentiles.
        spacings_mm: each slice's (row, col) pixel spacing, for its true aspect; None (or a
            None entry) shows the grid as it is.

    Returns:
        ``path``.

    Raises:
        ConfigError: no slices, counts differ, shapes differ, or ``fps`` is not positive.

    Example:
        >>> save_animation("segmentation.gif", [s.pixels for s in slices], labels, names)
    """
    if not images or len(images) != len(labels):
        raise ConfigError(f"need one label map per image, got {len(images)} and {len(labels)}.")
    if titles is not None and len(titles) != len(images):
        raise ConfigError(f"need one title per image, got {len(titles)} for {len(images)}.")
    if fps <= 0:
        raise ConfigError(f"fps must be positive, got {fps}.")
    greys = [to_display(image, window=window) for image in images]
    maps = [_check_label(label, grey.shape) for label, grey in zip(labels, greys, strict=True)]
    spacings = list(spacings_mm) if spacings_mm is not None else [None] * len(greys)
    shown = [display_shape(g.shape, s) for g, s in zip(greys, spacings, strict=True)]
    box = _gif_box(shown)
    names = _names(roi_names, max(int(m.max(initial=0)) for m in maps))
    count = len(greys)
    frames = []
    for i, (grey, label) in enumerate(zip(greys, maps, strict=True)):
        name = titles[i] if titles is not None else f"slice {i + 1}"
        frame = _gif_frame(grey, label, shown[i], box, f"{i + 1}/{count}  {name}", names)
        frames.append(
            frame.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        )
    target = Path(path)
    with atomic_path(target) as tmp:
        frames[0].save(
            tmp, format="GIF", save_all=True, append_images=frames[1:],
            duration=round(1000 / fps), loop=0,
        )  # fmt: skip
    return target
