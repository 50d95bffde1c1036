"""Reading a written CSV as text: its numeric cells and their significant digits."""

from __future__ import annotations

import re


def significant_digits(cell: str) -> int:
    """The significant digits of a number as written (``3.0``: 1; ``268.29082176``: 11)."""
    mantissa = re.split("[eE]", cell.lstrip("+-"))[0].replace(".", "")
    return len(mantissa.strip("0")) or 1


def numeric_cells(text: str) -> list[str]:
    """Every cell of a CSV text that reads as a finite number (no quoted cells expected)."""
    cells = [cell for line in text.splitlines() for cell in line.split(",")]
    return [cell for cell in cells if re.fullmatch(r"[+-]?[\d.]+([eE][+-]?\d+)?", cell)]
