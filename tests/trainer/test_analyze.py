"""`analyze`: a tiny model over a processing root, and every file it writes checked against the contract.

One analysis of three 128-px images (and one of a single image larger than the tile) is run per
module and shared by the tests that read its outputs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from segpipe import cli
from segpipe.models import keys
from segpipe.models.analysis import (
    AnalysedImage,
    AnalysisProgress,
    AnalysisSummary,
    AnalyzeConfig,
    image_columns,
    object_columns,
)
from segpipe.models.coco import CocoDataset
from segpipe.models.trainer_io import prediction_stem
from segpipe_trainer import analyze
from segpipe_trainer.analyze import keep_above, read_config
from segpipe_trainer.errors import TrainerError
from segpipe_trainer.geometry import annotation_mask
from segpipe_trainer.postprocess import Instances
from segpipe_trainer.processing_paths import PROCESSING_ROOT_VARIABLE, ProcessingPaths, current_host
from tests.conftest import FIXTURES
from tests.trainer.analysis_kit import analyze_config, make_processing_root, pack_model, synthetic_images
from tests.trainer.trainer_testkit import CLASSES

THRESHOLDS = {"round": 0.93, "long": 0.9}
PIXEL_SIZE = 0.5


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return synthetic_images(3)


@pytest.fixture(scope="module")
def one_host(archive: Path, images: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The processing root of one host that analysed all three images."""
    root = make_processing_root(
        tmp_path_factory.mktemp("one") / "processing",
        archive=archive,
        images=images,
        config=analyze_config(thresholds=THRESHOLDS, pixel_size=PIXEL_SIZE, image_count=len(images)),
    )
    analyze.run(ProcessingPaths(root=root))
    return root


def _shard(root: Path, host: str = "algo-1") -> Path:
    return root / "output" / "shards" / host


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def _coco(root: Path, host: str = "algo-1") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_shard(root, host) / "coco.json").read_text())
    return data


# --- Thresholds -----------------------------------------------------------------------------------


def test_keep_above_drops_objects_below_their_class_threshold_and_renumbers() -> None:
    labels = np.array([[1, 1, 2, 0], [3, 3, 4, 4]], dtype=np.int32)
    instances = Instances(
        labels=labels,
        classes=np.array([0, 1, 2, 1, 2]),
        scores=np.array([0, 0.6, 0.6, 0.4, 0.9], dtype=np.float32),
    )

    kept = keep_above(instances, thresholds=[0.5, 0.7])

    assert kept.count == 2
    np.testing.assert_array_equal(kept.labels, [[1, 1, 0, 0], [0, 0, 2, 2]])
    np.testing.assert_array_equal(kept.classes, [0, 1, 2])
    np.testing.assert_allclose(kept.scores, [0, 0.6, 0.9])


def test_every_kept_object_reaches_its_class_threshold(one_host: Path) -> None:
    coco = _coco(one_host)
    names = {category["id"]: category["name"] for category in coco["categories"]}

    assert coco["annotations"], "the tiny model finds objects on the synthetic images"
    for annotation in coco["annotations"]:
        assert annotation["score"] >= THRESHOLDS[names[annotation["category_id"]]]


# --- The shard files ------------------------------------------------------------------------------


def test_coco_json_lists_the_images_in_progress_and_the_classes(
    one_host: Path, images: dict[str, np.ndarray]
) -> None:
    coco = _coco(one_host)

    CocoDataset.model_validate(coco)
    assert [image["file_name"] for image in coco["images"]] == sorted(images)
    assert {image["status"] for image in coco["images"]} == {"in_progress"}
    assert [(image["width"], image["height"]) for image in coco["images"]] == [(128, 128)] * 3
    assert [category["name"] for category in coco["categories"]] == list(CLASSES)
    assert [annotation["id"] for annotation in coco["annotations"]] == list(
        range(1, len(coco["annotations"]) + 1)
    )
    assert all(annotation["iscrowd"] == 0 for annotation in coco["annotations"])


def test_objects_csv_has_the_contract_header_and_one_row_per_annotation(one_host: Path) -> None:
    header, rows = _csv(_shard(one_host) / "objects.csv")
    coco = _coco(one_host)
    files = {image["id"]: image["file_name"] for image in coco["images"]}

    assert header == object_columns(channels=1, pixel_size=PIXEL_SIZE)
    assert [int(row["id"]) for row in rows] == [annotation["id"] for annotation in coco["annotations"]]
    for row, annotation in zip(rows, coco["annotations"], strict=True):
        assert row["image"] == files[annotation["image_id"]]
        assert float(row["area"]) == annotation["area"]
        assert float(row["score"]) == pytest.approx(annotation["score"], abs=1e-9)
        assert float(row["area_um2"]) == pytest.approx(float(row["area"]) * PIXEL_SIZE**2)
        assert float(row["perimeter_um"]) == pytest.approx(float(row["perimeter"]) * PIXEL_SIZE)


def test_images_csv_counts_match_counts_from_coco_json(one_host: Path) -> None:
    header, rows = _csv(_shard(one_host) / "images.csv")
    coco = _coco(one_host)
    names = {category["id"]: category["name"] for category in coco["categories"]}
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    counted = Counter((files[a["image_id"]], names[a["category_id"]]) for a in coco["annotations"])
    areas = Counter[tuple[str, str]]()
    for annotation in coco["annotations"]:
        areas[(files[annotation["image_id"]], names[annotation["category_id"]])] += annotation["area"]

    assert header == image_columns(list(CLASSES))
    assert [row["image"] for row in rows] == list(files.values())
    for row in rows:
        for name in CLASSES:
            assert int(row[f"objects[{name}]"]) == counted[(row["image"], name)]
            assert float(row[f"area[{name}]"]) == areas[(row["image"], name)]
        assert int(row["objects"]) == sum(counted[(row["image"], name)] for name in CLASSES)
        assert row["stem"] == prediction_stem(row["image"])


def test_summary_and_progress_count_this_hosts_images(one_host: Path) -> None:
    summary = AnalysisSummary.model_validate_json((_shard(one_host) / "summary.json").read_text())
    progress = AnalysisProgress.model_validate_json(
        (one_host / "output" / "progress" / "algo-1.json").read_text()
    )
    coco = _coco(one_host)

    assert summary.hosts == ["algo-1"]
    assert (summary.images, summary.objects) == (3, len(coco["annotations"]))
    assert summary.megapixels == pytest.approx(3 * 128 * 128 / 1e6)
    assert sum(totals.objects for totals in summary.per_class.values()) == summary.objects
    assert summary.thresholds == THRESHOLDS and summary.pixel_size == PIXEL_SIZE
    assert summary.seconds >= summary.inference_seconds > 0
    assert (progress.host, progress.images_done, progress.images_total) == ("algo-1", 3, 3)


def test_each_mask_has_exactly_one_label_per_object_and_the_image_files_agree(one_host: Path) -> None:
    coco = _coco(one_host)
    for image in coco["images"]:
        stem = prediction_stem(image["file_name"])
        mask = tifffile.imread(one_host / "output" / "masks" / f"{stem}.tif")
        analysed = AnalysedImage.model_validate_json(
            (one_host / "output" / "images" / f"{stem}.json").read_text()
        )
        annotations = [a for a in coco["annotations"] if a["image_id"] == image["id"]]

        assert mask.shape == (image["height"], image["width"]) and mask.dtype == np.uint16
        assert (one_host / "output" / "images" / f"{stem}.png").is_file()
        assert sorted(set(np.unique(mask)) - {0}) == [item.label for item in analysed.objects]
        assert [item.label for item in analysed.objects] == list(range(1, len(annotations) + 1))
        assert sum(analysed.counts.values()) == len(annotations)
        for item, annotation in zip(analysed.objects, annotations, strict=True):
            region = mask == item.label
            outline = annotation_mask(annotation["segmentation"], height=mask.shape[0], width=mask.shape[1])
            assert region.sum() == annotation["area"] == item.area
            assert outline[region].all()  # the polygon covers the object (holes filled)


# --- Measurements: scikit-image's regionprops as the oracle ----------------------------------------


def test_every_measurement_matches_regionprops_on_the_written_mask_and_image(
    one_host: Path, images: dict[str, np.ndarray]
) -> None:
    """Exact for area and bbox; within 1e-9 relative (10 significant digits in the CSV) for the rest.
    The perimeter is regionprops' `perimeter` (4-connectivity), not `perimeter_crofton`."""
    from skimage.measure import regionprops

    _, rows = _csv(_shard(one_host) / "objects.csv")
    assert rows
    for file_name, pixels in images.items():
        stem = prediction_stem(file_name)
        mask = tifffile.imread(one_host / "output" / "masks" / f"{stem}.tif")
        mine = {int(row["label"]): row for row in rows if row["image"] == file_name}
        props = regionprops(mask.astype(np.int32), intensity_image=np.moveaxis(pixels, 0, -1))
        assert sorted(mine) == [prop.label for prop in props]
        for prop in props:
            row = mine[prop.label]
            min_row, min_col, max_row, max_col = prop.bbox
            exact = {
                "area": prop.area,
                "bbox_x": min_col,
                "bbox_y": min_row,
                "bbox_width": max_col - min_col,
                "bbox_height": max_row - min_row,
                "max_intensity_0": prop.intensity_max[0],
            }
            close = {
                "perimeter": prop.perimeter,
                "centroid_x": prop.centroid[1],
                "centroid_y": prop.centroid[0],
                "eccentricity": prop.eccentricity,
                "solidity": prop.solidity,
                "mean_intensity_0": prop.intensity_mean[0],
                "centroid_x_um": prop.centroid[1] * PIXEL_SIZE,
            }
            for column, value in exact.items():
                assert float(row[column]) == value, column
            for column, value in close.items():
                assert float(row[column]) == pytest.approx(value, rel=1e-9, abs=1e-9), column


def _touching_discs(*, size: int, objects: int, seed: int) -> np.ndarray:
    """int32 labels 1..N of discs (radius 3-14) at random places; later ones cover earlier ones, so
    many touch and some are cut into odd shapes, or into pieces that stay one label."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    labels = np.zeros((size, size), dtype=np.int32)
    for index in range(1, objects + 1):
        radius, (row, col) = rng.uniform(3, 14), rng.uniform(0, size, 2)
        labels[(rows - row) ** 2 + (cols - col) ** 2 < radius**2] = index
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def test_measurements_match_regionprops_on_crowded_multichannel_objects() -> None:
    from skimage.measure import regionprops

    from segpipe_trainer.measure import measure_objects

    labels = _touching_discs(size=160, objects=40, seed=3)
    pixels = np.random.default_rng(1).integers(0, 4000, (2, *labels.shape)).astype(np.uint16)

    measured = measure_objects(labels, pixels)

    props = regionprops(labels, intensity_image=np.moveaxis(pixels, 0, -1))
    assert measured.count == len(props) > 20
    for index, prop in enumerate(props):
        assert measured.area[index] == prop.area
        assert measured.perimeter[index] == pytest.approx(prop.perimeter, rel=1e-12)
        assert measured.eccentricity[index] == pytest.approx(prop.eccentricity, rel=1e-9, abs=1e-12)
        assert measured.solidity[index] == pytest.approx(prop.solidity, rel=1e-12)
        assert (measured.centroid_y[index], measured.centroid_x[index]) == pytest.approx(prop.centroid)
        np.testing.assert_allclose(measured.mean_intensity[:, index], prop.intensity_mean, rtol=1e-12)
        np.testing.assert_array_equal(measured.max_intensity[:, index], prop.intensity_max)


# --- coco.json as a dataset -------------------------------------------------------------------------


def test_coco_json_reads_as_a_segpipe_dataset_under_segpipe_validate(
    one_host: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As written (every image in_progress) the only error is that none is completed yet; marked
    completed, as after a person's correction, every annotation is read as valid, and what is left
    is that three images with a few objects of one class are too small a training set."""
    dataset = tmp_path / "analysed"
    shutil.copytree(one_host / "input" / "images", dataset)
    coco = _coco(one_host)
    (dataset / "annotations.json").write_text(json.dumps(coco))
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps({"label": "retrain", "dataset": "x", "model_type": "instance", "classes": list(CLASSES)})
    )
    argv = ["validate", "--dataset", str(dataset), "--request", str(request), "--tile-size", "64"]

    code = cli.main(argv)
    as_written = json.loads(capsys.readouterr().out)
    for image in coco["images"]:
        image["status"] = "completed"
    (dataset / "annotations.json").write_text(json.dumps(coco))
    completed_code = cli.main(argv)
    completed = json.loads(capsys.readouterr().out)

    assert code == 1
    assert [error["code"] for error in as_written["errors"]] == ["no_completed_images"]
    assert completed_code == 1
    assert {error["code"] for error in completed["errors"]} <= {
        "too_few_annotations",
        "class_without_annotations",
    }
    assert completed["details"]["included_annotations"] == len(coco["annotations"]) > 0
    assert completed["details"]["ignored"]["invalid_annotations"] == 0
    assert "invalid_annotations_dropped" not in {warning["code"] for warning in completed["warnings"]}


# --- Several hosts ---------------------------------------------------------------------------------


def test_two_hosts_on_two_halves_merge_into_what_one_host_writes(
    one_host: Path, archive: Path, images: dict[str, np.ndarray], tmp_path: Path
) -> None:
    from segpipe.logic.analysis_merge import merge_shards
    from tests.unit.fakes import MemoryArtifacts

    names = sorted(images)
    halves = {"algo-1": names[:1], "algo-2": names[1:]}
    config = analyze_config(thresholds=THRESHOLDS, pixel_size=PIXEL_SIZE, image_count=len(images))
    roots = {}
    for host, part in halves.items():
        roots[host] = make_processing_root(
            tmp_path / host / "processing",
            archive=archive,
            images={name: images[name] for name in part},
            config=config,
            host=host,
            hosts=tuple(halves),
        )
        analyze.run(ProcessingPaths(root=roots[host]))

    def merged(shards: dict[str, Path]) -> dict[str, bytes]:
        store = MemoryArtifacts()
        prefix = keys.analysis_shards_prefix("lab-1", 1)
        for host, root in shards.items():
            for path in _shard(root, host).iterdir():
                store.put_bytes(f"{prefix}{host}/{path.name}", path.read_bytes())
        store.put_bytes(keys.analysis_config_key("lab-1", 1), json.dumps(config).encode())
        merge_shards(store, project="lab-1", analysis=1)
        return {
            name: store.get_bytes(keys.analysis_output_key("lab-1", 1, name))
            for name in ("coco.json", "objects.csv", "images.csv")
        }

    one, two = merged({"algo-1": one_host}), merged(roots)

    assert one == two
    assert json.loads(one["coco.json"])["annotations"], "the comparison covers objects"
    for host, part in halves.items():
        assert AnalysisSummary.model_validate_json(
            (_shard(roots[host], host) / "summary.json").read_text()
        ).hosts == [host]
        for name in part:
            stem = prediction_stem(name)
            for folder, suffix in (("images", ".json"), ("masks", ".tif")):
                mine = roots[host] / "output" / folder / f"{stem}{suffix}"
                assert mine.read_bytes() == (one_host / "output" / folder / f"{stem}{suffix}").read_bytes()


# --- Whole images of any size ------------------------------------------------------------------------


def test_an_image_larger_than_the_tile_is_covered_whole(archive: Path, tmp_path: Path) -> None:
    """A 300 x 200 image under 64-px tiles: 7 x 5 windows; objects reach its last rows and columns."""
    from tests.trainer.trainer_testkit import synthetic_image

    pixels = synthetic_image(size=(200, 300), objects=20, seed=5).pixels
    root = make_processing_root(
        tmp_path / "processing",
        archive=archive,
        images={"big.tif": pixels},
        config=analyze_config(thresholds=dict.fromkeys(CLASSES, 0.0)),
    )

    analyze.run(ProcessingPaths(root=root))

    mask = tifffile.imread(root / "output" / "masks" / "big.tif")
    analysed = AnalysedImage.model_validate_json((root / "output" / "images" / "big.json").read_text())
    assert mask.shape == (200, 300)
    assert (analysed.width, analysed.height) == (300, 200)
    assert mask[200 - 64 :, 300 - 64 :].any() and mask[:64, :64].any()


def test_a_semantic_model_writes_class_index_masks(tmp_path: Path) -> None:
    archive = pack_model(tmp_path / "model", model_type="semantic")
    root = make_processing_root(
        tmp_path / "processing",
        archive=archive,
        images=synthetic_images(1),
        config=analyze_config(model_type="semantic", thresholds=dict.fromkeys(CLASSES, 0.0)),
    )

    analyze.run(ProcessingPaths(root=root))

    stem = prediction_stem(sorted(synthetic_images(1))[0])
    mask = tifffile.imread(root / "output" / "masks" / f"{stem}.tif")
    analysed = AnalysedImage.model_validate_json((root / "output" / "images" / f"{stem}.json").read_text())
    assert analysed.objects
    assert set(np.unique(mask)) - {0} <= {1, 2}
    for item in analysed.objects:
        assert item.label == CLASSES.index(item.category) + 1


# --- Failures and stops -----------------------------------------------------------------------------


def _run_main(root: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv(PROCESSING_ROOT_VARIABLE, str(root))
    with pytest.raises(SystemExit) as exited:
        analyze.main()
    return int(exited.value.code or 0)


def test_a_corrupt_image_fails_the_job_with_one_sentence_naming_it(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_processing_root(
        tmp_path / "processing", archive=archive, images={}, config=analyze_config(image_count=2)
    )
    (root / "input" / "images" / "plate" / "broken.png").parent.mkdir(parents=True)
    (root / "input" / "images" / "plate" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")

    code = _run_main(root, monkeypatch)

    message = (tmp_path / "output" / "message").read_text()
    assert code == analyze.EXIT_FAILED
    assert message.startswith("Image 'plate/broken.png' could not be read: ")
    assert message.count("\n") == 1 and message.rstrip().endswith(".")
    assert not (root / "output" / "shards" / "algo-1" / "summary.json").exists()


def test_sigterm_stops_at_once_without_results_or_message(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_processing_root(
        tmp_path / "processing", archive=archive, images=synthetic_images(2), config=analyze_config()
    )
    real_analyse = analyze.analyse_image

    def stopped_during_the_first_image(*args: Any, **kwargs: Any) -> analyze.ImageResult:
        os.kill(os.getpid(), signal.SIGTERM)
        return real_analyse(*args, **kwargs)

    monkeypatch.setattr(analyze, "analyse_image", stopped_during_the_first_image)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = _run_main(root, monkeypatch)
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert code == analyze.EXIT_STOPPED
    assert not (tmp_path / "output" / "message").exists()
    assert not list((root / "output").glob("masks/*.tif"))
    assert (
        AnalysisProgress.model_validate_json(
            (root / "output" / "progress" / "algo-1.json").read_text()
        ).images_done
        == 0
    )


def test_a_bad_configuration_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "analyze.json"
    path.write_text(json.dumps(analyze_config(thresholds={"round": 0.5})))

    with pytest.raises(TrainerError, match=r"invalid at 'thresholds'|thresholds must name exactly"):
        read_config(path)
    with pytest.raises(TrainerError, match="is missing"):
        read_config(tmp_path / "absent.json")


# --- Contract and layout --------------------------------------------------------------------------------


def test_the_pinned_analyze_config_parses_on_the_trainer_side() -> None:
    config = read_config(FIXTURES / "analyze_config.json")

    assert config == AnalyzeConfig.model_validate_json((FIXTURES / "analyze_config.json").read_text())
    assert config.thresholds == {"nucleus": 0.5, "mitotic cell": 0.35}
    assert config.pixel_size == 0.325


def test_the_layout_follows_sagemaker_processing_and_the_local_root(tmp_path: Path) -> None:
    default = ProcessingPaths.from_environment(environ={})
    local = ProcessingPaths.from_environment(environ={PROCESSING_ROOT_VARIABLE: str(tmp_path / "processing")})

    assert default.images_input == Path("/opt/ml/processing/input/images")
    assert default.shards_output == Path("/opt/ml/processing/output/shards")
    assert default.resource_config == Path("/opt/ml/config/resourceconfig.json")
    assert default.message == Path("/opt/ml/output/message")
    assert local.config_file == tmp_path / "processing" / "input" / "config" / "analyze.json"
    assert local.resource_config == tmp_path / "config" / "resourceconfig.json"
    assert current_host(tmp_path / "absent.json") == "algo-1"
    (tmp_path / "rc.json").write_text(json.dumps({"current_host": "algo-3", "hosts": ["algo-1", "algo-3"]}))
    assert current_host(tmp_path / "rc.json") == "algo-3"


def test_a_host_given_no_images_writes_empty_shard_files(archive: Path, tmp_path: Path) -> None:
    """More instances than files under ShardedByS3Key leaves a host without images: it still reports."""
    root = make_processing_root(tmp_path / "processing", archive=archive, images={}, config=analyze_config())

    summary = analyze.run(ProcessingPaths(root=root))

    header, rows = _csv(_shard(root) / "objects.csv")
    assert (summary.images, summary.objects, summary.hosts) == (0, 0, ["algo-1"])
    assert _coco(root)["images"] == [] and rows == []
    assert header == object_columns(channels=1, pixel_size=None)
    assert (
        AnalysisProgress.model_validate_json(
            (root / "output" / "progress" / "algo-1.json").read_text()
        ).images_total
        == 0
    )


def test_a_model_of_other_classes_than_the_analysis_fails_with_a_sentence(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_processing_root(
        tmp_path / "processing",
        archive=archive,
        images=synthetic_images(1),
        config=analyze_config(classes=["nucleus"], thresholds={"nucleus": 0.5}),
    )

    code = _run_main(root, monkeypatch)

    message = (tmp_path / "output" / "message").read_text()
    assert code == analyze.EXIT_FAILED
    assert message.startswith("The model (instance, classes ['round', 'long']) is not the one the analysis")
