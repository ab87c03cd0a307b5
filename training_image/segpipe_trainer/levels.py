"""Choosing an instance model's split level on its held-out images.

Whether two touching objects come apart is decided by one setting of the head's post-processing
(`postprocess.SPLIT_LEVEL_DEFAULTS`): the level of the distance map whose cores seed the watershed,
or the flow strength under which a path ends. The right value depends on the trained model (how
low its distance map falls where objects touch, how far its flows stay strong), so a training
chooses it as it chooses the score threshold: on the images held out of training, never the test
set. Each held-out image is predicted once; only the post-processing runs again for each level.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from segpipe.models.trainer_io import SplitEvaluation
from segpipe_trainer.data import Sample
from segpipe_trainer.evaluation import add_image, new_evaluator
from segpipe_trainer.infer import Predictor, dense_maps
from segpipe_trainer.postprocess import SPLIT_LEVEL_CHOICES, SPLIT_LEVEL_DEFAULTS
from segpipe_trainer.train import split_score


@dataclass(frozen=True)
class LevelChoice:
    """The chosen split level, every candidate's held-out score (best F1 at IoU 0.5 over the score
    thresholds, as early stopping scores) and the held-out evaluation at the chosen level."""

    level: float
    scores: dict[float, float]
    evaluation: SplitEvaluation


def choose_split_level(
    predictor: Predictor,
    *,
    samples: Iterable[Sample],
    class_names: Sequence[str],
    levels: Sequence[float] | None = None,
) -> LevelChoice:
    """The level among `levels` (default: the head's `SPLIT_LEVEL_CHOICES`) under which the held-out
    `samples` score best; a tie goes to the level nearest the head's default, then the lower one."""
    head = predictor.instance_head
    candidates = tuple(levels if levels is not None else SPLIT_LEVEL_CHOICES[head])
    leveled = {level: replace(predictor, split_level=level) for level in candidates}
    evaluators = {level: new_evaluator("instance", class_names=class_names) for level in candidates}
    for sample in samples:
        maps = dense_maps(predictor.outputs(sample.image), num_classes=predictor.num_classes)
        for level, evaluator in evaluators.items():
            add_image(evaluator, sample=sample, instances=leveled[level].instances(maps))
    results = {level: evaluator.result() for level, evaluator in evaluators.items()}
    scores = {level: split_score(result, model_type="instance") for level, result in results.items()}
    default = SPLIT_LEVEL_DEFAULTS[head]
    best = max(candidates, key=lambda level: (scores[level], -abs(level - default), -level))
    return LevelChoice(level=best, scores=scores, evaluation=results[best])
