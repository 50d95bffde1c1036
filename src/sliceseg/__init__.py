"""sliceseg: train a 2D CNN on labelled DICOM slices, segment new ones, and measure every ROI in mm²."""

__version__ = "0.1.0"
