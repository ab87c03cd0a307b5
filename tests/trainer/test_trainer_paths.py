"""The /opt/ml layout, SEGPIPE_ML_ROOT, and resourceconfig.json."""

from __future__ import annotations

import json
from pathlib import Path

from segpipe_trainer.distributed import needs_launch, torchrun_command
from segpipe_trainer.paths import DEFAULT_ML_ROOT, ML_ROOT_VARIABLE, MlPaths, ResourceConfig


def test_sagemaker_layout_without_the_variable() -> None:
    paths = MlPaths.from_environment(environ={})

    assert paths.root == DEFAULT_ML_ROOT
    assert paths.hyperparameters == Path("/opt/ml/input/config/hyperparameters.json")
    assert paths.resource_config == Path("/opt/ml/input/config/resourceconfig.json")
    assert paths.dataset == Path("/opt/ml/input/data/dataset")
    assert paths.split == Path("/opt/ml/input/data/split")
    assert paths.base == Path("/opt/ml/input/data/base")
    assert paths.model_dir == Path("/opt/ml/model")
    assert paths.evaluation == Path("/opt/ml/output/data/evaluation.json")
    assert paths.predictions_dir("test") == Path("/opt/ml/output/data/predictions/test")
    assert paths.previews_dir == Path("/opt/ml/output/data/previews")
    assert paths.failure == Path("/opt/ml/output/failure")
    assert paths.checkpoints == Path("/opt/ml/checkpoints")
    assert paths.progress == Path("/opt/ml/checkpoints/progress.json")


def test_the_variable_replaces_opt_ml(tmp_path: Path) -> None:
    paths = MlPaths.from_environment(environ={ML_ROOT_VARIABLE: str(tmp_path)})

    assert paths.hyperparameters == tmp_path / "input" / "config" / "hyperparameters.json"
    assert paths.resolved_config == tmp_path / "output" / "data" / "config.json"


def test_resource_config_of_a_two_host_job(tmp_path: Path) -> None:
    path = tmp_path / "resourceconfig.json"
    path.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"]}))

    resources = ResourceConfig.read(path)

    assert resources.hosts == ("algo-1", "algo-2")
    assert (resources.master, resources.host_rank) == ("algo-1", 1)


def test_without_resource_config_the_job_is_one_local_host(tmp_path: Path) -> None:
    resources = ResourceConfig.read(tmp_path / "absent.json")

    assert resources.hosts == ("localhost",)
    assert resources.host_rank == 0


def test_torchrun_only_for_several_hosts_or_gpus() -> None:
    one = ResourceConfig(hosts=("algo-1",), current_host="algo-1")
    two = ResourceConfig(hosts=("algo-1", "algo-2"), current_host="algo-2")

    assert not needs_launch(resources=one, gpus=1, environ={})
    assert not needs_launch(resources=one, gpus=0, environ={})
    assert needs_launch(resources=one, gpus=4, environ={})
    assert needs_launch(resources=two, gpus=1, environ={})
    assert not needs_launch(resources=two, gpus=8, environ={"LOCAL_RANK": "0", "WORLD_SIZE": "16"})


def test_torchrun_command_names_every_host_and_gpu() -> None:
    resources = ResourceConfig(hosts=("algo-1", "algo-2"), current_host="algo-2")

    command = torchrun_command(resources=resources, processes_per_host=8)

    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert "--nnodes=2" in command
    assert "--node_rank=1" in command
    assert "--nproc_per_node=8" in command
    assert "--master_addr=algo-1" in command
    assert command[-2:] == ["-m", "segpipe_trainer.cli"]
