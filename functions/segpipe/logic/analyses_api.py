"""Reading and stopping analyses: the analyses table, one analysis with its progress and outputs,
its analysed images and their objects."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from segpipe.dal.interfaces import AnalysisRegistry, ArtifactStore, ProcessingJobs
from segpipe.errors import AnalysisNotCompleted, AnalysisNotFound, AnalysisNotRunning, ObjectNotFound
from segpipe.models import keys
from segpipe.models.analysis import (
    OUTPUT_NAMES,
    AnalysedImage,
    Analysis,
    AnalysisProgress,
    AnalysisRow,
    AnalysisStatus,
    AnalysisView,
)
from segpipe.models.api import AnalysedImageEntry, AnalysedImagesPage, AnalysedImageView, AnalysisTable


@dataclass(frozen=True)
class AnalysesDeps:
    analyses: AnalysisRegistry
    artifacts: ArtifactStore
    jobs: ProcessingJobs
    clock: Callable[[], datetime]
    presign_seconds: int = 3600


def _analysis(project: str, number: int, deps: AnalysesDeps) -> Analysis:
    found = deps.analyses.get_analysis(project, number)
    if found is None:
        raise AnalysisNotFound(
            f"Project {project!r} has no analysis {number}.", project=project, analysis=number
        )
    return found


def _require_completed(analysis: Analysis) -> None:
    if analysis.status is not AnalysisStatus.COMPLETED:
        raise AnalysisNotCompleted(
            f"Analysis {analysis.analysis} is {analysis.status.value}; "
            "only a completed analysis has results to show.",
            status=analysis.status.value,
        )


def images_done(analysis: Analysis, deps: AnalysesDeps) -> int | None:
    """Images analysed so far, summed over the instances' `progress/{host}.json` (None before any
    instance reported). Unreadable progress files are skipped: progress is a hint, never an error."""
    if analysis.status is AnalysisStatus.COMPLETED and analysis.summary is not None:
        return analysis.summary.images
    done: int | None = None
    for key in deps.artifacts.list_keys(keys.analysis_progress_prefix(analysis.project, analysis.analysis)):
        if not key.endswith(".json"):
            continue
        try:
            progress = AnalysisProgress.model_validate_json(deps.artifacts.get_bytes(key))
        except (ObjectNotFound, ValidationError):
            continue
        done = (done or 0) + min(progress.images_done, progress.images_total or progress.images_done)
    if done is not None and analysis.details.images:
        done = min(done, analysis.details.images)
    return done


def _row_fields(analysis: Analysis, done: int | None) -> dict[str, object]:
    summary = analysis.summary
    return {
        "project": analysis.project,
        "analysis": analysis.analysis,
        "name": analysis.name,
        "images_folder": analysis.images_folder,
        "version": analysis.version,
        "status": analysis.status,
        "images": summary.images if summary is not None else analysis.details.images,
        "images_done": done,
        "objects": {name: totals.objects for name, totals in summary.per_class.items()} if summary else {},
        "thresholds": analysis.thresholds,
        "created_at": analysis.created_at,
        "ended_at": analysis.ended_at,
    }


def list_analyses(project: str, *, deps: AnalysesDeps) -> AnalysisTable:
    rows = []
    for analysis in deps.analyses.list_analyses(project):
        running = analysis.status is AnalysisStatus.RUNNING
        done = images_done(analysis, deps) if running or analysis.status is AnalysisStatus.COMPLETED else None
        rows.append(AnalysisRow.model_validate(_row_fields(analysis, done)))
    return AnalysisTable(project=project, analyses=rows)


def get_analysis(project: str, number: int, *, deps: AnalysesDeps) -> AnalysisView:
    analysis = _analysis(project, number, deps)
    return _view(analysis, deps)


def _view(analysis: Analysis, deps: AnalysesDeps) -> AnalysisView:
    done = images_done(analysis, deps) if analysis.status is not AnalysisStatus.QUEUED else None
    outputs: dict[str, str] = {}
    if analysis.status is AnalysisStatus.COMPLETED:
        outputs = {
            name: deps.artifacts.presign_get(
                keys.analysis_output_key(analysis.project, analysis.analysis, name), deps.presign_seconds
            )
            for name in OUTPUT_NAMES
        }
    return AnalysisView.model_validate(
        {
            **_row_fields(analysis, done),
            "model_type": analysis.model_type,
            "classes": analysis.classes,
            "pixel_size": analysis.pixel_size,
            "warnings": analysis.warnings,
            "failure_reason": analysis.failure_reason,
            "status_history": analysis.status_history,
            "summary": analysis.summary,
            "outputs": outputs,
            "job_name": analysis.job_name,
            "details": analysis.details,
        }
    )


def _count(cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        return 0


def images_page(
    project: str, number: int, *, offset: int, limit: int, deps: AnalysesDeps
) -> AnalysedImagesPage:
    """A page of the analysed images, in the merged `images.csv`'s order (by file name)."""
    analysis = _analysis(project, number, deps)
    _require_completed(analysis)
    try:
        data = deps.artifacts.get_bytes(keys.analysis_output_key(project, number, "images.csv"))
    except ObjectNotFound:
        data = b""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8", "replace"), newline="")))
    images = []
    for row in rows[offset : offset + limit]:
        stem = row.get("stem", "")
        images.append(
            AnalysedImageEntry(
                file_name=row.get("image", ""),
                stem=stem,
                width=_count(row.get("width", "")),
                height=_count(row.get("height", "")),
                objects=_count(row.get("objects", "")),
                counts={name: _count(row.get(f"objects[{name}]", "")) for name in analysis.classes},
                preview_url=deps.artifacts.presign_get(
                    _preview_key(project, number, stem), deps.presign_seconds
                ),
                mask_url=deps.artifacts.presign_get(
                    keys.analysis_mask_key(project, number, stem), deps.presign_seconds
                ),
                objects_url=f"/projects/{project}/analyses/{number}/images/{stem}",
            )
        )
    return AnalysedImagesPage(project=project, analysis=number, total=len(rows), offset=offset, images=images)


def _preview_key(project: str, number: int, stem: str, preview: str | None = None) -> str:
    return f"{keys.analysis_images_prefix(project, number)}{preview or f'{stem}.png'}"


def analysed_image(project: str, number: int, stem: str, *, deps: AnalysesDeps) -> AnalysedImageView:
    """One image's kept objects (`images/{stem}.json`) with URLs of its preview and label image."""
    analysis = _analysis(project, number, deps)
    _require_completed(analysis)
    try:
        data = deps.artifacts.get_bytes(keys.analysis_image_key(project, number, stem))
    except ObjectNotFound as error:
        raise ObjectNotFound(f"Analysis {number} has no image {stem!r}.", stem=stem) from error
    image = AnalysedImage.model_validate_json(data)
    preview = image.preview if image.preview and "/" not in image.preview else None
    return AnalysedImageView.model_validate(
        {
            **image.model_dump(),
            "preview_url": (
                deps.artifacts.presign_get(_preview_key(project, number, stem, preview), deps.presign_seconds)
                if preview
                else None
            ),
            "mask_url": deps.artifacts.presign_get(
                keys.analysis_mask_key(project, number, stem), deps.presign_seconds
            ),
        }
    )


def stop_analysis(project: str, number: int, *, deps: AnalysesDeps) -> AnalysisView:
    """Ask the analysis's processing job to stop; its `Stopped` event then ends the analysis.

    A queued analysis whose job was never created (its submission stopped half-way) has nothing to
    stop: it is ended here, and a retried submission, which only starts the job of a queued
    analysis, leaves it so."""
    analysis = _analysis(project, number, deps)
    if analysis.status.terminal:
        raise AnalysisNotRunning(
            f"Analysis {number} is {analysis.status.value}; "
            "only a queued or running analysis can be stopped.",
            status=analysis.status.value,
        )
    if analysis.status is AnalysisStatus.QUEUED and deps.jobs.describe(analysis.job_name) is None:
        deps.analyses.transition_analysis(
            project, number, AnalysisStatus.STOPPED, deps.clock(), reason=NEVER_STARTED
        )
    else:
        deps.jobs.stop(analysis.job_name)
        deps.analyses.request_analysis_stop(project, number)
    return _view(_analysis(project, number, deps), deps)


NEVER_STARTED = "Stopped before its processing job started."
