"""Training time and cost estimates follow their stated basis."""

from __future__ import annotations

import pytest

from segpipe.logic import estimate
from segpipe.logic.estimate import estimate_training, instance_profiles, preset_speeds
from segpipe.models import presets
from segpipe.models.common import Preset
from segpipe.models.report import Estimate
from segpipe.models.request import ComputeOptions


def on_demand(instance_type: str = "ml.g5.xlarge", **options: object) -> ComputeOptions:
    return ComputeOptions.model_validate({"instance_type": instance_type, "spot": False, **options})


def estimated(
    compute: ComputeOptions,
    *,
    preset: Preset = Preset.TINY,
    epochs: int = 1,
    train: float = 1.0,
    evaluate: float = 1.0,
) -> Estimate:
    """The estimate for `epochs` over `train` training megapixels and `evaluate` megapixels to evaluate."""
    return estimate_training(
        preset=preset, epochs=epochs, train_megapixels=train, eval_megapixels=evaluate, compute=compute
    )


def test_hours_follow_the_documented_formula() -> None:
    # Given 10 epochs over 100 training megapixels and 50 megapixels to evaluate, on one A10G
    result = estimated(on_demand(), preset=Preset.SAM_VIT_BASE, epochs=10, train=100.0, evaluate=50.0)

    # Then the hours are start-up plus pixels over throughput, and the cost is hours times the price
    rate = (
        preset_speeds()[Preset.SAM_VIT_BASE].megapixels_per_second
        * estimate.GPU_FAMILIES["g5"].relative_speed
    )
    seconds = (10 * 100.0 + 50.0 / estimate.INFERENCE_SPEEDUP) / rate
    hours = estimate.STARTUP_HOURS + seconds / 3600
    assert result.hours == pytest.approx(hours, abs=0.005)
    assert result.cost_usd == pytest.approx(hours * 1.408, abs=0.01)
    assert result.hourly_usd == pytest.approx(1.408)
    assert result.gpu == "NVIDIA A10G"
    assert "97 img/s at 384²" in result.basis


def test_the_vit_b_throughput_comes_from_the_timm_figure() -> None:
    speed = preset_speeds()[Preset.SAM_VIT_BASE]

    assert speed.megapixels_per_second == pytest.approx(97 * 384 * 384 / 1e6 * presets.DECODER_FACTOR)


def test_every_preset_has_a_throughput() -> None:
    assert set(preset_speeds()) == set(Preset)


def test_spot_is_cheaper_but_takes_a_little_longer() -> None:
    work = {"preset": Preset.DINOV2_SMALL, "epochs": 50, "train": 500.0, "evaluate": 100.0}

    spot = estimated(ComputeOptions(spot=True), **work)  # type: ignore[arg-type]
    full = estimated(ComputeOptions(spot=False), **work)  # type: ignore[arg-type]

    assert spot.cost_usd < full.cost_usd
    assert spot.hours == pytest.approx(full.hours * estimate.SPOT_TIME_FACTOR, abs=0.01)
    assert "spot" in spot.basis


def test_more_work_takes_longer_and_more_gpus_take_less() -> None:
    def hours(epochs: int, compute: ComputeOptions) -> float:
        return estimated(compute, preset=Preset.SAM_VIT_BASE, epochs=epochs, train=2000.0, evaluate=0.0).hours

    assert hours(20, on_demand()) < hours(40, on_demand())
    assert hours(40, on_demand("ml.g5.12xlarge")) < hours(40, on_demand("ml.g5.xlarge"))
    assert hours(40, on_demand(instance_count=2)) < hours(40, on_demand())


def test_two_hosts_cost_twice_per_hour() -> None:
    one = estimated(on_demand())
    two = estimated(on_demand(instance_count=2))

    assert two.hourly_usd == pytest.approx(2 * (one.hourly_usd or 0))


def test_an_unknown_instance_type_still_gets_hours_and_a_clear_basis() -> None:
    # Given an instance type of a known GPU family but not in the price table
    result = estimated(
        on_demand("ml.p5.48xlarge"), preset=Preset.SAM_VIT_BASE, epochs=10, train=100.0, evaluate=10.0
    )

    # Then there are hours (for one GPU of that family), no price, and the basis says so
    assert result.hours > estimate.STARTUP_HOURS
    assert result.cost_usd == 0.0
    assert result.hourly_usd is None
    assert result.gpu == "NVIDIA H100"
    assert "not in the price table" in result.basis
    assert not estimate.is_known_instance("ml.p5.48xlarge")


def test_an_unknown_family_is_assumed_to_be_an_a10g() -> None:
    result = estimated(on_demand("ml.zz9.large"))

    assert result.gpu == estimate.DEFAULT_GPU.name


def test_every_priced_instance_has_a_gpu_and_a_positive_price() -> None:
    for name, profile in instance_profiles().items():
        assert name.startswith("ml.")
        assert profile.gpus >= 1
        assert profile.usd_per_hour is not None and profile.usd_per_hour > 0


def test_dinov2_small_is_estimated_at_the_patch_the_trainer_builds() -> None:
    # DINOv2's patch embedding is resampled to 16 px: as many tokens per pixel as ViT-B/16
    small = preset_speeds()[Preset.DINOV2_SMALL].megapixels_per_second
    base = preset_speeds()[Preset.SAM_VIT_BASE].megapixels_per_second

    assert small == pytest.approx(3.0 * base)


def test_a_refit_adds_its_epochs_over_every_training_image() -> None:
    # Given 10 epochs over 80 Mpx in the first phase, and a refit over all 100 training Mpx
    plain = estimate_training(
        preset=Preset.SAM_VIT_BASE, epochs=10, train_megapixels=80.0, eval_megapixels=0.0, compute=on_demand()
    )
    refit = estimate_training(
        preset=Preset.SAM_VIT_BASE,
        epochs=10,
        train_megapixels=80.0,
        refit_megapixels=100.0,
        eval_megapixels=0.0,
        compute=on_demand(),
    )

    # Then the refit's 10 x 100 Mpx are counted on top of the first phase's, and the basis says so
    rate = (
        preset_speeds()[Preset.SAM_VIT_BASE].megapixels_per_second
        * estimate.GPU_FAMILIES["g5"].relative_speed
    )
    assert refit.hours == pytest.approx(estimate.STARTUP_HOURS + 10 * (80.0 + 100.0) / rate / 3600, abs=0.005)
    assert refit.hours - plain.hours == pytest.approx(10 * 100.0 / rate / 3600, abs=0.01)
    assert "10 more refitting on every training image" in refit.basis
    assert "refitting" not in plain.basis


@pytest.mark.parametrize(("preset", "views"), [(Preset.TINY, 8), (Preset.SAM_VIT_BASE, 1)])
def test_inference_counts_the_held_out_images_every_epoch_in_the_presets_views(
    preset: Preset, views: int
) -> None:
    # Given 10 epochs over 80 Mpx, 20 held-out Mpx to score, 50 train and test Mpx to evaluate
    assert presets.PRESETS[preset].test_time_flips is (views == 8)
    result = estimate_training(
        preset=preset,
        epochs=10,
        train_megapixels=80.0,
        held_out_megapixels=20.0,
        eval_megapixels=50.0,
        compute=on_demand(),
    )

    # Then the held-out images are predicted after each of the 10 epochs and once more to choose on,
    # the train and test images once, each in the preset's views (8 with test-time flips)
    rate = preset_speeds()[preset].megapixels_per_second * estimate.GPU_FAMILIES["g5"].relative_speed
    predicted = views * (11 * 20.0 + 50.0) / estimate.INFERENCE_SPEEDUP
    seconds = (10 * 80.0 + predicted) / rate
    assert result.hours == pytest.approx(estimate.STARTUP_HOURS + seconds / 3600, abs=0.005)
    assert "held-out images after every epoch" in result.basis
    assert ("8 flips and quarter turns" in result.basis) is (views == 8)


def test_an_analysis_of_a_preset_with_flips_predicts_every_window_eight_times() -> None:
    # Given 10,000 Mpx analysed by the tiny preset, which predicts with test-time flips, on one A10G
    tiny = estimate.estimate_analysis(
        preset=Preset.TINY, megapixels=10_000, instance_type="ml.g5.xlarge", instance_count=1
    )

    # Then the inference part is eight times one view's, and the basis names the views
    rate = (
        preset_speeds()[Preset.TINY].megapixels_per_second
        * estimate.INFERENCE_SPEEDUP
        * estimate.GPU_FAMILIES["g5"].relative_speed
    )
    inference = 8 * estimate.WINDOW_OVERLAP_FACTOR * 10_000 / rate
    post = estimate.POSTPROCESS_SECONDS_PER_MEGAPIXEL * 10_000
    assert tiny.hours == pytest.approx(estimate.ANALYSIS_STARTUP_HOURS + (inference + post) / 3600, abs=0.005)
    assert "x 8 flips and quarter turns of each window" in tiny.basis
