"""The failure benchmark's real-MR series: the clean test subjects of a real-MR benchmark folder,
and the same subjects at levels outside the trained range.

A folder written by ``bench/real_mr.py --set mni|small|spine --out OUT`` holds ``OUT/test``
(``dicoms/<subject>/slice_NNN.dcm`` with ``labels/<subject>/slice_NNN.png`` beside them) and
``OUT/data.json`` (the set, the seed and the training levels). :func:`read_test_series` reads
the test subjects as the benchmark's clean series (pixels as sliceseg reads them, the true label
maps as the scorer reads them). :func:`level_renderer` renders each test subject's own scanner
at levels beyond the trained range, with the set's anatomy and label rule:

- ``mni`` and ``small``: below the lowest training level, by 16–24 mm (strong) / 4–8 mm
  (mild), as many levels as the clean series has slices;
- ``spine``: none (the volume's 20 planes are all inside or next to the trained range), so
  the benchmark leaves the ``level`` kind out for that set.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sliceseg.io.dicom import Slice
from sliceseg.io.dicom_folder import read_series
from sliceseg.io.labels import read_label_file

LEVEL_BEYOND_MM = {"strong": (16.0, 24.0), "mild": (4.0, 8.0)}
"""How far below the lowest training level the ``level`` series lie (first, last), per strength."""
SETS_WITH_LEVELS = ("mni", "small")

TestSlice = tuple[Slice, np.ndarray]
"""One test slice: the image as sliceseg reads it, its true label map on the same grid."""
LevelRenderer = Callable[[str, str, list[Slice]], list[TestSlice]]
"""(subject, strength, its clean slices) → the subject at levels outside the trained range."""


def reprofile(model: Path, train_dir: Path, out: Path) -> Path:
    """Copy ``model`` to ``out`` with its training profile rebuilt by today's code, from
    ``train_dir`` split as its training split it (the settings file beside it: validation
    fraction, seed, split kind): to measure a changed check on a model trained before it.
    """
    from sliceseg.dataset.samples import load_samples
    from sliceseg.dataset.split import hold_out_levels, split_by_patient
    from sliceseg.model_space.batches import samples_to_spacing
    from sliceseg.model_space.intensity import IntensityNormalisation
    from sliceseg.models import required_divisor
    from sliceseg.models.bundle import load_bundle
    from sliceseg.training.profile import add_profile

    settings = json.loads(next(Path(model).parent.glob("*_settings.json")).read_text())
    config = settings["settings"]
    shutil.copy(model, out)
    meta = load_bundle(out).metadata
    samples, _ = load_samples(Path(train_dir))
    train, validation = split_by_patient(
        samples, validation_fraction=config["validation_fraction"], seed=config["seed"]
    )
    if config.get("validation_split") == "levels":
        train, validation = hold_out_levels(train, validation)
    normalisation = IntensityNormalisation.from_metadata(
        meta.normalisation, meta.intensity, source=str(model)
    )
    spaced = [
        samples_to_spacing(part, meta.target_spacing_mm, normalisation=normalisation)
        for part in (train, validation)
    ]
    divisor = required_divisor(meta.arch, meta.hyperparameters)
    add_profile(out, spaced[0], spaced[1], divisor=divisor)
    return out


def read_test_series(test_dir: Path) -> dict[str, list[TestSlice]]:
    """Read every test subject of ``test_dir`` (``dicoms/<subject>/``, ``labels/<subject>/``).

    Raises:
        FileNotFoundError: a slice has no label map beside it.
    """
    series: dict[str, list[TestSlice]] = {}
    for folder in sorted(p for p in (Path(test_dir) / "dicoms").iterdir() if p.is_dir()):
        items = []
        for image in read_series(folder):
            label_path = Path(test_dir) / "labels" / folder.name / f"{image.source.stem}.png"
            if not label_path.exists():
                raise FileNotFoundError(f"{label_path}: no label map for {image.source}")
            items.append((image, read_label_file(label_path).values.astype(np.uint8)))
        series[folder.name] = items
    return series


def set_of(out_dir: Path) -> tuple[str, int, list[float]]:
    """The folder's set key, seed and training levels (from ``data.json``)."""
    stamp = json.loads((Path(out_dir) / "data.json").read_text())
    return str(stamp.get("set", "mni")), int(stamp["seed"]), list(stamp["train_levels_mm"])


def level_renderer(out_dir: Path) -> LevelRenderer | None:
    """A renderer of the folder's test subjects at levels below the trained range (None for
    sets without such levels: see the module's docstring)."""
    key, seed, train_levels = set_of(out_dir)
    if key not in SETS_WITH_LEVELS:
        return None
    import real_mr
    from real_mr_data import load_template, mni_anatomy, mni_plan, render

    bench_set = real_mr.SETS[key]
    if bench_set.build is None:
        template = load_template()
        anatomy, plan = mni_anatomy(template), (lambda s: mni_plan(template, s))
    else:
        anatomy, plan = bench_set.build()
    scanners = {scanner.subject: scanner for scanner, _, _ in plan(seed)[3]}
    lowest = min(train_levels)

    def twins(subject: str, strength: str, clean: list[Slice]) -> list[TestSlice]:
        near, far = LEVEL_BEYOND_MM[strength]
        levels = np.linspace(lowest - near, lowest - far, len(clean))
        rng = np.random.default_rng([seed, 77, int(subject.lstrip("t") or 0)])
        out = []
        for image, z_mm in zip(clean, levels, strict=True):
            rendered = render(anatomy, scanners[subject], float(z_mm), rng)
            pixels = np.ascontiguousarray(rendered.image, dtype=np.float32)
            out.append((dataclasses.replace(image, pixels=pixels), rendered.label))
        return out

    return twins
