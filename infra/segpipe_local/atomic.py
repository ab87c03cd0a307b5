"""Files the local stack writes so that they are never seen half written: the snapshot's object,
item and manifest files, and the local runners' job records.

Each is written to a temporary name beside it (ending in `.tmp`, which restores and uploads skip),
synced, renamed into place and its folder synced, so a `kill -9` (or a power cut) leaves the old
file or the new one. The protocol is the trainer's (`segpipe_trainer.atomic.atomic_path`, which
imports only the standard library); the local stack's temporary names differ because several of
its threads may write one file, where each trainer file has one writer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from segpipe_trainer.atomic import TEMPORARY_SUFFIX, atomic_path

__all__ = ["TEMPORARY_SUFFIX", "temporary_path", "write_atomically"]


def temporary_path(path: Path) -> Path:
    """The temporary name a write of `path` uses: unique per process and thread, ending in `.tmp`."""
    return path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}{TEMPORARY_SUFFIX}")


def write_atomically(path: Path, chunks: Iterator[bytes] | bytes) -> None:
    """Write `path` so that it is never seen half written: temporary file, fsync, rename, fsync
    of the folder. Creates the folder; a failed write removes its temporary file."""
    with atomic_path(path, temporary=temporary_path(path)) as temporary, temporary.open("wb") as file:
        for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
            file.write(chunk)
