"""The annotation scan on forked workers gives exactly what one process gives.

Each test validates one dataset with the scan cut into runs of chunks, scanned by forked
workers (`validate.workers`), and again on this process alone, and compares the reports, the
manifests and the plan's records in order.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from segpipe.logic.split import render_manifests
from segpipe.logic.validate import Validation, entry, loading, workers
from segpipe.logic.validate.loading import ChunkedArray
from tests.helpers.datasets import DatasetBuilder, box_rle, validate_dataset


def crowded_dataset() -> DatasetBuilder:
    """Broken annotations in every stretch of the array (more in all than the report's examples,
    fewer in the first stretch), an excluded class, unfinished images, RLE masks and integer
    coordinates."""
    builder = DatasetBuilder(classes=["nucleus", "mitosis", "debris"])
    for stretch in range(4):
        builder.add_images(10, objects={"nucleus": 3, "mitosis": 1, "debris": 1})
        image_id = 10 * stretch + 5
        builder.add_broken("zero_area", image_id=image_id)
        builder.add_broken("outside_image", count=2, image_id=image_id)
        builder.add_annotation(image_id, "nucleus", box_rle(2, 3, 10, 12, image_width=128, image_height=128))
        builder.add_annotation(image_id, "mitosis", [[10, 10, 30, 10, 30, 30, 10, 30]], iscrowd=0)
    builder.add_images(4, status="in_progress", objects={"nucleus": 2})
    builder.add_broken("unknown_image", count=3)
    return builder


def scanned_by(
    builder: DatasetBuilder, monkeypatch: pytest.MonkeyPatch, *, count: int, body: bytes | None = None
) -> tuple[Validation, list[int]]:
    """Validate with the scan on `count` processes; also the sizes of the runs the workers got."""
    store = builder.store()
    if body is not None:
        store.put("lab", "cells", "annotations.json", body)
    monkeypatch.setattr(loading, "CHUNK_BYTES", 400)
    monkeypatch.setattr(workers, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(workers, "available_workers", lambda: count)
    monkeypatch.setattr(workers, "_single_threaded", lambda: True)
    started: list[int] = []
    original = workers._Worker.__init__

    def spied(self: workers._Worker, part: ChunkedArray, **kwargs: Any) -> None:
        started.append(len(part.spans))
        original(self, part, **kwargs)

    monkeypatch.setattr(workers._Worker, "__init__", spied)
    return validate_dataset(builder, store=store), started


def never(file: loading.AnnotationsFile) -> Any:
    raise AssertionError(f"{file.file_name} was read the careful way")


def assert_identical(parallel: Validation, alone: Validation) -> None:
    assert parallel.report.model_dump() == alone.report.model_dump()
    assert parallel.plan is not None and alone.plan is not None
    for side in ("train", "test"):
        ours, theirs = getattr(parallel.plan, side), getattr(alone.plan, side)
        assert [record["id"] for record in ours.annotations] == [
            record["id"] for record in theirs.annotations
        ]
    bodies = [render_manifests(plan, project="lab", version=1) for plan in (parallel.plan, alone.plan)]
    assert bodies[0] == bodies[1]


@pytest.mark.parametrize("count", [2, 3])
def test_a_scan_on_forked_workers_gives_what_one_process_gives(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    builder = crowded_dataset()
    monkeypatch.setattr(entry, "careful_dataset", never)  # the fast way vouches for the file both times

    parallel, started = scanned_by(builder, monkeypatch, count=count)
    alone, none = scanned_by(builder, monkeypatch, count=1)

    assert len(started) == count - 1 and all(started) and none == []
    assert_identical(parallel, alone)
    warning = next(issue for issue in parallel.report.warnings if issue.code == "invalid_annotations_dropped")
    assert warning.context["reasons"]["outside_image"] == 8  # from runs scanned by different processes


def test_a_worker_that_dies_without_answering_costs_time_not_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given workers that exit at once, as one killed for its memory would
    builder = crowded_dataset()
    monkeypatch.setattr(entry, "careful_dataset", never)
    alone, _ = scanned_by(builder, monkeypatch, count=1)
    monkeypatch.setattr(workers, "_work", lambda *args: os._exit(1))

    parallel, started = scanned_by(builder, monkeypatch, count=3)

    assert len(started) == 2
    assert_identical(parallel, alone)


def test_the_chunks_a_dying_worker_did_not_send_are_scanned_here(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given workers that die in their third chunk, after sending what their first two kept
    builder = crowded_dataset()
    monkeypatch.setattr(entry, "careful_dataset", never)
    alone, _ = scanned_by(builder, monkeypatch, count=1)
    scan_chunk, work = workers.scan_chunk, workers._work

    def dying_work(*args: Any) -> None:  # runs in the forked worker only
        seen: list[loading.Chunk] = []

        def dying(chunk: loading.Chunk, **kwargs: Any) -> None:
            seen.append(chunk)
            if len(seen) == 3:
                os._exit(1)
            scan_chunk(chunk, **kwargs)

        workers.scan_chunk = dying
        work(*args)

    monkeypatch.setattr(workers, "_work", dying_work)
    monkeypatch.setattr(workers, "MESSAGE_ANNOTATIONS", 1)  # a message after each chunk

    parallel, started = scanned_by(builder, monkeypatch, count=2)

    assert started and started[0] > 3
    assert_identical(parallel, alone)


def test_a_value_a_worker_cannot_vouch_for_hands_the_file_to_the_careful_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an id written as a float near the end of the array, in the last worker's run
    builder = crowded_dataset()
    document = json.loads(builder.to_bytes())
    document["annotations"][-2]["id"] = float(document["annotations"][-2]["id"])
    body = json.dumps(document).encode()
    careful: list[str] = []
    read_carefully = entry.careful_dataset

    def counted(file: loading.AnnotationsFile) -> Any:
        careful.append(file.file_name)
        return read_carefully(file)

    monkeypatch.setattr(entry, "careful_dataset", counted)

    parallel, started = scanned_by(builder, monkeypatch, count=2, body=body)

    assert started and careful == ["annotations.json"]
    assert parallel.report.ok
    assert parallel.report.details.total_annotations == len(document["annotations"])


def test_the_runs_are_consecutive_chunks_of_about_equal_size() -> None:
    spans = [(start, start + size) for start, size in zip(range(0, 1000, 100), [100] * 9 + [40], strict=True)]
    array = ChunkedArray(b"", spans)

    parts = array.parts(3)

    assert [span for part in parts for span in part.spans] == spans
    assert [len(part.spans) for part in parts] == [4, 3, 3]
    assert array.parts(1) == [array]
    assert len(array.parts(20)) == len(spans)
