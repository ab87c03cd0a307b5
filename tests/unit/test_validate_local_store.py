"""The filesystem `DatasetStore`: the bucket's key layout on disk, or one folder for offline use."""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.dal.local_fs import FilesystemDatasetStore
from segpipe.errors import DatasetNotFound, ObjectNotFound
from segpipe.logic.validate import validate_request
from tests.helpers.datasets import DatasetBuilder, healthy_dataset, small_defaults


def test_the_layout_mirrors_the_bucket_keys(tmp_path: Path) -> None:
    # Given a dataset written where the bucket would hold it
    builder = healthy_dataset()
    builder.write(tmp_path / "projects" / "lab" / "datasets" / "cells")
    store = FilesystemDatasetStore(tmp_path)

    # When it is validated through the store
    validation = validate_request(builder.request(), project="lab", store=store, defaults=small_defaults())

    # Then it reads like the in-memory dataset
    assert validation.report.ok
    assert validation.report.details.included_annotations == 200
    assert validation.report.details.images.sampled == 16


def test_files_in_sub_folders_are_listed_relative_to_the_dataset(tmp_path: Path) -> None:
    builder = DatasetBuilder(classes=["nucleus"])
    builder.add_images(2, prefix="slide 1/tiles/tile", objects={"nucleus": 1})
    folder = builder.write(tmp_path / "cells")

    files = FilesystemDatasetStore.single(folder).list_files("any", "thing")

    assert files == {"annotations.json", "slide 1/tiles/tile_00001.png", "slide 1/tiles/tile_00002.png"}


def test_heads_are_the_first_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(bytes(range(200)))
    store = FilesystemDatasetStore.single(tmp_path)

    assert store.read_head("p", "d", "a.bin", 10) == bytes(range(10))
    assert store.read_head("p", "d", "a.bin", 1000) == bytes(range(200))


def test_an_annotations_file_may_have_any_name(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text("{}")

    store = FilesystemDatasetStore.single(tmp_path / "export.json")

    assert store.read_annotations("p", "d", "annotations.json") == b"{}"
    assert "export.json" in store.list_files("p", "d")


def test_missing_things_raise_the_store_errors(tmp_path: Path) -> None:
    store = FilesystemDatasetStore(tmp_path)

    with pytest.raises(DatasetNotFound):
        store.read_annotations("lab", "cells", "annotations.json")
    with pytest.raises(ObjectNotFound):
        store.read_head("lab", "cells", "img.png", 10)
    assert store.list_files("lab", "cells") == set()


@pytest.mark.parametrize("name", ["../secret.png", "/etc/passwd", "a/../../b.png", "a\\b.png"])
def test_paths_cannot_leave_the_dataset_folder(tmp_path: Path, name: str) -> None:
    store = FilesystemDatasetStore.single(tmp_path)

    with pytest.raises(ObjectNotFound):
        store.read_head("p", "d", name, 10)
