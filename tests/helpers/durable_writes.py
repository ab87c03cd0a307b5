"""What a test of a durable write watches: each file synced (by the path its descriptor names) and each
rename, in order, while the real `os.fsync` and `os.replace` still do the work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def record_syncs_and_renames(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[tuple[str, str]]]:
    """(paths synced, (source, target) of each rename), filled as the code under test runs."""
    synced: list[str] = []
    renamed: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        real_fsync(fd)

    def replace(source: Any, target: Any) -> None:
        renamed.append((str(source), str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return synced, renamed
