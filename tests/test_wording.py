"""Tests for sliceseg.wording: how a message names a list compactly."""

from __future__ import annotations

import pytest

from sliceseg.wording import few_of


class TestFewOf:
    @pytest.mark.parametrize(
        ("names", "expected"),
        [
            ([], ""),
            (["a"], "a"),
            (["a", "b", "c"], "a, b, c"),
            (["a", "b", "c", "d"], "a, b, c and 1 more"),
            (["a", "b", "c", "d", "e"], "a, b, c and 2 more"),
        ],
    )
    def test_names_the_first_three_then_counts_the_rest(
        self, names: list[str], expected: str
    ) -> None:
        assert few_of(names) == expected

    def test_shown_sets_how_many_are_named(self) -> None:
        assert few_of(("p1", "p2", "p3"), shown=1) == "p1 and 2 more"
        assert few_of(("p1", "p2", "p3"), shown=5) == "p1, p2, p3"
