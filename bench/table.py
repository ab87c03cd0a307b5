"""Fixed-width result tables as the benchmarks print them: the columns are declared once, and the
header and every row are laid out from them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """A column's title and the format spec of its values (alignment, width, then precision and
    type: `">8.0f"`); the title takes the alignment and width."""

    title: str
    spec: str

    @property
    def title_spec(self) -> str:
        match = re.match(r"[<>^]?\d*", self.spec)
        return match.group() if match else ""


def table_header(columns: Sequence[Column]) -> str:
    return " ".join(f"{column.title:{column.title_spec}}" for column in columns)


def table_row(columns: Sequence[Column], values: Sequence[Any]) -> str:
    return " ".join(f"{value:{column.spec}}" for column, value in zip(columns, values, strict=True))
