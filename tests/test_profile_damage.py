"""Tests for sliceseg.measure.profile_damage: the checks a damaged training profile turns off.

NaN or infinite numbers in a (hand-edited or damaged) model file's profile switched the checks
they feed off without a word: NaN compares False, so an inverted series was no longer flagged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sliceseg.measure.familiarity import TrainingProfile, build_profile
from sliceseg.measure.profile_damage import CHECK_FIELDS, damaged_checks, without_checks
from sliceseg.measure.series_verdict import judge_series
from sliceseg.measure.slice_traits import SliceTraits, intensity_quantiles

NAMES = ("disc", "muscle", "spleen")


def _traits(rng: np.random.Generator, n: int, *, flip: bool = False) -> list[SliceTraits]:
    """Slices of a skewed image (``flip``: its contrast inverted); no slice shows the spleen."""
    out = []
    for _ in range(n):
        image = rng.exponential(1.0, 400) - 1.0
        areas = np.array([400.0, 900.0, 0.0]) * rng.uniform(0.9, 1.1, 3)
        distances = np.array([20.0, 40.0, np.nan])
        quantiles = intensity_quantiles(-image if flip else image)
        out.append(SliceTraits(rng.normal(0.0, 1.0, 8), quantiles, areas, distances))
    return out


@pytest.fixture(scope="module")
def profile() -> TrainingProfile:
    return build_profile(_traits(np.random.default_rng(0), 60), None)


class TestDamagedChecks:
    def test_what_training_writes_is_not_damage(self, profile: TrainingProfile):
        """Not learnt (NaN thresholds) and the spleen no slice showed (±inf positions)."""
        assert np.isnan(profile.intensity_series_threshold)
        assert profile.distance_low_mm[2] == np.inf and profile.distance_high_mm[2] == -np.inf
        assert damaged_checks(profile) == {}

    def test_nan_or_inf_names_the_check_and_the_numbers(self, profile: TrainingProfile):
        low = profile.intensity_low.copy()
        low[3] = np.nan
        near = profile.distance_low_mm.copy()
        near[0] = -np.inf  # the disc was shown: it has a range
        damaged = replace(
            profile, intensity_low=low, distance_low_mm=near, edge_slice_threshold=np.inf
        )
        assert damaged_checks(damaged) == {
            "intensity range check": ["intensity_low"],
            "ROI area and position check (and the confidence 0 of a missing expected ROI)": [
                "distance_low_mm"
            ],
            "field-of-view check": ["edge_slice_threshold"],
        }


class TestWithoutChecks:
    def test_an_inverted_series_is_flagged_only_by_the_checks_left(self, profile: TrainingProfile):
        inverted = _traits(np.random.default_rng(1), 10, flip=True)
        reason = "intensity quantiles far outside training (inverted contrast?)"
        assert reason in judge_series(profile, inverted, NAMES).reasons
        off = without_checks(profile, ["intensity range check"])
        assert reason not in judge_series(off, inverted, NAMES).reasons
        assert off.feature_mean is profile.feature_mean  # the other checks' numbers stay

    def test_every_check_off_flags_nothing(self, profile: TrainingProfile):
        inverted = _traits(np.random.default_rng(1), 10, flip=True)
        odd = [replace(t, areas_mm2=t.areas_mm2 * [9, 9, 1]) for t in inverted]  # spleen: 0
        assert not judge_series(without_checks(profile, CHECK_FIELDS), odd, NAMES).is_flagged
