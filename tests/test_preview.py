"""The first augmented batch, drawn in fixed ROI colours with the dataset's own ROI names."""

from __future__ import annotations

import numpy as np
from PIL import Image

from conftest import tiny_config
from sliceseg.phantom.generate import ROI_NAMES
from sliceseg.report.visualize import roi_colour
from sliceseg.training.preview import preview_batch


def test_preview_names_rois_from_labels_txt_and_draws_their_colours(tiny_phantom, tmp_path):
    config = tiny_config(tiny_phantom / "train", tmp_path / "model")
    figure = preview_batch(config, path=tmp_path / "preview.png")
    legend_texts = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert set(ROI_NAMES) <= set(legend_texts)
    pixels = np.asarray(Image.open(tmp_path / "preview.png").convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(c) for c in p) for p in pixels[:: max(1, len(pixels) // 200_000)]}
    # Overlays blend, but the legend patches are drawn in each ROI's exact colour.
    assert all(tuple(roi_colour(k)) in colours for k in range(1, len(ROI_NAMES) + 1))
