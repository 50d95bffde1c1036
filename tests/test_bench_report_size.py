"""bench/report_size.py: without the browser it drives, one line says what to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import report_size


def test_without_playwright_one_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    """Only the dev extra declared playwright: a `.[bench]` install built the study, then
    ended in a ModuleNotFoundError's traceback."""
    monkeypatch.setitem(sys.modules, "playwright", None)  # import playwright.… fails
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    out = tmp_path / "study"
    assert (
        report_size.main(["--slices", "2", "--series", "1", "--unique", "2", "--out", str(out)])
        == 2
    )
    assert capsys.readouterr().err.splitlines() == [
        "bench/report_size.py: playwright is not installed; pip install -e '.[bench]' "
        "(it drives Debian's /usr/bin/chromium; no browser is downloaded)."
    ]
    assert not out.exists()  # refused before the study is built


def test_without_chromium_one_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    pytest.importorskip("playwright.sync_api")
    monkeypatch.setattr(report_size, "CHROMIUM", str(tmp_path / "no-chromium"))
    out = tmp_path / "study"
    assert (
        report_size.main(["--slices", "2", "--series", "1", "--unique", "2", "--out", str(out)])
        == 2
    )
    assert capsys.readouterr().err.splitlines() == [
        f"bench/report_size.py: no Chromium at {tmp_path / 'no-chromium'}; apt-get install "
        "chromium (playwright drives it; no browser is downloaded)."
    ]
    assert not out.exists()
