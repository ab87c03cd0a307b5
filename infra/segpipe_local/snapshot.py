"""State that survives a restart of the local stack.

moto keeps everything in memory, so the stack mirrors the registry table and the data bucket into
the data folder and restores them on the next start. A save follows every handled event and API
write, and runs every few seconds for uploads made directly to S3.

Layout under `state/`:

- `dynamodb/{table}.jsonl`: every item, one JSON line each (saved first: the registry is small and
  holds what matters most, such as the version counters);
- `objects/{bucket}/`: one file per object, its name the S3 key encoded (`encode_key`) so that
  every key, folder markers (`d/`), a key and its "children" (`a`, `a/b`), `x//y` and `x/y`,
  has a name of its own that decodes back to it;
- `objects/{bucket}.manifest.json`: the ETag and content type of each saved object, so a save
  copies only the objects that changed.

Every file is written to a temporary name, synced, renamed into place, and its folder synced, so
a `kill -9` (or a power cut) during a save leaves each file either as the last save left it or as
this one writes it: nothing a finished save wrote is lost. Restores read the object files
themselves (their names are the keys); snapshots of the older layout (`state/s3/`, where keys
were paths) are not restored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segpipe_local.atomic import TEMPORARY_SUFFIX as _TEMPORARY
from segpipe_local.atomic import write_atomically

logger = logging.getLogger(__name__)

_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_.-")
_CHUNK = 200  # characters of an encoded key per path component (file systems allow 255 bytes)
_FILE, _FOLDER = ".o", ".d"  # suffixes the encoding never ends a name with on its own


class SnapshotIncomplete(Exception):
    """Some objects could not be saved; everything else was, and the next save retries them."""


def encode_key(key: str) -> Path:
    """The relative path an S3 key is saved under: unique per key, reversible (`decode_key`).

    Bytes other than `[a-z0-9_.-]` become `%xx` (lowercase hex), so a name holds no `/`, no
    upper case (keys differing only in case stay apart on case-insensitive disks) and no
    non-ASCII. Long keys are cut into 200-character folders (`*.d`); the last part is the file
    (`*.o`). A suffix follows every part, so no name is `.` or `..` and a file never has the name
    of a folder.
    """
    text = "".join(chr(byte) if byte in _PLAIN else f"%{byte:02x}" for byte in key.encode("utf-8"))
    parts = [text[start : start + _CHUNK] for start in range(0, len(text), _CHUNK)] or [""]
    return Path(*[part + _FOLDER for part in parts[:-1]], parts[-1] + _FILE)


def decode_key(path: Path) -> str:
    """The S3 key `encode_key` turned into `path` (relative to the objects folder)."""
    *folders, name = path.parts
    if not name.endswith(_FILE) or not all(folder.endswith(_FOLDER) for folder in folders):
        raise ValueError(f"not a saved object: {path}")
    text = "".join(folder[: -len(_FOLDER)] for folder in folders) + name[: -len(_FILE)]
    data, index = bytearray(), 0
    while index < len(text):
        if text[index] == "%":
            data.append(int(text[index + 1 : index + 3], 16))
            index += 3
        else:
            data.append(ord(text[index]))
            index += 1
    return data.decode("utf-8")


class Snapshot:
    def __init__(self, *, root: Path, s3: Any, dynamodb: Any, bucket: str, table: str) -> None:
        self._objects = root / "objects" / bucket
        self._manifest = root / "objects" / f"{bucket}.manifest.json"
        self._items = root / "dynamodb" / f"{table}.jsonl"
        self._old_layout = root / "s3" / bucket
        self._s3 = s3
        self._dynamodb = dynamodb
        self._bucket = bucket
        self._table = table
        self._lock = threading.Lock()

    # --- restore --------------------------------------------------------------------------------

    def restore(self) -> tuple[int, int]:
        """Put saved items and objects back into a fresh moto; returns (objects, items)."""
        if self._old_layout.exists():
            logger.warning("%s holds a snapshot of an older layout; it is not restored", self._old_layout)
        with self._lock:
            items = self._restore_items()
            saved = self._read_manifest()
            objects = 0
            for path, key in self._saved_files():
                extra = (
                    {"ContentType": saved[key]["content_type"]}
                    if saved.get(key, {}).get("content_type")
                    else {}
                )
                with path.open("rb") as body:
                    self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, **extra)
                objects += 1
            # moto computes new ETags on upload; remember them so the next save copies nothing.
            current = self._current_objects()
            self._write_manifest(
                {
                    key: {"etag": etag, "content_type": saved.get(key, {}).get("content_type")}
                    for key, etag in current.items()
                }
            )
        return objects, items

    def _restore_items(self) -> int:
        for folder in (self._items.parent, self._manifest.parent):  # an interrupted save's leftovers
            for leftover in folder.glob(f"*{_TEMPORARY}") if folder.is_dir() else []:
                leftover.unlink(missing_ok=True)
        if not self._items.exists():
            return 0
        count, batch = 0, []
        for line in self._items.read_text().splitlines():
            if line:
                batch.append({"PutRequest": {"Item": json.loads(line)}})
            if len(batch) == 25:
                count += self._write(batch)
                batch = []
        return count + self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> int:
        if batch:
            self._dynamodb.batch_write_item(RequestItems={self._table: batch})
        return len(batch)

    def _saved_files(self) -> Iterator[tuple[Path, str]]:
        """(file, key) of every saved object; leftovers of an interrupted save are removed."""
        if not self._objects.exists():
            return
        for path in sorted(self._objects.rglob("*")):
            if path.is_dir():
                continue
            if path.name.endswith(_TEMPORARY):
                path.unlink(missing_ok=True)
                continue
            try:
                key = decode_key(path.relative_to(self._objects))
            except ValueError:
                logger.warning("ignoring %s: not a saved object", path)
                continue
            yield path, key

    # --- save -----------------------------------------------------------------------------------

    def save(self) -> None:
        """Items first, then the objects that changed; raises `SnapshotIncomplete` (after saving
        everything else) when some objects could not be copied."""
        with self._lock:
            self._save_items()
            self._save_objects()

    def _save_items(self) -> None:
        pages = self._dynamodb.get_paginator("scan").paginate(TableName=self._table)
        lines = [json.dumps(item, sort_keys=True) for page in pages for item in page.get("Items", [])]
        write_atomically(self._items, ("\n".join(lines) + ("\n" if lines else "")).encode())

    def _save_objects(self) -> None:
        before, now = self._read_manifest(), self._current_objects()
        after: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        for key, etag in now.items():
            path = self._objects / encode_key(key)
            previous = before.get(key)
            if previous and previous.get("etag") == etag and path.exists():
                after[key] = previous
                continue
            try:
                after[key] = {"etag": etag, "content_type": self._copy(key, path)}
            except Exception as error:  # one unreadable object must not stop the others
                logger.warning("could not save s3://%s/%s: %s", self._bucket, key, error)
                failed[key] = str(error)
                if previous:
                    after[key] = previous  # what the last save wrote is still there
        self._write_manifest(after)
        # Only once the manifest no longer names them: the files of deleted objects.
        for key in set(before) - set(now):
            path = self._objects / encode_key(key)
            path.unlink(missing_ok=True)
            self._prune(path.parent)
        if failed:
            raise SnapshotIncomplete(f"{len(failed)} objects were not saved (retried next time): {failed}")

    def _copy(self, key: str, path: Path) -> str | None:
        answer = self._s3.get_object(Bucket=self._bucket, Key=key)
        with contextlib.closing(answer["Body"]) as body:
            write_atomically(path, iter(lambda: body.read(1 << 20), b""))
        content_type: str | None = answer.get("ContentType")
        return content_type

    def _prune(self, folder: Path) -> None:
        """Remove the chunk folders a long deleted key leaves empty."""
        while folder != self._objects and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def _current_objects(self) -> dict[str, str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket)
        return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}

    def _read_manifest(self) -> dict[str, dict[str, Any]]:
        try:
            data: dict[str, dict[str, Any]] = json.loads(self._manifest.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            logger.warning("%s is unreadable; every object will be copied again", self._manifest)
            return {}
        return data

    def _write_manifest(self, entries: dict[str, dict[str, Any]]) -> None:
        write_atomically(self._manifest, json.dumps(entries, sort_keys=True).encode())


class Snapshotter:
    """Saves soon after a change is signalled, and every `interval` seconds regardless."""

    def __init__(self, snapshot: Snapshot, *, interval: float) -> None:
        self._snapshot = snapshot
        self._interval = interval
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="snapshot", daemon=True)

    def changed(self) -> None:
        self._changed.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=30)
        self._snapshot.save()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._changed.wait(self._interval)
            self._changed.clear()
            if self._stop.is_set():
                return
            try:
                self._snapshot.save()
            except Exception:
                logger.warning("saving local state failed; will retry", exc_info=True)
