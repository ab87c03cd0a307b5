"""The findings of a check: errors and warnings in the order found, and how issues list names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segpipe.logic.validate.thresholds import EXAMPLES
from segpipe.models.report import ErrorCode, Issue, TrainingDetails, ValidationReport, WarningCode


class Issues:
    """Errors and warnings in the order found.

    Checks build one and return it; the entry module adds them up in the report's order.
    """

    def __init__(self) -> None:
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def error(self, code: ErrorCode, message: str, **context: Any) -> None:
        self.errors.append(Issue(code=code.value, message=message, context=context))

    def warn(self, code: WarningCode, message: str, **context: Any) -> None:
        self.warnings.append(Issue(code=code.value, message=message, context=context))

    def extend(self, other: Issues) -> None:
        """Add `other`'s findings after these."""
        self.errors.extend(other.errors)
        self.warnings.extend(other.warnings)

    def has_error(self, code: ErrorCode) -> bool:
        return any(issue.code == code.value for issue in self.errors)

    def report(self, details: TrainingDetails) -> ValidationReport:
        return ValidationReport.from_issues(self.errors, self.warnings, details)


def examples(names: Sequence[str]) -> list[str]:
    """The first names of `names`, as many as an issue's context lists."""
    return list(names[:EXAMPLES])


def listing(names: Sequence[str]) -> str:
    """The first names of `names` quoted for a message, with how many more there are."""
    shown = ", ".join(repr(name) for name in names[:EXAMPLES])
    return shown + (f" and {len(names) - EXAMPLES} more" if len(names) > EXAMPLES else "")
