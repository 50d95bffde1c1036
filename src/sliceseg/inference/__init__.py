"""Workflows on folders: predict a folder of DICOMs, measure label maps, evaluate a model."""
