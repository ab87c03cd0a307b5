"""The local stack's snapshot of the data bucket and the registry table: every key survives (folder
markers, a key and its "children", doubled slashes, case, long keys), items are saved first, files
are written atomically, and a `kill -9` during a save loses nothing a save had acknowledged."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from segpipe_local.snapshot import Snapshot
from segpipe_local.template import load_template, table_definition
from tests.helpers.durable_writes import record_syncs_and_renames

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "segpipe-local-data"
TABLE = "segpipe-local-registry"
REGION = "us-east-1"

TRICKY_KEYS = [
    "d/",  # a folder marker
    "a",
    "a/b",  # both a key and a "folder" of it
    "a/b/c",
    "x//y",
    "x/y",  # differ only in a doubled slash
    "x/y/",
    "/leading",
    "A",
    "Ab",
    "ab",  # differ only in case (a case-insensitive disk must keep both)
    "p/../q",
    "p/./q",
    "./r",
    "..",
    ".",
    "s.tmp",
    "t.part",
    "u.o",
    "%41",
    "sp ace/and+plus",
    "q?x=1#f&y",
    "ünïcödé/😀.png",
    "long/" + "k" * 1000,
    "deep/" + "/".join(["seg"] * 200),
]


def _clients() -> tuple[Any, Any]:
    s3 = boto3.client("s3", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    dynamodb.create_table(**table_definition(load_template(), table_name=TABLE))
    return s3, dynamodb


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(key, raising=False)


def _snapshot(root: Path, s3: Any, dynamodb: Any) -> Snapshot:
    return Snapshot(root=root, s3=s3, dynamodb=dynamodb, bucket=BUCKET, table=TABLE)


def _objects(s3: Any) -> dict[str, bytes]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def _items(dynamodb: Any) -> dict[str, dict[str, Any]]:
    pages = dynamodb.get_paginator("scan").paginate(TableName=TABLE)
    return {item["pk"]["S"] + "|" + item["sk"]["S"]: item for page in pages for item in page["Items"]}


def _item(pk: str, sk: str, value: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}, "value": {"N": str(value)}}


def test_every_key_survives_a_save_and_a_restore(credentials: None, tmp_path: Path) -> None:
    # Given a bucket holding keys that cannot all be paths on a disk, and registry items
    with mock_aws():
        s3, dynamodb = _clients()
        for key in TRICKY_KEYS:
            s3.put_object(Bucket=BUCKET, Key=key, Body=f"body of {key}".encode())
        dynamodb.put_item(TableName=TABLE, Item=_item("PROJECT#lab", "VERSION#000001", 1))
        dynamodb.put_item(TableName=TABLE, Item=_item("PROJECT#lab", "COUNTER", 1))
        before_objects, before_items = _objects(s3), _items(dynamodb)

        # When the stack saves its state
        _snapshot(tmp_path, s3, dynamodb).save()

    # Then a fresh stack restores every object and every item exactly
    with mock_aws():
        s3, dynamodb = _clients()
        restored = _snapshot(tmp_path, s3, dynamodb).restore()
        assert restored == (len(TRICKY_KEYS), 2)
        assert _objects(s3) == before_objects
        assert _items(dynamodb) == before_items


def test_saves_are_incremental_and_follow_overwrites_and_deletions(credentials: None, tmp_path: Path) -> None:
    with mock_aws():
        s3, dynamodb = _clients()
        for key in ("a", "a/b", "d/", "x//y"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"one")
        snapshot = _snapshot(tmp_path, s3, dynamodb)
        snapshot.save()
        s3.put_object(Bucket=BUCKET, Key="a", Body=b"two")
        s3.delete_object(Bucket=BUCKET, Key="a/b")
        s3.delete_object(Bucket=BUCKET, Key="d/")
        s3.put_object(Bucket=BUCKET, Key="x/y", Body=b"new")
        reads: list[str] = []
        s3.meta.events.register(
            "provide-client-params.s3.GetObject", lambda params, **_: reads.append(params["Key"])
        )

        snapshot.save()

        assert sorted(reads) == ["a", "x/y"]  # only what changed is copied

    with mock_aws():
        s3, dynamodb = _clients()
        _snapshot(tmp_path, s3, dynamodb).restore()
        assert _objects(s3) == {"a": b"two", "x//y": b"one", "x/y": b"new"}


def test_items_are_saved_first_and_one_unreadable_object_stops_nothing_else(
    credentials: None, tmp_path: Path
) -> None:
    with mock_aws():
        s3, dynamodb = _clients()
        for key in ("good/1", "broken", "good/2"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
        dynamodb.put_item(TableName=TABLE, Item=_item("PROJECT#lab", "COUNTER", 7))
        calls: list[str] = []
        dynamodb.meta.events.register("provide-client-params.dynamodb.Scan", lambda **_: calls.append("scan"))

        def get(params: dict[str, Any], **_: Any) -> None:
            calls.append(f"get {params['Key']}")
            if params["Key"] == "broken":
                raise OSError("the disk said no")

        s3.meta.events.register("provide-client-params.s3.GetObject", get)
        snapshot = _snapshot(tmp_path, s3, dynamodb)

        from segpipe_local.snapshot import SnapshotIncomplete

        with pytest.raises(SnapshotIncomplete, match="broken"):
            snapshot.save()

        assert calls[0] == "scan" and "get good/1" in calls and "get good/2" in calls
        s3.meta.events.unregister("provide-client-params.s3.GetObject", get)
        s3.meta.events.register(
            "provide-client-params.s3.GetObject", lambda params, **_: calls.append(f"get {params['Key']}")
        )
        calls.clear()
        snapshot.save()  # the next save retries what failed, and only that
        assert [call for call in calls if call.startswith("get")] == ["get broken"]

    with mock_aws():
        s3, dynamodb = _clients()
        assert _snapshot(tmp_path, s3, dynamodb).restore() == (3, 1)


def test_every_file_is_written_to_a_temporary_name_synced_then_renamed(
    credentials: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced, renamed = record_syncs_and_renames(monkeypatch)
    with mock_aws():
        s3, dynamodb = _clients()
        for key in ("a", "a/b", "d/"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"data")
        dynamodb.put_item(TableName=TABLE, Item=_item("PROJECT#lab", "COUNTER", 1))
        _snapshot(tmp_path, s3, dynamodb).save()

    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(written) == 5  # three objects, the items, the manifest
    assert {target for _, target in renamed} == {str(path) for path in written}
    for source, target in renamed:
        assert source in synced  # the data reached the disk before the new name did
        assert str(Path(target).parent) in synced[synced.index(source) :]  # and so did the rename


# --- kill -9 during a save --------------------------------------------------------------------


def _generation(g: int) -> tuple[dict[str, bytes], dict[str, int]]:
    """The bucket and the table after step `g` of the child's loop (objects, item values)."""
    objects: dict[str, bytes] = {}
    items: dict[str, int] = {}
    if g <= 0:
        return objects, items
    for step in (g - 1, g):  # each step adds a generation of keys and deletes the one before last
        if step < 1:
            continue
        for suffix in ("", "d/", "a", "a/b", "x//y", "x/y", "A", "a-", "%41"):
            key = f"gen/{step:04d}/{suffix}"
            objects[key] = f"{key}@{step}".encode()
        items[f"GEN#{step}|x"] = step
    objects["shared/counter"] = str(g).encode()
    objects["shared/"] = b""
    objects["big/blob"] = hashlib.sha256(str(g).encode()).digest() * (64 * 1024 // 32)  # 64 KiB
    items["COUNTER|x"] = g
    return objects, items


def _child(root: Path) -> None:
    """Save in a loop, saying `ack g` once save g has returned."""
    with mock_aws():
        s3, dynamodb = _clients()
        snapshot = _snapshot(root, s3, dynamodb)
        g = 0
        while True:
            g += 1
            before, _ = _generation(g - 1)
            objects, items = _generation(g)
            for key in set(before) - set(objects):
                s3.delete_object(Bucket=BUCKET, Key=key)
            for key, body in objects.items():
                if before.get(key) != body:
                    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            stale = f"GEN#{g - 2}"
            dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": stale}, "sk": {"S": "x"}})
            for name, value in items.items():
                pk, sk = name.split("|")
                dynamodb.put_item(TableName=TABLE, Item=_item(pk, sk, value))
            print(f"saving {g}", flush=True)
            snapshot.save()
            print(f"ack {g}", flush=True)


def _kill_during_a_save(root: Path, *, after: int, delay: float) -> int:
    """Run the child, SIGKILL it `delay` seconds into save `after`; returns the last acknowledged."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            str(ROOT / part) for part in ("functions", "infra", "training_image", "")
        ),
    }
    child = subprocess.Popen(
        [sys.executable, __file__, str(root)], stdout=subprocess.PIPE, env=environment, text=True
    )
    assert child.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in child.stdout:
        lines.append(line.strip())
        if line.strip() == f"saving {after}":
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, lines
    lines += [line.strip() for line in child.stdout]
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return max((int(line.split()[1]) for line in lines if line.startswith("ack ")), default=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_kill_during_a_save_loses_nothing_acknowledged(
    credentials: None, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    acknowledged = _kill_during_a_save(tmp_path, after=rng.randint(3, 6), delay=rng.uniform(0.0, 0.04))
    assert acknowledged >= 2
    objects_then, items_then = _generation(acknowledged)
    objects_next, items_next = _generation(acknowledged + 1)  # the save that was cut short

    with mock_aws():
        s3, dynamodb = _clients()
        _snapshot(tmp_path, s3, dynamodb).restore()
        objects = _objects(s3)
        items = {name: int(item["value"]["N"]) for name, item in _items(dynamodb).items()}

    assert not list(tmp_path.rglob("*.tmp"))  # the restore cleared what the cut-short save left
    _nothing_acknowledged_is_lost(objects_then, objects_next, objects)
    _nothing_acknowledged_is_lost(items_then, items_next, items)


_MISSING = object()


def _nothing_acknowledged_is_lost(
    then: dict[str, Any], cut_short: dict[str, Any], restored: dict[str, Any]
) -> None:
    """Each acknowledged entry is restored as acknowledged, or as the interrupted save had already
    written it (its newer value, or gone if that save deleted it); nothing else is restored."""
    for key, value in then.items():
        allowed = [value, cut_short.get(key, _MISSING)]
        assert restored.get(key, _MISSING) in allowed, key
    for key, value in restored.items():
        assert key in then or key in cut_short, key
        assert value in (then.get(key), cut_short.get(key)), key


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
