"""Tests for sliceseg.io.tables: the one rule by which user CSVs write their numbers."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from csv_text import significant_digits
from sliceseg.io.tables import SIGNIFICANT_DIGITS, csv_cells, csv_value, write_csv


class TestCsvValue:
    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (268.29082176000003, "268.29082176"),  # a cell csa.csv held
            (0.1, "0.1"),
            (0.1 + 0.2, "0.3"),
            (1234567.891, "1234567.891"),
            (1e-7, "1e-07"),
            (3.0, "3.0"),  # a float stays a float: reads back as one
            (np.float64(20.5), "20.5"),
            (float("inf"), "inf"),
        ],
    )
    def test_floats_lose_the_binary_noise_and_nothing_else(self, value, text):
        assert csv_value(value) == text
        assert float(text) == pytest.approx(float(value), rel=1e-12)

    def test_a_float32_keeps_its_own_digits(self):
        """Not those of the float64 it widens to (0.100000001490116)."""
        assert csv_value(np.float32(0.1)) == "0.1"
        assert np.float32(csv_value(np.float32(268.29083))) == np.float32(268.29083)

    @pytest.mark.parametrize("value", [7, np.int64(7), "0001", None])
    def test_other_values_are_written_as_they_are(self, value):
        assert csv_value(value) is value

    @pytest.mark.parametrize(("value", "cell"), [(True, 1), (False, 0), (np.bool_(True), 1)])
    def test_a_boolean_is_1_or_0(self, value, cell):
        """As csa.csv's unlike_training: one form of a flag in every CSV."""
        assert csv_value(value) == cell and type(csv_value(value)) is int

    def test_nan_stays_an_empty_cell(self):
        assert np.isnan(csv_value(float("nan")))

    def test_rounding_twice_changes_nothing(self):
        """The cohort's merge reads the series' tables and writes them again: same text."""
        for value in (268.29082176000003, 2 / 3, 1 / 7 * 1e5, 123456.78912345678):
            once = csv_value(value)
            assert csv_value(float(once)) == once
            assert significant_digits(once) <= SIGNIFICANT_DIGITS


class TestWriteCsv:
    def test_every_kind_of_column_follows_the_rule(self):
        """Float, float32, mixed (counts whole in a column of areas), int, text and nullable."""
        table = pd.DataFrame(
            {
                "area": [268.29082176000003, np.nan],
                "mixed": pd.Series([0.1 + 0.2, 3], index=["1", "n"], dtype=object),
                "single": np.array([0.1, 0.2], np.float32),
                "pixels": [401, 2],
                "file": ["a", None],
                "count": pd.array([1, None], dtype="Int64"),
            },
            index=["1", "n"],
        )
        out = io.StringIO()
        write_csv(table, out, index_label="slice")
        assert out.getvalue().splitlines() == [
            "slice,area,mixed,single,pixels,file,count",
            "1,268.29082176,0.3,0.1,401,a,1",
            "n,,3,0.2,2,,",
        ]

    def test_boolean_columns_are_1_and_0(self):
        """to_label.csv's unlike_training, evaluation_per_slice.csv's missed / false_positive."""
        table = pd.DataFrame(
            {
                "missed": [True, False],
                "unlike_training": pd.Series([False, True], dtype=object),
                "flag": pd.array([True, None], dtype="boolean"),
            }
        )
        out = io.StringIO()
        write_csv(table, out, index=False)
        assert out.getvalue().splitlines() == ["missed,unlike_training,flag", "1,0,1", "0,1,"]

    def test_the_table_itself_is_not_rounded(self):
        table = pd.DataFrame({"area": [268.29082176000003]})
        cells = csv_cells(table)
        assert table["area"].iloc[0] == 268.29082176000003 and cells["area"].iloc[0] == (
            "268.29082176"
        )

    def test_a_float_index_follows_the_rule(self):
        table = pd.DataFrame({"n": [1]}, index=pd.Index([0.1 + 0.2], name="x"))
        out = io.StringIO()
        write_csv(table, out)
        assert out.getvalue().splitlines() == ["x,n", "0.3,1"]
