"""Inference: predicting slices, a folder of DICOMs to outputs, evaluation."""
