"""Files that are never seen half written: every output, checkpoint and progress file goes through here.

A writer fills a temporary file beside the target (same folder, so the rename never crosses a file
system), the file is synced, renamed over the target (`os.replace`, atomic on POSIX) and the folder
synced, so a reader (SageMaker's checkpoint upload, the local runner, a resumed job) sees the old
file or the new one, never a part. A failed write removes its temporary file and leaves the target
as it was. Temporary names end in `.tmp`, which the local runner's uploads skip.

The local stack writes its own files through `atomic_path` too (segpipe_local.atomic, with a temporary
name per process and thread); this module imports nothing but the standard library, and the trainer
image does not import the local stack.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def temporary_path(path: Path) -> Path:
    """The temporary name a write of `path` uses: `{name}.tmp`. One name per target, not one per
    process: each file has one writer (rank 0, or one host's own folder), and SageMaker syncs the
    checkpoint folder to S3 and restores it on a resume, so a write cut short leaves at most one
    leftover per file, which the next write of that file replaces."""
    return path.with_name(path.name + TEMPORARY_SUFFIX)


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: Path, *, temporary: Path | None = None) -> Iterator[Path]:
    """A temporary path for a writer to fill (`torch.save`, `tifffile.imwrite`, ...); when the block
    ends without an error it is synced and renamed over `path`, else removed. Creates the folder.
    `temporary` is the name to fill (beside `path`); by default `temporary_path(path)`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary or temporary_path(path)
    try:
        yield temporary
        _sync(temporary)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    """`path` holds `data`, written atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """`path` holds `text` (UTF-8), written atomically."""
    write_bytes(path, text.encode("utf-8"))
