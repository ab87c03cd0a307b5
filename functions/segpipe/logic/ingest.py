"""Bring a completed job's outputs (`output.tar.gz`) into the version's S3 prefix.

The archive is read as a stream: predictions and previews go to S3 in batches as they are met,
so memory stays bounded however many images were evaluated. Bounds, for archives that are not
what the trainer writes:

- A member whose name is not one segpipe ingests is skipped unread (the stream inflates past
  it in small steps, never holding it), however large it is.
- An ingested member larger than `IngestLimits.max_member_bytes`, or an archive of more than
  `IngestLimits.max_members` members, fails the version with a reason that says which: the
  trainer never writes such outputs, so they are not worth a partial ingestion.
- A read that fails on the way (a timeout, a dropped connection, an S3 5xx) is not the
  archive's fault: it is raised as `ServiceUnavailable`, the invocation fails, and EventBridge's
  retry ingests again (every write is a put of the same key, so a second pass is harmless).
  Only a damaged archive or outputs that break the contract fail the version for good.
"""

from __future__ import annotations

import gzip
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import IO

from pydantic import ValidationError

from segpipe.dal.interfaces import ArtifactStore
from segpipe.errors import ObjectNotFound, SegpipeError, ServiceUnavailable
from segpipe.models import keys
from segpipe.models.api import PredictionIndex, PredictionIndexEntry
from segpipe.models.common import SplitName, split_name
from segpipe.models.trainer_io import STEM_CHARACTERS, Evaluation, ImagePredictions

_PREDICTION = re.compile(rf"predictions/(train|test)/({STEM_CHARACTERS}+)\.json")
_PREVIEW = re.compile(rf"previews/({STEM_CHARACTERS}+\.png)")
_SINGLE = frozenset({"evaluation.json", "config.json"})
_BATCH = 64
#: Flush pending uploads once they hold this many bytes, whatever their count.
_BATCH_BYTES = 32 * 1024 * 1024


class OutputsUnreadable(SegpipeError):
    code = "outputs_unreadable"


class OutputsTooLarge(OutputsUnreadable):
    code = "outputs_too_large"


@dataclass(frozen=True)
class IngestLimits:
    """Caps on what one archive may hold; the trainer's own outputs stay far below them."""

    max_member_bytes: int = 64 * 1024 * 1024
    """An ingested file larger than this fails the version (a dense image's predictions are MBs)."""
    max_members: int = 250_000
    """Two members per evaluated image (predictions, preview) plus a few files."""


@dataclass
class Ingested:
    evaluation: Evaluation
    images: list[PredictionIndexEntry] = field(default_factory=list)
    previews: int = 0


def ingest_outputs(
    *, project: str, version: int, job_name: str, artifacts: ArtifactStore, limits: IngestLimits | None = None
) -> Ingested:
    """Copy evaluation, predictions, previews and config from the job's output archive.

    Raises `OutputsUnreadable` (the version cannot be ingested, ever) or `ServiceUnavailable`
    (the read failed on the way; try again).
    """
    source = keys.job_output_key(project, version, job_name, "output.tar.gz")
    try:
        stream = artifacts.open_stream(source)
    except ObjectNotFound as error:
        raise OutputsUnreadable(f"The job finished but wrote no {source}.", key=source) from error
    reader = _ArchiveReader(
        project=project, version=version, artifacts=artifacts, limits=limits or IngestLimits()
    )
    try:
        return reader.read(stream)
    except ServiceUnavailable:
        raise
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise OutputsUnreadable(f"The job's output archive is damaged: {error}.", key=source) from error
    except ValidationError as error:
        raise OutputsUnreadable(
            f"The job's outputs do not follow the trainer contract: {error.errors()[0]['msg']}.", key=source
        ) from error
    except OSError as error:  # the stream itself failed (tarfile reports damage as TarError)
        raise ServiceUnavailable(f"Reading {source} failed on the way: {error}.", key=source) from error


class _ArchiveReader:
    def __init__(self, *, project: str, version: int, artifacts: ArtifactStore, limits: IngestLimits) -> None:
        self.project = project
        self.version = version
        self.artifacts = artifacts
        self.limits = limits
        self.evaluation: Evaluation | None = None
        self.images: list[PredictionIndexEntry] = []
        self.previews = 0
        self.pending: list[tuple[str, bytes, str]] = []
        self.pending_bytes = 0

    def read(self, stream: IO[bytes]) -> Ingested:
        members = 0
        # gzip.GzipFile inflates in bounded steps; tarfile's own "r|gz" inflates whole compressed
        # blocks at once (megabytes each for a run of zeros) and copies them again per 10 KB read.
        with (
            gzip.GzipFile(fileobj=stream, mode="rb") as inflated,
            tarfile.open(fileobj=inflated, mode="r|") as archive,
        ):
            while (member := archive.next()) is not None:
                archive.members.clear()  # type: ignore[attr-defined]  # read once: keep no index
                members += 1
                if members > self.limits.max_members:
                    raise OutputsTooLarge(
                        f"The job's output archive holds more than {self.limits.max_members} members; "
                        "segpipe ingests at most that many."
                    )
                name = member.name.removeprefix("./")
                if member.isfile() and self._wanted(name):
                    self._ingest(name, self._contents(archive, member, name))
        if self.evaluation is None:
            raise OutputsUnreadable("The job's output archive holds no evaluation.json.")
        index = PredictionIndex(images=sorted(self.images, key=lambda entry: (entry.split, entry.file_name)))
        self._queue(
            keys.predictions_index_key(self.project, self.version),
            index.model_dump_json().encode(),
            "application/json",
        )
        self._flush()
        return Ingested(evaluation=self.evaluation, images=index.images, previews=self.previews)

    @staticmethod
    def _wanted(name: str) -> bool:
        return name in _SINGLE or bool(_PREDICTION.fullmatch(name) or _PREVIEW.fullmatch(name))

    def _contents(self, archive: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
        limit = self.limits.max_member_bytes
        if member.size > limit:
            raise OutputsTooLarge(
                f"The job's output {name} is {member.size} bytes; segpipe ingests files of at most "
                f"{limit} bytes.",
                member=name,
                size=member.size,
            )
        reader = archive.extractfile(member)  # reads at most member.size bytes
        return reader.read() if reader else b""

    def _ingest(self, name: str, data: bytes) -> None:
        project, version = self.project, self.version
        if name == "evaluation.json":
            self.evaluation = Evaluation.model_validate_json(data)
            self._queue(keys.evaluation_key(project, version), data, "application/json")
        elif name == "config.json":
            self._queue(keys.version_prefix(project, version) + "config.json", data, "application/json")
        elif match := _PREDICTION.fullmatch(name):
            split, stem = split_name(match[1]), match[2]
            predictions = ImagePredictions.model_validate_json(data)
            self.images.append(_index_entry(predictions, split, stem))
            self._queue(keys.prediction_key(project, version, split, stem), data, "application/json")
        elif match := _PREVIEW.fullmatch(name):
            self.previews += 1
            self._queue(keys.preview_key(project, version, match[1]), data, "image/png")

    def _queue(self, key: str, data: bytes, content_type: str) -> None:
        self.pending.append((key, data, content_type))
        self.pending_bytes += len(data)
        if len(self.pending) >= _BATCH or self.pending_bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.artifacts.put_many(self.pending)
        self.pending = []
        self.pending_bytes = 0


def _index_entry(predictions: ImagePredictions, split: SplitName, stem: str) -> PredictionIndexEntry:
    return PredictionIndexEntry(
        file_name=predictions.file_name,
        split=split,
        stem=stem,
        width=predictions.width,
        height=predictions.height,
        objects=len(predictions.objects),
        preview=predictions.preview,
    )
