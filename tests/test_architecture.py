"""The house rules that keep the code readable: layers, no facade imports, short functions."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sliceseg"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_FUNCTION_LINES = 60

# Declarative tables, not logic: one entry per option / DICOM attribute.
LONG_BY_DESIGN = {
    ("cli.py", "build_parser"): "the argparse table of every sub-command and option",
    ("phantom/files.py", "dicom_bytes"): "the DICOM attribute list of one phantom file",
}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the end, not counting the docstring."""
    assert node.end_lineno is not None
    first = node.body[0]
    has_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    doc_lines = (first.end_lineno or first.lineno) - first.lineno + 1 if has_docstring else 0
    return node.end_lineno - node.lineno + 1 - doc_lines


def test_no_function_is_longer_than_a_screen():
    too_long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            where = (path.relative_to(SRC).as_posix(), node.name)
            if _code_lines(node) > MAX_FUNCTION_LINES and where not in LONG_BY_DESIGN:
                too_long.append(f"{where[0]}:{node.lineno} {node.name} ({_code_lines(node)})")
    assert too_long == []


def test_nothing_inside_imports_the_package_facade():
    offenders = []
    for path in _modules():
        if path.name in ("__init__.py", "__main__.py") and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if (isinstance(node, ast.ImportFrom) and node.module == "sliceseg") or (
                "sliceseg" in names
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


def _lint_imports(src_root: Path) -> subprocess.CompletedProcess[str]:
    project = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(project / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=project,
        env={"PYTHONPATH": str(src_root), "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_import_contract_holds():
    result = _lint_imports(SRC.parent)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_import_contract_catches_an_upward_import(tmp_path):
    shutil.copytree(SRC, tmp_path / "sliceseg")
    reader = tmp_path / "sliceseg" / "io" / "files.py"
    reader.write_text(reader.read_text(encoding="utf-8") + "\nimport sliceseg.cli  # upward\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "sliceseg.io.files -> sliceseg.cli" in result.stdout


def test_every_module_has_its_line_in_the_architecture_page():
    page = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        path.relative_to(SRC).as_posix()
        for path in _modules()
        if path.name != "__init__.py" or path.parent == SRC
        if f"`{path.relative_to(SRC).as_posix()}`" not in page
    ]
    assert missing == []
