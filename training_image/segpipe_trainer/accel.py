"""GPU efficiency around the training step: batch sizing, accumulation, torch.compile, device-side tiles.

- `BatchPlan`: the request's batch (the effective batch, which the learning rate belongs to) split
  into micro-batches that fit the GPU; `probe_batch_capacity` measures what fits, once, with a margin.
- `compile_module`: torch.compile with its caches under the checkpoints folder (a resumed spot job
  finds its kernels), warmed up once; any failure is logged (`compile_failed`) and eager is used.
- `device_batch`: tiles arrive compact (float16 image, uint8 classes, float16 distance, the
  intensity jitter as parameters) and are widened and jittered on the device.

Nothing here reads the environment except `AccelOptions.from_environment`, which the job calls once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)

CompileChoice = Literal["auto", "on", "off"]
#: Inductor's and Triton's caches, inside the checkpoints folder (synced to S3 on SageMaker).
COMPILE_CACHE_DIR = "compile-cache"


# --- Options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccelOptions:
    """How the trainer uses the device; the defaults are the measured or safe choices."""

    compile: CompileChoice = "auto"  # auto: on CUDA only (CPU compilation costs more than it returns)
    channels_last: bool = False  # the DPT decoder in channels-last; off until measured faster
    device_augment: bool | None = None  # compact tiles jittered on the device; None: on CUDA only
    memory_margin: float = 0.15  # share of GPU memory left free by the batch-size probe
    max_micro_batch: int = 256
    sync_every: int = 50  # steps between host reads of device metrics / cross-rank stop checks

    def compiles(self, device: torch.device) -> bool:
        return self.compile == "on" or (self.compile == "auto" and device.type == "cuda")

    def augments_on_device(self, device: torch.device) -> bool:
        return self.device_augment if self.device_augment is not None else device.type == "cuda"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AccelOptions:
        """SEGPIPE_COMPILE=auto|on|off, SEGPIPE_CHANNELS_LAST=1, SEGPIPE_DEVICE_AUGMENT=0|1."""
        env = os.environ if environ is None else environ
        choice = env.get("SEGPIPE_COMPILE", "auto").lower()
        augment = env.get("SEGPIPE_DEVICE_AUGMENT")
        return cls(
            compile=choice if choice in ("auto", "on", "off") else "auto",  # type: ignore[arg-type]
            channels_last=env.get("SEGPIPE_CHANNELS_LAST", "0") == "1",
            device_augment=None if augment is None else augment == "1",
        )


# --- Batch size and accumulation ---------------------------------------------------------------


@dataclass(frozen=True)
class BatchPlan:
    """One optimiser step = `accumulation` micro-batches of `micro_batch` tiles."""

    micro_batch: int
    accumulation: int

    @property
    def effective(self) -> int:
        return self.micro_batch * self.accumulation

    @classmethod
    def for_request(cls, requested: int, *, fits: int) -> BatchPlan:
        """The largest micro-batch that divides `requested` and fits; every micro-batch has one shape."""
        fits = max(1, fits)
        micro = max(size for size in range(1, min(requested, fits) + 1) if requested % size == 0)
        return cls(micro_batch=micro, accumulation=requested // micro)


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run probe or warm-up steps without a trace: buffers (BatchNorm statistics), RNG and gradients
    are as they were afterwards."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        torch.set_rng_state(cpu_rng)
        if cuda_rng:
            torch.cuda.set_rng_state_all(cuda_rng)
        for parameter in model.parameters():
            parameter.grad = None


def _peak_bytes(step: Callable[[int], None], batch: int, device: torch.device) -> int | None:
    """Peak allocated bytes of `step(batch)`; None when it runs out of memory."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        step(batch)
        torch.cuda.synchronize(device)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None
    return int(torch.cuda.max_memory_allocated(device))


def probe_batch_capacity(
    step: Callable[[int], None],
    *,
    device: torch.device,
    limit: int,
    margin: float = 0.15,
    extra_bytes: int = 0,
) -> int:
    """The largest batch (<= limit) for which `step(batch)` stays within (1 - margin) of GPU memory.

    Peak memory is measured at batch 2 and 4 and extrapolated linearly (fixed + per-tile bytes);
    `extra_bytes` is memory still to come (AdamW's state). The answer is checked by one step, and
    halved while it does not fit. No-op on CPU: returns `limit`.
    """
    if device.type != "cuda":
        return limit
    budget = (1 - margin) * torch.cuda.get_device_properties(device).total_memory - extra_bytes

    def fits(batch: int) -> bool:
        peak = _peak_bytes(step, batch, device)
        return peak is not None and peak <= budget

    small = _peak_bytes(step, 2, device) if limit > 2 else None
    large = _peak_bytes(step, 4, device) if small is not None and limit > 4 else None
    if small is None or large is None:  # a small request, or little room: check downwards
        batch = limit
    else:
        per_tile = max(1, (large - small) // 2)
        fixed = small - 2 * per_tile
        batch = max(1, min(limit, int((budget - fixed) // per_tile)))
        logger.info(
            "Batch probe: %.1f MiB per tile, %.1f MiB fixed, %.1f GiB budget",
            per_tile / 2**20,
            fixed / 2**20,
            budget / 2**30,
        )
    while batch > 1 and not fits(batch):
        batch //= 2
    torch.cuda.empty_cache()
    logger.info("Batch probe: up to %d tiles per pass (limit %d)", batch, limit)
    return batch


def optimizer_state_bytes(model: nn.Module) -> int:
    """AdamW's two fp32 moments per trainable parameter."""
    return sum(2 * 4 * p.numel() for p in model.parameters() if p.requires_grad)


# --- torch.compile -----------------------------------------------------------------------------


class FallbackToEager(nn.Module):
    """`module` run through `compiled` (the same parameters) until the compiled path fails once.

    A failure is logged with the code `compile_failed` and the eager module is used from then on.
    Out-of-memory errors are raised as they are: eager would need as much memory.
    """

    def __init__(self, module: nn.Module, *, compiled: Callable[..., Any] | None, what: str) -> None:
        super().__init__()
        self.module = module
        self.what = what
        self.__dict__["compiled"] = compiled  # not a submodule: its parameters are `module`'s

    @property
    def is_compiled(self) -> bool:
        return self.__dict__["compiled"] is not None

    def fall_back(self, exc: BaseException) -> None:
        logger.warning(
            "compile_failed: torch.compile of the %s failed (%s: %s); running eager",
            self.what,
            type(exc).__name__,
            " ".join(str(exc).split())[:400],
        )
        self.__dict__["compiled"] = None

    def forward(self, *args: Any) -> Any:
        compiled = self.__dict__["compiled"]
        if compiled is not None:
            try:
                return compiled(*args)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:  # any compiler error: eager computes the same
                self.fall_back(exc)
        return self.module(*args)


def use_compile_cache(directory: Path) -> None:
    """Inductor's FX-graph and AOT-autograd caches and Triton's kernels under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    os.environ["TRITON_CACHE_DIR"] = str(directory / "triton")
    import torch._functorch.config as functorch_config  # only when compiling
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True


def compile_module(
    module: nn.Module,
    *,
    what: str,
    cache_dir: Path | None,
    warmup: Callable[[nn.Module], None] | None = None,
    backend: str | Callable[..., Any] = "inductor",
) -> FallbackToEager:
    """`module` compiled (its caches in `cache_dir`), run once through `warmup` when given.

    A failure while compiling or warming up is logged (`compile_failed`) and the result runs eager.
    """
    if cache_dir is not None:
        use_compile_cache(cache_dir)
    wrapper = FallbackToEager(module, compiled=torch.compile(module, backend=backend), what=what)
    if warmup is None:
        return wrapper
    started = time.perf_counter()
    try:
        warmup(wrapper.__dict__["compiled"])
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:  # see FallbackToEager
        wrapper.fall_back(exc)
    else:
        logger.info("Compiled the %s in %.1f s (cache %s)", what, time.perf_counter() - started, cache_dir)
    return wrapper


def compiled_or_eager(module: nn.Module) -> nn.Module:
    """The eager module under a `FallbackToEager` (for DDP's no_sync and for saving)."""
    return module.module if isinstance(module, FallbackToEager) else module


def gradient_sync(model: nn.Module, *, last: bool) -> contextlib.AbstractContextManager[object]:
    """DDP's no_sync for every micro-batch but the last of a step; nothing otherwise."""
    inner = compiled_or_eager(model)
    if isinstance(inner, DistributedDataParallel) and not last:
        return inner.no_sync()
    return contextlib.nullcontext()


def channels_last_decoder(model: nn.Module) -> None:
    """The decoder's and head's convolutions in channels-last memory format (behind a flag)."""
    for name in ("decoder", "head"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            part.to(memory_format=torch.channels_last)


# --- Tiles on the device -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceBatch:
    """images float32 B x C x T x T, classes int64 B x T x T, distance float32 B x T x T on the device."""

    images: torch.Tensor
    classes: torch.Tensor
    distance: torch.Tensor


def intensity_jitter(
    images: torch.Tensor,
    *,
    gain: torch.Tensor,
    offset: torch.Tensor,
    noise_seed: torch.Tensor,
    noise_std: float,
) -> torch.Tensor:
    """images * gain + offset + N(0, noise_std), per tile and channel, computed where `images` is.

    images B x C x T x T (any float dtype), gain and offset B x C, noise_seed int64 [B] (CPU): the
    noise of tile b is drawn from a generator seeded with noise_seed[b], so a resumed run draws the
    same noise on the same kind of device.
    """
    gain, offset = gain.to(images.device)[:, :, None, None], offset.to(images.device)[:, :, None, None]
    out = images.float() * gain + offset
    if noise_std > 0:
        noise = torch.empty_like(out)
        for index, seed in enumerate(noise_seed.tolist()):
            generator = torch.Generator(device=out.device).manual_seed(int(seed))
            noise[index].normal_(0.0, noise_std, generator=generator)
        out = out + noise
    return out


def device_batch(batch: Mapping[str, torch.Tensor], *, device: torch.device) -> DeviceBatch:
    """A loader batch on `device` in training dtypes; compact batches (with "gain") are jittered there.

    Plain float32 / int64 batches are moved and left as they are.
    """
    images = batch["image"].to(device, non_blocking=True)
    classes = batch["classes"].to(device, non_blocking=True).long()
    distance = batch["distance"].to(device, non_blocking=True).float()
    if "gain" in batch:
        images = intensity_jitter(
            images,
            gain=batch["gain"].to(device, non_blocking=True),
            offset=batch["offset"].to(device, non_blocking=True),
            noise_seed=batch["noise_seed"],
            noise_std=float(batch["noise_std"][0]),
        )
    return DeviceBatch(images=images.float(), classes=classes, distance=distance)


def loader_workers(*, device: torch.device, local_world: int, cap: int = 16) -> int:
    """Tile workers per process: none on CPU (the model needs the cores); on GPU the host's usable
    cores shared among its processes, one left for each process's main thread."""
    if device.type != "cuda":
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    return max(1, min(cap, cores // max(1, local_world) - 1))
