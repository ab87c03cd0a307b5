"""Seed a running local stack with analyses, written directly where a finished job leaves them.

No model runs: an analysis item is written with the DynamoDB analysis registry (as submission
writes it, then as the job-state handler leaves it), and its files go to the data bucket under
`projects/{p}/analyses/{n}/` in the shapes of the contracts (`segpipe.models.analysis`):

- a running analysis: the item (status `running`) and `progress/{host}.json` of each host, as the
  container uploads them continuously;
- a failed analysis: the item (status `failed`, with its reason);
- a completed analysis: the item (status `completed`, with its merged summary), for each image
  `images/{stem}.json` (AnalysedImage), `images/{stem}.png` (the preview) and `masks/{stem}.tif`
  (the instance label image), and the merged `coco.json`, `objects.csv`, `images.csv` and
  `summary.json`.

The images are small synthetic fluorescence-like tiles: dark, with a bright blob under every kept
object, whose outline is a polygon in image pixels.
"""

from __future__ import annotations

import csv
import io
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from segpipe.dal.analyses import DynamoAnalysisRegistry
from segpipe.logic.jobspec import deterministic_job_name
from segpipe.models import keys
from segpipe.models.analysis import (
    AnalysedImage,
    Analysis,
    AnalysisDetails,
    AnalysisObject,
    AnalysisProgress,
    AnalysisRequest,
    AnalysisStatus,
    AnalysisStatusChange,
    AnalysisSummary,
    ClassTotals,
    image_columns,
    object_columns,
)
from segpipe.models.trainer_io import prediction_stem
from segpipe_local.aws import client
from segpipe_local.config import LocalConfig

VERTICES = 16


@dataclass(frozen=True)
class AnalysisSpec:
    """What to seed: the version it ran, its classes and thresholds, and (completed) its images."""

    project: str
    version: int
    name: str = "Plate 7, day 3"
    images_folder: str = "plates/plate-7"
    classes: tuple[str, ...] = ("nucleus", "cell")
    thresholds: tuple[float, ...] = (0.5, 0.35)
    model_type: str = "instance"
    pixel_size: float | None = 0.65
    images: int = 3
    width: int = 320
    height: int = 240
    objects_per_image: int = 6
    seed: int = 7


@dataclass(frozen=True)
class SeededAnalysis:
    project: str
    analysis: int
    status: str
    images_total: int
    images_done: int
    #: completed only: each image's file as written (stem -> AnalysedImage)
    images: dict[str, AnalysedImage] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)


def _registry(config: LocalConfig) -> DynamoAnalysisRegistry:
    return DynamoAnalysisRegistry(client("dynamodb", config), config.table)


def _item(
    *,
    spec: AnalysisSpec,
    number: int,
    status: AnalysisStatus,
    images_total: int,
    created: datetime,
    summary: AnalysisSummary | None = None,
    reason: str | None = None,
) -> Analysis:
    thresholds = dict(zip(spec.classes, spec.thresholds, strict=True))
    history = [AnalysisStatusChange(status=AnalysisStatus.QUEUED, at=created)]
    started = created + timedelta(seconds=40)
    history.append(AnalysisStatusChange(status=AnalysisStatus.RUNNING, at=started))
    ended = None
    if status.terminal:
        ended = started + timedelta(minutes=3)
        history.append(AnalysisStatusChange(status=status, at=ended, reason=reason))
    return Analysis(
        project=spec.project,
        analysis=number,
        name=spec.name,
        images_folder=spec.images_folder,
        request=AnalysisRequest(
            name=spec.name, images=spec.images_folder, version=spec.version, pixel_size=spec.pixel_size
        ),
        version=spec.version,
        model_type=spec.model_type,  # type: ignore[arg-type]
        classes=list(spec.classes),
        thresholds=thresholds,
        pixel_size=spec.pixel_size,
        details=AnalysisDetails(
            images_folder=spec.images_folder,
            images=images_total,
            megapixels=round(images_total * spec.width * spec.height / 1e6, 3),
            version=spec.version,
            model_type=spec.model_type,  # type: ignore[arg-type]
            classes=list(spec.classes),
            thresholds=thresholds,
            threshold_sources=dict.fromkeys(spec.classes, "locked"),
        ),
        status=status,
        status_history=history,
        job_name=deterministic_job_name(spec.project, f"a{number}", f"seed\n{uuid.uuid4()}"),
        failure_reason=reason if status is AnalysisStatus.FAILED else None,
        summary=summary,
        created_at=created,
        updated_at=ended or started,
        started_at=started,
        ended_at=ended,
    )


def _claim(config: LocalConfig, project: str, now: datetime) -> int:
    return _registry(config).claim(project, f"seed:{uuid.uuid4()}", "seed", now).version


def _store(config: LocalConfig, item: Analysis, *, images_done: int, **outputs: Any) -> SeededAnalysis:
    """Write the analysis item, as submission and the job-state handler leave it, and say what was
    seeded (`outputs`: a completed analysis's images and object counts)."""
    if not _registry(config).create_analysis(item):
        raise RuntimeError(f"analysis {item.analysis} of {item.project} exists already")
    return SeededAnalysis(
        project=item.project,
        analysis=item.analysis,
        status=item.status.value,
        images_total=item.details.images,
        images_done=images_done,
        **outputs,
    )


# --- a running analysis ----------------------------------------------------------------------------


def seed_running_analysis(
    *, config: LocalConfig, spec: AnalysisSpec, progress: tuple[tuple[int, int], ...] = ((7, 20), (5, 20))
) -> SeededAnalysis:
    """A running analysis whose hosts have uploaded `progress` ((done, total) per host, algo-1..)."""
    now = datetime.now(UTC)
    number = _claim(config, spec.project, now)
    total = sum(host_total for _, host_total in progress)
    s3 = client("s3", config)
    for index, (done, host_total) in enumerate(progress, start=1):
        host = f"algo-{index}"
        body = AnalysisProgress(
            host=host, images_done=done, images_total=host_total, updated_at=now.isoformat()
        )
        s3.put_object(
            Bucket=config.bucket,
            Key=f"{keys.analysis_progress_prefix(spec.project, number)}{host}.json",
            Body=body.model_dump_json().encode(),
        )
    item = _item(spec=spec, number=number, status=AnalysisStatus.RUNNING, images_total=total, created=now)
    return _store(config, item, images_done=sum(done for done, _ in progress))


def seed_failed_analysis(*, config: LocalConfig, spec: AnalysisSpec, reason: str) -> SeededAnalysis:
    """An analysis that failed with `reason` (as the job-state handler records a Failed event)."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    number = _claim(config, spec.project, now)
    item = _item(
        spec=spec,
        number=number,
        status=AnalysisStatus.FAILED,
        images_total=spec.images,
        created=now,
        reason=reason,
    )
    return _store(config, item, images_done=0)


# --- a completed analysis --------------------------------------------------------------------------


def _ring(rng: np.random.Generator, cx: float, cy: float, radius: float, spec: AnalysisSpec) -> list[float]:
    theta = np.linspace(0, 2 * math.pi, VERTICES, endpoint=False)
    wobble = 1 + 0.12 * np.sin(3 * theta + rng.uniform(0, 2 * math.pi))
    xs = np.clip(cx + radius * wobble * np.cos(theta), 0, spec.width - 1)
    ys = np.clip(cy + 0.8 * radius * wobble * np.sin(theta), 0, spec.height - 1)
    return np.round(np.stack([xs, ys], axis=1), 1).ravel().tolist()


def _shoelace(ring: list[float]) -> float:
    xs, ys = np.asarray(ring[0::2]), np.asarray(ring[1::2])
    return float(0.5 * abs(np.sum(xs * np.roll(ys, 1) - ys * np.roll(xs, 1))))


def _perimeter(ring: list[float]) -> float:
    xs, ys = np.asarray(ring[0::2]), np.asarray(ring[1::2])
    return float(np.sum(np.hypot(xs - np.roll(xs, 1), ys - np.roll(ys, 1))))


def _image(rng: np.random.Generator, index: int, spec: AnalysisSpec) -> AnalysedImage:
    """One image's kept objects: spread over a grid so they never overlap, scored at or above
    their class's threshold."""
    file_name = f"well_{index % 2 + 1:02d}/field {index:03d}.tif"
    stem = prediction_stem(file_name)
    columns = 3
    rows = math.ceil(spec.objects_per_image / columns)
    cell_w, cell_h = spec.width / columns, spec.height / rows
    objects = []
    for k in range(spec.objects_per_image):
        class_index = k % len(spec.classes)
        name = spec.classes[class_index]
        cx = (k % columns + 0.5) * cell_w + rng.uniform(-5, 5)
        cy = (k // columns + 0.5) * cell_h + rng.uniform(-5, 5)
        radius = min(cell_w, cell_h) * (0.22 + 0.1 * class_index)
        ring = _ring(rng, cx, cy, radius, spec)
        xs, ys = ring[0::2], ring[1::2]
        low = spec.thresholds[class_index]
        objects.append(
            AnalysisObject(
                category=name,
                score=round(float(rng.uniform(low, 1.0)), 3),
                segmentation=[ring],
                bbox=[min(xs), min(ys), round(max(xs) - min(xs), 1), round(max(ys) - min(ys), 1)],
                area=round(_shoelace(ring), 1),
                label=k + 1,
            )
        )
    counts = {name: sum(1 for o in objects if o.category == name) for name in spec.classes}
    return AnalysedImage(
        file_name=file_name,
        stem=stem,
        width=spec.width,
        height=spec.height,
        channels=1,
        preview=f"{stem}.png",
        objects=objects,
        counts=counts,
    )


def _preview_png(image: AnalysedImage) -> bytes:
    canvas = Image.new("L", (image.width, image.height), 18)
    draw = ImageDraw.Draw(canvas)
    for obj in image.objects:
        draw.polygon(obj.segmentation[0], fill=200 if obj.label % 2 else 150)
    buffer = io.BytesIO()
    canvas.filter(ImageFilter.GaussianBlur(1.2)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _mask_tif(image: AnalysedImage) -> bytes:
    """The instance label image: object k drawn with value `label` (0 background), 16-bit."""
    canvas = Image.new("I", (image.width, image.height), 0)
    draw = ImageDraw.Draw(canvas)
    for obj in image.objects:
        draw.polygon(obj.segmentation[0], fill=obj.label)
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(canvas, dtype=np.uint16)).save(buffer, format="TIFF")
    return buffer.getvalue()


def _csv(header: list[str], rows: list[list[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _merged_outputs(
    spec: AnalysisSpec, images: list[AnalysedImage], summary: AnalysisSummary
) -> dict[str, bytes]:
    """coco.json, objects.csv, images.csv, summary.json as the merge writes them (ids in image
    order, then label order)."""
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(spec.classes)]
    category_id = {name: i + 1 for i, name in enumerate(spec.classes)}
    coco_images, annotations, object_rows, image_rows = [], [], [], []
    scale = spec.pixel_size
    for image_id, image in enumerate(sorted(images, key=lambda i: i.file_name), start=1):
        coco_images.append(
            {"id": image_id, "file_name": image.file_name, "width": image.width, "height": image.height,
             "status": "in_progress"}
        )  # fmt: skip
        for obj in sorted(image.objects, key=lambda o: o.label):
            annotation_id = len(annotations) + 1
            annotations.append(
                {"id": annotation_id, "image_id": image_id, "category_id": category_id[obj.category],
                 "segmentation": obj.segmentation, "bbox": obj.bbox, "area": obj.area, "iscrowd": 0,
                 "score": obj.score}
            )  # fmt: skip
            x, y, w, h = obj.bbox
            ring = obj.segmentation[0]
            perimeter = round(_perimeter(ring), 2)
            centroid = (round(x + w / 2, 2), round(y + h / 2, 2))
            row: list[object] = [
                image.file_name, image.stem, annotation_id, obj.label, obj.category, obj.score, obj.area,
                perimeter, *centroid, x, y, w, h, 0.5, 0.97,
            ]  # fmt: skip
            if scale is not None:
                row += [round(obj.area * scale**2, 3), round(perimeter * scale, 3),
                        round(centroid[0] * scale, 3), round(centroid[1] * scale, 3)]  # fmt: skip
            row += [180.0, 230.0]
            object_rows.append(row)
        pixels = image.width * image.height
        cells: list[object] = [image.file_name, image.stem, image.width, image.height, len(image.objects)]
        cells.append(round(sum(o.area for o in image.objects) / pixels, 6))
        for name in spec.classes:
            area = sum(o.area for o in image.objects if o.category == name)
            cells += [image.counts.get(name, 0), round(area, 1), round(area / pixels, 6)]
        image_rows.append(cells)
    coco = {"info": {"description": f"segpipe analysis {spec.name}"}, "images": coco_images,
            "annotations": annotations, "categories": categories}  # fmt: skip
    return {
        "coco.json": json.dumps(coco).encode(),
        "objects.csv": _csv(object_columns(channels=1, pixel_size=scale), object_rows),
        "images.csv": _csv(image_columns(list(spec.classes)), image_rows),
        "summary.json": summary.model_dump_json(indent=2).encode(),
    }


def _summary(spec: AnalysisSpec, number: int, images: list[AnalysedImage]) -> AnalysisSummary:
    per_class = {}
    for name in spec.classes:
        kept = [o for image in images for o in image.objects if o.category == name]
        area = round(sum(o.area for o in kept), 1)
        per_class[name] = ClassTotals(
            objects=len(kept),
            area=area,
            area_um2=None if spec.pixel_size is None else round(area * spec.pixel_size**2, 3),
        )
    return AnalysisSummary(
        project=spec.project,
        analysis=number,
        version=spec.version,
        model_type=spec.model_type,  # type: ignore[arg-type]
        classes=list(spec.classes),
        thresholds=dict(zip(spec.classes, spec.thresholds, strict=True)),
        pixel_size=spec.pixel_size,
        images=len(images),
        megapixels=round(sum(i.width * i.height for i in images) / 1e6, 6),
        objects=sum(len(i.objects) for i in images),
        per_class=per_class,
        hosts=["algo-1"],
        seconds=181.0,
        inference_seconds=95.0,
    )


def seed_completed_analysis(*, config: LocalConfig, spec: AnalysisSpec) -> SeededAnalysis:
    """A completed analysis of `spec.images` images with every output a finished job leaves."""
    now = datetime.now(UTC) - timedelta(minutes=10)
    number = _claim(config, spec.project, now)
    rng = np.random.default_rng(spec.seed)
    images = [_image(rng, index, spec) for index in range(spec.images)]
    summary = _summary(spec, number, images)
    s3 = client("s3", config)
    prefix = keys.analysis_images_prefix(spec.project, number)
    for image in images:
        s3.put_object(
            Bucket=config.bucket,
            Key=keys.analysis_image_key(spec.project, number, image.stem),
            Body=image.model_dump_json().encode(),
            ContentType="application/json",
        )
        s3.put_object(
            Bucket=config.bucket,
            Key=f"{prefix}{image.stem}.png",
            Body=_preview_png(image),
            ContentType="image/png",
        )
        s3.put_object(
            Bucket=config.bucket,
            Key=keys.analysis_mask_key(spec.project, number, image.stem),
            Body=_mask_tif(image),
            ContentType="image/tiff",
        )
    for name, body in _merged_outputs(spec, images, summary).items():
        s3.put_object(
            Bucket=config.bucket, Key=keys.analysis_output_key(spec.project, number, name), Body=body
        )
    item = _item(
        spec=spec,
        number=number,
        status=AnalysisStatus.COMPLETED,
        images_total=len(images),
        created=now,
        summary=summary,
    )
    return _store(
        config,
        item,
        images_done=len(images),
        images={image.stem: image for image in images},
        objects={name: totals.objects for name, totals in summary.per_class.items()},
    )
