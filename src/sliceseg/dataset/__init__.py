"""A labelled dataset: pairing images with labels, the check report, samples, the split."""
