"""`run_job`'s phases: setup holds images out, prepares every training image and writes the resolved
config; finishing records how the choices were made."""

from __future__ import annotations

import json
from pathlib import Path

from segpipe.models.trainer_io import TrainingConfig
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.job import SelectionPlan, Trained, _choice, set_up_job
from segpipe_trainer.paths import MlPaths
from segpipe_trainer.train import FitResult, StopSignal, TrainState
from tests.trainer.trainer_testkit import DatasetSpec, hyperparameters, make_ml_root


def test_setup_holds_images_out_prepares_all_and_writes_the_resolved_config(tmp_path: Path) -> None:
    params = hyperparameters(validation_fraction=0.5, steps_per_epoch=2)
    root = make_ml_root(tmp_path, params=params, train=DatasetSpec(images=4, size=(64, 64), groups=4))
    config = TrainingConfig.from_hyperparameters(params)

    job = set_up_job(paths=MlPaths(root=root), config=config, runtime=Runtime(), stop=StopSignal())

    held_out = [entry.file_name for entry in job.plan.validation]
    assert held_out and len(job.plan.fit) + len(held_out) == 4
    assert [s.file_name for s in job.samples] == [e.file_name for e in job.plan.fit] + held_out
    assert [s.file_name for s in job.loop.val_samples] == held_out
    assert len(job.loop.train_samples) == len(job.plan.fit)
    assert job.loop.steps_per_epoch == 2 and job.loop.in_channels == 1
    assert job.predictor.model is job.model
    written = json.loads(MlPaths(root=root).resolved_config.read_text())
    assert written == job.resolved
    assert written["validation_images"] == held_out and written["train_images"] == len(job.plan.fit)
    assert written["class_weights"] == [round(float(w), 4) for w in job.loop.class_weights]
    assert written["selection"] == job.plan.method == "refit"


def test_the_choice_records_the_first_phases_epoch_and_the_final_models_images() -> None:
    plan = SelectionPlan.build([], fraction=0.0)
    first = FitResult(state=TrainState(epoch=5, best_epoch=3), interrupted=False)
    refit = FitResult(state=TrainState(epoch=3), interrupted=False)
    trained = Trained(
        first=first, final=refit, predictor=None, held_out=None, final_images=9, progress_offset=5
    )  # type: ignore[arg-type]

    choice = _choice(plan, trained=trained)

    assert (choice.chosen_epoch, choice.final_images, choice.method) == (3, 9, "none")
    assert choice.validation is None and list(choice.validation_images) == []
