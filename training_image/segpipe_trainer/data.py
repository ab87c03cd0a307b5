"""Manifests, training targets, the validation carve-out, and random augmented tiles.

Shapes: C channels, K classes (class 0 is background, class i is `classes[i-1]`), T the tile size.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from scipy import ndimage as ndi
from torch.nn import functional
from torch.utils.data import Dataset, Sampler

from segpipe.models.coco import CocoAnnotation, CocoDataset, CocoImage
from segpipe.models.common import ModelType, SplitName
from segpipe.models.selection import holdout_group, validation_groups
from segpipe.models.trainer_io import InstanceHead, Normalization
from segpipe_trainer.errors import TrainerError
from segpipe_trainer.geometry import rasterize_instances
from segpipe_trainer.images import ImageReadError, check_size, match_channels, normalize, read_image
from segpipe_trainer.postprocess import distance_target, flow_target

logger = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train.json", "test": "test.json"}


# --- Manifests ---------------------------------------------------------------------------------


def find_manifest(split_dir: Path, *, split: SplitName) -> Path | None:
    """`{split}.json` in the split channel (directly or one folder down), or None when absent."""
    name = SPLIT_FILES[split]
    for candidate in (split_dir / name, split_dir / "split" / name):
        if candidate.is_file():
            return candidate
    return None


def load_manifest(path: Path) -> CocoDataset:
    """A split manifest (a COCO subset); an unreadable one is a TrainerError."""
    try:
        return CocoDataset.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise TrainerError(f"The split manifest '{path.name}' is not valid COCO JSON: {first}") from exc


@dataclass(frozen=True)
class ClassMap:
    """Class names (index i+1 is names[i]) and the category ids that map onto each."""

    names: tuple[str, ...]
    class_of: Mapping[int, int]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, *, classes: Sequence[str], manifests: Sequence[CocoDataset]) -> ClassMap:
        """Categories are matched to `classes` by name; other categories are ignored."""
        index = {name: i + 1 for i, name in enumerate(classes)}
        class_of = {
            category.id: index[category.name]
            for manifest in manifests
            for category in manifest.categories
            if category.name in index
        }
        seen = {index[c.name] for m in manifests for c in m.categories if c.name in index}
        absent = [name for name in classes if index[name] not in seen]
        if absent:
            logger.warning("No category in the split manifests is named %s", ", ".join(absent))
        return cls(names=tuple(classes), class_of=class_of)


@dataclass(frozen=True)
class ImageEntry:
    """One image of a manifest with its annotations."""

    image: CocoImage
    annotations: tuple[CocoAnnotation, ...] = ()

    @property
    def file_name(self) -> str:
        return self.image.file_name

    @property
    def group(self) -> str:
        """The unit held out whole: the image's group, or the image itself (`selection.holdout_group`)."""
        return holdout_group(self.image)


def image_entries(manifest: CocoDataset) -> list[ImageEntry]:
    """Completed images of a manifest (in manifest order) with their annotations."""
    by_image: dict[int, list[CocoAnnotation]] = {}
    for annotation in manifest.annotations:
        by_image.setdefault(annotation.image_id, []).append(annotation)
    return [
        ImageEntry(image=image, annotations=tuple(by_image.get(image.id, ())))
        for image in manifest.images
        if image.status != "in_progress"
    ]


def carve_validation(
    entries: Sequence[ImageEntry], *, fraction: float
) -> tuple[list[ImageEntry], list[ImageEntry]]:
    """(train, validation): the whole groups `selection.validation_groups` holds out go to validation.

    With two or more groups and a positive fraction, at least one group is held out and at least
    one is kept; otherwise nothing is held out.
    """
    held = validation_groups((entry.group for entry in entries), fraction=fraction)
    return [e for e in entries if e.group not in held], [e for e in entries if e.group in held]


# --- Prepared images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One image ready for training or evaluation.

    image:    float16/float32 C x H x W, percentile-normalised
    labels:   int32 H x W, 0 background, n the n-th kept annotation
    classes:  int64 [N+1], class of each label (classes[0] = 0)
    distance: float16/float32 H x W distance-to-boundary target (distance head), else None
    flow:     float16/float32 2 x H x W unit flows to object centres (flow head), else None
    """

    file_name: str
    image: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    distance: np.ndarray | None = None
    group: str = ""
    flow: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.labels.shape[0])

    @property
    def width(self) -> int:
        return int(self.labels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.image.shape[0])

    def class_map(self) -> np.ndarray:
        """int64 H x W class index of every pixel."""
        return self.classes[self.labels]


@dataclass(frozen=True)
class SampleOptions:
    """What loading an image needs besides the image."""

    dataset_dir: Path
    class_map: ClassMap
    model_type: ModelType
    normalization: Normalization = field(default_factory=Normalization)
    instance_head: InstanceHead = "distance"


def load_sample(entry: ImageEntry, *, options: SampleOptions) -> Sample:
    """Read, check and normalise one image and rasterise its targets."""
    image = entry.image
    pixels = read_image(options.dataset_dir / image.file_name, file_name=image.file_name)
    check_size(pixels, file_name=image.file_name, width=image.width, height=image.height)
    try:
        labels, classes = rasterize_instances(
            entry.annotations, height=image.height, width=image.width, class_of=options.class_map.class_of
        )
    except ValueError as exc:
        raise ImageReadError(
            f"The annotations of image '{image.file_name}' could not be rasterised: {exc}"
        ) from exc
    instance = options.model_type == "instance"
    flows = instance and options.instance_head == "flow"
    return Sample(
        file_name=image.file_name,
        image=normalize(pixels, normalization=options.normalization),
        labels=labels,
        classes=classes,
        distance=distance_target(labels) if instance and not flows else None,
        group=entry.group,
        flow=flow_target(labels) if flows else None,
    )


class SampleCache:
    """Prepared samples as .npy files on the job's volume, read back memory-mapped.

    Training images can outgrow memory; memory-mapped arrays are shared by data-loader workers and
    by the processes of one host.
    """

    def __init__(self, *, directory: Path) -> None:
        self.directory = directory

    @property
    def index(self) -> Path:
        return self.directory / "index.json"

    def write(self, samples: Iterator[Sample]) -> list[Sample]:
        """Store each sample and return the memory-mapped copies, in order."""
        self.directory.mkdir(parents=True, exist_ok=True)
        records = []
        for number, sample in enumerate(samples):
            stem = f"{number:06d}"
            np.save(self.directory / f"{stem}.image.npy", sample.image.astype(np.float16))
            np.save(self.directory / f"{stem}.labels.npy", sample.labels)
            np.save(self.directory / f"{stem}.classes.npy", sample.classes)
            if sample.distance is not None:
                np.save(self.directory / f"{stem}.distance.npy", sample.distance.astype(np.float16))
            if sample.flow is not None:
                np.save(self.directory / f"{stem}.flow.npy", sample.flow.astype(np.float16))
            records.append({"stem": stem, "file_name": sample.file_name, "group": sample.group})
        self.index.write_text(json.dumps(records))
        return self.read()

    def read(self) -> list[Sample]:
        """The samples `write` stored, memory-mapped."""
        records = json.loads(self.index.read_text())
        return [self._load(record) for record in records]

    def _load(self, record: Mapping[str, str]) -> Sample:
        stem = record["stem"]
        distance_path = self.directory / f"{stem}.distance.npy"
        flow_path = self.directory / f"{stem}.flow.npy"
        return Sample(
            file_name=record["file_name"],
            image=np.load(self.directory / f"{stem}.image.npy", mmap_mode="r"),
            labels=np.load(self.directory / f"{stem}.labels.npy", mmap_mode="r"),
            classes=np.load(self.directory / f"{stem}.classes.npy"),
            distance=np.load(distance_path, mmap_mode="r") if distance_path.is_file() else None,
            group=record["group"],
            flow=np.load(flow_path, mmap_mode="r") if flow_path.is_file() else None,
        )


def class_pixel_weights(samples: Sequence[Sample], *, num_classes: int, limit: float = 10.0) -> np.ndarray:
    """float32 [K+1] loss weights against class imbalance: 1/sqrt(pixel frequency), mean 1, capped.

    A class without pixels gets the cap (it can only appear as a false positive).
    """
    counts = np.zeros(num_classes + 1, dtype=np.float64)
    for sample in samples:
        counts += np.bincount(sample.class_map().ravel(), minlength=num_classes + 1)[: num_classes + 1]
    frequency = counts / max(counts.sum(), 1.0)
    weights = np.where(frequency > 0, 1.0 / np.sqrt(np.maximum(frequency, 1e-12)), np.inf)
    finite = weights[np.isfinite(weights)]
    weights = weights / (finite.mean() if finite.size else 1.0)
    return np.minimum(weights, limit).astype(np.float32)


# --- Tiles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to each training tile.

    Scale zooms the crop by a log-uniform factor; gamma raises the (non-negative) normalised
    intensities to a log-uniform power (1, 1 draws nothing); gain multiplies and offset adds per
    channel; noise is Gaussian.
    """

    flips: bool = True
    rotations: bool = True
    scale_range: tuple[float, float] = (0.8, 1.25)
    gain_range: tuple[float, float] = (0.8, 1.25)
    offset_range: tuple[float, float] = (-0.1, 0.1)
    noise_std: float = 0.02
    gamma_range: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class ObjectTable:
    """Every object of the training samples: where it is, its class, and how often to aim a tile at it.

    sample: int64 [M]; centre: int64 M x 2 (row, column); weight: float64 [M], summing to 1,
    inversely proportional to the count of the object's class, so rare classes are seen as often.
    """

    sample: np.ndarray
    centre: np.ndarray
    weight: np.ndarray

    @classmethod
    def build(cls, samples: Sequence[Sample]) -> ObjectTable:
        owners, centres, classes = [], [], []
        for number, sample in enumerate(samples):
            labels = np.asarray(sample.labels)
            for label, box in enumerate(ndi.find_objects(labels), start=1):
                if box is None:
                    continue
                owners.append(number)
                centres.append([(box[0].start + box[0].stop) // 2, (box[1].start + box[1].stop) // 2])
                classes.append(int(sample.classes[label]))
        if not owners:
            empty = np.zeros(0, dtype=np.int64)
            return cls(sample=empty, centre=np.zeros((0, 2), dtype=np.int64), weight=np.zeros(0))
        class_array = np.asarray(classes)
        per_class = np.bincount(class_array)
        weight = 1.0 / per_class[class_array]
        return cls(
            sample=np.asarray(owners, dtype=np.int64),
            centre=np.asarray(centres, dtype=np.int64),
            weight=weight / weight.sum(),
        )


class TileDataset(Dataset[dict[str, torch.Tensor]]):
    """Random augmented tiles of the training samples; item i of epoch e is fixed by (seed, e, i).

    Each item: image float32 C x T x T, classes int64 T x T, distance float32 T x T (the distance
    head's target; zeros for semantic models) or 2 x T x T (the flow head's, when the samples
    carry flows; the vectors turn with the tile). With probability `object_bias` a tile is centred
    (with jitter) on an object chosen against class imbalance, otherwise placed uniformly on an
    image chosen by area, which also draws the negatives (images without objects).
    """

    def __init__(  # long: keyword-only dataset settings, as the fields they fill; four have defaults
        self,
        *,
        samples: Sequence[Sample],
        tile_size: int,
        in_channels: int,
        length: int,
        seed: int,
        epoch: int = 0,
        object_bias: float = 0.75,
        augmentation: Augmentation | None = None,
        compact: bool = False,
    ) -> None:
        if not samples:
            raise TrainerError("There are no training images left to train on")
        self.samples = list(samples)
        self.tile_size = tile_size
        self.in_channels = in_channels
        self.length = length
        self.seed = seed
        self.epoch = epoch
        self.object_bias = object_bias
        self.augmentation = augmentation or Augmentation()
        self.compact = compact
        self.narrow_classes = max(int(np.max(sample.classes)) for sample in self.samples) <= 255
        self.objects = ObjectTable.build(self.samples)
        areas = np.asarray([sample.height * sample.width for sample in self.samples], dtype=np.float64)
        self.area_weight = areas / areas.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        scale = _log_uniform(rng, self.augmentation.scale_range)
        crop = max(8, round(self.tile_size * scale))
        number, top, left = self._place(rng, crop=crop)
        sample = self.samples[number]
        image, classes, target = _crop(sample, top=top, left=left, size=crop)
        image = match_channels(image, channels=self.in_channels)
        image, classes, target = _flip_rotate(rng, image, classes, target, augmentation=self.augmentation)
        tensors = _resize(image=image, classes=classes, distance=target, size=self.tile_size)
        if tensors["distance"].shape[0] == 1:
            tensors["distance"] = tensors["distance"][0]
        tensors["image"] = _gamma(rng, tensors["image"], bounds=self.augmentation.gamma_range)
        if self.compact:
            return _compact(rng, tensors, augmentation=self.augmentation, narrow=self.narrow_classes)
        tensors["image"] = _jitter_intensity(rng, tensors["image"], augmentation=self.augmentation)
        return tensors

    def _place(self, rng: np.random.Generator, *, crop: int) -> tuple[int, int, int]:
        """(sample number, top, left) of a crop x crop window; it may hang over the image's edges."""
        if len(self.objects.sample) and rng.random() < self.object_bias:
            chosen = int(rng.choice(len(self.objects.sample), p=self.objects.weight))
            number = int(self.objects.sample[chosen])
            row, col = self.objects.centre[chosen]
            jitter = rng.integers(-(crop // 4), crop // 4 + 1, size=2)
            return number, int(row + jitter[0] - crop // 2), int(col + jitter[1] - crop // 2)
        number = int(rng.choice(len(self.samples), p=self.area_weight))
        sample = self.samples[number]
        top = int(rng.integers(0, max(sample.height - crop, 0) + 1))
        left = int(rng.integers(0, max(sample.width - crop, 0) + 1))
        return number, top, left


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _crop(sample: Sample, *, top: int, left: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The size x size window at (top, left), zero (background) beyond the image.

    Returns image float32 C x S x S, classes int64 S x S, and the instance target float32
    D x S x S: the distance map (D = 1, zeros without one) or the flows (D = 2, dy then dx).
    """
    height, width = sample.height, sample.width
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size, height), min(left + size, width)
    image = np.zeros((sample.channels, size, size), dtype=np.float32)
    classes = np.zeros((size, size), dtype=np.int64)
    target = np.zeros((2 if sample.flow is not None else 1, size, size), dtype=np.float32)
    if r1 > r0 and c1 > c0:
        window = (slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))
        image[:, window[0], window[1]] = sample.image[:, r0:r1, c0:c1]
        classes[window] = sample.classes[np.asarray(sample.labels[r0:r1, c0:c1])]
        if sample.flow is not None:
            target[:, window[0], window[1]] = sample.flow[:, r0:r1, c0:c1]
        elif sample.distance is not None:
            target[0][window] = sample.distance[r0:r1, c0:c1]
    return image, classes, target


def _flip_rotate(
    rng: np.random.Generator,
    image: np.ndarray,
    classes: np.ndarray,
    distance: np.ndarray,
    *,
    augmentation: Augmentation,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same random flip and 90-degree rotation of C x S x S, S x S and D x S x S arrays.

    A 2-channel target is a field of (dy, dx) vectors: they turn with the picture.
    """
    turns = int(rng.integers(0, 4)) if augmentation.rotations else 0
    flip = bool(rng.integers(0, 2)) if augmentation.flips else False
    vectors = distance.shape[0] == 2
    arrays = [image, classes[np.newaxis], distance]
    if flip:
        arrays = [a[:, :, ::-1] for a in arrays]
        if vectors:
            arrays[2] = np.stack([arrays[2][0], -arrays[2][1]])
    if turns:
        arrays = [np.rot90(a, k=turns, axes=(1, 2)) for a in arrays]
        if vectors:
            for _ in range(turns):  # rot90 moves (y, x) to (S-1-x, y): (dy, dx) becomes (-dx, dy)
                arrays[2] = np.stack([-arrays[2][1], arrays[2][0]])
    return arrays[0], arrays[1][0], arrays[2]


def _resize(
    *, image: np.ndarray, classes: np.ndarray, distance: np.ndarray, size: int
) -> dict[str, torch.Tensor]:
    """Tensors at size x size: bilinear (antialiased) image and D x S x S target, nearest classes."""
    image_t = torch.from_numpy(np.ascontiguousarray(image))
    classes_t = torch.from_numpy(np.ascontiguousarray(classes))
    distance_t = torch.from_numpy(np.ascontiguousarray(distance))
    if image_t.shape[-1] != size:
        image_t = functional.interpolate(image_t[None], size=(size, size), mode="bilinear", antialias=True)[0]
        distance_t = functional.interpolate(
            distance_t[None], size=(size, size), mode="bilinear", antialias=True
        )[0]
        classes_t = functional.interpolate(classes_t[None, None].float(), size=(size, size), mode="nearest")[
            0, 0
        ].long()
    return {"image": image_t, "classes": classes_t, "distance": distance_t}


def _gamma(rng: np.random.Generator, image: torch.Tensor, *, bounds: tuple[float, float]) -> torch.Tensor:
    """Positive intensities raised to one log-uniform power for all channels (C x T x T); none
    drawn when `bounds` is (1, 1), so the other draws keep their order."""
    if bounds == (1.0, 1.0):
        return image
    gamma = _log_uniform(rng, bounds)
    return torch.where(image > 0, image.clamp(min=0) ** gamma, image)


def _jitter_intensity(
    rng: np.random.Generator, image: torch.Tensor, *, augmentation: Augmentation
) -> torch.Tensor:
    """Per-channel gain and offset, plus a little Gaussian noise: C x T x T -> C x T x T."""
    channels = image.shape[0]
    low, high = augmentation.gain_range
    gain = np.exp(rng.uniform(math.log(low), math.log(high), size=channels)).astype(np.float32)
    offset = rng.uniform(*augmentation.offset_range, size=channels).astype(np.float32)
    out = image * torch.from_numpy(gain)[:, None, None] + torch.from_numpy(offset)[:, None, None]
    if augmentation.noise_std > 0:
        noise = rng.standard_normal(size=image.shape).astype(np.float32) * augmentation.noise_std
        out = out + torch.from_numpy(noise)
    return out


def _compact(
    rng: np.random.Generator, tensors: dict[str, torch.Tensor], *, augmentation: Augmentation, narrow: bool
) -> dict[str, torch.Tensor]:
    """A tile for the device to finish (`accel.device_batch`): float16 image and distance, uint8
    classes (int64 when a class number passes 255), and the intensity jitter as parameters: gain and offset
    float32 [C], noise_seed int64, noise_std float32 (drawn in `_jitter_intensity`'s order)."""
    channels = tensors["image"].shape[0]
    low, high = augmentation.gain_range
    gain = np.exp(rng.uniform(math.log(low), math.log(high), size=channels)).astype(np.float32)
    offset = rng.uniform(*augmentation.offset_range, size=channels).astype(np.float32)
    classes = tensors["classes"]
    return {
        "image": tensors["image"].half(),
        "classes": classes.to(torch.uint8) if narrow else classes,
        "distance": tensors["distance"].half(),
        "gain": torch.from_numpy(gain),
        "offset": torch.from_numpy(offset),
        "noise_seed": torch.tensor(int(rng.integers(0, 2**62)), dtype=torch.int64),
        "noise_std": torch.tensor(augmentation.noise_std, dtype=torch.float32),
    }


class StepSampler(Sampler[int]):
    """Item indices of one rank for steps [start, steps) of an epoch.

    Step s of rank r takes items (s x world + r) x B ... + B - 1: every rank sees different tiles,
    and skipping to a step after a resume needs no replay.
    """

    def __init__(self, *, steps: int, batch_size: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.steps, self.batch_size, self.start, self.rank, self.world = steps, batch_size, start, rank, world

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.steps):
            first = (step * self.world + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)

    def __len__(self) -> int:
        return max(self.steps - self.start, 0) * self.batch_size


def default_steps_per_epoch(
    samples: Sequence[Sample], *, tile_size: int, batch_size: int, world: int = 1, minimum: int = 20
) -> int:
    """Steps for the tiles of one epoch to cover the training pixels about once (at least `minimum`)."""
    pixels = sum(sample.height * sample.width for sample in samples)
    return max(minimum, math.ceil(pixels / (tile_size * tile_size * batch_size * world)))
