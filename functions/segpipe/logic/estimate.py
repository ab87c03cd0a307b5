"""Training time and cost, estimated before any GPU money is spent.

The model is deliberately simple and every assumption is stated in `Estimate.basis`:

    hours = start-up + (epochs x (training megapixels + refit megapixels)
                        + views x ((epochs + 1) x held-out megapixels + evaluation megapixels)
                          / inference speed-up)
                       / (preset throughput x GPU speed x GPUs x scaling efficiency) / 3600

- One epoch is one pass over the training pixels; an image smaller than a tile still costs a
  whole tile (it is padded). Early stopping can only make the real run shorter.
- The trainer holds some training groups out to choose the epoch count on; with few held-out
  groups it then refits a fresh model on every training image for the configured epochs (fewer
  only when early stopping ended the first phase; `segpipe.models.selection`). The refit is
  counted at the full configured epochs, an upper bound like the first phase's.
- Inference: the held-out images are predicted after every epoch and once more to choose the
  thresholds and the split level on; the train and test images once at the end. A preset that
  predicts each tile in its eight flips and quarter turns (`PresetFacts.test_time_flips`; a
  request cannot change it) does eight times that work.
- Preset throughput is in training megapixels per second on an RTX 3090-class GPU with mixed
  precision, derived from timm's published benchmark (ViT-B/16 trains at 97 img/s at 384² on an
  RTX 3090, i.e. 14.3 Mpx/s for the encoder alone) with a factor for the dense decoder and loss.
- GPU speeds are rough ratios to the RTX 3090 for mixed-precision ViT training.
- Prices are approximate on-demand SageMaker training list prices in us-east-1; managed spot is
  priced as a stated discount with a stated allowance for interruptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from segpipe.models.common import Preset
from segpipe.models.presets import PRESETS, PresetFacts
from segpipe.models.report import Estimate
from segpipe.models.request import ComputeOptions

#: Provisioning, pulling the training image and reading the dataset, in hours.
STARTUP_HOURS = 0.15
#: Inference (the held-out images each epoch, train and test at the end) runs forward passes only:
#: this much faster per pixel than training.
INFERENCE_SPEEDUP = 3.0
#: Views of each tile predicted by a preset with test-time flips: four quarter turns, each flipped.
FLIP_VIEWS = 8
#: Share of linear speed-up kept per extra GPU or host (data-parallel training).
SCALING_EFFICIENCY = 0.9
#: Managed spot price as a share of on-demand (AWS quotes savings of up to 90%; 65% is typical).
SPOT_PRICE_FACTOR = 0.35
#: Extra billable time for spot interruptions and resuming from checkpoints.
SPOT_TIME_FACTOR = 1.1


@dataclass(frozen=True)
class GpuProfile:
    name: str
    relative_speed: float


@dataclass(frozen=True)
class InstanceProfile:
    gpu: GpuProfile
    gpus: int
    usd_per_hour: float | None


def preset_speeds() -> Mapping[Preset, PresetFacts]:
    """Throughput assumptions per preset, with how each figure was derived (`models/presets.py`)."""
    return PRESETS


#: GPU families of SageMaker instance types, with speed relative to an RTX 3090 (mixed precision).
GPU_FAMILIES: dict[str, GpuProfile] = {
    "g4dn": GpuProfile("NVIDIA T4", 0.25),
    "g5": GpuProfile("NVIDIA A10G", 0.75),
    "g6": GpuProfile("NVIDIA L4", 0.55),
    "g6e": GpuProfile("NVIDIA L40S", 1.4),
    "p3": GpuProfile("NVIDIA V100", 0.8),
    "p4d": GpuProfile("NVIDIA A100", 1.7),
    "p5": GpuProfile("NVIDIA H100", 3.0),
}
#: Assumed for instance types whose family is unknown.
DEFAULT_GPU = GPU_FAMILIES["g5"]


#: Approximate on-demand SageMaker training prices (us-east-1): GPU family -> instance size ->
#: (GPUs per instance, USD per hour). `ml.{family}.{size}` names its family, as `_profile` reads it.
_PRICE_TABLE: dict[str, dict[str, tuple[int, float]]] = {
    "g4dn": {"xlarge": (1, 0.736), "2xlarge": (1, 1.053), "12xlarge": (4, 4.89)},
    "g5": {
        "xlarge": (1, 1.408),
        "2xlarge": (1, 1.515),
        "4xlarge": (1, 2.03),
        "12xlarge": (4, 7.09),
        "48xlarge": (8, 20.36),
    },
    "g6": {"xlarge": (1, 1.006)},
    "p3": {"2xlarge": (1, 3.825), "8xlarge": (4, 14.688)},
    "p4d": {"24xlarge": (8, 37.688)},
}


def instance_profiles() -> dict[str, InstanceProfile]:
    """Every instance type of the price table, `ml.{family}.{size}`, with its GPU, GPU count and price."""
    return {
        f"ml.{family}.{size}": InstanceProfile(GPU_FAMILIES[family], gpus, usd_per_hour)
        for family, sizes in _PRICE_TABLE.items()
        for size, (gpus, usd_per_hour) in sizes.items()
    }


def is_known_instance(instance_type: str) -> bool:
    """True when the price table knows `instance_type`."""
    return instance_type in instance_profiles()


def estimate_training(  # long: keyword-only, one amount of pixels per phase the trainer runs
    *,
    preset: Preset,
    epochs: int,
    train_megapixels: float,
    eval_megapixels: float,
    compute: ComputeOptions | None = None,
    refit_megapixels: float = 0.0,
    held_out_megapixels: float = 0.0,
) -> Estimate:
    """Expected billable hours and cost of one training job.

    `train_megapixels` counts each image the first phase trains on as at least one tile
    (padding); `refit_megapixels` the same for the refit's images (every training image), 0 when
    the trainer does not refit; `eval_megapixels` is the train and test images at their own size;
    `held_out_megapixels` the images held out of the first phase to choose on, at their own size.
    """
    compute = compute or ComputeOptions()
    speed = preset_speeds()[preset]
    profile = _profile(compute.instance_type)
    gpus = profile.gpus * compute.instance_count
    parallel = 1 + (gpus - 1) * SCALING_EFFICIENCY
    rate = speed.megapixels_per_second * profile.gpu.relative_speed * parallel
    trained = epochs * (train_megapixels + refit_megapixels)
    predicted = views(preset) * ((epochs + 1) * held_out_megapixels + eval_megapixels)
    compute_seconds = (trained + predicted / INFERENCE_SPEEDUP) / rate
    hours = (STARTUP_HOURS + compute_seconds / 3600) * (SPOT_TIME_FACTOR if compute.spot else 1.0)
    hourly = None if profile.usd_per_hour is None else profile.usd_per_hour * compute.instance_count
    price = None if hourly is None else hourly * (SPOT_PRICE_FACTOR if compute.spot else 1.0)
    basis = _basis(
        compute=compute,
        speed=speed,
        profile=profile,
        work=_work(preset=preset, epochs=epochs, rate=rate, refit=refit_megapixels > 0),
        inference=_inference(preset, held_out=held_out_megapixels > 0),
    )
    return Estimate(
        instance_type=compute.instance_type,
        spot=compute.spot,
        hours=round(hours, 2),
        cost_usd=round(hours * price, 2) if price is not None else 0.0,
        basis=basis,
        hourly_usd=None if price is None else round(price, 3),
        gpu=profile.gpu.name,
    )


def views(preset: Preset) -> int:
    """Predictions per tile: FLIP_VIEWS for a preset with test-time flips, else one."""
    return FLIP_VIEWS if preset_speeds()[preset].test_time_flips else 1


def _profile(instance_type: str) -> InstanceProfile:
    known = instance_profiles().get(instance_type)
    if known is not None:
        return known
    family = instance_type.split(".")[1] if instance_type.count(".") == 2 else ""
    return InstanceProfile(GPU_FAMILIES.get(family, DEFAULT_GPU), 1, None)


def _basis(
    *,
    compute: ComputeOptions,
    speed: PresetFacts,
    profile: InstanceProfile,
    work: str,
    inference: str,
) -> str:
    parts = [
        work,
        f"{speed.megapixels_per_second:.1f} Mpx/s on an RTX 3090 ({speed.derivation})",
        f"x {profile.gpu.relative_speed} per {profile.gpu.name}, {_count(profile.gpus, 'GPU')} per host, "
        f"{_count(compute.instance_count, 'host')}, {SCALING_EFFICIENCY:.0%} scaling per extra GPU",
        f"plus {STARTUP_HOURS} h start-up and {inference}",
    ]
    if compute.instance_type not in instance_profiles():
        parts.append(
            f"{compute.instance_type} is not in the price table: assumed 1 {profile.gpu.name}, cost unknown"
        )
    elif profile.usd_per_hour is not None:
        parts.append("approximate us-east-1 on-demand SageMaker training price")
    if compute.spot:
        parts.append(
            f"managed spot priced at {SPOT_PRICE_FACTOR:.0%} of on-demand"
            f" with {SPOT_TIME_FACTOR - 1:.0%} extra time for interruptions"
        )
    return "; ".join(parts)


def _work(*, preset: Preset, epochs: int, rate: float, refit: bool) -> str:
    """The basis's first part: the epochs counted, and the refit's when there is one."""
    work = f"{epochs} epochs of preset {preset.value} at {rate:.1f} training Mpx/s"
    if refit:
        work += f", then up to {epochs} more refitting on every training image (few held-out groups)"
    return work


def _inference(preset: Preset, *, held_out: bool) -> str:
    """The basis's part on inference: what is predicted, at what speed, in how many views."""
    what = "the held-out images after every epoch and once more, " if held_out else ""
    text = f"inference at {INFERENCE_SPEEDUP:g}x training speed ({what}the train and test images once"
    if views(preset) > 1:
        text += f", each tile in {views(preset)} flips and quarter turns"
    return text + ")"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# --- Analyses --------------------------------------------------------------------------------

#: Sliding-window inference overlaps windows by a quarter tile (segpipe_trainer.infer), so each
#: pixel is computed about (1 / 0.75)² times.
WINDOW_OVERLAP_FACTOR = (1 / 0.75) ** 2
#: Post-processing on the host's CPU, from dense maps to kept objects with outlines and
#: measurements, in seconds per megapixel (Issue 10 measured 40 ms/MP for instances and 86 ms/MP
#: for outlines on one core; masks, CSVs and previews are about as much again).
POSTPROCESS_SECONDS_PER_MEGAPIXEL = 0.25
#: Provisioning, pulling the image and downloading the model and images, in hours.
ANALYSIS_STARTUP_HOURS = 0.1


def estimate_analysis(
    *, preset: Preset, megapixels: float, instance_type: str, instance_count: int
) -> Estimate:
    """Expected billable hours and cost of one analysis (a processing job, on-demand: no spot).

    The images are sharded evenly across `instance_count` hosts; each host runs one GPU process,
    predicting each window in as many views as the preset predicts (`views`).
    """
    speed = preset_speeds()[preset]
    profile = _profile(instance_type)
    inference_rate = speed.megapixels_per_second * INFERENCE_SPEEDUP * profile.gpu.relative_speed
    per_host = megapixels / instance_count
    predicted = views(preset) * WINDOW_OVERLAP_FACTOR
    seconds = per_host * (predicted / inference_rate + POSTPROCESS_SECONDS_PER_MEGAPIXEL)
    hours = ANALYSIS_STARTUP_HOURS + seconds / 3600
    hourly = None if profile.usd_per_hour is None else profile.usd_per_hour * instance_count
    parts = [
        f"{megapixels:.1f} Mpx over {_count(instance_count, 'host')} with preset {preset.value} at "
        f"{inference_rate:.1f} inference Mpx/s per host ({INFERENCE_SPEEDUP:g}x its training speed of "
        f"{speed.megapixels_per_second:.1f} Mpx/s on an RTX 3090 x {profile.gpu.relative_speed} per "
        f"{profile.gpu.name}; one GPU used per host)",
        f"x {WINDOW_OVERLAP_FACTOR:.2f} for overlapping windows"
        + (f" x {views(preset)} flips and quarter turns of each window" if views(preset) > 1 else ""),
        f"plus {POSTPROCESS_SECONDS_PER_MEGAPIXEL:g} s/Mpx of CPU post-processing and "
        f"{ANALYSIS_STARTUP_HOURS} h start-up",
    ]
    if instance_type not in instance_profiles():
        parts.append(f"{instance_type} is not in the price table: assumed 1 {profile.gpu.name}, cost unknown")
    else:
        parts.append("priced at the approximate us-east-1 on-demand SageMaker training price of the type")
    return Estimate(
        instance_type=instance_type,
        spot=False,
        hours=round(hours, 2),
        cost_usd=round(hours * hourly, 2) if hourly is not None else 0.0,
        basis="; ".join(parts),
        hourly_usd=None if hourly is None else round(hourly, 3),
        gpu=profile.gpu.name,
    )
