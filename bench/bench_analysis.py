"""Analysis throughput on this CPU: `analyze` end to end, from image files to written outputs.

A `tiny` model with random weights (seeded; 128-px tiles, the local stack's CPU recipe) is packed
into model.tar.gz and loaded once (timed apart); then `segpipe_trainer.analyze.run` analyses a folder
of synthetic 16-bit TIFFs (the trainer kit's ellipses) on one host: reading, normalising, the
sliding window, post-processing, thresholds, outlines, measurements and every output file
(shard CSVs and coco.json, per-image JSON and preview, masks, progress). Figures: megapixels per
second end to end (wall, and per CPU-second of this process: the honest figure when other work shares
the machine), and the share of it spent in the model (`inference_seconds`). Random weights make
a few large objects, so the post-processing share here is lower than a trained model's on a crowded
image; the last figure times the measurements alone on a crowded 1024 x 1024 label image (350
touching discs, bench_postprocess's scene) per megapixel, CPU time of this process.
Run: `python -m bench.bench_analysis [--images N] [--size PX]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bench.bench_postprocess import dense_scene
from segpipe_trainer.analyze import load_model, run
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.measure import measure_objects
from segpipe_trainer.processing_paths import ProcessingPaths
from tests.trainer.analysis_kit import analyze_config, make_processing_root, pack_model, synthetic_images

TILE = 128


def _measurement_ms_per_megapixel(repeats: int = 3) -> tuple[float, int]:
    scene = dense_scene()
    pixels = np.random.default_rng(0).integers(0, 4000, (1, *scene.labels.shape)).astype(np.uint16)
    measure_objects(scene.labels, pixels)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.process_time()
        measure_objects(scene.labels, pixels)
        times.append(time.process_time() - started)
    megapixels = scene.labels.size / 1e6
    return statistics.median(times) * 1000 / megapixels, int(scene.labels.max())


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=384, help="image side in pixels")
    args = parser.parse_args(list(argv))
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as folder:
        work = Path(folder)
        archive = pack_model(work, tile_size=TILE)
        images = synthetic_images(args.images, size=(args.size, args.size))
        root = make_processing_root(
            work / "job" / "processing",
            archive=archive,
            images=images,
            config=analyze_config(image_count=len(images), pixel_size=0.5),
        )
        paths = ProcessingPaths(root=root)
        runtime = Runtime()
        started = time.monotonic()
        loaded = load_model(paths.model_input, work_dir=work / "unpacked", runtime=runtime)
        load_seconds = time.monotonic() - started
        started, cpu_started = time.monotonic(), time.process_time()
        summary = run(paths, loaded=loaded)
        seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    measure_ms, measured_objects = _measurement_ms_per_megapixel()
    result = {
        "images": summary.images,
        "image_size": [args.size, args.size],
        "megapixels": round(summary.megapixels, 4),
        "tile_size": TILE,
        "objects": summary.objects,
        "torch_threads": torch.get_num_threads(),
        "model_load_s": round(load_seconds, 2),
        "analysis_s": round(seconds, 2),
        "megapixels_per_s": round(summary.megapixels / seconds, 4),
        "cpu_s": round(cpu_seconds, 2),
        "megapixels_per_cpu_s": round(summary.megapixels / cpu_seconds, 4),
        "inference_share": round(summary.inference_seconds / seconds, 3),
        "rest_ms_per_megapixel": round((seconds - summary.inference_seconds) * 1000 / summary.megapixels, 1),
        "measurements_cpu_ms_per_megapixel_crowded": round(measure_ms, 1),
        "measured_objects_crowded": measured_objects,
    }
    print(json.dumps(result))
    print(
        f"analyze, tiny (random weights), {summary.images} images of {args.size} x {args.size} "
        f"({summary.megapixels:.2f} MP), {TILE}-px tiles, {torch.get_num_threads()} torch threads: "
        f"{result['megapixels_per_s']} MP/s end to end ({seconds:.1f} s wall, {cpu_seconds:.1f} s CPU; "
        f"model load {load_seconds:.1f} s apart), "
        f"{result['inference_share']:.0%} in the model, "
        f"{result['rest_ms_per_megapixel']} ms/MP for the rest; "
        f"measurements alone {measure_ms:.0f} ms/MP CPU on a crowded image ({measured_objects} objects/MP)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
