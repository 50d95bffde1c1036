"""The house rules that keep the code readable: layers, no facade imports, short functions and
modules."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sliceseg"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_FUNCTION_LINES = 50  # a function fits on a screen (docstring not counted)
MAX_MODULE_LINES = 500  # past that, a module holds two ideas: split it

# Declarative tables, not logic: one entry per DICOM attribute / option / table row. Each says why.
LONG_BY_DESIGN = {
    ("phantom/files.py", "dicom_bytes"): "the DICOM attribute list of one phantom file",
}
LONG_MODULES_BY_DESIGN: dict[str, str] = {}  # "path": "the table it holds"


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


def _function_lengths() -> dict[tuple[str, str], int]:
    """(module path, function name) → code lines, the longest of a name in a module."""
    lengths: dict[tuple[str, str], int] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = (path.relative_to(SRC).as_posix(), node.name)
                lengths[where] = max(lengths.get(where, 0), _code_lines(node))
    return lengths


def _module_lengths() -> dict[str, int]:
    return {
        path.relative_to(SRC).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in _modules()
    }


def test_no_function_is_longer_than_a_screen():
    allowed = LONG_BY_DESIGN.keys()
    too_long = [
        f"{module} {name} ({lines})"
        for (module, name), lines in _function_lengths().items()
        if lines > MAX_FUNCTION_LINES and (module, name) not in allowed
    ]
    assert too_long == []


def test_no_module_is_longer_than_its_limit():
    allowed = LONG_MODULES_BY_DESIGN.keys()
    too_long = [
        f"{module} ({lines})"
        for module, lines in _module_lengths().items()
        if lines > MAX_MODULE_LINES and module not in allowed
    ]
    assert too_long == []


def _stale_exceptions(
    long_functions: Iterable[tuple[str, str]], long_modules: Iterable[str]
) -> list[str]:
    """The listed functions and modules that are within the limits now (or went away)."""
    functions, modules = _function_lengths(), _module_lengths()
    return [
        f"{module} {name}"
        for module, name in sorted(long_functions)
        if functions.get((module, name), 0) <= MAX_FUNCTION_LINES
    ] + [module for module in sorted(long_modules) if modules.get(module, 0) <= MAX_MODULE_LINES]


def test_every_exception_to_the_limits_is_still_needed():
    """An entry whose function or module got short (or went away) must leave the lists."""
    assert _stale_exceptions(LONG_BY_DESIGN, LONG_MODULES_BY_DESIGN) == []


def test_the_stale_check_catches_an_entry_no_longer_needed():
    listed_functions = [
        ("phantom/files.py", "dicom_bytes"),  # long by design: still needed
        ("inference/folder.py", "_area_warnings"),  # two lines
        ("inference/folder.py", "no_such_function"),
    ]
    assert _stale_exceptions(listed_functions, ["errors.py", "no_such_module.py"]) == [
        "inference/folder.py _area_warnings",
        "inference/folder.py no_such_function",
        "errors.py",
        "no_such_module.py",
    ]


def test_the_length_check_counts_code_not_the_docstring():
    source = 'def f():\n    """One.\n\n    Two.\n    """\n    a = 1\n    return a\n'
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef) and _code_lines(node) == 3  # def, a = 1, return


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


PAGE = SRC.parents[1] / "docs" / "architecture.md"
_DOTTED = re.compile(r"(?:sliceseg\.)?([a-z_]+(?:[./][a-z_0-9]+)*)\.([A-Za-z_][A-Za-z_0-9]*)")


def _defined_names() -> set[str]:
    """Every function, class and assigned name anywhere in the package (any depth)."""
    names = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def _resolves(module_path: str, name: str) -> bool:
    """``pkg.module`` + ``name``: an attribute, a submodule, or ``Class.attribute``."""
    try:
        module = importlib.import_module(f"sliceseg.{module_path}")
    except ModuleNotFoundError:
        owner_path, _, owner_name = module_path.rpartition(".")
        try:
            owner = getattr(importlib.import_module(f"sliceseg.{owner_path}"), owner_name)
        except (ModuleNotFoundError, AttributeError, ValueError):
            return False
        return hasattr(owner, name) or name in getattr(owner, "__dataclass_fields__", {})
    if hasattr(module, name):
        return True
    if not hasattr(module, "__path__"):  # a module, not a package: no submodules
        return False
    return importlib.util.find_spec(f"sliceseg.{module_path}.{name}") is not None


def _cited_names(page: str) -> tuple[list[str], list[str]]:
    """Dotted names (``measure.areas.is_summary_row``, ``io/files.atomic_path``) and called
    names (``read_series(...)``, ``def read_slice(``) the page cites."""
    packages = {p.name for p in SRC.iterdir() if p.is_dir()} | {p.stem for p in SRC.glob("*.py")}
    dotted, called = [], []
    for token in re.findall(r"`([^`\n]+)`", page):
        found = _DOTTED.match(token)
        if found and not token.endswith(".py") and found[1].split("/")[0].split(".")[0] in packages:
            dotted.append(f"{found[1].replace('/', '.')}:{found[2]}")
        called += re.findall(r"(?<![.\w])([A-Za-z_]\w*)\(", token)
    for block in re.findall(r"```python\n(.*?)```", page, re.S):
        called += re.findall(r"^(?:def|class) ([A-Za-z_]\w*)", block, re.M)
    return dotted, called


def test_every_name_the_architecture_page_cites_exists():
    dotted, called = _cited_names(PAGE.read_text(encoding="utf-8"))
    assert len(dotted) > 10 and len(called) > 100  # the page is read, not skipped
    missing = [name for name in dotted if not _resolves(*name.split(":"))]
    defined = _defined_names()
    missing += sorted({name for name in called if name not in defined})
    assert missing == []


def test_the_citation_check_catches_a_missing_name():
    dotted, called = _cited_names(
        "`io/files.atomic_write`, `measure.areas.no_such(x)` and `no_such_helper(x)`"
    )
    assert [name for name in dotted if not _resolves(*name.split(":"))] == [
        "io.files:atomic_write",
        "measure.areas:no_such",
    ]
    assert called == ["no_such_helper"] and "no_such_helper" not in _defined_names()


def test_the_slice_fields_on_the_page_are_the_code_s():
    from sliceseg.io.dicom import Slice

    page = PAGE.read_text(encoding="utf-8")
    block = page.split("class Slice:\n", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^    ([a-z_]+):", block, re.M)
    assert listed == [field.name for field in dataclasses.fields(Slice)]


def _top_level_names(tree: ast.Module) -> tuple[set[str], list[str]]:
    """A module's ``__all__`` and the names it defines at its top level, in order."""
    exported: set[str] = set()
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "__all__":
                exported = {e.value for e in node.value.elts}  # type: ignore[union-attr]
            elif isinstance(target, ast.Name):
                names.append(target.id)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
    return exported, names


def _shown_by_public_api(tree: ast.Module, name: str) -> bool:
    """Whether a public def's or class's signature or docstring in the module names ``name``."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if node.name.startswith("_") and not node.name.startswith("__"):
            continue
        shown = [ast.get_docstring(node) or ""]
        if isinstance(node, ast.ClassDef):
            shown += [ast.unparse(item) for item in node.body if isinstance(item, ast.AnnAssign)]
        else:
            shown += [ast.unparse(node.args), ast.unparse(node.returns or ast.Constant(None))]
        if any(word.search(text) for text in shown):
            return True
    return bool(word.search(ast.get_docstring(tree) or ""))


def test_a_public_name_is_used_outside_its_module():
    """A name without a leading underscore is API: another module, the tests, bench/,
    notebooks/ or the docs use it, it is in ``__all__`` or a public signature shows it. One
    only its own module uses is private (``_name``), so that readers know where it ends."""
    root = SRC.parents[1]
    texts = {path: path.read_text(encoding="utf-8") for path in _modules()}
    outside = "\n".join(
        path.read_text(encoding="utf-8")
        for pattern in ("tests/**/*.py", "bench/**/*.py", "notebooks/*.ipynb")
        for path in root.glob(pattern)
    ) + "".join(
        (root / "docs" / f).read_text(encoding="utf-8") for f in ("usage.md", "architecture.md")
    )
    only_here = []
    for path, text in texts.items():
        tree = ast.parse(text)
        exported, names = _top_level_names(tree)
        for name in names:
            if name.startswith("_") or name in exported:
                continue
            word = re.compile(rf"\b{re.escape(name)}\b")
            if any(word.search(other) for p, other in texts.items() if p != path):
                continue
            if word.search(outside) or _shown_by_public_api(tree, name):
                continue
            only_here.append(f"{path.relative_to(SRC)}: {name}")
    assert not only_here, "used only in their own module; name them _name:\n" + "\n".join(only_here)
