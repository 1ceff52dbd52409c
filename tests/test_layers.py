"""The package's layers: a module never imports from a higher layer (imports inside functions included).

io (and the foundation: errors, log, config, subject, datasets) -> signals, metrics -> emg / trial_import /
opensim_tools -> physics -> twin -> estimators -> evaluation -> report -> cli. The twins may use the
layers below them and see the estimators' outputs only through files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "musculo"

RANKS: dict[str, int] = {
    "musculo": 0, "musculo.errors": 0, "musculo.log": 0, "musculo.config": 0, "musculo.subject": 0,
    "musculo.datasets": 0, "musculo.io": 0,
    "musculo.signals": 1, "musculo.metrics": 1,
    "musculo.emg": 2, "musculo.trial_import": 2, "musculo.opensim_tools": 2, "musculo.contact": 2,
    "musculo.validate": 2, "musculo.subject_init": 2,
    "musculo.physics": 3,
    "musculo.twin": 4,
    "musculo.estimators": 5,
    "musculo.evaluation": 6, "musculo.stream": 6, "musculo.loso": 6,
    "musculo.report": 7,
    "musculo.cli": 8,
}


def rank(module: str) -> int:
    """Rank of a musculo module: that of its longest registered prefix."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in RANKS:
            return RANKS[prefix]
    raise KeyError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.parent / name.replace(".", "/")
    return base.is_dir() or base.with_suffix(".py").is_file()


def imported(source: str, name: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every musculo import in ``source`` at any depth (function bodies included).

    ``name`` is the module's dotted name (to resolve relative imports); ``from musculo.x import y``
    counts as an import of ``musculo.x.y`` when that is a module, else of ``musculo.x``.
    """
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "musculo"]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")
                target = ".".join(base[: len(base) - (node.level - 1)] + ([target] if target else []))
            if target.split(".")[0] != "musculo":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((node.lineno, sub if _is_module(sub) else target))
    return out


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every musculo import of a package file."""
    return imported(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_rank():
    unranked = []
    for path in FILES:
        try:
            rank(module_name(path))
        except KeyError:
            unranked.append(module_name(path))
    assert not unranked, f"add these modules to RANKS in tests/test_layers.py: {unranked}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_no_import_from_a_higher_layer(path):
    mine = rank(module_name(path))
    bad = [f"line {line}: {mod} (layer {rank(mod)})" for line, mod in imports_of(path) if rank(mod) > mine]
    assert not bad, f"{module_name(path)} (layer {mine}) imports from higher layers: {bad}"


def test_the_walker_sees_imports_inside_functions():
    """The checker itself finds imports in function bodies, relative ones and submodules."""
    src = ("import numpy\n"
           "def f():\n    from musculo.report import html\n"
           "class C:\n    def g(self):\n        from ..evaluation import COLUMNS\n")
    found = [m for _, m in imported(src, "musculo.physics.data")]
    assert found == ["musculo.report.html", "musculo.evaluation"]
    assert [rank(m) for m in found] == [7, 6]
