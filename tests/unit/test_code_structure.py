"""The product code stays readable: no function outside tests longer than 60 lines or taking more
than 6 parameters (keyword-only ones included, self and cls not) without a reason written on its def
line (`# long: <reason>`). Checked over functions/, infra/, bench/ and training_image/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("functions", "infra", "bench", "training_image")
MAX_LINES = 60
MAX_PARAMETERS = 6


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    arguments = node.args
    names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
    names += [f"*{a.arg}" for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return [name for name in names if name not in ("self", "cls")]


def offenders(root: Path, relative_to: Path | None = None) -> list[str]:
    """`path:line name` of each function over a limit with no `# long:` reason on its signature,
    the path relative to `relative_to` (default: root)."""
    base = root if relative_to is None else relative_to
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length <= MAX_LINES and len(_parameters(node)) <= MAX_PARAMETERS:
                continue
            signature = lines[node.lineno - 1 : node.body[0].lineno - 1]
            name = path.relative_to(base).as_posix()
            if not any("# long: " in line for line in signature):
                found.append(f"{name}:{node.lineno} {node.name}")
    return found


@pytest.mark.parametrize("folder", CHECKED)
def test_no_function_is_long_or_takes_many_parameters_without_a_reason(folder: str) -> None:
    assert offenders(ROOT / folder, relative_to=ROOT) == []


@pytest.mark.parametrize(
    ("source", "offending"),
    [
        ("def f(a, b, c, *, d, e, f, g):\n    pass\n", True),
        ("def f(a, b, c, *, d, e, f, g):  # long: settings\n    pass\n", False),
        ("class C:\n    def f(self, a, b, c, d, e, f):\n        pass\n", False),
        ("def f():\n" + "    x = 1\n" * 60, True),
        ("def f():\n" + "    x = 1\n" * 59, False),
    ],
)
def test_the_rule_counts_lines_and_parameters_as_stated(tmp_path: Path, source: str, offending: bool) -> None:
    (tmp_path / "module.py").write_text(source)

    assert bool(offenders(tmp_path)) is offending
