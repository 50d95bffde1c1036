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

from sliceseg._version import __version__

_EXPORTS: dict[str, str] = {
    "SlicesegError": "sliceseg.errors",
    "read_series": "sliceseg.io.dicom_folder",
    "read_slices": "sliceseg.io.dicom",
    "DataSource": "sliceseg.dataset.source",
    "check_dataset": "sliceseg.dataset.samples",
    "load_samples": "sliceseg.dataset.samples",
    "generate_phantom": "sliceseg.phantom.generate",
    "system_info": "sliceseg.system",
    "TrainConfig": "sliceseg.training.config",
    "load_config": "sliceseg.training.settings_file",
    "preview_batch": "sliceseg.training.preview",
    "train": "sliceseg.training.loop",
    "reprofile": "sliceseg.training.reprofile",
    "load_bundle": "sliceseg.models.bundle",
    "predict_slices": "sliceseg.inference.predict",
    "predict_folder": "sliceseg.inference.folder",
    "predict_cohort": "sliceseg.inference.cohort",
    "merge_cohort": "sliceseg.inference.merge",
    "measure_areas": "sliceseg.measure.areas",
    "measure_label_folder": "sliceseg.label_areas",
    "SpacingFallback": "sliceseg.measure.spacing",
    "TissueSettings": "sliceseg.measure.tissue",
    "suggest_slices": "sliceseg.inference.suggest",
    "evaluate_model": "sliceseg.inference.evaluate",
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
