"""Reading annotations.json: the file, then its images and categories, then its annotations in chunks.

Two ways to parse, with the same result for every file:

- The fast way (`fast_dataset`) never holds the whole parse tree. It finds the top-level
  `annotations` array in the bytes, parses the rest of the document (the skeleton) and validates
  it as `DatasetDocument`, and hands out the array's elements in chunks of about `CHUNK_BYTES`,
  each parsed by pydantic-core's JSON parser when it is asked for. A million polygons parse into
  about 2 GB of Python floats; a chunk into 20 MB. The scan checks each element's field types
  (`conform_chunk`) and keeps only the compact form of the valid ones.
- The careful way (`careful_dataset`) parses and validates the whole document with pydantic, as
  the contract says. It runs whenever the fast way cannot vouch for the file (`Refused`): a
  chunk that does not parse, an element pydantic would convert or refuse, a skeleton that is not
  a valid dataset. So every error message is pydantic's own, and odd files cost time, never
  correctness.

Why a chunk is a true piece of the array: chunks end at `}` `,` `{` (whitespace allowed) or at
`}` `]`. If "[" + chunk + "]" parses, the chunk is a complete run of values at the array's own
depth (a cut inside a string or a nested value leaves it unbalanced), so the next chunk starts
at an element and a chunk ending at `]` ends the array. The skeleton holds a random marker in the
array's place, so a key of the same name deeper in the document is never taken for it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from segpipe.dal.interfaces import DatasetStore
from segpipe.errors import DatasetNotFound, DatasetTooLarge
from segpipe.logic.split import AnnotationRecord, DatasetDocument, document_adapter
from segpipe.logic.validate.issues import Issues
from segpipe.logic.validate.thresholds import EXAMPLES
from segpipe.models.coco import CocoCategory, CocoImage, Rle
from segpipe.models.report import ErrorCode
from segpipe.models.request import TrainingRequest

#: Largest annotations.json read when the caller sets no limit (settings: MAX_ANNOTATIONS_BYTES).
MAX_ANNOTATIONS_BYTES = 512 * 1024 * 1024
#: Bytes of annotations parsed at a time by the fast way.
CHUNK_BYTES = 4 * 1024 * 1024
#: `"annotations"` keys tried as the top-level one, and `}]` tried as the array's end, before giving up.
KEY_TRIES = 3
END_TRIES = 3

_KEY = b'"annotations"'
_OPENING = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*")
_BETWEEN = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")
_CLOSING = re.compile(rb"\}[ \t\n\r]*\]")
_FLOAT = frozenset({float})


class Refused(Exception):
    """The fast way cannot vouch for this file: parse it the careful way."""


@dataclass(frozen=True)
class AnnotationsFile:
    """annotations.json as read, before parsing."""

    dataset: str
    file_name: str
    raw: bytes


@dataclass(frozen=True)
class Chunk:
    """Consecutive annotations of the file."""

    items: list[Any]
    """The parsed annotation objects; they go through `conform_chunk`."""
    text: bytes | None = None
    """The JSON text they were parsed from (the fast way), for `segmentation_texts`."""


@dataclass(frozen=True)
class Dataset:
    """annotations.json, parsed: images and categories validated, annotations still to be read."""

    images: list[CocoImage]
    categories: list[CocoCategory]
    annotations: Iterable[Chunk]
    """The annotations in file order, read once."""


def read_annotations(
    request: TrainingRequest, *, project: str, store: DatasetStore, max_bytes: int
) -> AnnotationsFile | Issues:
    """The request's annotations file, or why it cannot be read."""
    found = Issues()
    location = request.dataset_location(project)
    if location is None:
        found.error(
            ErrorCode.DATASET_NOT_FOUND,
            f"The dataset key {request.dataset!r} belongs to another project. "
            f"Use a dataset of project {project!r}.",
            dataset=request.dataset,
            project=project,
        )
        return found
    name, file_name = location
    try:
        raw = store.read_annotations(project, name, file_name, max_bytes=max_bytes)
    except DatasetTooLarge as error:
        size = error.context.get("size")
        found.error(
            ErrorCode.DATASET_TOO_LARGE,
            f"{file_name} of dataset {name!r} is {size} bytes; "
            f"this deployment validates annotation files of at most {max_bytes} bytes. "
            "Split the dataset into smaller ones, or ask the operator to raise the limit "
            "(and the function's memory).",
            dataset=name,
            file=file_name,
            bytes=size,
            max_bytes=max_bytes,
        )
        return found
    except DatasetNotFound as error:
        found.error(
            ErrorCode.DATASET_NOT_FOUND,
            f"Dataset {name!r} has no {file_name} in project {project!r}. "
            "Upload it, or check the dataset name.",
            dataset=name,
            file=file_name,
            detail=error.message,
        )
        return found
    return AnnotationsFile(dataset=name, file_name=file_name, raw=raw)


# --- The careful way ---------------------------------------------------------------------------


def careful_dataset(file: AnnotationsFile) -> Dataset | Issues:
    """The whole document parsed and validated by pydantic; `dataset_unreadable` when it is not COCO."""
    try:
        document = parse_document(file.raw)
    except ValueError as error:  # invalid JSON, or a ValidationError (a ValueError too): not COCO
        return unreadable(file, error)
    return Dataset(document["images"], document["categories"], [Chunk(document.get("annotations", []))])


def parse_document(raw: bytes) -> DatasetDocument:
    """Parse annotations.json with pydantic-core's Rust JSON parser, then validate the objects.

    Two steps rather than `validate_json`: for a million annotations this takes about 40% less
    memory and time, because `validate_json` first builds a complete JSON tree of its own.
    NaN and Infinity are not JSON and are refused.
    """
    return document_adapter().validate_python(pydantic_core.from_json(raw, allow_inf_nan=False))


def unreadable(file: AnnotationsFile, error: ValueError) -> Issues:
    problems = _problems(error)
    found = Issues()
    found.error(
        ErrorCode.DATASET_UNREADABLE,
        f"{file.file_name} of dataset {file.dataset!r} is not valid COCO JSON "
        f"({problems[0]['location']}: {problems[0]['problem']}). "
        "Fix or re-export the file; `problems` lists where.",
        dataset=file.dataset,
        file=file.file_name,
        bytes=len(file.raw),
        problem_count=error.error_count() if isinstance(error, ValidationError) else 1,
        problems=problems,
    )
    return found


def _problems(error: ValueError) -> list[dict[str, str]]:
    if not isinstance(error, ValidationError):
        return [{"location": "(document)", "problem": f"invalid JSON: {error}"}]
    return [
        {
            "location": ".".join(str(part) for part in problem["loc"]) or "(document)",
            "problem": problem["msg"],
        }
        for problem in error.errors(include_url=False, include_input=False)[:EXAMPLES]
    ]


# --- The fast way ------------------------------------------------------------------------------


def fast_dataset(raw: bytes) -> Dataset:
    """Images and categories validated now, annotations parsed chunk by chunk as they are read.

    Raises `Refused` here, or while the annotations are read, when the careful way must decide.
    """
    position = raw.find(_KEY)
    for _ in range(KEY_TRIES):
        if position < 0:
            break
        opening = _OPENING.match(raw, position + len(_KEY))
        if opening is not None and (found := _array(raw, opening.end())) is not None:
            spans, closing = found
            skeleton = _skeleton(raw, opening=opening.end(), closing=closing)
            if skeleton is not None:
                return Dataset(skeleton["images"], skeleton["categories"], _chunks(raw, spans))
        position = raw.find(_KEY, position + 1)
    raise Refused("no top-level annotations array found")


def _array(raw: bytes, start: int) -> tuple[list[tuple[int, int]], int] | None:
    """The chunks of the array whose first element starts at `start`, as (start, end) offsets,
    and the offset of its closing bracket; None when it is not an array of objects."""
    if raw[start : start + 1] == b"]":
        return [], start
    if raw[start : start + 1] != b"{":
        return None
    spans: list[tuple[int, int]] = []
    while True:
        between = _BETWEEN.search(raw, start + CHUNK_BYTES)
        limit = between.start() if between is not None else len(raw)
        for tries, closing in enumerate(_CLOSING.finditer(raw, start, limit + 1)):
            if tries == END_TRIES:
                return None
            if _parses(raw[start : closing.start() + 1]):
                spans.append((start, closing.start() + 1))
                return spans, closing.end() - 1
        if between is None:
            return None
        spans.append((start, between.start() + 1))
        start = between.end() - 1


def _parses(elements: bytes) -> bool:
    try:
        pydantic_core.from_json(b"[" + elements + b"]", allow_inf_nan=False)
    except ValueError:
        return False
    return True


def _skeleton(raw: bytes, *, opening: int, closing: int) -> DatasetDocument | None:
    """The document without its annotations, validated; None when the array found is not the
    top-level `annotations` (the marker shows where it was)."""
    marker = secrets.token_hex(16)
    try:
        document = pydantic_core.from_json(
            raw[:opening] + b'"' + marker.encode() + b'"' + raw[closing:], allow_inf_nan=False
        )
    except ValueError:
        return None
    if type(document) is not dict or document.get("annotations") != [marker]:
        return None
    document["annotations"] = []
    try:
        return document_adapter().validate_python(document)
    except ValidationError as error:
        raise Refused("the document is not a valid dataset") from error


def _chunks(raw: bytes, spans: list[tuple[int, int]]) -> Iterator[Chunk]:
    view = memoryview(raw)
    for start, end in spans:
        text = b"".join((b"[", view[start:end], b"]"))
        try:
            items = pydantic_core.from_json(text, allow_inf_nan=False)
        except ValueError as error:
            raise Refused("a chunk of annotations does not parse on its own") from error
        yield Chunk(items, text)


# --- One annotation ----------------------------------------------------------------------------


@cache
def _records_adapter() -> TypeAdapter[list[AnnotationRecord]]:
    return TypeAdapter(list[AnnotationRecord])


def conform_chunk(chunk: Chunk) -> list[AnnotationRecord]:
    """The items of `chunk` as validating them as `AnnotationRecord`s gives them.

    An item that already has exactly the types the record holds (`_exact`) is kept as it is (the
    scan copies only the record's fields, so extra fields are dropped as pydantic drops them); the
    others (an RLE, integer coordinates) are validated by pydantic together, in one call per chunk
    (converted at the careful reading's cost per item, or refused: `Refused`).
    """
    items = chunk.items
    exact = list(map(_exact, items))
    if all(exact):
        return items
    try:
        converted = iter(
            _records_adapter().validate_python(
                [item for item, ok in zip(items, exact, strict=True) if not ok]
            )
        )
    except ValidationError as error:
        raise Refused("an annotation is not a COCO annotation") from error
    return [item if ok else next(converted) for item, ok in zip(items, exact, strict=True)]


def _exact(item: Any) -> bool:
    if type(item) is not dict:
        return False
    get = item.get
    if not (type(get("id")) is int and type(get("image_id")) is int and type(get("category_id")) is int):
        return False
    segmentation = get("segmentation")
    if type(segmentation) is list:
        for ring in segmentation:
            if type(ring) is not list or not _FLOAT.issuperset(map(type, ring)):
                return False
    elif type(segmentation) is not Rle:  # an Rle: the careful way validated it already
        return False
    bbox, area = get("bbox"), get("area")
    return (
        (bbox is None or (type(bbox) is list and _FLOAT.issuperset(map(type, bbox))))
        and (area is None or type(area) is float)
        and type(get("iscrowd", 0)) is int
    )


# --- Segmentations as the file writes them -----------------------------------------------------

#: A `segmentation` key and a value of numbers, commas and brackets only: polygon rings.
_POLYGONS = re.compile(rb'"segmentation"[ \t\n\r]*:[ \t\n\r]*(\[[-+.eE0-9, \t\n\r\[\]]*\])')


def segmentation_texts(chunk: Chunk, records: list[AnnotationRecord]) -> list[bytes | None] | None:
    """Per record of `chunk` (`conform_chunk`'s results, in order), the JSON text of its polygon rings as
    the file writes it (None for an RLE); None for the whole chunk when that cannot be told safely.

    The text parses to exactly the floats the record holds, so the manifests can embed it instead
    of serialising the rings again. Safe when every record with rings is the parsed item itself
    (no conversion: its rings hold floats only, so its value matches `_POLYGONS`), the text has no
    \\u escape (so every `segmentation` key is spelt literally and matched), and there are exactly
    as many matches as records with rings: each has at least its own, so none has another (a
    nested or repeated key), and the matches pair with the records in order.
    """
    if chunk.text is None or b"\\u" in chunk.text:
        return None
    with_rings = 0
    for record, item in zip(records, chunk.items, strict=True):
        if type(record["segmentation"]) is list:
            if record is not item:
                return None
            with_rings += 1
    matches = _POLYGONS.findall(chunk.text)
    if len(matches) != with_rings:
        return None
    texts = iter(matches)
    return [next(texts) if type(record["segmentation"]) is list else None for record in records]
