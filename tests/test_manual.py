"""README.md and docs/usage.md against the code: the flags, Python names, paths and columns they
show are the ones the commands take and write, so that a user who follows them literally gets
there."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pandas as pd
import pytest

import sliceseg
from sliceseg.cli import build_parser

ROOT = Path(__file__).parents[1]
USAGE = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
WORKFLOWS = ("predict", "train", "check", "measure", "evaluate", "suggest", "merge", "reprofile")
WORKFLOWS += ("info",)
# Flags of the tools the manual runs sliceseg under (sbatch, torchrun, papermill), not ours.
FOREIGN = {"--array", "--cpus-per-task", "--cwd", "--dependency", "--gres", "--job-name", "--mem"}
FOREIGN |= {"--nnodes", "--nproc_per_node", "--output", "--parsable", "--rdzv-endpoint"}
FOREIGN |= {"--standalone", "--time", "--wrap", "--help", "--cpus"}  # docker run --cpus


def _flags_by_command() -> dict[str, set[str]]:
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: {flag for action in parser._actions for flag in action.option_strings}
        for name, parser in sub.choices.items()
    }


def _resolve(dotted: str) -> object:
    """``sliceseg.a.b.c`` as a user's code reaches it: modules imported, then attributes."""
    parts = dotted.split(".")
    value: object = sliceseg
    for depth, part in enumerate(parts[1:], start=2):
        try:
            value = getattr(value, part)
        except AttributeError:
            value = importlib.import_module(".".join(parts[:depth]))
    return value


def test_every_option_of_the_workflow_commands_is_in_the_manual():
    missing = [
        f"sliceseg {command} {flag}"
        for command, flags in _flags_by_command().items()
        if command in WORKFLOWS
        for flag in sorted(flags)
        if flag.startswith("--") and flag != "--help"
        if not re.search(rf"{re.escape(flag)}(?![\w-])", USAGE)
    ]
    assert missing == []


def test_every_flag_the_manual_shows_exists():
    ours = set().union(*_flags_by_command().values())
    shown = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", USAGE + README))
    assert shown - ours - FOREIGN == set()


def test_every_python_name_the_manual_calls_resolves():
    called = set(re.findall(r"\bsliceseg(?:\.\w+)+(?=\()", USAGE + README))
    assert {"sliceseg.suggest_slices", "sliceseg.TissueSettings"} <= called
    for dotted in sorted(called):
        assert callable(_resolve(dotted)), dotted


def test_predict_writes_each_label_map_and_column_where_the_manual_says(
    tiny_model, tiny_phantom, tmp_path
):
    """The manual's correction loop fixes `results/series/<series>/labels/<key>.png`, `<key>`
    being the `file` column; it once said `<name>`, which the user could not find."""
    from sliceseg.inference.records import series_dir

    out = tmp_path / "results"
    sliceseg.predict_cohort(tiny_model, tiny_phantom / "test" / "dicoms", out, log=lambda _: None)
    long = pd.read_csv(out / "csa_long.csv")
    (name,) = pd.read_csv(out / "series.csv")["series"]
    for key in long["file"].unique():
        assert (series_dir(out, name) / "labels" / f"{key}.png").is_file(), key
    assert "results/series/<series>/labels/<key>.png" in USAGE
    assert "labels/<name>" not in USAGE
    pattern = r"`results/csa_long.csv`\n\(one row per slice and ROI:(.*?); CT"
    listed = re.search(pattern, USAGE, re.S)
    assert listed is not None
    assert re.findall(r"`(\w+)`", listed.group(1)) == list(long.columns)


@pytest.mark.parametrize("command", sorted(_flags_by_command()))
def test_every_command_is_in_the_manual_s_table(command):
    table = USAGE.split("\n## ", 1)[0]
    assert f"`sliceseg {command}" in table


def test_every_dependency_of_pyproject_is_in_the_readme_s_table():
    """README's "Why each dependency is there" names every package pyproject.toml installs (it
    once left out ``tomli``, which Python 3.10 needs to read a settings file)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    requirements = [*project["dependencies"], *extras]
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}
    names.discard("sliceseg")  # the dev extra's `sliceseg[notebooks]`
    table = README.split("## Why each dependency is there", 1)[1].strip().split("\n\n", 1)[0]
    listed = {name.lower() for name in re.findall(r"`([A-Za-z0-9_.-]+)(?:==[^`]*)?`", table)}
    assert sorted(names - listed) == []
