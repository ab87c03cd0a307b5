"""`analyze`: a trained version over new images, as a SageMaker Processing job's container.

Reads `input/config/analyze.json` (AnalyzeConfig), the version's `input/model/model.tar.gz` and every
PNG/JPEG/TIFF under `input/images` (the host's shard when the job has several instances), and writes
for this host (`current_host` of `/opt/ml/config/resourceconfig.json`, default `algo-1`):

- `output/shards/{host}/coco.json, objects.csv, images.csv, summary.json`, merged across hosts when the
  job completes (segpipe.logic.analysis_merge);
- `output/images/{stem}.json` (AnalysedImage) and `{stem}.png` (preview), `output/masks/{stem}.tif`;
- `output/progress/{host}.json` after every image.

Each image is read and normalised as the trainer reads its images, predicted whole by the trainer's
sliding window, turned into objects by the version's post-processing (Predictor.instances with the
card's head; semantic models: connected class regions), and its objects below their class's frozen
threshold are dropped. The kept objects are numbered 1..N in label order: the mask holds these labels
(semantic: each region's class index) and coco.json, objects.csv and images/{stem}.json list them in
that order. Measurements (segpipe_trainer.measure) are of the kept objects' label image (for semantic
models, of the regions, not of the class mask) over the raw pixels, channels matched to the model's.
A failure writes one sentence to `/opt/ml/output/message`
(the job's ExitMessage) and exits 1; SIGTERM (StopProcessingJob) exits 143 at once.
The local stack sets `SEGPIPE_PROCESSING_ROOT` in place of `/opt/ml/processing`.
"""

from __future__ import annotations

import csv
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import numpy as np
import tifffile
from pydantic import BaseModel, Field, ValidationError

from segpipe.models.analysis import (
    IMAGE_SUFFIXES,
    AnalysedImage,
    AnalysisObject,
    AnalysisProgress,
    AnalysisSummary,
    AnalyzeConfig,
    ClassTotals,
    image_columns,
    object_columns,
)
from segpipe.models.coco import CocoAnnotation, CocoCategory, CocoImage
from segpipe.models.trainer_io import ModelCard, prediction_stem
from segpipe_trainer import accel, atomic
from segpipe_trainer.base import unpack_archive
from segpipe_trainer.cli import configure_logging
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.errors import TrainerError, failure_sentence
from segpipe_trainer.geometry import objects_from_instances
from segpipe_trainer.images import match_channels, normalize, read_image, write_preview
from segpipe_trainer.infer import Predictor, accelerated, dense_maps, predictor_on
from segpipe_trainer.kernels import renumbered
from segpipe_trainer.measure import Measurements, measure_objects
from segpipe_trainer.model import build_model
from segpipe_trainer.outputs import write_json
from segpipe_trainer.postprocess import Instances
from segpipe_trainer.processing_paths import ARCHIVE_FILE, ProcessingPaths, current_host
from segpipe_trainer.train import load_weights

logger = logging.getLogger("segpipe_trainer.analyze")

EXIT_FAILED = 1
EXIT_STOPPED = 143  # 128 + SIGTERM
CARD_FILE = "model.json"


class AnalysisStopped(BaseException):
    """SIGTERM arrived (StopProcessingJob): leave now. A BaseException, so that no `except Exception`
    on the way (the image decoders') mistakes it for a bad file."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise AnalysisStopped(f"signal {signum}")


# --- Inputs -------------------------------------------------------------------------------------


def read_config(path: Path) -> AnalyzeConfig:
    """analyze.json parsed with the shared contract; a missing or bad file is a TrainerError."""
    try:
        return AnalyzeConfig.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise TrainerError(f"The analysis configuration {path} is missing") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "analyze.json"
        raise TrainerError(f"The analysis configuration is invalid at '{where}': {first['msg']}") from exc


@dataclass(frozen=True)
class LoadedModel:
    card: ModelCard
    predictor: Predictor


def load_model(model_dir: Path, *, work_dir: Path, runtime: Runtime) -> LoadedModel:
    """The version's model card and weights (from `model.tar.gz`, or unpacked) as a Predictor."""
    archive = model_dir / ARCHIVE_FILE
    folder = model_dir
    if archive.is_file():
        folder = unpack_archive(
            archive, destination=work_dir / "model", described=f"The model archive {ARCHIVE_FILE}"
        )
    cards = sorted(folder.rglob(CARD_FILE))
    if not cards:
        raise TrainerError(f"The model input holds no {CARD_FILE}: it is not a segpipe model")
    try:
        card = ModelCard.model_validate_json(cards[0].read_bytes())
    except (ValidationError, ValueError) as exc:
        raise TrainerError(f"The model's {CARD_FILE} is not a segpipe model card: {exc}") from exc
    weights = cards[0].parent / card.weights
    if not weights.is_file():
        raise TrainerError(f"The model's weights file '{card.weights}' is missing beside its {CARD_FILE}")
    model = build_model(
        preset=card.preset,
        num_classes=len(card.classes),
        model_type=card.model_type,
        in_channels=card.in_channels,
        weights="random",
        instance_head=card.instance_head,
    )
    try:
        load_weights(model, weights)
    except RuntimeError as exc:
        raise TrainerError(f"The model's weights do not fit its {CARD_FILE}: {exc}") from exc
    model.to(runtime.device).eval()
    predictor = predictor_on(
        model,
        card,
        in_channels=card.in_channels,
        instance_head=card.instance_head,
        test_time_flips=card.test_time_flips,  # as the threshold was tuned
        runtime=runtime,
    )
    # As the trainer predicts: as many windows per batch as the GPU holds, compiled where that pays
    # (CUDA, unless SEGPIPE_COMPILE=off; a failed compilation falls back to eager).
    compiles = accel.AccelOptions.from_environment().compiles(runtime.device)
    predictor = replace(predictor, split_level=card.split_level)  # as the training chose it
    return LoadedModel(card=card, predictor=accelerated(predictor, compile_model=compiles))


def find_images(folder: Path) -> list[str]:
    """Paths (relative, `/`-separated, sorted) of every PNG/JPEG/TIFF under `folder`."""
    if not folder.is_dir():
        return []
    found = [
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
    return sorted(found)


# --- One image ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageResult:
    """One analysed image: its kept objects (labels 1..N in `kept.labels`) and their measurements."""

    file_name: str
    stem: str
    width: int
    height: int
    channels: int
    kept: Instances
    objects: list[AnalysisObject]
    measurements: Measurements
    mask: np.ndarray  # what masks/{stem}.tif holds
    normalised: np.ndarray
    inference_seconds: float


def keep_above(instances: Instances, *, thresholds: Sequence[float]) -> Instances:
    """The objects whose score reaches their class's threshold (`thresholds[k - 1]` for class k),
    renumbered 1..N in their label order. Where every object is kept, the int32 label image is
    the one of `instances` (not a copy): numbered 1..N already."""
    floors = np.concatenate([[np.inf], np.asarray(thresholds, dtype=np.float64)])[instances.classes]
    keep = instances.scores.astype(np.float64) >= floors
    keep[0] = False
    renumber = np.zeros(len(keep), dtype=np.int32)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    every = bool(keep[1:].all()) and instances.labels.dtype == np.int32
    return Instances(
        labels=instances.labels if every else renumbered(np.ascontiguousarray(instances.labels), renumber),
        classes=np.concatenate([[0], instances.classes[keep]]).astype(np.int64),
        scores=np.concatenate([[0.0], instances.scores[keep]]).astype(np.float32),
    )


def label_image(kept: Instances, *, model_type: str) -> np.ndarray:
    """The mask written for an image: object labels (instance) or class indices (semantic), as the
    smallest of uint16 and uint32 that holds them."""
    values = kept.labels if model_type == "instance" else kept.classes[kept.labels]
    dtype = np.uint16 if int(values.max(initial=0)) <= np.iinfo(np.uint16).max else np.uint32
    return values.astype(dtype)


def analyse_image(
    predictor: Predictor, *, images_dir: Path, file_name: str, card: ModelCard, config: AnalyzeConfig
) -> ImageResult:
    """Read, predict, post-process, threshold and measure one image."""
    pixels = read_image(images_dir / file_name, file_name=file_name)
    normalised = normalize(pixels, normalization=card.normalization)
    started = time.perf_counter()
    outputs = predictor.outputs(normalised)
    inference_seconds = time.perf_counter() - started
    instances = predictor.instances(dense_maps(outputs, num_classes=predictor.num_classes))
    kept = keep_above(instances, thresholds=[config.thresholds[name] for name in config.classes])
    found = objects_from_instances(kept, class_names=config.classes, score_floor=0.0)
    if len(found) != kept.count:
        raise AssertionError(f"{kept.count} objects kept but {len(found)} outlined in {file_name}")
    mask = label_image(kept, model_type=card.model_type)
    instance = card.model_type == "instance"
    objects = [
        AnalysisObject(**item.model_dump(), label=label if instance else int(kept.classes[label]))
        for label, item in enumerate(found, start=1)
    ]
    raw = match_channels(pixels, channels=card.in_channels)
    return ImageResult(
        file_name=file_name,
        stem=prediction_stem(file_name),
        width=int(pixels.shape[2]),
        height=int(pixels.shape[1]),
        channels=int(pixels.shape[0]),
        kept=kept,
        objects=objects,
        measurements=measure_objects(kept.labels, raw),
        mask=mask,
        normalised=normalised,
        inference_seconds=inference_seconds,
    )


# --- Outputs --------------------------------------------------------------------------------------


class ScoredAnnotation(CocoAnnotation):
    """A kept object in coco.json: a COCO annotation with the model's score."""

    score: float = Field(ge=0, le=1, description="Mean probability of the class over the object's pixels")


class AnalysisCoco(BaseModel):
    """coco.json of an analysis: its images (status in_progress) and kept objects."""

    images: list[CocoImage]
    categories: list[CocoCategory]
    annotations: list[ScoredAnnotation] = Field(default_factory=list)


def _number(value: float) -> str:
    """A CSV number: integers bare, others with up to 10 significant digits."""
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else f"{number:.10g}"


@dataclass
class Shard:
    """This host's results, collected image by image and written once at the end."""

    config: AnalyzeConfig
    host: str
    channels: int
    coco_images: list[CocoImage] = field(default_factory=list)
    annotations: list[ScoredAnnotation] = field(default_factory=list)
    object_rows: list[list[str]] = field(default_factory=list)
    image_rows: list[list[str]] = field(default_factory=list)
    totals: dict[str, ClassTotals] = field(default_factory=dict)
    pixels: int = 0
    inference_seconds: float = 0.0

    def add(self, result: ImageResult) -> None:
        image_id = len(self.coco_images) + 1
        self.coco_images.append(
            CocoImage(
                id=image_id,
                file_name=result.file_name,
                width=result.width,
                height=result.height,
                status="in_progress",
            )
        )
        self.pixels += result.width * result.height
        self.inference_seconds += result.inference_seconds
        measured = result.measurements
        per_class = {name: [0, 0.0] for name in self.config.classes}
        for index, item in enumerate(result.objects):
            annotation_id = len(self.annotations) + 1
            self.annotations.append(
                ScoredAnnotation(
                    id=annotation_id,
                    image_id=image_id,
                    category_id=self.config.classes.index(item.category) + 1,
                    segmentation=item.segmentation,
                    bbox=item.bbox,
                    area=item.area,
                    iscrowd=0,
                    score=item.score,
                )
            )
            self.object_rows.append(self._object_row(result, item, index, annotation_id, measured))
            per_class[item.category][0] += 1
            per_class[item.category][1] += float(measured.area[index])
        self.image_rows.append(self._image_row(result, per_class))
        for name, (count, area) in per_class.items():
            totals = self.totals.setdefault(name, ClassTotals())
            totals.objects += int(count)
            totals.area += float(area)

    def _object_row(
        self, result: ImageResult, item: AnalysisObject, index: int, annotation_id: int, m: Measurements
    ) -> list[str]:
        row = [result.file_name, result.stem, str(annotation_id), str(item.label), item.category]
        row += [_number(item.score)]
        row += [_number(m.area[index]), _number(m.perimeter[index])]
        row += [_number(m.centroid_x[index]), _number(m.centroid_y[index])]
        row += [_number(m.bbox_x[index]), _number(m.bbox_y[index])]
        row += [_number(m.bbox_width[index]), _number(m.bbox_height[index])]
        row += [_number(m.eccentricity[index]), _number(m.solidity[index])]
        size = self.config.pixel_size
        if size is not None:
            row += [_number(m.area[index] * size * size), _number(m.perimeter[index] * size)]
            row += [_number(m.centroid_x[index] * size), _number(m.centroid_y[index] * size)]
        for channel in range(self.channels):
            row += [_number(m.mean_intensity[channel, index]), _number(m.max_intensity[channel, index])]
        return row

    def _image_row(self, result: ImageResult, per_class: dict[str, list[float]]) -> list[str]:
        pixels = result.width * result.height
        total_area = sum(area for _, area in per_class.values())
        row = [result.file_name, result.stem, str(result.width), str(result.height)]
        row += [str(len(result.objects)), _number(total_area / pixels)]
        for name in self.config.classes:
            count, area = per_class[name]
            row += [str(int(count)), _number(area), _number(area / pixels)]
        return row

    def summary(self, *, seconds: float) -> AnalysisSummary:
        size = self.config.pixel_size
        per_class = {
            name: totals.model_copy(update={"area_um2": None if size is None else totals.area * size * size})
            for name, totals in self.totals.items()
        }
        return AnalysisSummary(
            **self.config.run_fields(),
            images=len(self.coco_images),
            megapixels=self.pixels / 1e6,
            objects=len(self.annotations),
            per_class={name: per_class.get(name, ClassTotals()) for name in self.config.classes},
            hosts=[self.host],
            seconds=seconds,
            inference_seconds=self.inference_seconds,
        )

    def write(self, folder: Path, *, seconds: float) -> AnalysisSummary:
        """coco.json, objects.csv, images.csv and summary.json of this host under `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        coco = AnalysisCoco(
            images=self.coco_images,
            categories=[CocoCategory(id=k, name=name) for k, name in enumerate(self.config.classes, start=1)],
            annotations=self.annotations,
        )
        write_json(folder / "coco.json", coco)
        header = object_columns(channels=self.channels, pixel_size=self.config.pixel_size)
        _write_csv(folder / "objects.csv", header=header, rows=self.object_rows)
        _write_csv(folder / "images.csv", header=image_columns(self.config.classes), rows=self.image_rows)
        summary = self.summary(seconds=seconds)
        write_json(folder / "summary.json", summary)
        return summary


def _write_csv(path: Path, *, header: list[str], rows: list[list[str]]) -> None:
    with atomic.atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_image_outputs(result: ImageResult, *, paths: ProcessingPaths, classes: Sequence[str]) -> None:
    """images/{stem}.json and {stem}.png, masks/{stem}.tif."""
    preview_name = f"{result.stem}.png"
    write_preview(result.normalised, path=paths.images_output / preview_name)
    counts = dict.fromkeys(classes, 0)
    for item in result.objects:
        counts[item.category] += 1
    analysed = AnalysedImage.from_record(result, preview=preview_name, counts=counts)
    write_json(paths.images_output / f"{result.stem}.json", analysed)
    with atomic.atomic_path(paths.masks_output / f"{result.stem}.tif") as temporary:
        tifffile.imwrite(temporary, result.mask, compression="zlib")


def write_progress(paths: ProcessingPaths, *, host: str, done: int, total: int) -> None:
    progress = AnalysisProgress(
        host=host, images_done=done, images_total=total, updated_at=datetime.now(UTC).isoformat()
    )
    write_json(paths.progress_output / f"{host}.json", progress)


# --- The job --------------------------------------------------------------------------------------


def analysed_images(
    loaded: LoadedModel, *, config: AnalyzeConfig, images_dir: Path, file_names: Sequence[str]
) -> Iterator[ImageResult]:
    for file_name in file_names:
        yield analyse_image(
            loaded.predictor, images_dir=images_dir, file_name=file_name, card=loaded.card, config=config
        )


def check_card(card: ModelCard, *, config: AnalyzeConfig) -> None:
    if card.classes != config.classes or card.model_type != config.model_type:
        raise TrainerError(
            f"The model ({card.model_type}, classes {card.classes}) is not the one the analysis was "
            f"submitted for ({config.model_type}, classes {config.classes})"
        )


def run(
    paths: ProcessingPaths, *, runtime: Runtime | None = None, loaded: LoadedModel | None = None
) -> AnalysisSummary:
    """Analyse this host's images and write its outputs; the host's summary. `loaded` skips loading
    the model input (benchmarks time the two apart)."""
    started = time.monotonic()
    config = read_config(paths.config_file)
    host = current_host(paths.resource_config)
    file_names = find_images(paths.images_input)
    write_progress(paths, host=host, done=0, total=len(file_names))
    if loaded is None:
        runtime = runtime or Runtime.from_environment()
        runtime.start()
        with tempfile.TemporaryDirectory(prefix="segpipe-analyze-") as work:
            loaded = load_model(paths.model_input, work_dir=Path(work), runtime=runtime)
    check_card(loaded.card, config=config)
    logger.info(
        "Analysing %d images on %s with version %d of %s (%s)",
        len(file_names), host, config.version, config.project, loaded.card.preset,
    )  # fmt: skip
    shard = Shard(config=config, host=host, channels=loaded.card.in_channels)
    results = analysed_images(loaded, config=config, images_dir=paths.images_input, file_names=file_names)
    for done, result in enumerate(results, start=1):
        write_image_outputs(result, paths=paths, classes=config.classes)
        shard.add(result)
        write_progress(paths, host=host, done=done, total=len(file_names))
        logger.info("%s: %d objects (%d of %d)", result.file_name, len(result.objects), done, len(file_names))
    summary = shard.write(paths.shard_dir(host), seconds=time.monotonic() - started)
    logger.info("Analysed %d images, %d objects, in %.1f s", summary.images, summary.objects, summary.seconds)
    return summary


def write_message(paths: ProcessingPaths, error: BaseException) -> None:
    """`/opt/ml/output/message`: one sentence, which SageMaker shows as the job's ExitMessage."""
    if not isinstance(error, TrainerError):
        detail = " ".join(str(error).split()) or "no message"
        error = TrainerError(f"Analysis failed with an unexpected {type(error).__name__}: {detail}")
    try:
        paths.message.parent.mkdir(parents=True, exist_ok=True)
        paths.message.write_text(failure_sentence(error) + "\n", encoding="utf-8")
    except OSError:
        logger.exception("Could not write %s", paths.message)


def main() -> None:
    """Console script `analyze`."""
    configure_logging()
    signal.signal(signal.SIGTERM, _stop)
    paths = ProcessingPaths.from_environment()
    try:
        run(paths)
        status = 0
    except AnalysisStopped:
        logger.warning("Stopped: leaving without results")
        status = EXIT_STOPPED
    except Exception as exc:
        logger.exception("Analysis failed")
        write_message(paths, exc)
        status = EXIT_FAILED
    sys.exit(status)


if __name__ == "__main__":
    main()
