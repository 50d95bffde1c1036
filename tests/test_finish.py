"""The end of a training run: the best model written once, as the run's end and profile."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from sliceseg.models import bundle
from sliceseg.models.bundle import ModelMetadata, load_bundle, save_bundle
from sliceseg.training import finish as finish_module
from sliceseg.training import loop
from sliceseg.training.loop import train
from sliceseg.training.profile import add_profile


def _as_before(session, state, reference: Path) -> None:
    """What `finish` wrote before it wrote once: the run's end, then the profile, each a
    rewrite of the file (after the last epoch's model, when there was no best)."""
    if state.best_val_dice is None or not reference.exists():
        save_bundle(reference, session.evaluated, session.metadata_at(state.epoch))
    bundle = load_bundle(reference)
    ended = {**bundle.metadata.to_dict(), "run_end": finish_module._run_end(state)}
    save_bundle(reference, bundle.model, ModelMetadata.from_dict(ended))
    add_profile(reference, session.data.train, session.data.validation, divisor=session.divisor)


@pytest.mark.slow
@pytest.mark.parametrize("validation_fraction", [0.2, 0.0], ids=["best", "no-validation"])
def test_finish_writes_the_best_model_once_as_the_two_writes_did(
    tiny_phantom, tmp_path, monkeypatch, validation_fraction
):
    """`finish` wrote `<name>_best.pt` with the run's end, then again with the profile (three
    times without validation); now once, and the file holds the same weights and metadata."""
    reference, writes = tmp_path / "reference.pt", []
    real_finish, real_write = loop.finish, bundle.atomic_write_bytes

    def counted(path, data):
        writes.append(Path(path).name)
        return real_write(path, data)

    def finish_beside_the_old_way(session, state, log):
        best = session.path("best.pt")
        if best.exists():
            shutil.copyfile(best, reference)
        monkeypatch.setattr(bundle, "atomic_write_bytes", counted)
        result = real_finish(session, state, log)
        monkeypatch.setattr(bundle, "atomic_write_bytes", real_write)
        _as_before(session, state, reference)
        return result

    monkeypatch.setattr(loop, "finish", finish_beside_the_old_way)
    config = tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=2)
    train(
        dataclasses.replace(config, validation_fraction=validation_fraction), log=lambda _line: None
    )
    assert writes == ["sliceseg_best.pt"]
    ours, before = load_bundle(tmp_path / "m" / "sliceseg_best.pt"), load_bundle(reference)
    assert ours.metadata.familiarity is not None and ours.metadata.run_end is not None
    # json, not ==: a profile may hold nan, which equals nothing
    assert json.dumps(ours.metadata.to_dict()) == json.dumps(before.metadata.to_dict())
    assert ours.training_state is None and before.training_state is None
    theirs = before.model.state_dict()
    for name, tensor in ours.model.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name
