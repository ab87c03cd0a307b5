"""Every analysis check: a request, version or folder that triggers its code, with in-memory fakes."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from segpipe.logic.analysis_checks import AnalysisCheck, AnalysisSources, check_analysis
from segpipe.logic.validate import HEADER_SAMPLE, ComputeRules
from segpipe.models.analysis import AnalysisRequest
from segpipe.models.common import VersionStatus
from segpipe.models.version import ModelVersion
from tests.helpers.datasets import MemoryDatasetStore
from tests.helpers.versions import model_version, small_model_details
from tests.unit.fakes import MemoryArtifacts, MemoryRegistry

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CLASSES = ["nucleus", "mitosis"]
ARTIFACT = "s3://bucket/projects/lab/models/1/output/job/output/model.tar.gz"


def png(width: int = 64, height: int = 64, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def version(number: int = 1, **changes: Any) -> ModelVersion:
    """A completed, active version trained on 10 grey 64 x 64 images, with suggested thresholds."""
    fields: dict[str, Any] = {
        "job_name": f"job-{number}", "active": True, "model_artifact": ARTIFACT,
        "suggested_threshold": 0.4, "suggested_thresholds": {"nucleus": 0.45, "mitosis": 0.3},
    }  # fmt: skip
    fields.update(changes)
    return model_version(number, label="v", classes=CLASSES, details=small_model_details(), at=NOW, **fields)


class World:
    def __init__(self, *versions: ModelVersion) -> None:
        self.registry = MemoryRegistry()
        self.artifacts = MemoryArtifacts()
        self.images = MemoryDatasetStore()
        for item in versions or (version(analysis_threshold=0.5),):
            self.registry.create_version(item)

    def put(self, name: str, data: bytes, *, folder: str = "plate-1") -> None:
        self.images.put("lab", folder, name, data)

    def check(self, rules: ComputeRules | None = None, **body: Any) -> AnalysisCheck:
        request = AnalysisRequest.model_validate({"name": "run", "images": "plate-1", **body})
        sources = AnalysisSources(
            images=self.images, artifacts=self.artifacts, registry=self.registry, compute_rules=rules
        )
        return check_analysis(request, project="lab", sources=sources)


def errors(check: AnalysisCheck) -> list[str]:
    return [issue.code for issue in check.report.errors]


def warnings(check: AnalysisCheck) -> list[str]:
    return [issue.code for issue in check.report.warnings]


def with_images(world: World, count: int = 3, **kwargs: Any) -> World:
    for index in range(count):
        world.put(f"img-{index}.png", png(**kwargs))
    return world


# --- a clean request ------------------------------------------------------------------------------


def test_a_clean_request_has_no_issues_and_details_to_decide_on() -> None:
    world = with_images(World(), 4)

    check = world.check()

    assert check.ok and errors(check) == [] and warnings(check) == []
    assert check.version is not None and check.version.version == 1
    assert check.images == ["img-0.png", "img-1.png", "img-2.png", "img-3.png"]
    details = check.report.details
    assert (details.images, details.formats, details.channels) == (4, {"png": 4}, [1])
    assert details.megapixels == pytest.approx(4 * 64 * 64 / 1e6, abs=1e-3)
    assert details.thresholds == {"nucleus": 0.5, "mitosis": 0.5}
    assert details.threshold_sources == {"nucleus": "locked", "mitosis": "locked"}
    assert details.estimate is not None and details.estimate.hours > 0 and details.estimate.cost_usd > 0
    assert "inference Mpx/s" in details.estimate.basis and not details.estimate.spot


# --- the version ----------------------------------------------------------------------------------


def test_no_active_version() -> None:
    world = with_images(World(version(active=False)))
    assert errors(world.check()) == ["no_active_version"]


def test_several_active_versions_must_be_named() -> None:
    world = with_images(World(version(1), version(2)))
    check = world.check()
    assert errors(check) == ["several_active_versions"]
    assert check.report.errors[0].context["versions"] == [1, 2]
    assert world.check(version=2).ok


def test_unknown_version() -> None:
    assert errors(with_images(World()).check(version=7)) == ["unknown_version"]


@pytest.mark.parametrize(
    "changes",
    [
        {"status": VersionStatus.TRAINING, "active": False, "model_artifact": None},
        {"status": VersionStatus.FAILED, "active": False},
        {"model_artifact": None},
    ],
)
def test_a_version_without_a_trained_model_is_not_usable(changes: dict[str, Any]) -> None:
    world = with_images(World(version(**changes), version(2, active=False)))
    assert "version_not_usable" in errors(world.check(version=1))


def test_a_named_version_must_be_active() -> None:
    world = with_images(World(version(1), version(2, active=False)))
    assert errors(world.check(version=2)) == ["version_not_active"]


# --- thresholds -----------------------------------------------------------------------------------


def test_thresholds_come_from_the_request_then_the_locked_ones() -> None:
    world = with_images(
        World(version(analysis_threshold=0.5, analysis_thresholds={"nucleus": 0.6, "mitosis": 0.2}))
    )

    details = world.check(thresholds={"mitosis": 0.9}).report.details

    assert details.thresholds == {"nucleus": 0.6, "mitosis": 0.9}
    assert details.threshold_sources == {"nucleus": "locked", "mitosis": "request"}


def test_a_version_nobody_locked_runs_at_its_suggested_thresholds_with_a_warning() -> None:
    world = with_images(World(version()))

    check = world.check()

    assert check.ok and warnings(check) == ["threshold_not_locked"]
    assert check.report.details.thresholds == {"nucleus": 0.45, "mitosis": 0.3}
    assert check.report.details.threshold_sources == {"nucleus": "suggested", "mitosis": "suggested"}


def test_an_override_of_a_class_the_version_lacks() -> None:
    check = with_images(World()).check(thresholds={"cytoplasm": 0.3})
    assert errors(check) == ["unknown_class"]
    assert check.report.errors[0].context["unknown"] == ["cytoplasm"]


# --- the folder -----------------------------------------------------------------------------------


def test_a_missing_folder_has_no_images_and_says_which_prefix_was_listed() -> None:
    check = World().check(images="plate-9")
    assert errors(check) == ["no_images"]
    assert check.report.errors[0].context["prefix"] == "projects/lab/images/plate-9/"
    assert "empty or missing" in check.report.errors[0].message


def test_a_folder_of_other_files_has_no_images() -> None:
    world = World()
    world.put("notes.txt", b"hello")
    check = world.check()
    assert errors(check) == ["no_images"] and check.report.errors[0].context["other_files"] == 1


def test_other_files_are_skipped_with_a_warning() -> None:
    world = with_images(World(), 2)
    world.put("notes.txt", b"hello")
    world.put("sub/metadata.csv", b"a,b")

    check = world.check()

    assert check.ok and warnings(check) == ["files_skipped"]
    assert check.images == ["img-0.png", "img-1.png"]
    assert check.report.warnings[0].context["examples"] == ["notes.txt", "sub/metadata.csv"]


def test_a_file_named_as_an_image_in_another_format() -> None:
    world = with_images(World(), 1)
    world.put("animated.png", b"GIF89a" + bytes(100))
    check = world.check()
    assert errors(check) == ["unsupported_image_format"]
    assert check.report.errors[0].context["examples"] == [{"file": "animated.png", "format": "gif"}]


def test_a_file_that_is_no_image_at_all() -> None:
    world = with_images(World(), 1)
    world.put("broken.tif", b"not an image at all")
    assert errors(world.check()) == ["unreadable_image"]


def test_names_whose_outputs_would_collide() -> None:
    world = World()
    world.put("a.png", png())
    world.put("a.tif", png())
    assert errors(world.check()) == ["output_names_collide"]


def test_names_whose_outputs_would_be_too_long() -> None:
    world = World()
    world.put("x" * 300 + ".png", png())
    assert errors(world.check()) == ["output_name_too_long"]


def test_headers_are_sampled_not_all_read() -> None:
    world = with_images(World(), HEADER_SAMPLE * 3)
    check = world.check()
    assert check.ok and check.report.details.images == HEADER_SAMPLE * 3
    assert len(world.images.head_reads) == HEADER_SAMPLE


# --- against the training images ------------------------------------------------------------------


def test_rgb_images_into_a_grey_model_differ_in_channels() -> None:
    world = with_images(World(), 2, mode="RGB")
    check = world.check()
    assert errors(check) == ["channels_differ"]
    assert check.report.errors[0].context["expected"] == 1 and check.report.errors[0].context["found"] == [3]


def test_the_trainers_config_names_the_models_channels() -> None:
    world = with_images(World(), 2, mode="RGB")
    world.artifacts.put_bytes("projects/lab/models/1/config.json", b'{"in_channels": 3}')
    assert world.check().ok


def test_grey_images_into_an_rgb_model_are_repeated_as_the_trainer_does() -> None:
    world = with_images(World(), 2, mode="L")
    world.artifacts.put_bytes("projects/lab/models/1/config.json", b'{"in_channels": 3}')
    assert world.check().ok


def test_two_channel_images_into_an_rgb_model_differ() -> None:
    world = with_images(World(), 2, mode="LA")
    world.artifacts.put_bytes("projects/lab/models/1/config.json", b'{"in_channels": 3}')
    assert errors(world.check()) == ["channels_differ"]


@pytest.mark.parametrize("side", [16, 512])
def test_image_sizes_far_from_the_training_images(side: int) -> None:
    check = with_images(World(), 2, width=side, height=side).check()
    assert check.ok and warnings(check) == ["image_sizes_far_from_training"]
    assert check.report.warnings[0].context["training_side"] == 64.0


def test_sizes_within_a_factor_of_two_are_fine() -> None:
    assert warnings(with_images(World(), 2, width=100, height=100).check()) == []


# --- compute and the estimate ----------------------------------------------------------------------

RULES = ComputeRules(
    allowed_instance_types=frozenset({"ml.g5.xlarge"}), max_instance_hours=8, max_running_trainings=4
)


def test_an_instance_type_the_deployment_does_not_allow() -> None:
    check = with_images(World()).check(RULES, compute={"instance_type": "ml.p4d.24xlarge"})
    assert errors(check) == ["instance_type_not_allowed"]


def test_compute_over_the_deployments_limit() -> None:
    check = with_images(World()).check(RULES, compute={"instance_count": 4, "max_hours": 4})
    assert errors(check) == ["compute_over_limit"]
    assert "per analysis" in check.report.errors[0].message


def test_an_estimate_over_max_hours() -> None:
    world, large = World(), png(4000, 4000)
    for index in range(40):
        world.put(f"large-{index}.png", large)
    check = world.check(compute={"max_hours": 0.1})
    assert "estimate_exceeds_max_hours" in warnings(check)
    assert check.ok


def test_the_analysis_estimate_scales_with_pixels_and_hosts_and_states_its_basis() -> None:
    from segpipe.logic.estimate import ANALYSIS_STARTUP_HOURS, estimate_analysis
    from segpipe.models.common import Preset

    one = estimate_analysis(
        preset=Preset.SAM_VIT_BASE, megapixels=10_000, instance_type="ml.g5.xlarge", instance_count=1
    )
    four = estimate_analysis(
        preset=Preset.SAM_VIT_BASE, megapixels=10_000, instance_type="ml.g5.xlarge", instance_count=4
    )
    more = estimate_analysis(
        preset=Preset.SAM_VIT_BASE, megapixels=20_000, instance_type="ml.g5.xlarge", instance_count=1
    )

    assert one.hours > four.hours > ANALYSIS_STARTUP_HOURS
    assert (more.hours - ANALYSIS_STARTUP_HOURS) == pytest.approx(
        2 * (one.hours - ANALYSIS_STARTUP_HOURS), rel=0.02
    )
    assert one.hourly_usd == 1.408 and four.hourly_usd == pytest.approx(4 * 1.408)
    assert one.cost_usd == pytest.approx(one.hours * 1.408, rel=0.02)
    assert "overlapping windows" in one.basis and "post-processing" in one.basis and not one.spot
    unknown = estimate_analysis(
        preset=Preset.TINY, megapixels=1, instance_type="ml.x9.huge", instance_count=1
    )
    assert (
        unknown.cost_usd == 0.0 and unknown.hourly_usd is None and "not in the price table" in unknown.basis
    )


def test_the_reports_estimate_says_how_many_headers_gave_its_megapixels() -> None:
    check = with_images(World(), 5).check()
    assert check.report.details.estimate is not None
    assert "the mean of 5 sampled image headers x 5 images" in check.report.details.estimate.basis
