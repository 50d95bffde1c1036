"""The space the network works in: target spacing, orientation, resampling, the model grid,
intensity normalisation, training crops, prediction windows and batches."""
