"""It learns: two classes of ellipses, some touching, segmented at F1 >= 0.9 (IoU 0.5) after CPU training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segpipe.models.trainer_io import Evaluation
from segpipe_trainer.cli import run
from segpipe_trainer.paths import MlPaths
from tests.trainer.trainer_testkit import DatasetSpec, hyperparameters, make_ml_root, synthetic_image


@pytest.mark.slow
def test_tiny_learns_touching_ellipses_of_two_classes(tmp_path: Path) -> None:
    root = make_ml_root(
        tmp_path,
        params=hyperparameters(
            epochs=10,
            steps_per_epoch=25,
            batch_size=8,
            tile_size=64,
            learning_rate=0.002,
            seed=1,
        ),
        train=DatasetSpec(images=8, size=(128, 128), objects=7, seed=0),
        test=[DatasetSpec(images=4, size=(128, 128), objects=7, seed=9)],
    )
    status = run(MlPaths(root=root))
    evaluation = Evaluation.model_validate_json((root / "output" / "data" / "evaluation.json").read_text())
    assert status == 0
    assert evaluation.test is not None and evaluation.test.objects >= 25
    assert sum(_touching_pairs(seed=9 * 1000 + n) for n in range(4)) >= 4
    at_default = evaluation.test.at(0.5)  # a fixed threshold, not one tuned on the test set
    assert at_default.overall.f1 is not None and at_default.overall.f1 >= 0.9, at_default.overall
    for name in ("round", "long"):
        assert (at_default.per_class[name].f1 or 0) >= 0.8, name


def _touching_pairs(*, seed: int) -> int:
    """Pairs of test objects that share an edge (what connected components alone would merge)."""
    labels = synthetic_image(size=(128, 128), objects=7, seed=seed).labels
    right = np.stack([labels[:, :-1], labels[:, 1:]], axis=-1).reshape(-1, 2)
    down = np.stack([labels[:-1], labels[1:]], axis=-1).reshape(-1, 2)
    pairs = np.concatenate([right, down])
    pairs = pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0) & (pairs[:, 0] != pairs[:, 1])]
    return len({tuple(sorted(map(int, pair))) for pair in pairs})
