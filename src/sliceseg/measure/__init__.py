"""Measurement: areas in mm², segmentation metrics, plausibility warnings."""
