"""Post-processing speed: dense maps to objects on a crowded 1024 x 1024 image.

The maps are built from a known label image (K = 2 classes) with smooth noise, as a network's
upsampled outputs look; a second case adds independent per-pixel noise to the distance map. Each
figure is the median of repeated runs after one warm-up run, as wall-clock time and as the CPU time
of this process. The code path is single-threaded C (numpy, scipy.ndimage, scikit-image's
watershed; no BLAS): CPU time at or below wall time confirms it ran on one thread, and CPU time is
the figure that stays honest when other work shares the machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import ndimage as ndi

from segpipe_trainer.geometry import objects_from_instances
from segpipe_trainer.metrics import InstanceEvaluator
from segpipe_trainer.postprocess import (
    Instances,
    distance_target,
    flow_target,
    instances_from_flows,
    instances_from_maps,
    regions_from_semantic,
)

SIZE = 1024
OBJECTS = 350
REPEATS = 15
NUM_CLASSES = 2


@dataclass(frozen=True)
class Scene:
    labels: np.ndarray  # int32 H x W
    classes: np.ndarray  # int64 [N+1]
    probs: np.ndarray  # float32 (K+1) x H x W
    distance: np.ndarray  # float32 H x W


def dense_scene(*, size: int = SIZE, objects: int = OBJECTS, seed: int = 0) -> Scene:
    """Discs of radius 9-20 px at random places (later ones cover earlier ones: many touch)."""
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
    classes = np.concatenate([[0], rng.integers(1, NUM_CLASSES + 1, int(labels.max()))]).astype(np.int64)
    return Scene(
        labels=labels, classes=classes, probs=_probs(labels, classes, rng), distance=_distance(labels, rng)
    )


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], *, amplitude: float) -> np.ndarray:
    noise = ndi.gaussian_filter(rng.normal(size=shape), 2)
    return amplitude * noise / noise.std()


def _probs(labels: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    truth = classes[labels]
    logits = np.stack([(truth == k) * 3.0 for k in range(NUM_CLASSES + 1)])
    logits += _smooth_noise(rng, logits.shape, amplitude=0.7)
    exp = np.exp(logits - logits.max(axis=0))
    return (exp / exp.sum(axis=0)).astype(np.float32)


def _flows(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact flows with smooth noise of 0.15 per component (a network's flows are smooth)."""
    noise = np.stack([_smooth_noise(rng, labels.shape, amplitude=0.15) for _ in range(2)])
    return (flow_target(labels) + noise).astype(np.float32)


def _distance(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (distance_target(labels) + _smooth_noise(rng, labels.shape, amplitude=0.05)).astype(np.float32)


def median_ms(run: Callable[[], object], *, repeats: int = REPEATS) -> tuple[float, float]:
    """(median wall ms, median CPU ms) over `repeats` runs after one warm-up."""
    run()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def f1_against_truth(scene: Scene, found: Instances) -> float:
    evaluator = InstanceEvaluator(class_names=[f"c{k}" for k in range(1, NUM_CLASSES + 1)], thresholds=[0.0])
    evaluator.add(gt_labels=scene.labels, gt_classes=scene.classes, pred=found)
    f1 = evaluator.result().sweep[0].overall.f1
    return float("nan") if f1 is None else f1


def timings(scene: Scene, harsh: Scene) -> list[tuple[str, float, float, str]]:
    """(step, median wall ms, median CPU ms, notes) of each post-processing step."""
    rows = []
    for name, case in (
        ("instances_from_maps, smooth noise", scene),
        ("instances_from_maps, pixel noise", harsh),
    ):
        found = instances_from_maps(case.probs, case.distance)
        wall, cpu = median_ms(partial(instances_from_maps, case.probs, case.distance))
        rows.append((name, wall, cpu, f"{found.count} found, F1 {f1_against_truth(case, found):.3f}"))
    flows = _flows(scene.labels, np.random.default_rng(2))
    found = instances_from_flows(scene.probs, flows)
    wall, cpu = median_ms(partial(instances_from_flows, scene.probs, flows))
    rows.append(
        (
            "instances_from_flows, smooth noise",
            wall,
            cpu,
            f"{found.count} found, F1 {f1_against_truth(scene, found):.3f}",
        )
    )
    wall, cpu = median_ms(partial(regions_from_semantic, scene.probs))
    rows.append(("regions_from_semantic", wall, cpu, ""))
    found = instances_from_maps(scene.probs, scene.distance)
    outline = partial(objects_from_instances, found, class_names=["a", "b"], score_floor=0.05)
    wall, cpu = median_ms(outline, repeats=5)
    rows.append(("objects_from_instances (outlines)", wall, cpu, f"{found.count} objects"))
    wall, cpu = median_ms(partial(distance_target, scene.labels), repeats=5)
    rows.append(("distance_target", wall, cpu, ""))
    wall, cpu = median_ms(partial(flow_target, scene.labels), repeats=2)
    rows.append(("flow_target (training only)", wall, cpu, ""))
    return rows


def main() -> None:
    scene = dense_scene()
    pixel_noise = np.random.default_rng(1).normal(0, 0.05, scene.labels.shape)
    harsh = Scene(
        labels=scene.labels,
        classes=scene.classes,
        probs=scene.probs,
        distance=(scene.distance + pixel_noise).astype(np.float32),
    )
    rows = timings(scene, harsh)
    height, width = scene.labels.shape
    print(
        f"Post-processing a {width} x {height} image of {scene.labels.max()} objects, K = {NUM_CLASSES}: "
        f"median of {REPEATS} runs (5 for outlines and distance_target, 2 for flow_target) after a warm-up, "
        "one thread"
    )
    print(f"{'step':<36} {'wall ms':>8} {'cpu ms':>8} {'cpu ms/MP':>10}  notes")
    for name, wall, cpu, notes in rows:
        print(f"{name:<36} {wall:8.1f} {cpu:8.1f} {cpu / (height * width / 1e6):10.1f}  {notes}")
    print("goal: instances_from_maps and instances_from_flows at most 40 ms per megapixel")


if __name__ == "__main__":
    main()
