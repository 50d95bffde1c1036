"""The one prediction engine: network → probabilities → native grid → argmax → clean-up."""
