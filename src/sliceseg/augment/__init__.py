"""Augmentation: typed settings and batched, on-device transforms."""
