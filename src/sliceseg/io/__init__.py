"""Readers: DICOM into slices, label files, atomic file writes."""
