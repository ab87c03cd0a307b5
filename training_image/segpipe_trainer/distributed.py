"""Processes, devices and the torchrun launch for multi-GPU and multi-host training.

`train` runs as one process on one device unless the job has several hosts or GPUs; then it
re-executes itself under torchrun (one process per GPU on each host, rendezvous on the first host of
`resourceconfig.json`). Under torchrun every process builds a `Runtime` from the environment.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from segpipe_trainer.paths import ResourceConfig

logger = logging.getLogger(__name__)

MASTER_PORT = 29500
#: Rank 0 validates and evaluates while the others wait; NCCL's 10-minute default is too short.
PROCESS_GROUP_TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class Runtime:
    """This process's place in the job and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def bf16(self) -> bool:
        """bf16 autocast on CUDA; full precision on CPU."""
        return self.device.type == "cuda"

    @classmethod
    def from_environment(cls, *, environ: Mapping[str, str] | None = None) -> Runtime:
        """Rank and world from torchrun's variables (a single process without them)."""
        env = os.environ if environ is None else environ
        rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
        local_rank, local_world = int(env.get("LOCAL_RANK", "0")), int(env.get("LOCAL_WORLD_SIZE", "1"))
        if torch.cuda.is_available():
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        return cls(rank=rank, world=world, local_rank=local_rank, local_world=local_world, device=device)

    def start(self) -> None:
        """Tune CUDA for fixed-size tiles; join the process group (NCCL on GPUs, Gloo on CPUs) when
        there is more than one process."""
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # every batch has the same shape
            torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 work left outside bf16 autocast
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)

    def stop(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any one of them."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def mean(self, value: float) -> float:
        """The mean of `value` over the processes."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return float(tensor.item()) / self.world

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every process."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def under_torchrun(*, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return "LOCAL_RANK" in env and "WORLD_SIZE" in env


def gpus_per_host() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def torchrun_command(*, resources: ResourceConfig, processes_per_host: int) -> list[str]:
    """The torchrun command line that runs `segpipe_trainer.cli` on every GPU of every host."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={len(resources.hosts)}",
        f"--node_rank={resources.host_rank}",
        f"--nproc_per_node={processes_per_host}",
        f"--master_addr={resources.master}",
        f"--master_port={MASTER_PORT}",
        "-m",
        "segpipe_trainer.cli",
    ]


def needs_launch(*, resources: ResourceConfig, gpus: int, environ: Mapping[str, str] | None = None) -> bool:
    """True when this job needs torchrun (several hosts or GPUs) and is not already under it."""
    return not under_torchrun(environ=environ) and (len(resources.hosts) > 1 or gpus > 1)
