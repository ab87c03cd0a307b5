"""Files the local stack writes so that they are never seen half written: the snapshot's object,
item and manifest files, and the local runners' job records.

Each is written to a temporary name beside it (ending in `.tmp`, which restores and uploads skip),
synced, renamed into place and its folder synced, so a `kill -9` (or a power cut) leaves the old
file or the new one. The trainer has its own copy of these lines (segpipe_trainer.atomic): the
local stack does not import the trainer (torch), and the trainer image does not import the stack.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def temporary_path(path: Path) -> Path:
    """The temporary name a write of `path` uses: unique per process and thread, ending in `.tmp`."""
    return path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}{TEMPORARY_SUFFIX}")


def write_atomically(path: Path, chunks: Iterator[bytes] | bytes) -> None:
    """Write `path` so that it is never seen half written: temporary file, fsync, rename, fsync
    of the folder. Creates the folder; a failed write removes its temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        with temporary.open("wb") as file:
            for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
