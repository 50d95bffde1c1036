"""sliceseg: train a 2D CNN on labelled DICOM slices, segment new ones, measure every ROI in mm².

The only public API is what ``__all__`` lists; names load on first use so that ``import
sliceseg`` and the command line start fast (torch is imported only when needed).

Example:
    >>> import sliceseg
    >>> report = sliceseg.check_dataset("data/train")
    >>> result = sliceseg.train(sliceseg.TrainConfig(data_dir="data/train", epochs=50))
    >>> run = sliceseg.predict_folder(result.best_model, "data/test/dicoms", "results")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "SlicesegError": "sliceseg.errors",
    "read_series": "sliceseg.dicom",
    "read_slices": "sliceseg.dicom",
    "check_dataset": "sliceseg.dataset",
    "load_samples": "sliceseg.dataset",
    "generate_phantom": "sliceseg.phantom",
    "system_info": "sliceseg.system",
    "TrainConfig": "sliceseg.config",
    "load_config": "sliceseg.config",
    "preview_batch": "sliceseg.preview",
    "train": "sliceseg.training",
    "load_bundle": "sliceseg.bundle",
    "predict_slices": "sliceseg.predict",
    "predict_folder": "sliceseg.segment",
    "measure_areas": "sliceseg.measure",
    "measure_label_folder": "sliceseg.measure_folder",
    "SpacingFallback": "sliceseg.measure",
    "evaluate_model": "sliceseg.evaluate",
    "run_demo": "sliceseg.demo",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sliceseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
