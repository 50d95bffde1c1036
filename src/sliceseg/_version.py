"""The installed version of sliceseg (one place; pyproject reads it)."""

__version__ = "0.1.0"
