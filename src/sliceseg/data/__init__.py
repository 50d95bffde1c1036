"""Datasets: pairing, the check report, samples, the split, model-grid geometry, batches."""
