"""State that survives a restart of the local stack.

moto keeps everything in memory, so the stack mirrors the data bucket and the registry table
into the data folder (incrementally: only objects whose ETag changed are copied) and restores
them on the next start. A save follows every handled event and API write, and runs every few
seconds for uploads made directly to S3.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path, PurePosixPath
from typing import Any

logger = logging.getLogger(__name__)


class Snapshot:
    def __init__(self, *, root: Path, s3: Any, dynamodb: Any, bucket: str, table: str) -> None:
        self._objects = root / "s3" / bucket
        self._manifest = root / "s3-manifest.json"
        self._items = root / "dynamodb" / f"{table}.jsonl"
        self._s3 = s3
        self._dynamodb = dynamodb
        self._bucket = bucket
        self._table = table
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path | None:
        parts = PurePosixPath(key).parts
        if not parts or ".." in parts or key.startswith("/"):
            return None
        return self._objects.joinpath(*parts)

    def _etags(self) -> dict[str, str]:
        if self._manifest.exists():
            data: dict[str, str] = json.loads(self._manifest.read_text())
            return data
        return {}

    def restore(self) -> tuple[int, int]:
        """Put saved objects and items back into a fresh moto; returns (objects, items)."""
        objects = 0
        saved = self._etags()
        for key in saved:
            path = self._path(key)
            if path is not None and path.exists():
                self._s3.upload_file(str(path), self._bucket, key)
                objects += 1
        items = 0
        if self._items.exists():
            batch: list[dict[str, Any]] = []
            for line in self._items.read_text().splitlines():
                batch.append({"PutRequest": {"Item": json.loads(line)}})
                if len(batch) == 25:
                    items += self._write(batch)
                    batch = []
            items += self._write(batch)
        # New ETags are computed by moto on upload; remember them so the next save copies nothing.
        self._manifest.parent.mkdir(parents=True, exist_ok=True)
        self._manifest.write_text(json.dumps(self._current_etags()))
        return objects, items

    def _write(self, batch: list[dict[str, Any]]) -> int:
        if batch:
            self._dynamodb.batch_write_item(RequestItems={self._table: batch})
        return len(batch)

    def _current_etags(self) -> dict[str, str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket)
        return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}

    def save(self) -> None:
        with self._lock:
            self._save_objects()
            self._save_items()

    def _save_objects(self) -> None:
        before, now = self._etags(), self._current_etags()
        for key, etag in now.items():
            path = self._path(key)
            if path is None or (before.get(key) == etag and path.exists()):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".part")
            self._s3.download_file(self._bucket, key, str(temporary))
            temporary.replace(path)
        for key in set(before) - set(now):
            path = self._path(key)
            if path is not None and path.exists():
                path.unlink()
        self._manifest.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._manifest.with_suffix(".tmp")
        temporary.write_text(json.dumps(now))
        temporary.replace(self._manifest)

    def _save_items(self) -> None:
        pages = self._dynamodb.get_paginator("scan").paginate(TableName=self._table)
        lines = [json.dumps(item, sort_keys=True) for page in pages for item in page.get("Items", [])]
        self._items.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._items.with_suffix(".tmp")
        temporary.write_text("\n".join(lines) + ("\n" if lines else ""))
        temporary.replace(self._items)


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
