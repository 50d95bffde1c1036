"""The real-MR benchmark's baseline: the plain MONAI recipe a careful user writes in an afternoon.

Not tuned, on purpose: ``BasicUNet`` (features 16…256), whole slices z-scored, padded to a
square and resized to 160², ``DiceCELoss(to_onehot_y=True, softmax=True)``, AdamW 2e-3 with a
cosine decay over the wall-clock budget, ``RandAffined`` rotation/scale augmentation, batch 8,
all training slices (no validation split, the last weights are used), probabilities resized
back to the native grid before the argmax. Slices are read with sliceseg's own readers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet
from monai.transforms import NormalizeIntensity, RandAffined, Resize, SpatialPad
from PIL import Image

from sliceseg.io.dicom import read_slice
from sliceseg.io.labels import read_label_file

GRID = 160
BATCH = 8
LEARNING_RATE = 2e-3
FEATURES = (16, 32, 64, 128, 256, 16)
NUM_CLASSES = 5  # background + 4 ROIs


@dataclass(frozen=True, eq=False)
class Case:
    """One slice: its key (``<subject>/<name>``), pixels (modality units) and label (or None)."""

    key: str
    pixels: np.ndarray
    label: np.ndarray | None


@dataclass(frozen=True)
class TrainStats:
    """How the baseline's training went: steps, epochs (fractional), seconds, slices/s, loss."""

    steps: int
    epochs: float
    seconds: float
    slices_per_second: float
    final_loss: float
    n_train_slices: int


def read_cases(split_dir: Path, *, with_labels: bool) -> list[Case]:
    """Read ``split_dir/dicoms/**/*.dcm`` that have a ``labels/**/*.png`` (and the labels).

    A set written with unlabelled neighbours (`real_mr_files.write_dataset`'s ``neighbour_mm``,
    for 2.5D sliceseg runs) leaves them out: this plain recipe sees each labelled slice alone.
    """
    root = Path(split_dir) / "dicoms"
    cases = []
    for path in sorted(root.rglob("*.dcm")):
        key = path.relative_to(root).with_suffix("").as_posix()
        label_path = Path(split_dir) / "labels" / f"{key}.png"
        if not label_path.exists():
            continue
        label = None
        if with_labels:
            label = read_label_file(label_path).values.astype(np.int64)
        cases.append(Case(key=key, pixels=read_slice(path).pixels, label=label))
    return cases


def padded_side(shape: tuple[int, ...]) -> int:
    """Side of the square a (rows, cols) slice is padded to."""
    return max(int(shape[-2]), int(shape[-1]))


def image_to_grid(pixels: np.ndarray) -> torch.Tensor:
    """Z-score the whole slice, pad it to a square (with its minimum), resize to GRID² (area)."""
    image = torch.as_tensor(
        NormalizeIntensity()(torch.as_tensor(pixels[None], dtype=torch.float32))
    )
    side = padded_side(pixels.shape)
    image = SpatialPad((side, side), mode="minimum")(image)
    return torch.as_tensor(Resize((GRID, GRID))(image)).float()


def label_to_grid(label: np.ndarray) -> torch.Tensor:
    """Pad a label map to a square with background and resize to GRID² by nearest neighbour."""
    side = padded_side(label.shape)
    padded = SpatialPad((side, side))(torch.as_tensor(label[None], dtype=torch.float32))
    return torch.as_tensor(Resize((GRID, GRID), mode="nearest")(padded)).float()


def crop_padding(padded: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Undo ``SpatialPad``'s symmetric padding: crop (..., side, side) back to ``shape``."""
    top, left = (padded.shape[-2] - shape[0]) // 2, (padded.shape[-1] - shape[1]) // 2
    return padded[..., top : top + shape[0], left : left + shape[1]]


def build_model(num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    """The baseline network: MONAI BasicUNet, 2D, 1 channel in, background + ROIs out."""
    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=num_classes, features=FEATURES)


def _augmenter(seed: int) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]:
    transform = RandAffined(
        keys=("image", "label"),
        prob=0.5,
        rotate_range=math.pi / 12,
        scale_range=0.1,
        mode=("bilinear", "nearest"),
    )
    transform.set_random_state(seed)

    def augment(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pairs = [transform({"image": i, "label": m}) for i, m in zip(images, labels, strict=True)]
        return (
            torch.stack([torch.as_tensor(p["image"]) for p in pairs]).float(),
            torch.stack([torch.as_tensor(p["label"]) for p in pairs]).float(),
        )

    return augment


def train_baseline(
    cases: list[Case],
    *,
    minutes: float,
    seed: int,
    log: Callable[[str], None] = print,
    num_classes: int = NUM_CLASSES,
) -> tuple[torch.nn.Module, TrainStats]:
    """Train the baseline until the wall-clock budget runs out (checked every step).

    Args:
        cases: the training slices, with labels.
        minutes: the budget, counted from the first step (data already in memory).
        seed: seeds the weights, the batch order and the augmentation.
        log: where progress lines go.
        num_classes: background + the ROIs (5 on the MNI set).

    Returns:
        The trained model (last weights) and its statistics.
    """
    torch.manual_seed(seed)
    images = torch.stack([image_to_grid(c.pixels) for c in cases])
    labels = torch.stack([label_to_grid(c.label) for c in cases if c.label is not None])
    model, augment = build_model(num_classes), _augmenter(seed)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    order = torch.Generator().manual_seed(seed)
    budget_s, steps, loss = 60.0 * minutes, 0, float("nan")
    start = time.perf_counter()
    model.train()
    while True:
        for batch in torch.randperm(len(cases), generator=order).split(BATCH):
            elapsed = time.perf_counter() - start
            if steps and elapsed + elapsed / steps > budget_s:
                return model, _stats(steps, elapsed, loss, len(cases))
            for group in optimizer.param_groups:
                group["lr"] = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * elapsed / budget_s))
            x, y = augment(images[batch], labels[batch])
            optimizer.zero_grad(set_to_none=True)
            value = loss_fn(model(x), y)
            value.backward()
            optimizer.step()
            steps, loss = steps + 1, float(value.detach())
            if steps % 50 == 0:
                log(f"baseline step {steps} | loss {loss:.3f} | {elapsed:.0f} s")


def _stats(steps: int, seconds: float, loss: float, n: int) -> TrainStats:
    slices = steps * BATCH  # the last batch of an epoch can be smaller; close enough for a rate
    return TrainStats(
        steps=steps,
        epochs=slices / n,
        seconds=seconds,
        slices_per_second=slices / seconds,
        final_loss=loss,
        n_train_slices=n,
    )


@torch.inference_mode()
def predict_label(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    """Segment one slice: probabilities resized back to the native grid, then the argmax."""
    model.eval()
    probabilities = torch.softmax(model(image_to_grid(pixels)[None]), dim=1)[0]
    side = padded_side(pixels.shape)
    native = torch.as_tensor(Resize((side, side), mode="bilinear")(probabilities))
    rows, cols = pixels.shape
    return crop_padding(native, (rows, cols)).argmax(dim=0).numpy().astype(np.uint8)


def predict_cases(model: torch.nn.Module, cases: list[Case], out_dir: Path) -> Path:
    """Write ``out_dir/labels/<key>.png`` for every case (the layout ``sliceseg predict`` uses)."""
    labels_dir = Path(out_dir) / "labels"
    for case in cases:
        path = labels_dir / f"{case.key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(predict_label(model, case.pixels)).save(path)
    return labels_dir
