"""Predicting with a model: a folder of DICOMs, a cohort (shards, records, merge), evaluation
against labels, the slices to label next."""
