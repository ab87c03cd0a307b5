"""Every stable issue code that the report declares is one the backend can actually emit."""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.models.report import ErrorCode, WarningCode

LOGIC = Path(__file__).resolve().parents[2] / "functions" / "segpipe" / "logic"
SOURCES = "\n".join(path.read_text() for path in LOGIC.rglob("*.py"))


@pytest.mark.parametrize("code", [*ErrorCode, *WarningCode], ids=lambda code: code.value)
def test_declared_codes_are_emitted_by_the_logic(code: ErrorCode | WarningCode) -> None:
    assert f"{type(code).__name__}.{code.name}" in SOURCES


def test_codes_are_stable_snake_case_and_unique() -> None:
    values = [code.value for code in [*ErrorCode, *WarningCode]]
    assert len(values) == len(set(values))
    assert all(value.replace("_", "").isalpha() and value == value.lower() for value in values)
