"""From the model's dense maps to objects: distance and flow targets, seeded watershed, flow
dynamics, semantic regions.

Shapes: K is the number of classes; class maps are (K+1) x H x W with class 0 the background.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from scipy import ndimage as ndi

from segpipe.models.trainer_io import InstanceHead
from segpipe_trainer.kernels import (
    flood_crowded,
    flood_like_scikit_image,
    foreground_runs,
    label_sums,
    paint_runs,
    relabel,
    relabel_runs,
    run_sums,
)

#: 8-connectivity for foreground components and seeds.
_EIGHT = np.ones((3, 3), dtype=bool)
#: Pixels of bounding boxes flooded per watershed call (see `_split_crowded`).
_CANVAS_PIXELS = 16_384


@dataclass(frozen=True)
class Instances:
    """Objects of one image as a label image.

    labels:  int32 H x W, 0 = background, 1..N objects
    classes: int64 [N+1], classes[0] = 0, classes[n] in 1..K
    scores:  float32 [N+1], scores[0] = 0; mean probability of the object's class over its pixels
    """

    labels: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    @property
    def count(self) -> int:
        """N, the number of objects."""
        return len(self.classes) - 1


def empty_instances(*, height: int, width: int) -> Instances:
    """No objects on an H x W image."""
    return Instances(
        labels=np.zeros((height, width), dtype=np.int32),
        classes=np.zeros(1, dtype=np.int64),
        scores=np.zeros(1, dtype=np.float32),
    )


def distance_target(labels: np.ndarray) -> np.ndarray:
    """float32 H x W in [0, 1]: each object's distance to its own boundary over that object's maximum.

    The Euclidean distance of a pixel to the nearest pixel outside its object (background or another
    object) is 1 on the object's rim; dividing by the object's maximum gives 1 at its centre, falling
    towards 0 at its edge. 0 on background.
    """
    target = np.zeros(labels.shape, dtype=np.float32)
    for label, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(part.start - 1, 0), part.stop + 1) for part in box)
        inside = labels[grown] == label
        # The padding puts "outside" beyond the image border too, so objects cut by it still fall to 0.
        distance = ndi.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        target[grown][inside] = (distance[inside] / distance.max()).astype(np.float32)
    return target


#: The 8 neighbour offsets (row, column).
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
#: Diffusion steps per pixel of an object's largest extent, and their cap (see `flow_target`).
_DIFFUSION_PER_PIXEL = 2
_DIFFUSION_CAP = 400
#: sin(22.5 deg): a unit flow component above it steps one pixel that way (the nearest of 8 directions).
_STEP_COMPONENT = 0.38268343
#: Flows weaker than this (in target units, where object flows have length 1) end a path: a sink.
SINK_FLOW = 0.4
#: Cores of the distance map above this level seed the watershed (`instances_from_maps`).
SEED_LEVEL = 0.5
#: Each instance head's split level: the one setting of its post-processing that decides whether
#: touching objects come apart (the distance head's seed level, the flow head's sink flow), its
#: default, and the levels a training chooses it from on its held-out images (`levels`). A model
#: whose distance map stays high where two objects touch needs a higher seed level; one whose
#: flows fade early near centres needs a lower sink.
SPLIT_LEVEL_DEFAULTS: Mapping[InstanceHead, float] = MappingProxyType(
    {"distance": SEED_LEVEL, "flow": SINK_FLOW}
)
SPLIT_LEVEL_CHOICES: Mapping[InstanceHead, tuple[float, ...]] = MappingProxyType(
    {
        "distance": (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75),
        "flow": (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5),
    }
)


def flow_target(labels: np.ndarray) -> np.ndarray:
    """float32 2 x H x W: unit vectors (dy, dx) along which each object pixel reaches its object's centre.

    As Cellpose does: heat diffuses inside each object from a source at its centre (the object pixel
    farthest from its own boundary), every object at once, with outside (background or another
    object) held at zero; the flows are the normalised gradient of log(1 + heat), so they follow the
    object's shape, bent or not, and point away from every neighbour it touches. 0 on background.
    """
    height, width = labels.shape
    flows = np.zeros((2, height, width), dtype=np.float32)
    boxes = ndi.find_objects(labels)
    present = [index for index, box in enumerate(boxes, start=1) if box is not None]
    if not present:
        return flows
    extent = max(max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes if b is not None)
    padded = np.pad(labels, 1)
    inside = padded > 0
    # Distance to the object's own boundary (touching objects are apart): its maximum is the centre.
    own = np.zeros(padded.shape, dtype=np.float64)
    for index in present:
        box = tuple(slice(part.start, part.stop + 2) for part in boxes[index - 1])
        mask = padded[box] == index
        own[box][mask] = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][mask]
    centres = np.asarray(ndi.maximum_position(own, padded, index=present), dtype=np.int64).reshape(-1, 2)
    core = (slice(1, height + 1), slice(1, width + 1))

    def window(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
        return array[1 + dy : height + 1 + dy, 1 + dx : width + 1 + dx]

    same = {
        (dy, dx): (inside[core] & (window(padded, dy, dx) == padded[core])).astype(np.float32)
        for dy, dx in _NEIGHBOURS
    }
    heat = np.zeros(padded.shape, dtype=np.float32)
    total = np.empty((height, width), dtype=np.float32)
    for _ in range(min(_DIFFUSION_CAP, _DIFFUSION_PER_PIXEL * extent)):
        heat[centres[:, 0], centres[:, 1]] += 1.0
        np.copyto(total, heat[core])
        for offset, mask in same.items():
            total += mask * window(heat, *offset)
        heat[core] = total * (1.0 / 9.0)
    level = np.log1p(heat)
    gy = same[(1, 0)] * window(level, 1, 0) - same[(-1, 0)] * window(level, -1, 0)
    gx = same[(0, 1)] * window(level, 0, 1) - same[(0, -1)] * window(level, 0, -1)
    length = np.hypot(gy, gx)
    scale = np.where(inside[core] & (length > 1e-12), 1.0 / np.maximum(length, 1e-12), 0.0)
    flows[0], flows[1] = gy * scale, gx * scale
    return flows


def instances_from_flows(
    probs: np.ndarray, flows: np.ndarray, *, min_area: int = 16, sink_flow: float = SINK_FLOW
) -> Instances:
    """Instance segmentation by following predicted flows to object centres.

    probs: float32 (K+1) x H x W softmax; flows: float32 2 x H x W, the model's prediction of
    `flow_target`. Every foreground pixel (`1 - probs[0] > 0.5`) steps to the neighbour its flow
    points at most nearly (one of 8); a step off the foreground, or a flow under `sink_flow`, ends
    the path. The paths are followed all at once by pointer jumping (each pixel's successor is
    replaced by its successor's successor, log2(H + W) times), so every pixel reaches its path's
    end in a few vectorised passes; the ends, 8-connected, are the objects' centres, and every pixel
    belongs to the object of its path's end. Classes, scores and `min_area` as `instances_from_maps`.
    """
    foreground = probs[0] < 0.5
    height, width = foreground.shape
    pixels = np.flatnonzero(foreground)
    if pixels.size == 0:
        return empty_instances(height=height, width=width)
    dy = flows[0].ravel()[pixels].astype(np.float32)
    dx = flows[1].ravel()[pixels].astype(np.float32)
    length = np.hypot(dy, dx)
    moving = length >= sink_flow
    unit = np.where(moving, 1.0 / np.maximum(length, 1e-6), 0.0).astype(np.float32)
    step_y = np.where(np.abs(dy * unit) > _STEP_COMPONENT, np.sign(dy), 0).astype(np.int64)
    step_x = np.where(np.abs(dx * unit) > _STEP_COMPONENT, np.sign(dx), 0).astype(np.int64)
    rows, cols = np.divmod(pixels, width)
    to_row, to_col = rows + step_y, cols + step_x
    on_image = (to_row >= 0) & (to_row < height) & (to_col >= 0) & (to_col < width)
    position = np.full(height * width, -1, dtype=np.int32)
    position[pixels] = np.arange(pixels.size, dtype=np.int32)
    successor = np.where(on_image, position[np.where(on_image, to_row * width + to_col, 0)], -1)
    successor = np.where(successor >= 0, successor, np.arange(pixels.size, dtype=np.int32))
    for _ in range(int(np.ceil(np.log2(height + width))) + 1):
        jumped = successor[successor]
        if np.array_equal(jumped, successor):
            break
        successor = jumped
    # Path ends a pixel or two apart (flows circling a centre) are one centre: the ends are
    # labelled on a grid of 2 x 2 cells, 8-connected.
    end = pixels[successor]
    cell_rows, cell_cols = (end // width) // 2, (end % width) // 2
    cells = np.zeros(((height + 1) // 2, (width + 1) // 2), dtype=bool)
    cells[cell_rows, cell_cols] = True
    centres, _count = ndi.label(cells, structure=_EIGHT)
    labels = np.zeros((height, width), dtype=np.int32)
    labels.ravel()[pixels] = centres[cell_rows, cell_cols]
    return _score_objects(labels, pixels=pixels, probs=probs, min_area=min_area)


def instances_from_maps(
    probs: np.ndarray, distance: np.ndarray, *, min_area: int = 16, seed_level: float = SEED_LEVEL
) -> Instances:
    """Instance segmentation from dense maps.

    probs: float32 (K+1) x H x W softmax; distance: float32 H x W, the model's prediction of
    `distance_target`. Foreground is `1 - probs[0] > 0.5`. Seeds are the 8-connected cores where
    `distance > seed_level`, ignoring specks under `min_area / 4` pixels; a foreground component
    holding two or more seeds is split by a seeded watershed on `-distance` (scikit-image's
    `watershed(..., connectivity=2)` result, computed by `kernels.flood_crowded`). An object's
    class is the argmax of its mean class probabilities (classes 1..K), its score the mean
    probability of that class; objects under `min_area` pixels are dropped, the rest renumbered
    1..N. A distance map of another dtype is taken as float32 for the watershed.

    Components and cores are found as runs of pixels along rows in one pass over the maps
    (`kernels.foreground_runs`), numbered as `scipy.ndimage.label` numbers them; only the runs are
    visited after that.
    """
    height, width = probs.shape[1:]
    probs = np.ascontiguousarray(probs)
    runs = _Runs.find(probs[0], distance, seed_level=seed_level, min_size=max(min_area // 4, 1))
    if runs.components == 0:
        return empty_instances(height=height, width=width)
    labels = np.zeros((height, width), dtype=np.int32)
    if runs.crowded.any():
        _split_crowded(labels, runs=runs, distance=np.ascontiguousarray(distance, dtype=np.float32))
    area, sums = run_sums(labels, runs.runs, runs.run_component, runs.crowded, probs, runs.pieces + 1)
    means = sums / np.maximum(area, 1)
    best = np.argmax(means, axis=0)
    keep = area >= max(min_area, 1)
    keep[0] = False
    renumber = np.zeros(len(keep), dtype=np.int32)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    relabel_runs(labels, runs.runs, runs.run_component, runs.crowded, renumber)
    return Instances(
        labels=labels,
        classes=np.concatenate([[0], best[keep] + 1]).astype(np.int64),
        scores=np.concatenate([[0.0], means[best[keep], np.flatnonzero(keep)]]).astype(np.float32),
    )


@dataclass(frozen=True)
class _Runs:
    """The foreground and its watershed seeds of one image, as runs of pixels along rows.

    runs: int64 [R, 3] (row, first column, column after the last), raster order
    run_component: int64 [R], each run's 8-connected foreground component 1..C
    cores: int64 [Q, 3], the runs of the cores, raster order
    core_seed: int64 [Q], each core run's 8-connected core 1..S
    core_component: int64 [Q], the component of each core run that can seed a piece, else 0
    core_piece: int64 [Q], C + s for a core run of a usable core s, else 0
    usable: bool [S+1], the cores large enough to seed an object
    owner: int64 [S+1], the component of each usable core (0 for the others)
    crowded: bool [C+1], the components that hold two or more usable seeds
    components: C; pieces: C + S, the highest number a piece can take
    """

    runs: np.ndarray
    run_component: np.ndarray
    cores: np.ndarray
    core_seed: np.ndarray
    core_component: np.ndarray
    core_piece: np.ndarray
    usable: np.ndarray
    owner: np.ndarray
    crowded: np.ndarray
    components: int
    pieces: int

    @classmethod
    def find(cls, background: np.ndarray, distance: np.ndarray, *, seed_level: float, min_size: int) -> _Runs:
        """Runs of the foreground (`background < 0.5`) and of its cores (`distance > seed_level`,
        compared in distance's own dtype as numpy compares them); cores under `min_size` pixels
        seed nothing."""
        if distance.dtype not in (np.float32, np.float64):
            distance = distance.astype(np.float64)
        level = distance.dtype.type(seed_level)
        runs, run_component, components, cores, core_seed, core_run, seeds = foreground_runs(
            np.ascontiguousarray(background), np.ascontiguousarray(distance), level
        )
        usable = np.bincount(core_seed, weights=cores[:, 2] - cores[:, 1], minlength=seeds + 1) >= min_size
        usable[0] = False
        core_usable = usable[core_seed]
        core_component = np.where(core_usable, run_component[core_run], 0)
        owner = np.zeros(seeds + 1, dtype=np.int64)
        owner[core_seed] = core_component
        per_component = np.bincount(owner[usable], minlength=components + 1)
        return cls(
            runs=runs,
            run_component=run_component,
            cores=cores,
            core_seed=core_seed,
            core_component=core_component,
            core_piece=np.where(core_usable, components + core_seed, 0),
            usable=usable,
            owner=owner,
            crowded=per_component >= 2,
            components=components,
            pieces=components + seeds,
        )


@dataclass(frozen=True)
class _Seeds:
    """Watershed seeds of one image, as the replay of tied canvases reads them.

    labels: int32 H x W, 8-connected cores numbered 1..S (0 elsewhere)
    usable: bool [S+1], the cores large enough to seed an object
    owner: int64 [S+1], the foreground component of each core (owner[0] = 0)
    crowded: int64 [C'], the foreground components that hold two or more usable seeds
    components: C, the number of foreground components
    """

    labels: np.ndarray
    usable: np.ndarray
    owner: np.ndarray
    crowded: np.ndarray
    components: int


def _split_crowded(labels: np.ndarray, *, runs: _Runs, distance: np.ndarray) -> None:
    """Write on int32 H x W `labels` the pieces of every crowded component, split by a seeded
    watershed; the other pixels are left as they are.

    A piece grown from seed s is numbered `C + s` (C = number of components), above every
    component's number. The result is that of scikit-image's `watershed(-distance, markers,
    mask=component, connectivity=2)` on canvases of about `_CANVAS_PIXELS` pixels into which the
    components' bounding boxes are packed (as segpipe did before `kernels.flood_crowded`): one
    pass floods every component in scikit-image's order, and the rare components where that order
    hangs on scikit-image's heap (two pieces' markers of equal value) or the relief has NaN are
    flooded again on their canvas by a replay of that heap.
    """
    tied, boxes = flood_crowded(
        labels,
        runs.runs,
        runs.run_component,
        runs.crowded,
        runs.cores,
        runs.core_component,
        runs.core_piece,
        distance,
    )
    if tied.any():
        _replay(labels, runs=runs, distance=distance, tied=tied, boxes=boxes)


def _replay(
    labels: np.ndarray, *, runs: _Runs, distance: np.ndarray, tied: np.ndarray, boxes: np.ndarray
) -> None:
    """Flood again, on the canvases of about `_CANVAS_PIXELS` pixels that hold them, the `tied`
    components (bool [C+1]; `boxes` int64 [C+1, 4] top, left, bottom, right), with
    scikit-image's heap replayed."""
    batches: list[list[tuple[int, tuple[slice, slice]]]] = []
    batch: list[tuple[int, tuple[slice, slice]]] = []
    batch_pixels = 0
    batch_tied = False
    for component in np.flatnonzero(runs.crowded):
        top, left, bottom, right = (int(value) for value in boxes[component])
        batch.append((int(component), (slice(top, bottom), slice(left, right))))
        batch_tied = batch_tied or bool(tied[component])
        batch_pixels += (bottom - top) * (right - left)
        if batch_pixels >= _CANVAS_PIXELS:
            if batch_tied:
                batches.append(batch)
            batch, batch_pixels, batch_tied = [], 0, False
    if batch and batch_tied:
        batches.append(batch)
    # The seeds of the replayed canvases only, painted on a label image.
    chosen = np.zeros(runs.components + 1, dtype=bool)
    chosen[[component for batch in batches for component, _ in batch]] = True
    seed_labels = np.zeros(labels.shape, dtype=np.int32)
    paint_runs(seed_labels, runs.cores, runs.core_seed, chosen[runs.core_component])
    seeds = _Seeds(
        labels=seed_labels,
        usable=runs.usable,
        owner=runs.owner,
        crowded=np.flatnonzero(runs.crowded),
        components=runs.components,
    )
    for batch in batches:
        _flood_canvas(labels, batch=batch, seeds=seeds, distance=distance)


def _component_of(values: np.ndarray, *, seeds: _Seeds) -> np.ndarray:
    """The foreground component that label values belong to (a piece C + s to its seed's)."""
    count = seeds.components
    return np.where(values > count, seeds.owner[np.maximum(values - count, 0)], values)


def _flood_canvas(
    labels: np.ndarray,
    *,
    batch: list[tuple[int, tuple[slice, slice]]],
    seeds: _Seeds,
    distance: np.ndarray,
) -> None:
    """One watershed, scikit-image's heap replayed, for a batch of (component, bounding box) packed
    into one canvas as segpipe packed them for scikit-image."""
    count = seeds.components
    places, canvas_shape = _shelf_pack(
        [(box[0].stop - box[0].start, box[1].stop - box[1].start) for _, box in batch]
    )
    # A margin of one pixel all round keeps the flooding inside the canvas.
    places = [
        (slice(rows.start + 1, rows.stop + 1), slice(cols.start + 1, cols.stop + 1)) for rows, cols in places
    ]
    canvas_shape = (canvas_shape[0] + 2, canvas_shape[1] + 2)
    relief = np.zeros(canvas_shape, dtype=np.float32)
    pieces = np.zeros(canvas_shape, dtype=np.int32)
    mask = np.zeros(canvas_shape, dtype=bool)
    for (component, box), place in zip(batch, places, strict=True):
        inside = _component_of(labels[box], seeds=seeds) == component
        seed_labels = seeds.labels[box]
        mask[place] = inside
        np.negative(distance[box], out=relief[place], where=inside)
        pieces[place] = np.where(inside & seeds.usable[seed_labels], seed_labels, 0)
    flood_like_scikit_image(relief, pieces, mask)
    for (_, box), place in zip(batch, places, strict=True):
        inside = mask[place]
        labels[box][inside] = count + pieces[place][inside]


def _shelf_pack(shapes: list[tuple[int, int]]) -> tuple[list[tuple[slice, slice]], tuple[int, int]]:
    """Places for boxes of the given (height, width) on shelves of one canvas, one pixel apart.

    Returns each box's (rows, cols) slices in the canvas, in input order, and the canvas shape.
    """
    area = sum((height + 1) * (width + 1) for height, width in shapes)
    canvas_width = max(max(width for _, width in shapes), int(np.sqrt(area)) + 1)
    places: list[tuple[slice, slice]] = [(slice(0), slice(0))] * len(shapes)
    top = left = shelf_height = 0
    for index in sorted(range(len(shapes)), key=lambda i: -shapes[i][0]):
        height, width = shapes[index]
        if left + width > canvas_width:
            top, left, shelf_height = top + shelf_height + 1, 0, 0
        places[index] = (slice(top, top + height), slice(left, left + width))
        left += width + 1
        shelf_height = max(shelf_height, height)
    return places, (top + shelf_height, canvas_width)


def _score_objects(labels: np.ndarray, *, pixels: np.ndarray, probs: np.ndarray, min_area: int) -> Instances:
    """Instances from an int32 H x W label image with gaps in its numbering (renumbered in place).

    Class = argmax of the mean class probabilities, score = that mean; objects under `min_area`
    pixels are dropped. Only `pixels` (flat indices of every labelled pixel) are visited.
    """
    size = int(labels.ravel()[pixels].max(initial=0)) + 1
    area, sums = label_sums(labels, pixels, np.ascontiguousarray(probs), size)
    means = sums / np.maximum(area, 1)
    best = np.argmax(means, axis=0)
    keep = area >= max(min_area, 1)
    keep[0] = False
    renumber = np.zeros(size, dtype=np.int32)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    relabel(labels, pixels, renumber)
    return Instances(
        labels=labels,
        classes=np.concatenate([[0], best[keep] + 1]).astype(np.int64),
        scores=np.concatenate([[0.0], means[best[keep], np.flatnonzero(keep)]]).astype(np.float32),
    )


def regions_from_semantic(probs: np.ndarray, *, min_area: int = 16) -> Instances:
    """Semantic predictions as objects.

    probs: float32 (K+1) x H x W softmax. Each connected (8-connected) region of each argmax class
    1..K is one object; its score is the mean probability of that class over the region. Regions
    under `min_area` pixels are dropped.
    """
    argmax = np.argmax(probs, axis=0)
    labels = np.zeros(argmax.shape, dtype=np.int32)
    classes = [np.zeros(1, dtype=np.int64)]
    scores = [np.zeros(1, dtype=np.float32)]
    offset = 0
    for k in range(1, len(probs)):
        inside = argmax == k
        regions, count = ndi.label(inside, structure=_EIGHT)
        if count == 0:
            continue
        pixels = np.flatnonzero(inside)
        # probs[k - 1 : k + 1]: label_sums adds the rows after the first, here class k alone.
        area, sums = label_sums(regions, pixels, np.ascontiguousarray(probs[k - 1 : k + 1]), count + 1)
        mean = sums[0] / np.maximum(area, 1)
        keep = area >= max(min_area, 1)
        keep[0] = False
        renumber = np.zeros(count + 1, dtype=np.int32)
        renumber[keep] = np.arange(offset + 1, offset + int(keep.sum()) + 1, dtype=np.int32)
        relabel(regions, pixels, renumber)
        labels.ravel()[pixels] = regions.ravel()[pixels]
        classes.append(np.full(int(keep.sum()), k, dtype=np.int64))
        scores.append(mean[keep].astype(np.float32))
        offset += int(keep.sum())
    return Instances(labels=labels, classes=np.concatenate(classes), scores=np.concatenate(scores))
