"""The flow head: targets towards object centres, dynamics that separate touching objects, vectors
that turn with augmented tiles, and a model card that names the head."""

from __future__ import annotations

import numpy as np
import torch

from bench.bench_heads import make_scene
from segpipe_trainer.data import Augmentation, _flip_rotate
from segpipe_trainer.metrics import InstanceEvaluator
from segpipe_trainer.model import build_model, split_outputs
from segpipe_trainer.postprocess import flow_target, instances_from_flows
from segpipe_trainer.train import segmentation_loss


def _probs(labels: np.ndarray) -> np.ndarray:
    foreground = (labels > 0).astype(np.float32)
    return np.stack([1 - foreground, foreground]).astype(np.float32)


def _chain() -> np.ndarray:
    """Three discs in a row, each touching the next (no background between them)."""
    rows, cols = np.mgrid[:40, :80]
    labels = np.zeros((40, 80), dtype=np.int32)
    for index, centre in enumerate((18, 36, 54), start=1):
        inside = (rows - 20) ** 2 + (cols - centre) ** 2 < 10**2
        labels[inside & (labels == 0)] = index
    return labels


def test_flows_are_unit_vectors_inside_objects_and_zero_outside() -> None:
    labels = _chain()

    flows = flow_target(labels)

    length = np.hypot(flows[0], flows[1])
    assert np.allclose(length[labels > 0], 1.0, atol=1e-4)
    assert (length[labels == 0] == 0).all()


def test_flows_point_towards_the_own_centre_even_beside_a_touching_neighbour() -> None:
    labels = _chain()
    flows = flow_target(labels)
    middle = labels == 2
    rows, cols = np.nonzero(middle)
    towards = np.stack([20 - rows, 36 - cols]).astype(np.float64)
    far = np.hypot(*towards) > 2
    cosine = (flows[0][middle] * towards[0] + flows[1][middle] * towards[1])[far] / np.hypot(*towards)[far]

    assert cosine.min() > 0.5


def test_following_exact_flows_separates_a_chain_of_touching_objects() -> None:
    labels = _chain()

    found = instances_from_flows(_probs(labels), flow_target(labels), min_area=10)

    assert found.count == 3
    evaluator = InstanceEvaluator(class_names=["cell"], thresholds=[0.0])
    evaluator.add(gt_labels=labels, gt_classes=np.array([0, 1, 1, 1]), pred=found)
    assert evaluator.result().sweep[0].overall.f1 == 1.0


def test_the_harder_benchmark_scenes_are_recovered_from_exact_flows() -> None:
    scene = make_scene(3)
    classes = np.concatenate([[0], np.ones(int(scene.labels.max()), dtype=np.int64)])

    found = instances_from_flows(_probs(scene.labels), flow_target(scene.labels), min_area=12)

    evaluator = InstanceEvaluator(class_names=["cell"], thresholds=[0.0])
    evaluator.add(gt_labels=scene.labels, gt_classes=classes, pred=found)
    assert scene.chains.sum() >= 3
    assert (evaluator.result().sweep[0].overall.f1 or 0) >= 0.95


def test_no_foreground_no_objects() -> None:
    labels = np.zeros((16, 16), dtype=np.int32)

    assert instances_from_flows(_probs(labels), np.zeros((2, 16, 16), dtype=np.float32)).count == 0
    assert not flow_target(labels).any()


def test_flipped_and_turned_tiles_carry_the_flows_of_the_flipped_and_turned_labels() -> None:
    labels = _chain()[:, 8:72]
    labels = np.pad(labels, ((12, 12), (0, 0)))  # 64 x 64, objects in the middle
    flows = flow_target(labels)
    image = labels[None].astype(np.float32)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        moved_image, moved_classes, moved_flows = _flip_rotate(
            rng, image, labels.astype(np.int64), flows, augmentation=Augmentation()
        )
        expected = flow_target(moved_image[0].astype(np.int32))
        inside = moved_classes > 0
        agreement = (moved_flows[0] * expected[0] + moved_flows[1] * expected[1])[inside]
        assert agreement.mean() > 0.95, seed


def test_a_flow_model_has_two_flow_channels_and_a_finite_loss() -> None:
    model = build_model(
        preset="tiny", num_classes=2, model_type="instance", in_channels=1, instance_head="flow"
    )
    outputs = model(torch.zeros(1, 1, 64, 64))

    logits, flows = split_outputs(outputs, num_classes=2)

    assert logits.shape == (1, 3, 64, 64) and flows is not None and flows.shape == (1, 2, 64, 64)
    target = torch.from_numpy(flow_target(np.pad(_chain()[:, 8:72], ((12, 12), (0, 0)))))[None]
    loss = segmentation_loss(
        outputs, torch.zeros(1, 64, 64, dtype=torch.int64), target, class_weights=torch.ones(3), num_classes=2
    )
    assert torch.isfinite(loss) and loss > 0
