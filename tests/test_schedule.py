"""The schedule: epochs or a time budget, the learning rate's decay, with a fake clock."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import tiny_config
from sliceseg.errors import ConfigError
from sliceseg.models.bundle import load_bundle
from sliceseg.training import loop, validation
from sliceseg.training.budget import Budget
from sliceseg.training.config import DEFAULT_EPOCHS, TrainConfig
from sliceseg.training.state import TrainingState, rescheduled, resume_config
from sliceseg.training.steps import ScheduleStart, learning_rate_at

LR = 3e-3


class TestPlannedEpochs:
    def test_given_epochs_are_kept_with_or_without_a_budget(self):
        assert TrainConfig(epochs=7).planned_epochs == 7
        assert TrainConfig(epochs=7, max_minutes=3).planned_epochs == 7

    def test_a_budget_without_epochs_trains_until_the_budget(self):
        assert TrainConfig(max_minutes=10).planned_epochs is None

    def test_neither_gives_the_default_epochs(self):
        assert DEFAULT_EPOCHS == 100
        assert TrainConfig().planned_epochs == 100

    def test_zero_epochs_is_refused(self):
        with pytest.raises(ConfigError, match=r"--epochs \(epochs\) must be a whole number ≥ 1"):
            TrainConfig(epochs=0)


class TestLearningRate:
    def test_poly_on_time_without_epochs(self):
        config = TrainConfig(learning_rate=1.0, max_minutes=10)
        # 0.9 power of the share of the budget left: 1, 0.75 ** 0.9, 0.25 ** 0.9, 0
        assert learning_rate_at(config, 1, 0.0) == 1.0
        assert learning_rate_at(config, 50, 150.0) == pytest.approx(0.771890, abs=1e-6)
        assert learning_rate_at(config, 2, 450.0) == pytest.approx(0.287175, abs=1e-6)
        assert learning_rate_at(config, 9, 600.0) == 0.0

    def test_with_epochs_the_earlier_end_decides(self):
        config = TrainConfig(learning_rate=1.0, epochs=4, max_minutes=10)
        assert learning_rate_at(config, 3, 60.0) == pytest.approx(0.5**0.9)  # epochs: 2/4
        assert learning_rate_at(config, 2, 480.0) == pytest.approx(0.2**0.9)  # time: 8/10

    def test_default_epochs_without_budget(self):
        config = TrainConfig(learning_rate=1.0)
        assert learning_rate_at(config, 51, 1e6) == pytest.approx(0.5**0.9)


class FakeClock:
    """A clock that moves only when an epoch ends: each training epoch takes ``step_s``."""

    def __init__(self, step_s: float) -> None:
        self.t, self.step_s = 1000.0, step_s

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def slow_epochs(monkeypatch):
    """Make every training epoch take 60 s on a fake clock (the real epoch runs)."""
    clock = FakeClock(60.0)
    real = loop.train_one_epoch

    def timed(*args, **kwargs):
        stats = real(*args, **kwargs)
        clock.t += clock.step_s
        return stats

    monkeypatch.setattr(loop, "train_one_epoch", timed)
    return clock


def validating_for(seconds: float, clock: FakeClock, monkeypatch) -> None:
    """Make every validation take ``seconds`` on ``clock`` (the real validation runs)."""
    real = validation.validate

    def timed(session, row):
        result = real(session, row)
        clock.t += seconds
        return result

    monkeypatch.setattr(validation, "validate", timed)


@pytest.mark.slow
class TestTimeBudget:
    def test_trains_until_the_budget_with_the_rate_decaying_over_it(
        self, tiny_phantom, tmp_path, slow_epochs
    ):
        config = tiny_config(
            tiny_phantom / "train",
            tmp_path / "m",
            epochs=None,
            max_minutes=5,
            print_checkpoint=10,
            save_checkpoint=10,
        )
        lines: list[str] = []
        result = loop.train(config, log=lines.append, clock=slow_epochs)
        # epoch k ends at 60 k s; after epoch 5 a sixth would end at 360 s > 300 s
        assert result.history["epoch"].tolist() == [1, 2, 3, 4, 5]
        assert result.history["elapsed_seconds"].tolist() == [60.0, 120.0, 180.0, 240.0, 300.0]
        expected = [LR * (1.0 - share) ** 0.9 for share in (0.0, 0.2, 0.4, 0.6, 0.8)]
        assert result.history["lr"].tolist() == pytest.approx(expected, rel=1e-9)
        progress = [line.split(" | ")[0] for line in lines if line.startswith("Completed")]
        assert progress == ["Completed epochs: 1", "Completed epochs: 5"]  # first and last
        assert any(line.startswith("Stopping after epoch 5: ") for line in lines)
        assert (tmp_path / "m" / "sliceseg_5.pt").exists()  # the last epoch is saved

    def test_a_slow_validation_is_counted_so_the_run_ends_within_the_budget(
        self, tiny_phantom, tmp_path, slow_epochs, monkeypatch
    ):
        """Training 60 s and validating 90 s an epoch, 5 minutes: after epoch 2's validation
        (300 s) a third epoch would end at 450 s. Counting training alone, epoch 3 started at
        300 s (300 + 60 > 300 was only checked before epoch 2's validation) and the run ended,
        its last validation done, at 450 s: a SLURM job killed before its last checkpoint."""
        validating_for(90.0, slow_epochs, monkeypatch)
        out = tmp_path / "m"
        config = tiny_config(tiny_phantom / "train", out, epochs=None, max_minutes=5)
        lines: list[str] = []
        result = loop.train(config, log=lines.append, clock=slow_epochs)
        assert result.history["epoch"].tolist() == [1, 2]
        assert result.history["elapsed_seconds"].tolist() == [60.0, 210.0]
        assert slow_epochs.t - 1000.0 == 300.0  # the run's end, its last validation included
        state = load_bundle(out / "sliceseg_2.pt").training_state
        assert state is not None and state["elapsed_seconds"] == 300.0
        assert state["budget_spent"] is True
        # the rate decays over the same clock: epoch 2 began 150 s into the 300
        assert result.history["lr"].tolist() == pytest.approx([LR, LR * 0.5**0.9], rel=1e-9)
        assert (
            "Stopping after epoch 2: the next epoch, with its validation and checkpoint, would "
            "pass the 5-minute budget (elapsed 0 hrs 5 mins 0 secs)." in lines
        )

    def test_the_plans_last_epoch_says_no_budget_stop(
        self, tiny_phantom, tmp_path, slow_epochs, monkeypatch
    ):
        """``--epochs 2 --max-minutes 5``: epoch 2 ends the plan at 300 s, where no third
        epoch would fit either; the run said it stopped for the budget, with no epoch left."""
        validating_for(90.0, slow_epochs, monkeypatch)
        config = tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=2, max_minutes=5)
        lines: list[str] = []
        result = loop.train(config, log=lines.append, clock=slow_epochs)
        assert result.history["epoch"].tolist() == [1, 2]
        assert not [line for line in lines if line.startswith("Stopping after")]

    def test_explicit_epochs_end_first_and_decide_the_rate(
        self, tiny_phantom, tmp_path, slow_epochs
    ):
        config = tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=3, max_minutes=5)
        result = loop.train(config, log=lambda _line: None, clock=slow_epochs)
        assert result.history["epoch"].tolist() == [1, 2, 3]
        expected = [LR * (1.0 - done / 3) ** 0.9 for done in (0, 1, 2)]
        assert result.history["lr"].tolist() == pytest.approx(expected, rel=1e-9)


class TestResumeATimeRun:
    SETTINGS = TrainConfig(data_dir="d", max_minutes=5.0).to_dict()

    def state(self, elapsed_s: float) -> TrainingState:
        return TrainingState(
            epoch=4,
            planned_epochs=None,
            max_minutes=5.0,
            elapsed_seconds=elapsed_s,
            best_val_dice=None,
            history=(),
            optimizer={},
        )

    def test_round_trips_and_continues_until_the_budget(self):
        state = TrainingState.from_dict(self.state(120.0).to_dict())
        assert state.planned_epochs is None
        config, notes = resume_config(self.SETTINGS, state, {})
        assert config.planned_epochs is None
        assert notes[0] == (
            "Resuming from checkpoint after epoch 4, 0 hrs 3 mins 0 secs left of the "
            "5-minute budget."
        )

    def test_a_spent_budget_is_refused(self):
        with pytest.raises(ConfigError, match="already spent its 5-minute budget"):
            resume_config(self.SETTINGS, self.state(300.0), {})


@pytest.mark.slow
def test_a_resumed_run_counts_the_time_its_checkpoint_spent_validating(
    tiny_phantom, tmp_path, slow_epochs, monkeypatch
):
    """Each epoch trains 60 s and validates 30 s: uninterrupted, epoch 3 ends at 60 + 30 + 60 +
    30 + 60 = 240 s. Resumed after epoch 2, it ended at 210 s: the checkpoint kept the time at
    the end of epoch 2's training, so its validation was lost from the clock, the budget and
    the learning rate's decay."""
    validating_for(30.0, slow_epochs, monkeypatch)
    out = tmp_path / "m"
    # 4.5 minutes: after epoch 3 (240 s) a fourth would pass 270 s
    config = tiny_config(tiny_phantom / "train", out, epochs=None, max_minutes=4.5)
    whole = loop.train(config, log=lambda _line: None, clock=slow_epochs)
    assert whole.history["elapsed_seconds"].tolist() == [60.0, 150.0, 240.0]
    resumed = loop.train(resume=out / "sliceseg_2.pt", log=lambda _line: None, clock=slow_epochs)
    assert resumed.history["elapsed_seconds"].tolist() == [60.0, 150.0, 240.0]
    # the rate of epoch 3 follows the 180 s spent before it, of 270
    assert resumed.history["lr"].iloc[-1] == pytest.approx(LR * (1 - 180.0 / 270.0) ** 0.9)
    assert resumed.history["lr"].tolist() == pytest.approx(whole.history["lr"].tolist())


class TestBudget:
    def test_another_epoch_fits_with_its_validation_and_checkpoint(self):
        budget = Budget(5.0, training_s=[60.0], validation_s=[90.0], checkpoint_s=[10.0])
        assert budget.next_epoch_fits(140.0, saves_now=False)  # 140 + 60 + 90 + 10 = 300
        assert not budget.next_epoch_fits(140.0, saves_now=True)  # + this checkpoint: 310
        assert not budget.next_epoch_fits(141.0, saves_now=False)

    def test_estimates_are_the_median_of_the_last_three(self):
        budget = Budget(10.0, training_s=[500.0, 60.0, 62.0, 58.0])  # a slow first epoch
        assert budget.next_epoch_fits(540.0, saves_now=False)  # 540 + 60 = 600
        assert not budget.next_epoch_fits(541.0, saves_now=False)

    def test_without_a_budget_every_epoch_fits(self):
        assert Budget(None, training_s=[1e9]).next_epoch_fits(1e9, saves_now=True)

    def test_timings_travel_in_the_checkpoint_so_a_resume_still_counts_validation(self):
        budget = Budget(5.0, training_s=[1.0, 60.0, 60.0, 60.0], validation_s=[90.0])
        state = TrainingState(epoch=1, planned_epochs=None, max_minutes=5.0,
                              elapsed_seconds=150.0, best_val_dice=None, history=(),
                              optimizer={}, timings=budget.to_dict())  # fmt: skip
        timings = TrainingState.from_dict(state.to_dict()).timings
        assert timings == {"training_s": [60.0] * 3, "validation_s": [90.0], "checkpoint_s": []}
        resumed = Budget.from_dict(5.0, timings)
        assert resumed.next_epoch_fits(150.0, saves_now=False)
        assert not resumed.next_epoch_fits(151.0, saves_now=False)
        assert Budget.from_dict(5.0, {}).next_epoch_fits(299.0, saves_now=False)  # older file


@pytest.mark.slow
def test_a_larger_budget_on_resume_continues_the_decay_from_the_rate_reached(
    tiny_phantom, tmp_path, slow_epochs
):
    """Stopped at its 5-minute budget and resumed with 10: epoch 6 trained at lr·(1 − 300/600)
    ^0.9, above epoch 5's lr·0.2^0.9. Now the rate goes on from epoch 5's and decays to 0 over
    the 300 s added; a resume of that run keeps the same schedule."""
    out = tmp_path / "m"
    config = tiny_config(tiny_phantom / "train", out, epochs=None, max_minutes=5)
    loop.train(config, log=lambda _line: None, clock=slow_epochs)
    grown = loop.train(
        resume=out / "sliceseg_5.pt",
        overrides={"max_minutes": 10},
        log=lambda _line: None,
        clock=slow_epochs,
    )
    reached = LR * 0.2**0.9  # epoch 5's rate, from 240 s of 300
    assert grown.history["epoch"].tolist() == list(range(1, 11))
    expected = [reached * (1.0 - share) ** 0.9 for share in (0.0, 0.2, 0.4, 0.6, 0.8)]
    assert grown.history["lr"].tolist()[5:] == pytest.approx(expected, rel=1e-9)
    assert np.all(np.diff(grown.history["lr"].to_numpy()) <= 0)
    again = loop.train(resume=out / "sliceseg_7.pt", log=lambda _line: None, clock=slow_epochs)
    assert again.history["lr"].tolist() == pytest.approx(grown.history["lr"].tolist(), rel=1e-12)


def test_a_resume_that_keeps_the_plan_keeps_the_schedule():
    state = TrainingState(epoch=3, planned_epochs=None, max_minutes=5.0, elapsed_seconds=180.0,
                          best_val_dice=None, history=({"lr": 0.001},), optimizer={})  # fmt: skip
    assert rescheduled(state, TrainConfig(max_minutes=5.0), learning_rate=LR) is state
    grown = rescheduled(state, TrainConfig(max_minutes=8.0), learning_rate=LR).schedule
    assert grown == ScheduleStart(epoch=3, elapsed_seconds=180.0, scale=pytest.approx(1 / 3))
    assert TrainingState.from_dict(replace(state, schedule=grown).to_dict()).schedule == grown
