"""Post-processing cost per megapixel: dense maps to kept objects with outlines and measurements.

Scenes: 2048 x 2048 images of nuclei-like ellipses (semi-axes 6-11 px, any orientation, later ones
covering earlier ones), in four vertical bands holding 10, 20, 30 and 40 % of the objects, so one
image has sparse, medium and crowded (touching) regions; two object counts. A third scene has
1500 discs of radius 9-20 px at random places (`dense_scene`, this benchmark's scene before, on
1024 x 1024): larger objects, about a fifth of the image foreground. The maps come from
the known label image (K = 2 classes) with smooth noise, as a network's upsampled outputs look:
class probabilities, the distance map (distance head) and the flows (flow head).

Stages, each timed on its own: maps -> instances for the distance head (`instances_from_maps`) and
for the flow head (`instances_from_flows`); instances -> outlines and measurements
(`objects_from_instances`: polygon rings, bbox, area, score, class of every object kept, which is
what a prediction writes); an analysis's thresholds (`keep_above`: the objects at or above their
class's threshold, renumbered; with `THRESHOLDS` every object is kept, and the label image is then
shared rather than renumbered, so this stage costs next to nothing here: dropping some objects
costs a compiled gather, about 1 ms/MP) and its measurements (`measure_objects`: regionprops' area,
perimeter, centroid, bbox, eccentricity, solidity and intensities, over a uint16 image); semantic
regions (`regions_from_semantic`, the
semantic models' maps -> objects). The total is an analysis's whole path after the model, for the
distance head: maps to instances, thresholds, outlines, regionprops measurements. Each figure is the
CPU time of this process over repeated runs after one warm-up (which also compiles the numba
kernels), median and best, pinned to one core; the code is single-threaded.

Prints a table and one JSON line, and writes the JSON to bench/out/postprocess.json.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from segpipe_trainer.analyze import keep_above
from segpipe_trainer.geometry import objects_from_instances
from segpipe_trainer.measure import measure_objects
from segpipe_trainer.postprocess import (
    distance_target,
    flow_target,
    instances_from_flows,
    instances_from_maps,
    regions_from_semantic,
)

SIZE = 2048
OBJECT_COUNTS = (1500, 2500)
#: Discs of radius 9-20 px on the same image size: larger objects, a fifth of the image crowded.
DISCS = 1500
REPEATS = 7
NUM_CLASSES = 2
#: Per-class score thresholds of the `thresholds` stage: low enough that every object is kept, so
#: the later stages (timed on all the objects found) measure what an analysis would keep.
THRESHOLDS = (0.05, 0.05)
#: Share of the objects in each vertical band (left to right).
BAND_SHARES = (0.1, 0.2, 0.3, 0.4)
GOAL_MS_PER_MP = 40.0
#: The stages of an analysis's path for the distance head: maps to kept objects, outlines, measurements.
TOTAL_OF = (
    "maps_to_instances_distance",
    "thresholds",
    "outlines_and_measurements",
    "regionprops_measurements",
)
OUT = Path(__file__).resolve().parent / "out" / "postprocess.json"


@dataclass(frozen=True)
class Scene:
    labels: np.ndarray  # int32 H x W
    classes: np.ndarray  # int64 [N+1]
    probs: np.ndarray  # float32 (K+1) x H x W
    distance: np.ndarray  # float32 H x W
    flows: np.ndarray  # float32 2 x H x W
    pixels: np.ndarray  # uint16 1 x H x W: the raw image the measurements read intensities from


def nuclei_labels(*, size: int, objects: int, rng: np.random.Generator) -> np.ndarray:
    """int32 size x size label image of `objects` ellipses in bands of `BAND_SHARES` densities."""
    labels = np.zeros((size, size), dtype=np.int32)
    band_width = size / len(BAND_SHARES)
    bands = rng.choice(len(BAND_SHARES), size=objects, p=BAND_SHARES)
    for index, band in enumerate(bands, start=1):
        major = rng.uniform(6, 11)
        minor = major * rng.uniform(0.6, 1.0)
        angle = rng.uniform(0, np.pi)
        row = rng.uniform(0, size)
        col = rng.uniform(band * band_width, (band + 1) * band_width)
        top, left = int(max(row - major, 0)), int(max(col - major, 0))
        rows = np.arange(top, min(int(row + major) + 2, size))[:, None] - row
        cols = np.arange(left, min(int(col + major) + 2, size))[None, :] - col
        along = rows * np.cos(angle) + cols * np.sin(angle)
        across = -rows * np.sin(angle) + cols * np.cos(angle)
        inside = (along / major) ** 2 + (across / minor) ** 2 < 1
        labels[top : top + rows.shape[0], left : left + cols.shape[1]][inside] = index
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def nuclei_scene(*, size: int = SIZE, objects: int = OBJECT_COUNTS[0], seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    return _scene_of(nuclei_labels(size=size, objects=objects, rng=rng), rng)


def dense_scene(*, size: int = 1024, objects: int = 350, seed: int = 0) -> Scene:
    """Discs of radius 9-20 px at random places (later ones cover earlier ones: many touch); the
    scene this benchmark used before the nuclei (bench_analysis measures on it)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.int32)
    rows, cols = np.ogrid[:size, :size]
    for index in range(1, objects + 1):
        radius = rng.uniform(9, 20)
        row, col = rng.uniform(0, size, 2)
        top, left = int(max(row - radius, 0)), int(max(col - radius, 0))
        box = (slice(top, int(row + radius) + 1), slice(left, int(col + radius) + 1))
        inside = (rows[box[0]] - row) ** 2 + (cols[:, box[1]] - col) ** 2 < radius**2
        labels[box][inside] = index
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    return _scene_of(labels, rng)


def _scene_of(labels: np.ndarray, rng: np.random.Generator) -> Scene:
    """Maps of a label image: random classes, probabilities, distance and flows with smooth noise."""
    classes = np.concatenate([[0], rng.integers(1, NUM_CLASSES + 1, int(labels.max()))]).astype(np.int64)
    truth = classes[labels]
    logits = np.stack([(truth == k) * 3.0 for k in range(NUM_CLASSES + 1)])
    logits += _smooth_noise(rng, logits.shape, amplitude=0.7)
    exp = np.exp(logits - logits.max(axis=0))
    probs = (exp / exp.sum(axis=0)).astype(np.float32)
    distance = (distance_target(labels) + _smooth_noise(rng, labels.shape, amplitude=0.05)).astype(np.float32)
    noise = np.stack([_smooth_noise(rng, labels.shape, amplitude=0.15) for _ in range(2)])
    flows = (flow_target(labels) + noise).astype(np.float32)
    pixels = (1000 + 2000 * (labels > 0) + rng.integers(0, 500, labels.shape))[None].astype(np.uint16)
    return Scene(labels=labels, classes=classes, probs=probs, distance=distance, flows=flows, pixels=pixels)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], *, amplitude: float) -> np.ndarray:
    noise = ndi.gaussian_filter(rng.normal(size=shape), 2)
    return amplitude * noise / noise.std()


def cpu_ms(run: Callable[[], object], *, repeats: int = REPEATS) -> tuple[float, float]:
    """(median, best) CPU ms of this process over `repeats` runs after one warm-up. On a shared
    machine other work slows a run (caches, memory bandwidth) but never speeds it up, so the best
    run is the closest to the code's own cost and the median the honest typical figure."""
    run()
    cpu = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        cpu.append(time.process_time() - start)
    return 1e3 * statistics.median(cpu), 1e3 * min(cpu)


def measure(scene: Scene) -> dict[str, Any]:
    """ms and ms/MP of each stage on one scene, and what each found."""
    height, width = scene.labels.shape
    megapixels = height * width / 1e6
    found = instances_from_maps(scene.probs, scene.distance)
    by_flows = instances_from_flows(scene.probs, scene.flows)
    kept = objects_from_instances(found, class_names=["a", "b"], score_floor=0.0)
    timed = {
        "maps_to_instances_distance": cpu_ms(partial(instances_from_maps, scene.probs, scene.distance)),
        "maps_to_instances_flows": cpu_ms(partial(instances_from_flows, scene.probs, scene.flows)),
        "outlines_and_measurements": cpu_ms(
            partial(objects_from_instances, found, class_names=["a", "b"], score_floor=0.0)
        ),
        "thresholds": cpu_ms(partial(keep_above, found, thresholds=THRESHOLDS)),
        "regionprops_measurements": cpu_ms(partial(measure_objects, found.labels, scene.pixels)),
        "semantic_regions": cpu_ms(partial(regions_from_semantic, scene.probs)),
    }
    stages = {name: median for name, (median, _) in timed.items()}
    best = {name: fastest for name, (_, fastest) in timed.items()}
    stages["total"] = sum(stages[name] for name in TOTAL_OF)
    best["total"] = sum(best[name] for name in TOTAL_OF)
    return {
        "size": [width, height],
        "objects_true": int(scene.labels.max()),
        "objects_found_distance": found.count,
        "objects_found_flows": by_flows.count,
        "objects_kept": len(kept),
        "ms": {name: round(value, 1) for name, value in stages.items()},
        "ms_per_mp": {name: round(value / megapixels, 1) for name, value in stages.items()},
        "best_ms_per_mp": {name: round(value / megapixels, 1) for name, value in best.items()},
    }


def _one_core() -> str:
    """Pin this process to one core (where the OS allows it); says which."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity)"


def main() -> None:
    pinned = _one_core()
    results = [measure(nuclei_scene(objects=objects)) | {"scene": "nuclei"} for objects in OBJECT_COUNTS]
    results.append(measure(dense_scene(size=SIZE, objects=DISCS)) | {"scene": "discs"})
    report = {
        "benchmark": "postprocess",
        "how": f"CPU time of {REPEATS} runs after a warm-up (median, and best), one thread, {pinned}",
        "goal_ms_per_mp": GOAL_MS_PER_MP,
        "scenes": results,
    }
    print(f"Post-processing, {report['how']}; total = {' + '.join(TOTAL_OF)}")
    print(f"{'scene':<28} {'stage':<30} {'ms':>8} {'ms/MP':>8} {'best ms/MP':>11}")
    for result in results:
        width, height = result["size"]
        scene = f"{width}x{height}, {result['objects_true']} {result['scene']}"
        for stage, value in result["ms"].items():
            per_mp, best_per_mp = result["ms_per_mp"][stage], result["best_ms_per_mp"][stage]
            print(f"{scene:<28} {stage:<30} {value:8.1f} {per_mp:8.1f} {best_per_mp:11.1f}")
        print(
            f"{'':<28} found {result['objects_found_distance']} (distance head), "
            f"{result['objects_found_flows']} (flow head); kept {result['objects_kept']}"
        )
    print(f"goal: total at most {GOAL_MS_PER_MP:.0f} ms per megapixel (median)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
