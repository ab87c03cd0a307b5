"""Bring a completed job's outputs (`output.tar.gz`) into the version's S3 prefix.

The archive is read as a stream: predictions and previews go to S3 in batches as they are met,
so memory stays bounded however many images were evaluated.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass, field

from pydantic import ValidationError

from segpipe.dal.interfaces import ArtifactStore
from segpipe.errors import ObjectNotFound, SegpipeError
from segpipe.models import keys
from segpipe.models.api import PredictionIndex, PredictionIndexEntry
from segpipe.models.trainer_io import Evaluation, ImagePredictions

_PREDICTION = re.compile(r"^predictions/(train|test)/([A-Za-z0-9._-]+)\.json$")
_PREVIEW = re.compile(r"^previews/([A-Za-z0-9._-]+\.png)$")
_BATCH = 64


class OutputsUnreadable(SegpipeError):
    code = "outputs_unreadable"


@dataclass
class Ingested:
    evaluation: Evaluation
    images: list[PredictionIndexEntry] = field(default_factory=list)
    previews: int = 0


def ingest_outputs(*, project: str, version: int, job_name: str, artifacts: ArtifactStore) -> Ingested:
    """Copy evaluation, predictions, previews and config from the job's output archive."""
    source = keys.job_output_key(project, version, job_name, "output.tar.gz")
    try:
        stream = artifacts.open_stream(source)
    except ObjectNotFound as error:
        raise OutputsUnreadable(f"The job finished but wrote no {source}.", key=source) from error
    try:
        return _read_archive(stream, project=project, version=version, artifacts=artifacts)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise OutputsUnreadable(f"The job's output archive is damaged: {error}.", key=source) from error
    except ValidationError as error:
        raise OutputsUnreadable(
            f"The job's outputs do not follow the trainer contract: {error.errors()[0]['msg']}.", key=source
        ) from error


def _read_archive(stream: object, *, project: str, version: int, artifacts: ArtifactStore) -> Ingested:
    evaluation: Evaluation | None = None
    images: list[PredictionIndexEntry] = []
    previews = 0
    pending: list[tuple[str, bytes, str]] = []
    with tarfile.open(fileobj=stream, mode="r|gz") as archive:  # type: ignore[call-overload]
        for member in archive:
            if not member.isfile():
                continue
            name = member.name.removeprefix("./")
            reader = archive.extractfile(member)
            data = reader.read() if reader else b""
            if name == "evaluation.json":
                evaluation = Evaluation.model_validate_json(data)
                pending.append((keys.evaluation_key(project, version), data, "application/json"))
            elif name == "config.json":
                pending.append(
                    (keys.version_prefix(project, version) + "config.json", data, "application/json")
                )
            elif match := _PREDICTION.fullmatch(name):
                split, stem = match[1], match[2]
                predictions = ImagePredictions.model_validate_json(data)
                images.append(_index_entry(predictions, split, stem))
                pending.append((keys.prediction_key(project, version, split, stem), data, "application/json"))  # type: ignore[arg-type]
            elif match := _PREVIEW.fullmatch(name):
                previews += 1
                pending.append((keys.preview_key(project, version, match[1]), data, "image/png"))
            if len(pending) >= _BATCH:
                artifacts.put_many(pending)
                pending = []
    if evaluation is None:
        raise OutputsUnreadable("The job's output archive holds no evaluation.json.")
    index = PredictionIndex(images=sorted(images, key=lambda entry: (entry.split, entry.file_name)))
    pending.append(
        (keys.predictions_index_key(project, version), index.model_dump_json().encode(), "application/json")
    )
    artifacts.put_many(pending)
    return Ingested(evaluation=evaluation, images=index.images, previews=previews)


def _index_entry(predictions: ImagePredictions, split: str, stem: str) -> PredictionIndexEntry:
    return PredictionIndexEntry(
        file_name=predictions.file_name,
        split=split,
        stem=stem,
        width=predictions.width,
        height=predictions.height,
        objects=len(predictions.objects),
        preview=predictions.preview,
    )
