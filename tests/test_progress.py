"""The user manual's progress line, character for character."""

import re

import pytest

from sliceseg.training.progress import format_elapsed, progress_line

MANUAL = re.compile(
    r"^Completed epochs: \d+/\d+ \| Dice loss: \d+\.\d{3} \| Mean dice score: \d\.\d{3} \| "
    r"Time elapsed: \d+ hrs \d+ mins \d+ secs$"
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(35.2, "0 hrs 0 mins 35 secs"), (3725, "1 hrs 2 mins 5 secs"), (59.6, "0 hrs 1 mins 0 secs")],
)
def test_format_elapsed(seconds, text):
    assert format_elapsed(seconds) == text


def test_progress_line_matches_the_manual():
    line = progress_line(10, 500, 1.2623, 0.3691, 35)
    assert line == (
        "Completed epochs: 10/500 | Dice loss: 1.262 | Mean dice score: 0.369 | "
        "Time elapsed: 0 hrs 0 mins 35 secs"
    )
    assert MANUAL.match(line)
