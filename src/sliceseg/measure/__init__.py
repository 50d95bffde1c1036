"""Measurement: areas in mm², metrics, plausibility warnings."""
