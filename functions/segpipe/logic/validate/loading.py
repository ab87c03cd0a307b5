"""Reading annotations.json: the file, then its images and categories, then its annotations in chunks.

Two ways to parse, with the same result for every file:

- The fast way (`fast_dataset`) never holds the whole parse tree. It finds the top-level
  `annotations` array in the bytes, parses the rest of the document (the skeleton) and validates
  it as `DatasetDocument`, and hands out the array's elements in chunks of about `CHUNK_BYTES`,
  each decoded when it is asked for (`decode_chunk`). A million polygons parse into about 2 GB of
  Python floats; a chunk into 20 MB. msgspec decodes a chunk against the annotation's types in
  one pass (refusing any value of another type), then the rings of all its annotations in a
  second pass over their texts, which the manifests embed as they are. The scan keeps only the
  compact form of the valid annotations.
- The careful way (`careful_dataset`) parses and validates the whole document with pydantic, as
  the contract says. It runs whenever the fast way cannot vouch for the file (`Refused`): a
  chunk that does not parse, a field of another type than the annotation's (pydantic converts
  or refuses those: a float id, a text number), a segmentation that is neither rings nor an RLE
  pydantic accepts, a skeleton that is not a valid dataset. So every error message is pydantic's
  own, and odd files cost time, never correctness.

Why a chunk is a true piece of the array: chunks end at `}` `,` `{` (whitespace allowed) or at
`}` `]`. If "[" + chunk + "]" parses, the chunk is a complete run of values at the array's own
depth (a cut inside a string or a nested value leaves it unbalanced), so the next chunk starts
at an element and a chunk ending at `]` ends the array. The skeleton holds a random marker in the
array's place, so a key of the same name deeper in the document is never taken for it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain

import msgspec
import pydantic_core
from pydantic import TypeAdapter, ValidationError

from segpipe.dal.interfaces import DatasetStore
from segpipe.errors import DatasetNotFound, DatasetTooLarge
from segpipe.logic.split import DatasetDocument, document_adapter
from segpipe.logic.validate.issues import Issues
from segpipe.logic.validate.thresholds import EXAMPLES
from segpipe.models.coco import CocoCategory, CocoImage, Polygons, Rle
from segpipe.models.report import ErrorCode
from segpipe.models.request import TrainingRequest

#: Largest annotations.json read when the caller sets no limit (settings: MAX_ANNOTATIONS_BYTES).
MAX_ANNOTATIONS_BYTES = 512 * 1024 * 1024
#: Bytes of annotations parsed at a time by the fast way. Small, so that the objects parsed from a
#: chunk (a few times its size) reuse the allocator's arenas that the previous chunk freed: with
#: 4 MB chunks the interpreter gave about 20 MB of arenas back to the system after each chunk and
#: faulted them in again for the next (1M polygons: 950k page faults and 12.3 s, against 485k and
#: 9.8 s with 16 KB; a few microseconds per chunk are spent finding its end).
CHUNK_BYTES = 16 * 1024
#: `"annotations"` keys tried as the top-level one, and `}]` tried as the array's end, before giving up.
KEY_TRIES = 3
END_TRIES = 3

_KEY = b'"annotations"'
_OPENING = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*")
_BETWEEN = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")
_CLOSING = re.compile(rb"\}[ \t\n\r]*\]")


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
    """Consecutive annotations of the file, as three aligned lists."""

    fields: Sequence[Fields]
    segmentations: Sequence[Polygons | Rle]
    texts: list[bytes | None] | None = None
    """Per annotation, the JSON text of its rings as the file writes it, where the manifests can
    embed it (floats only); None for an RLE, a converted value, or all of them (the careful way)."""


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
    annotations = document.get("annotations", [])
    chunk = Chunk(
        msgspec.convert(annotations, list[Fields]),
        [annotation["segmentation"] for annotation in annotations],
    )
    return Dataset(document["images"], document["categories"], [chunk])


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
                return Dataset(skeleton["images"], skeleton["categories"], ChunkedArray(raw, spans))
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


@dataclass(frozen=True)
class ChunkedArray:
    """The fast way's annotations: the file's bytes and where the array's chunks lie in them.
    Iterating decodes the chunks in file order, one at a time."""

    raw: bytes
    spans: list[tuple[int, int]]
    """(start, end) offsets of each chunk's elements, in file order."""

    def __iter__(self) -> Iterator[Chunk]:
        view = memoryview(self.raw)
        for start, end in self.spans:
            yield decode_chunk(b"".join((b"[", view[start:end], b"]")))

    @property
    def size(self) -> int:
        """Bytes of annotations."""
        return sum(end - start for start, end in self.spans)

    def parts(self, count: int) -> list[ChunkedArray]:
        """At most `count` runs of consecutive chunks, in file order, of about equal size."""
        parts: list[ChunkedArray] = []
        share = self.size / max(count, 1)
        current: list[tuple[int, int]] = []
        done = 0
        for span in self.spans:
            current.append(span)
            done += span[1] - span[0]
            if done >= share * (len(parts) + 1) and len(parts) < count - 1:
                parts.append(ChunkedArray(self.raw, current))
                current = []
        if current:
            parts.append(ChunkedArray(self.raw, current))
        return parts


# --- One chunk ---------------------------------------------------------------------------------


class Fields(msgspec.Struct, kw_only=True):
    """An annotation's fields besides its segmentation, as the scan reads them (either way)."""

    id: int
    image_id: int
    category_id: int
    bbox: list[float] | None = None
    area: float | None = None
    iscrowd: int | msgspec.UnsetType = msgspec.UNSET
    """UNSET when the file has no `iscrowd` (the manifests then have none either)."""


class _Decoded(Fields, kw_only=True):
    """One annotation as the fast way decodes it: the fields, each of exactly its JSON type (an
    integer becomes a float where a float is due, as pydantic converts it; anything else is
    refused), and the segmentation's text, decoded later with the chunk's others."""

    segmentation: msgspec.Raw


@cache
def _annotations_decoder() -> msgspec.json.Decoder[list[_Decoded]]:
    return msgspec.json.Decoder(list[_Decoded])


@cache
def _rings_decoder() -> msgspec.json.Decoder[list[Polygons]]:
    return msgspec.json.Decoder(list[Polygons])


@cache
def _segmentation_adapter() -> TypeAdapter[Polygons | Rle]:
    return TypeAdapter(Polygons | Rle)


def decode_chunk(text: bytes) -> Chunk:
    """A JSON array of annotations decoded by msgspec: their fields, their segmentations, and the
    text of each one's rings where the manifests can embed it as it is.

    Raises `Refused` for an array that does not decode, or for an annotation whose fields are not
    of their exact types, or whose segmentation pydantic would refuse: the careful way decides.
    """
    try:
        decoded = _annotations_decoder().decode(text)
    except msgspec.MsgspecError as error:
        raise Refused("a chunk of annotations does not decode as COCO annotations") from error
    raws = [item.segmentation for item in decoded]
    joined = b"".join((b"[", b",".join(raws), b"]"))
    try:
        rings = _rings_decoder().decode(joined)
    except msgspec.MsgspecError:  # an RLE, or something pydantic must judge: one by one
        pairs = [_segmentation(bytes(raw)) for raw in raws]
        return Chunk(decoded, [pair[0] for pair in pairs], [pair[1] for pair in pairs])
    if _floats_only(joined, values=sum(map(len, chain.from_iterable(rings)))):
        return Chunk(decoded, rings, list(map(bytes, raws)))
    return Chunk(decoded, rings, [_own_text(bytes(raw), each) for raw, each in zip(raws, rings, strict=True)])


def _segmentation(raw: bytes) -> tuple[Polygons | Rle, bytes | None]:
    """One segmentation on its own: rings (with their text when it can be kept) or an RLE."""
    try:
        rings = _rings_decoder().decode(b"".join((b"[", raw, b"]")))[0]
    except msgspec.MsgspecError:
        try:
            return _segmentation_adapter().validate_python(pydantic_core.from_json(raw)), None
        except ValueError as error:  # a ValidationError is a ValueError too
            raise Refused("a segmentation is neither polygon rings nor an RLE") from error
    return rings, _own_text(raw, rings)


def _own_text(raw: bytes, rings: Polygons) -> bytes | None:
    return raw if _floats_only(raw, values=sum(map(len, rings))) else None


def _floats_only(text: bytes, *, values: int) -> bool:
    """Whether every one of the `values` numbers in `text` (numbers, brackets, commas and blanks
    only) is written with a decimal point and no exponent, as a float is.

    A JSON number has at most one point, so as many points as numbers means one in each: no
    integer, which the manifests must write as a float (`1` is decoded as 1.0, and written so).
    """
    return text.count(b".") == values and b"e" not in text and b"E" not in text
