"""Training losses: the published multi-class soft Dice, Dice + cross-entropy, cross-entropy
alone, multi-output sums."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sliceseg.errors import ConfigError


def _check_pair(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"loss expects logits (B, C, H, W) and labels (B, H, W); got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}."
        )


class SoftDiceLoss(nn.Module):
    """Multi-class soft Dice loss over the ROIs (background excluded), as published.

    For each ROI c in 1..K, with softmax probabilities p and one-hot labels t summed over all
    pixels of the batch: ``D_c = (2 Σ p t + smooth) / (Σ p + Σ t + smooth)``; the loss is
    ``1 − mean_c D_c``. A class absent from both target and prediction gives ``D_c ≈ 1``
    (no nan).

    Args:
        smooth: added to numerator and denominator.

    Example:
        >>> loss = SoftDiceLoss()(torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))
    """

    def __init__(self, *, smooth: float = 1e-5) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the loss.

        Args:
            logits: (B, C, H, W), any float dtype (computed in float32).
            labels: (B, H, W) int64 in 0..C-1.

        Returns:
            Scalar tensor in [0, 1].

        Raises:
            ValueError: shapes do not match.
        """
        _check_pair(logits, labels)
        probs = torch.softmax(logits.float(), dim=1)[:, 1:]
        onehot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
        dims = (0, 2, 3)
        intersection = (probs * onehot).sum(dims)
        denominator = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        return 1 - dice.mean()


class DiceCELoss(nn.Module):
    """Soft Dice over the ROIs plus pixel-wise cross-entropy (all classes), weighted 1:1.

    Args:
        dice_weight: weight of the Dice term.
        ce_weight: weight of the cross-entropy term.
        smooth: see ``SoftDiceLoss``.
    """

    def __init__(
        self, *, dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5
    ) -> None:
        super().__init__()
        self.dice = SoftDiceLoss(smooth=smooth)
        self.cross_entropy = CrossEntropyLoss()
        self.dice_weight, self.ce_weight = dice_weight, ce_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return ``dice_weight * Dice + ce_weight * CE`` (see ``SoftDiceLoss.forward``)."""
        dice = self.dice(logits, labels)
        return self.dice_weight * dice + self.ce_weight * self.cross_entropy(logits, labels)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Pixel-wise cross-entropy over all classes, computed in float32.

    Soft Dice is known to bias volumes where the boundary is uncertain (Bertels et al.,
    MICCAI 2020); cross-entropy's optimum is the calibrated probability, whose argmax does
    not favour either side of a blurred boundary. Offered for area measurement.
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the mean cross-entropy (see ``SoftDiceLoss.forward`` for the shapes)."""
        _check_pair(logits, labels)
        return super().forward(logits.float(), labels)


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "dice": SoftDiceLoss,
    "dice_ce": DiceCELoss,
    "ce": CrossEntropyLoss,
}


def build_loss(name: str) -> nn.Module:
    """Return the loss called ``name``: ``loss(logits (B,C,H,W), labels (B,H,W)) -> scalar``.

    Args:
        name: "dice" (the published soft Dice over ROIs), "dice_ce" (Dice + cross-entropy,
            the default for training) or "ce" (cross-entropy alone).

    Returns:
        The loss module.

    Raises:
        ConfigError: unknown name; the message lists the known ones.

    Example:
        >>> loss_fn = MultiOutputLoss(build_loss("dice_ce"))
    """
    check_loss(name)
    return LOSSES[name]()


def check_loss(name: str, *, setting: str = "loss") -> None:
    """Refuse a loss name not in `LOSSES`, naming ``setting`` (``--loss (loss)``) and the
    known names.

    Raises:
        ConfigError: unknown name.
    """
    if name not in LOSSES:
        raise ConfigError(f"{setting} {name!r} is unknown; use one of {', '.join(LOSSES)}.")


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (B, H, W) label batch to ``size`` by nearest neighbour (labels never blend)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return resized[:, 0].long()


class MultiOutputLoss(nn.Module):
    """Weighted sum of a base loss over a model's list of outputs.

    Labels are resized by nearest neighbour for each output at lower resolution. By default an
    output at scale ``2**-k`` of the labels gets weight ``0.5**k`` (nnU-Net deep supervision:
    1, 0.5, 0.25), and weights are normalised to sum 1; two full-resolution outputs (the
    pyramid's two stages) thus get equal weights, as published.

    Args:
        base: loss for one output, ``base(logits, labels) -> scalar``.
        weights: one weight per output (normalised over the outputs present), or None.

    Example:
        >>> loss_fn = MultiOutputLoss(build_loss("dice"))
        >>> total = loss_fn(model(images), labels)          # doctest: +SKIP
        >>> final = loss_fn.final_loss(model(images), labels)  # doctest: +SKIP
    """

    def __init__(self, base: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.base = base
        self.weights = None if weights is None else tuple(float(w) for w in weights)

    def output_weights(self, outputs: Sequence[torch.Tensor], labels: torch.Tensor) -> list[float]:
        """Return the normalised weight of each output.

        Raises:
            ConfigError: fewer weights than outputs, or weights summing to ≤ 0.
        """
        if self.weights is None:
            raw = [0.5 ** round(math.log2(labels.shape[-1] / out.shape[-1])) for out in outputs]
        elif len(self.weights) < len(outputs):
            raise ConfigError(
                f"MultiOutputLoss got {len(outputs)} outputs but {len(self.weights)} weights; "
                "give one weight per output."
            )
        else:
            raw = list(self.weights[: len(outputs)])
        total = sum(raw)
        if total <= 0:
            raise ConfigError(f"MultiOutputLoss weights must sum to > 0, got {raw}.")
        return [w / total for w in raw]

    def per_output(
        self, outputs: Sequence[torch.Tensor] | torch.Tensor, labels: torch.Tensor
    ) -> list[torch.Tensor]:
        """Return the unweighted base loss of every output (labels resized to each)."""
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        return [
            self.base(out, resize_labels(labels, (int(out.shape[-2]), int(out.shape[-1]))))
            for out in outputs
        ]

    def final_loss(
        self, outputs: Sequence[torch.Tensor] | torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Return the base loss of the final output alone (element 0), for reporting."""
        final = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
        return self.base(final, labels)

    def forward(
        self, outputs: Sequence[torch.Tensor] | torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Return the weighted total loss.

        Args:
            outputs: the model's list of logits (element 0 at full resolution), or one tensor.
            labels: (B, H, W) int64 at full resolution.

        Returns:
            Scalar tensor.
        """
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        weights = self.output_weights(outputs, labels)
        losses = self.per_output(outputs, labels)
        total = weights[0] * losses[0]
        for weight, loss in zip(weights[1:], losses[1:], strict=True):
            total = total + weight * loss
        return total
