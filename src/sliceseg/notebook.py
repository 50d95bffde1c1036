"""Notebook helpers: a folder chooser with a headless fallback, the phantom where the Settings
path is missing, live training curves."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from matplotlib.figure import Figure

from sliceseg.errors import ConfigError
from sliceseg.phantom.generate import PhantomSummary, generate_phantom
from sliceseg.progress_bars import shows_progress
from sliceseg.report.plots import plot_history
from sliceseg.user_paths import user_path

_NO_FRONTEND = "without a widget frontend (a headless run: papermill, nbconvert, a plain terminal)"
CURVES_ALT = "sliceseg training curves"


@dataclass(frozen=True)
class FolderChoice:
    """A folder chooser shown in a notebook, and the Settings path used when nothing is chosen.

    Displaying it shows the chooser (an ``ipyfilechooser.FileChooser``) in JupyterLab; where no
    widget can be drawn, the output reads that the Settings path is used instead.

    Attributes:
        default: the Settings path, as written there but for a leading ``~`` (the home folder).
        title: what the folder is for (shown above the chooser).
        chooser: the widget, or None when ``ipyfilechooser`` is not installed.
    """

    default: str
    title: str
    chooser: Any = field(default=None, repr=False)

    @property
    def is_chosen(self) -> bool:
        """True when a folder was picked in the chooser (its Select button was pressed)."""
        return self.chooser is not None and self.chooser.selected_path is not None

    @property
    def selected(self) -> str:
        """The folder picked in the chooser, else the Settings path (a string, like Settings)."""
        return str(self.chooser.selected_path) if self.is_chosen else self.default

    def summary(self) -> str:
        """One line naming the folder in use and where it came from."""
        if self.is_chosen:
            return f"{self.title}: {self.selected} (chosen above)."
        missing = "" if Path(self.default).exists() else "; it does not exist yet"
        hint = (
            "choose another folder above and run this cell again"
            if self.chooser is not None
            else "install the notebooks extra (pip install 'sliceseg[notebooks]') for a chooser"
        )
        return f"{self.title}: {self.default} (the Settings path{missing}; {hint})."

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, Any]:
        if self.chooser is None:
            text = (
                f"{self.title}: no folder chooser (ipyfilechooser is not installed); "
                f"the Settings path is used: {self.default}"
            )
            return {"text/plain": text}
        bundle = dict(self.chooser._repr_mimebundle_(include=include, exclude=exclude))
        bundle["text/plain"] = (
            f"{self.title}: a folder chooser starting at {_start_folder(self.default)}; "
            f"{_NO_FRONTEND} it cannot be shown and the Settings path is used: {self.default}"
        )
        return bundle


def _start_folder(path: Path | str) -> Path:
    """Return ``path`` when it is a folder, else its nearest existing parent folder."""
    folder = user_path(path).absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def choose_folder(default: Path | str, *, title: str) -> FolderChoice:
    """Make a folder chooser that starts at the Settings path (display it in a notebook cell).

    Args:
        default: the Settings path; used when nothing is chosen, e.g. in a headless run. A
            leading ``~`` is the home folder, as in the chooser (Python would not expand it).
        title: what the folder is for, e.g. "DICOM folder to segment".

    Returns:
        The choice; its ``selected`` is the folder to use in the next cell.

    Example:
        >>> picker = choose_folder("phantom/test/dicoms", title="DICOM folder to segment")
        >>> picker.selected
        'phantom/test/dicoms'
    """
    default = str(user_path(default))
    try:
        from ipyfilechooser import FileChooser
    except ImportError:
        return FolderChoice(str(default), title)
    chooser = FileChooser(
        str(_start_folder(default)), title=f"<b>{html.escape(title)}</b>", show_only_dirs=True
    )
    return FolderChoice(str(default), title, chooser)


def generate_phantom_if_missing(
    data_dir: Path | str, *, enabled: bool = True, log: Callable[[str], None] = print
) -> PhantomSummary | None:
    """Generate the synthetic phantom (`generate_phantom`, as ``sliceseg phantom``) so that the
    training data folder ``data_dir`` exists, when it does not and ``enabled``.

    The phantom writes its training data to ``<folder>/train`` (its test data beside it, in
    ``<folder>/test``), so ``data_dir`` must be a folder named ``train``: ``phantom/train``
    generates ``phantom/``.

    Args:
        data_dir: the training data folder of Settings (``dicoms/`` and ``labels/``).
        enabled: the Settings' ``make_phantom``; False leaves a missing folder to the data
            check, which names it.
        log: where the line saying what was generated goes.

    Returns:
        What was generated, or None when nothing was (the folder exists, or not ``enabled``).

    Raises:
        ConfigError: ``data_dir`` is missing and not named ``train``; or, from
            `generate_phantom`, its parent folder exists and is not empty.

    Example:
        >>> generate_phantom_if_missing("phantom/train")
        Phantom generated: 160 training slices in phantom/train, 40 test slices in phantom/test
    """
    folder = user_path(data_dir)
    if not enabled or folder.exists():
        return None
    if folder.name != "train":
        raise ConfigError(
            f"{folder}: does not exist, and the phantom cannot be generated there: it writes "
            f"its training data to a folder named train; set data_dir = "
            f'"{folder.parent / "train"}", or make_phantom = False and a folder that exists.'
        )
    phantom = generate_phantom(folder.parent, progress=shows_progress())
    log(
        f"Phantom generated: {phantom.n_train_slices} training slices in {phantom.train_dir}, "
        f"{phantom.n_test_slices} test slices in {phantom.test_dir}"
    )
    return phantom


class Checkpoint(Protocol):
    """What the curves read from the training loop's ``ProgressEvent`` (sliceseg.training)."""

    @property
    def epoch(self) -> int: ...
    @property
    def epochs(self) -> int: ...
    @property
    def dice_loss(self) -> float: ...
    @property
    def train_dice(self) -> float: ...
    @property
    def val_dice(self) -> float: ...
    @property
    def val_dice_per_roi(self) -> Mapping[str, float]: ...


def checkpoint_row(event: Checkpoint) -> dict[str, float]:
    """Turn a checkpoint event into one row of the history table that ``plot_history`` draws."""
    return {
        "epoch": int(event.epoch),
        "dice_loss": float(event.dice_loss),
        "train_dice": float(event.train_dice),
        "val_dice": float(event.val_dice),
        **{f"val_dice_{name}": float(dice) for name, dice in event.val_dice_per_roi.items()},
    }


@dataclass(frozen=True)
class CurvesPicture:
    """A rendered training-curves figure with the epoch it shows (PNG, HTML and text forms)."""

    png: bytes
    epoch: int
    epochs: int | None

    @property
    def caption(self) -> str:
        """E.g. "Training curves after epoch 10/500"."""
        of = f"/{self.epochs}" if self.epochs else ""
        return f"Training curves after epoch {self.epoch}{of}"

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, Any]:
        data = base64.b64encode(self.png).decode("ascii")
        page = (
            f'<figure><img alt="{CURVES_ALT}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(self.caption)}</figcaption></figure>"
        )
        return {"image/png": data, "text/html": page, "text/plain": self.caption}


class TrainingCurves:
    """One live figure of the training curves, redrawn at every print checkpoint.

    Pass it as ``train(config, on_checkpoint=curves)``: at each checkpoint it adds a row
    (training Dice loss and mean Dice, validation Dice overall and per ROI) and updates the
    figure in place in the notebook's output (``IPython.display`` with a display id).

    Example:
        >>> curves = TrainingCurves()
        >>> result = train(config, on_checkpoint=curves)
        >>> curves.history  # one row per checkpoint
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._handle: Any = None

    @property
    def history(self) -> pd.DataFrame:
        """The checkpoints seen so far, one row each (columns as in ``<name>_history.csv``)."""
        return pd.DataFrame(self.rows)

    def figure(self) -> Figure:
        """Draw the curves of the checkpoints seen so far."""
        return plot_history(self.history)

    def picture(self, *, epochs: int | None = None) -> CurvesPicture:
        """Render the current figure as a PNG picture."""
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=80, facecolor="white")
        return CurvesPicture(buffer.getvalue(), int(self.rows[-1]["epoch"]), epochs)

    def __call__(self, event: Checkpoint) -> None:
        """Add a checkpoint and redraw the figure (shown on the first call, updated after)."""
        from IPython.display import display

        self.rows.append(checkpoint_row(event))
        picture = self.picture(epochs=event.epochs)
        if self._handle is None:
            self._handle = display(picture, display_id=True)
        else:
            self._handle.update(picture)
