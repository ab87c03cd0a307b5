"""annotations.json is measured before it is read; a file over the limit is refused unread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segpipe.dal.local_fs import FilesystemDatasetStore
from segpipe.dal.s3 import S3DatasetStore
from segpipe.errors import DatasetTooLarge
from segpipe.logic.validate import validate_request
from segpipe.models.report import ErrorCode
from tests.helpers.datasets import MemoryDatasetStore, healthy_dataset, small_defaults
from tests.unit.test_validate_errors import the_error


def test_an_annotations_file_over_the_limit_is_refused_with_its_size() -> None:
    builder = healthy_dataset()
    size = len(builder.to_bytes())

    validation = validate_request(
        builder.request(), project="lab", store=builder.store(), defaults=small_defaults(),
        max_annotations_bytes=size - 1,
    )  # fmt: skip

    issue = the_error(validation, ErrorCode.DATASET_TOO_LARGE)
    assert issue.context == {
        "dataset": "cells",
        "file": "annotations.json",
        "bytes": size,
        "max_bytes": size - 1,
    }


def test_an_annotations_file_at_the_limit_is_validated() -> None:
    builder = healthy_dataset()

    validation = validate_request(
        builder.request(), project="lab", store=builder.store(), defaults=small_defaults(),
        max_annotations_bytes=len(builder.to_bytes()),
    )  # fmt: skip

    assert validation.report.ok


class _Body:
    def read(self, amt: int | None = None) -> bytes:
        raise AssertionError("the body of an oversized annotations file was read")

    def close(self) -> None:
        self.closed = True


class _Client:
    def __init__(self) -> None:
        self.body = _Body()

    def get_object(self, **_: Any) -> dict[str, Any]:
        return {"Body": self.body, "ContentLength": 5_000_000_000}


def test_s3_refuses_by_content_length_without_reading_the_body() -> None:
    client = _Client()
    store = S3DatasetStore(client, "bucket")  # type: ignore[arg-type]

    with pytest.raises(DatasetTooLarge) as raised:
        store.read_annotations("lab", "cells", "annotations.json", max_bytes=1_000_000)

    assert raised.value.context == {"size": 5_000_000_000, "limit": 1_000_000}
    assert client.body.closed


def test_the_filesystem_store_refuses_by_file_size(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_bytes(b"{}" * 600)
    store = FilesystemDatasetStore.single(tmp_path)

    assert store.read_annotations("p", "d", "annotations.json", max_bytes=1200) == b"{}" * 600
    with pytest.raises(DatasetTooLarge):
        store.read_annotations("p", "d", "annotations.json", max_bytes=1199)


@pytest.mark.parametrize(("depth", "codes"), [(150, []), (100_000, [ErrorCode.DATASET_UNREADABLE.value])])
def test_deeply_nested_annotations_get_a_report_not_a_crash(depth: int, codes: list[str]) -> None:
    builder = healthy_dataset()
    nested = b'{"a": ' * depth + b"1" + b"}" * depth
    document = builder.to_bytes().rstrip().removesuffix(b"}") + b', "info": ' + nested + b"}"
    store = MemoryDatasetStore({("lab", "cells"): {**builder.files(), "annotations.json": document}})

    validation = validate_request(builder.request(), project="lab", store=store, defaults=small_defaults())

    assert [issue.code for issue in validation.report.errors] == codes
