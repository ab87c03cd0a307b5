"""Both instance heads on a harder synthetic benchmark generated at run time.

Images: 192 x 192, chains (3-5 objects in a row) and clusters (3-4 round a point) of touching
objects, lone elongated and irregular (radially wobbled) shapes, radii 4-18 px, on an unevenly
lit background with blur and shot-like noise. Each head trains the `tiny` preset the same way
(same seed, tiles, steps, schedule; torch on 2 threads) on 12 images; the test is 6 others. Reported:
F1 at IoU 0.5, COCO AP50 and AP[.5:.95], panoptic quality, all at score threshold 0.5, and F1 at
IoU 0.5 on the objects of touching groups of three or more ("chains"), with train time on this
CPU. Run: `python -m bench.bench_heads [--epochs N] [--steps N]`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch
from scipy import ndimage as ndi

from bench.table import Column, table_header, table_row
from segpipe.models.trainer_io import InstanceHead, TrainingConfig
from segpipe_trainer.data import Sample, class_pixel_weights
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.infer import Predictor, dense_maps, predictor_on
from segpipe_trainer.metrics import InstanceEvaluator
from segpipe_trainer.model import build_model
from segpipe_trainer.postprocess import Instances, distance_target, flow_target
from segpipe_trainer.train import Fingerprint, LoopSetup, StopSignal, fit, seed_everything

SIZE = 192

COLUMNS = (
    Column("head", "<9"),
    Column("train s", ">8.0f"),
    Column("F1@0.5", ">7.3f"),
    Column("AP50", ">6.3f"),
    Column("AP", ">6.3f"),
    Column("PQ", ">6.3f"),
    Column("chain F1", ">9.3f"),
    Column("post ms/MP", ">11.1f"),
)


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # float32 1 x H x W, normalised
    labels: np.ndarray  # int32 H x W
    chains: np.ndarray  # bool [N+1]: the object belongs to a touching group of 3 or more


def _shape_mask(
    rng: np.random.Generator, *, cy: float, cx: float, radius: float, elongation: float
) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    angle = rng.uniform(0, math.pi)
    y, x = rows - cy, cols - cx
    u, v = x * math.cos(angle) + y * math.sin(angle), -x * math.sin(angle) + y * math.cos(angle)
    theta = np.arctan2(v, u)
    wobble = 1 + sum(rng.uniform(-0.12, 0.12) * np.cos(k * theta + rng.uniform(0, 6.3)) for k in (2, 3, 5))
    return (u / (radius * elongation)) ** 2 + (v / radius) ** 2 <= wobble**2


def make_scene(seed: int) -> Scene:
    """One benchmark image with its labels (later objects never cover earlier ones: they touch)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((SIZE, SIZE), dtype=np.int32)

    def add(mask: np.ndarray) -> bool:
        mask = mask & (labels == 0)
        if mask.sum() < 12:
            return False
        labels[mask] = labels.max() + 1
        return True

    for _ in range(2):  # chains: each next object starts where the last one ends, so they touch
        radius = rng.uniform(6, 11)
        cy, cx = rng.uniform(30, SIZE - 30, 2)
        direction = rng.uniform(0, 2 * math.pi)
        for _ in range(int(rng.integers(3, 6))):
            add(_shape_mask(rng, cy=cy, cx=cx, radius=radius, elongation=rng.uniform(1.0, 1.6)))
            step = radius * rng.uniform(1.5, 1.9)
            direction += rng.uniform(-0.5, 0.5)
            cy, cx = cy + step * math.sin(direction), cx + step * math.cos(direction)
    for _ in range(1):  # a cluster round a point
        cy, cx = rng.uniform(30, SIZE - 30, 2)
        radius = rng.uniform(6, 10)
        for k in range(int(rng.integers(3, 5))):
            a = 2 * math.pi * k / 4 + rng.uniform(-0.3, 0.3)
            add(
                _shape_mask(
                    rng,
                    cy=cy + radius * math.sin(a),
                    cx=cx + radius * math.cos(a),
                    radius=radius,
                    elongation=1.2,
                )
            )
    for _ in range(int(rng.integers(4, 8))):  # lone objects: small to large, round to elongated
        radius = float(np.exp(rng.uniform(math.log(4), math.log(18))))
        cy, cx = rng.uniform(radius, SIZE - radius, 2)
        add(
            _shape_mask(rng, cy=cy, cx=cx, radius=radius, elongation=rng.uniform(1.0, 3.0))
            & ndi.binary_erosion(labels == 0, iterations=2)
        )
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    return Scene(image=_render(rng, labels), labels=labels, chains=_chain_members(labels))


def _chain_members(labels: np.ndarray) -> np.ndarray:
    """bool [N+1]: objects whose 8-connected foreground component holds three or more objects."""
    components, _ = ndi.label(labels > 0, structure=np.ones((3, 3)))
    count = int(labels.max())
    component_of = np.zeros(count + 1, dtype=np.int64)
    component_of[labels.ravel()] = components.ravel()
    sizes = np.bincount(component_of[1:], minlength=components.max() + 1)
    members = sizes[component_of] >= 3
    members[0] = False
    return members


def _render(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE] / SIZE
    illumination = 0.6 + 0.8 * (0.5 * rows + 0.5 * cols) + 0.3 * np.sin(3 * rows + 2 * cols)
    brightness = np.concatenate([[0.0], rng.uniform(0.5, 1.0, int(labels.max()))])[labels]
    edge = (ndi.grey_dilation(labels, size=3) != ndi.grey_erosion(labels, size=3)) & (labels > 0)
    signal = ndi.gaussian_filter(brightness * np.where(edge, 0.6, 1.0), rng.uniform(0.8, 1.6))
    photons = rng.poisson(np.clip(illumination * (0.15 + signal), 0, None) * 60) + rng.normal(
        0, 2, labels.shape
    )
    low, high = np.percentile(photons, [1, 99.8])
    return ((photons - low) / max(high - low, 1e-6)).astype(np.float32)[None]


def sample_of(scene: Scene, *, name: str, head: InstanceHead) -> Sample:
    classes = np.concatenate([[0], np.ones(int(scene.labels.max()), dtype=np.int64)])
    return Sample(
        file_name=name,
        image=scene.image,
        labels=scene.labels,
        classes=classes,
        distance=distance_target(scene.labels) if head == "distance" else None,
        flow=flow_target(scene.labels) if head == "flow" else None,
    )


@dataclass(frozen=True)
class HeadResult:
    head: InstanceHead
    train_seconds: float
    f1: float
    ap50: float
    ap: float
    pq: float
    chain_f1: float
    chain_objects: int
    post_ms_per_mp: float


def chain_subset(scene: Scene, found: Instances) -> tuple[np.ndarray, Instances]:
    """Ground truth and predictions restricted to chains: the predictions mostly on chain objects."""
    gt = np.where(scene.chains[scene.labels], scene.labels, 0)
    on_chain = np.bincount(found.labels.ravel(), weights=(gt > 0).ravel(), minlength=found.count + 1)
    area = np.bincount(found.labels.ravel(), minlength=found.count + 1)
    keep = on_chain > 0.5 * np.maximum(area, 1)
    keep[0] = False
    return gt, Instances(
        labels=np.where(keep[found.labels], found.labels, 0), classes=found.classes, scores=found.scores
    )


def train_and_measure(
    head: InstanceHead,
    *,
    train: Sequence[Scene],
    test: Sequence[Scene],
    epochs: int,
    steps: int,
    threads: int,
) -> HeadResult:
    """Train the tiny preset with `head` on `train`, then score it on `test`."""
    torch.set_num_threads(threads)
    predictor, train_seconds = _train(head, train=train, epochs=epochs, steps=steps)
    return _measure(predictor, head=head, test=test, train_seconds=train_seconds)


def _train(head: InstanceHead, *, train: Sequence[Scene], epochs: int, steps: int) -> tuple[Predictor, float]:
    """The trained model's predictor and the seconds training took."""
    config = TrainingConfig(
        model_type="instance",
        classes=["cell"],
        preset="tiny",
        epochs=epochs,
        tile_size=128,
        seed=0,
        batch_size=8,
        learning_rate=0.002,
        steps_per_epoch=steps,
        early_stopping_patience=0,
        validation_fraction=0.0,
        min_object_area=12,
        instance_head=head,
    )
    seed_everything(0)
    model = build_model(
        preset="tiny", num_classes=1, model_type="instance", in_channels=1, instance_head=head
    )
    samples = [sample_of(scene, name=f"train{n}", head=head) for n, scene in enumerate(train)]
    runtime = Runtime()
    predictor = predictor_on(  # with the preset's test-time flips, as a training predicts
        model,
        config,
        in_channels=1,
        instance_head=head,
        test_time_flips=config.flips_at_test,
        runtime=runtime,
    )
    with TemporaryDirectory() as scratch:
        setup = LoopSetup(
            config=config,
            runtime=runtime,
            train_samples=samples,
            val_samples=[],
            class_weights=torch.from_numpy(class_pixel_weights(samples, num_classes=1)),
            in_channels=1,
            steps_per_epoch=steps,
            checkpoints=Path(scratch),
            fingerprint=Fingerprint(
                preset="tiny",
                model_type="instance",
                classes=("cell",),
                tile_size=128,
                seed=0,
                in_channels=1,
                world=1,
                instance_head=head,
            ),
            stop=StopSignal(),
            encoder_pretrained=False,
        )
        started = time.perf_counter()
        fit(model, setup=setup, predictor=predictor)
        train_seconds = time.perf_counter() - started
    return predictor, train_seconds


def _measure(
    predictor: Predictor, *, head: InstanceHead, test: Sequence[Scene], train_seconds: float
) -> HeadResult:
    """F1, AP and PQ over `test`, F1 on its chains, and the post-processing's CPU time."""
    overall, chains = (
        InstanceEvaluator(class_names=["cell"]),
        InstanceEvaluator(class_names=["cell"], thresholds=[0.5]),
    )
    post_cpu, pixels = 0.0, 0
    for scene in test:
        maps = dense_maps(predictor.outputs(scene.image), num_classes=1)
        start = time.process_time()
        found = predictor.instances(maps)
        post_cpu += time.process_time() - start
        pixels += scene.labels.size
        classes = np.concatenate([[0], np.ones(int(scene.labels.max()), dtype=np.int64)])
        overall.add(gt_labels=scene.labels, gt_classes=classes, pred=found)
        gt, on_chains = chain_subset(scene, found)
        chains.add(gt_labels=gt, gt_classes=classes, pred=on_chains)
    result = overall.result()
    point = result.at(0.5).overall
    chain_point = chains.result().sweep[0].overall
    ap = result.ap_overall
    return HeadResult(
        head=head,
        train_seconds=train_seconds,
        f1=point.f1 or 0.0,
        ap50=(ap.ap50 if ap else None) or 0.0,
        ap=(ap.ap if ap else None) or 0.0,
        pq=point.panoptic_quality or 0.0,
        chain_f1=chain_point.f1 or 0.0,
        chain_objects=(chain_point.tp or 0) + (chain_point.fn or 0),
        post_ms_per_mp=1e3 * post_cpu / (pixels / 1e6),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heads", nargs="+", default=["flow", "distance"])
    args = parser.parse_args(list(argv or []))
    train = [make_scene(seed) for seed in range(12)]
    test = [make_scene(1000 + seed) for seed in range(6)]
    chain_objects = sum(int(scene.chains.sum()) for scene in test)
    print(
        f"harder synthetic benchmark: {len(train)} train / {len(test)} test images of {SIZE} x {SIZE}, "
        f"{sum(int(s.labels.max()) for s in test)} test objects, "
        f"{chain_objects} in touching groups of 3 or more"
    )
    print(
        f"tiny preset, tile 128, batch 8, {args.epochs} epochs x {args.steps} steps, lr 0.002, "
        f"{args.threads} threads"
    )
    print(table_header(COLUMNS))
    for head in args.heads:
        r = train_and_measure(
            head, train=train, test=test, epochs=args.epochs, steps=args.steps, threads=args.threads
        )
        values = (r.head, r.train_seconds, r.f1, r.ap50, r.ap, r.pq, r.chain_f1, r.post_ms_per_mp)
        print(table_row(COLUMNS, values), flush=True)
    print("goal: the default head reaches F1@0.5 >= 0.95 on chains of three or more touching objects")


if __name__ == "__main__":
    main(sys.argv[1:])
