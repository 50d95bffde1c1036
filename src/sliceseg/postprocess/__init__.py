"""From probabilities to the final label map: the area calibration and the clean-up steps.

They change label maps and measure nothing (``measure`` measures them): the per-ROI background
weights chosen on validation (`calibration`, carried by a model file as `calibration_weights`)
and the connected-component / hole-filling steps chosen per ROI (`cleanup`).
"""
