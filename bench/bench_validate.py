"""Validation and split of a large dataset, against the time pycocotools takes merely to load it.

Generates (once, then reused) a COCO dataset of 20,000 images (1024², PNG, in folders per slide,
grouped by slide, 3% in progress) and 1,000,000 polygon annotations (16 to 30 vertices, two
decimals, with bbox and area as annotation tools export them; three classes, one not requested;
0.1% broken). Then, each in a fresh subprocess so neither warms the other:

  (a) `validate_request` + `render_manifests` through a `FilesystemDatasetStore`, as the submit
      Lambda runs them (reading annotations.json, listing the folder, sampling image headers),
      the scan on as many processes as there are CPUs (at most `workers.MAX_WORKERS`);
  (a1) the same on one process;
  (b) `pycocotools.coco.COCO(path)`, which only loads the file and indexes it.

Each is run `--repeat` times, alternating; the table shows the best wall time (the machine is
shared, so the minimum is the least disturbed run), CPU time of that run (the workers' included),
and peak memory (`ru_maxrss` of the child process: everything it held at its peak, interpreter
and imports included; for (a), plus each worker's peak, as if all peaked at once). The last
lines compare (a) with the goal (`GOAL_RATIO`, `GOAL_PEAK_MIB`) and give the machine's load
averages before and after, since the wall times depend on them.
Run: `python -m bench.bench_validate [--images N] [--annotations N] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
CLASSES = ["nucleus", "mitosis", "debris"]
IMAGE_SIZE = 1024
IMAGES_PER_SLIDE = 10
CHUNK = 20_000
#: The goal for (a): at most this share of pycocotools' load time, and this peak memory.
GOAL_RATIO = 0.5
GOAL_PEAK_MIB = 2048
#: How often the parent samples a child's memory (all its processes, PSS).
PSS_SAMPLE_S = 0.25


# --- Dataset generation ------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of a flat image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + bytes([30]) * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _templates(rng: random.Random) -> list[list[tuple[float, float]]]:
    """Unit star shapes with 16 to 30 vertices, jittered like hand-drawn outlines."""
    shapes = []
    for _ in range(512):
        vertices = rng.randint(16, 30)
        shape = []
        for index in range(vertices):
            angle = 2 * math.pi * index / vertices
            reach = rng.uniform(0.8, 1.2)
            shape.append((reach * math.cos(angle), reach * math.sin(angle)))
        shapes.append(shape)
    return shapes


def _annotation(
    annotation_id: int,
    image_id: int,
    category: int,
    *,
    rng: random.Random,
    shapes: list[list[tuple[float, float]]],
) -> dict[str, Any]:
    radius = rng.uniform(6, 20)
    centre_x = rng.uniform(25, IMAGE_SIZE - 25)
    centre_y = rng.uniform(25, IMAGE_SIZE - 25)
    ring: list[float] = []
    for unit_x, unit_y in rng.choice(shapes):
        ring += (round(centre_x + radius * unit_x, 2), round(centre_y + radius * unit_y, 2))
    xs, ys = ring[0::2], ring[1::2]
    area = (
        abs(
            sum(x * y for x, y in zip(xs, ys[1:] + ys[:1], strict=True))
            - sum(y * x for y, x in zip(ys, xs[1:] + xs[:1], strict=True))
        )
        / 2
    )
    box = [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
    if annotation_id % 1000 == 0:  # 0.1% broken: a ring of two points
        ring = ring[:4]
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category,
        "segmentation": [ring],
        "area": round(area, 2),
        "bbox": box,
        "iscrowd": 0,
    }


def generate(folder: Path, *, images: int, annotations: int, seed: int = 0) -> Path:
    """Write annotations.json and the image files into `folder` (skipped when already there)."""
    import pydantic_core

    stamp = folder / "generated.json"
    wanted = {"images": images, "annotations": annotations, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    shapes = _templates(rng)
    records = [
        {
            "id": index + 1,
            "file_name": f"slide_{index // IMAGES_PER_SLIDE:05d}/tile_{index % IMAGES_PER_SLIDE:02d}.png",
            "width": IMAGE_SIZE,
            "height": IMAGE_SIZE,
            "status": "in_progress" if rng.random() < 0.03 else "completed",
            "group": f"slide-{index // IMAGES_PER_SLIDE:05d}",
        }
        for index in range(images)
    ]
    _write_images(folder, [str(record["file_name"]) for record in records])
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(CLASSES)]
    with (folder / "annotations.json").open("wb") as handle:
        handle.write(b'{"info":{"description":"segpipe benchmark"},"images":')
        handle.write(pydantic_core.to_json(records))
        handle.write(b',"categories":' + pydantic_core.to_json(categories) + b',"annotations":[')
        for start in range(0, annotations, CHUNK):
            chunk = [
                _annotation(number + 1, number % images + 1, _category(rng), rng=rng, shapes=shapes)
                for number in range(start, min(start + CHUNK, annotations))
            ]
            handle.write((b"," if start else b"") + pydantic_core.to_json(chunk)[1:-1])
        handle.write(b"]}")
    stamp.write_text(json.dumps(wanted))
    return folder


def _category(rng: random.Random) -> int:
    draw = rng.random()
    return 1 if draw < 0.8 else 2 if draw < 0.95 else 3


def _write_images(folder: Path, names: list[str]) -> None:
    """One real PNG, hard-linked under every image name (headers parse; the disk stays small)."""
    template = folder / "template.png"
    template.write_bytes(_png(IMAGE_SIZE, IMAGE_SIZE))
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            try:
                os.link(template, path)
            except OSError:
                path.write_bytes(template.read_bytes())
    template.unlink()


# --- Measurements (each runs in a fresh subprocess) --------------------------------------------


def _measure_validate(folder: Path, *, alone: bool = False) -> dict[str, Any]:
    from segpipe.dal.local_fs import FilesystemDatasetStore
    from segpipe.logic.split import render_manifests
    from segpipe.logic.validate import TrainingDefaults, validate_request, workers
    from segpipe.models.common import Preset
    from segpipe.models.request import TrainingRequest

    request = TrainingRequest.model_validate(
        {
            "label": "bench",
            "dataset": "bench",
            "model_type": "instance",
            "classes": ["nucleus", "mitosis"],
            "test_set": {"strategy": "fraction", "fraction": 0.2, "seed": 0},
        }
    )
    store = FilesystemDatasetStore.single(folder)
    defaults = TrainingDefaults(preset=Preset.SAM_VIT_BASE, epochs=50, tile_size=512)
    if alone:
        workers.MAX_WORKERS = 1
    processes = workers.available_workers()
    wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    validation = validate_request(request, project="bench", store=store, defaults=defaults)
    validated = time.perf_counter() - wall
    if validation.plan is None:
        raise SystemExit(f"validation failed: {[issue.code for issue in validation.report.errors]}")
    manifests = render_manifests(validation.plan, project="bench", version=1)
    details = validation.report.details
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if processes > 1 else 0.0
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu + _children_cpu() - children,
        "validate_s": validated,
        "processes": processes,
        # Every process at its own peak at once, pages shared with the parent counted again in each
        # worker: an upper bound of what the function holds (Lambda's limit counts all processes).
        "peak_mib": own + (processes - 1) * worker,
        "own_peak_mib": own,
        "worker_peak_mib": worker,
        "included_annotations": details.included_annotations,
        "train_images": details.train_images,
        "test_images": details.test_images,
        "manifest_mib": sum(len(body) for body in manifests.values()) / 2**20,
        "warnings": [issue.code for issue in validation.report.warnings],
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure_pycocotools(folder: Path) -> dict[str, Any]:
    import contextlib
    import io

    from pycocotools.coco import COCO

    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(folder / "annotations.json"))
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "annotations": len(coco.anns),
    }


def _child(kind: str, folder: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.bench_validate", "--child", kind, "--folder", str(folder)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    ) as child:
        peak = 0
        while child.poll() is None:
            peak = max(peak, _tree_pss_kib(child.pid))
            time.sleep(PSS_SAMPLE_S)
        stdout, stderr = child.communicate()
    if child.returncode:
        raise SystemExit(f"{kind} run failed:\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["pss_mib"] = peak / 1024
    return result


def _tree_pss_kib(root: int) -> int:
    """Proportional set size of `root` and its descendants: each shared page counted once in all,
    as the memory limit of a Lambda function's sandbox counts it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        with contextlib.suppress(OSError, StopIteration, ValueError):
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            total += int(next(line for line in lines if line.startswith("Pss:")).split()[1])
    return total


#: What each child process measures: (a) as the function runs it, (a) on one process, (b).
KINDS = {
    "validate": _measure_validate,
    "validate_alone": lambda folder: _measure_validate(folder, alone=True),
    "pycocotools": _measure_pycocotools,
}


# --- Entry point -------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement, alternating")
    parser.add_argument("--folder", type=Path, help="dataset folder (default: bench/out/validate-IxA)")
    parser.add_argument("--child", choices=list(KINDS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; `argv` None (as `python -m bench` calls it) means the defaults."""
    args = _arguments(argv or [])
    if args.child:
        print(json.dumps(KINDS[args.child](args.folder)))
        return
    folder = args.folder or OUT / f"validate-{args.images}x{args.annotations}"
    started = time.perf_counter()
    generate(folder, images=args.images, annotations=args.annotations)
    size = (folder / "annotations.json").stat().st_size / 2**20
    print(f"dataset: {args.images:,} images, {args.annotations:,} annotations, {size:,.0f} MiB ({folder})")
    print(f"generated or reused in {time.perf_counter() - started:.1f} s")
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        for kind in runs:
            runs[kind].append(_child(kind, folder))
    _print_table(runs)
    _print_goal(runs, load=(load_before, os.getloadavg()))


def _print_table(runs: dict[str, list[dict[str, Any]]]) -> None:
    ours, alone, theirs = (min(runs[kind], key=lambda run: run["wall_s"]) for kind in KINDS)
    print()
    print(f"{'measurement':<52} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9} {'PSS MiB':>8}")
    rows = [
        (f"(a) validate_request + render_manifests, {ours['processes']} processes", ours),
        ("    of which validate_request", None),
        ("(a1) the same on one process", alone),
        ("(b) pycocotools COCO(path), load only", theirs),
    ]
    for label, run in rows:
        if run is None:
            print(f"{label:<52} {ours['validate_s']:>8.2f}")
        else:
            print(
                f"{label:<52} {run['wall_s']:>8.2f} {run['cpu_s']:>8.2f} {run['peak_mib']:>9.0f} "
                f"{run['pss_mib']:>8.0f}"
            )
    for label, run in (("ratio (a) / (b)", ours), ("ratio (a1) / (b)", alone)):
        print(f"{label:<52} {run['wall_s'] / theirs['wall_s']:>8.2f} {run['cpu_s'] / theirs['cpu_s']:>8.2f}")
    print()
    if ours["processes"] > 1:
        print(
            f"(a)'s peak: this process {ours['own_peak_mib']:.0f} MiB + {ours['processes'] - 1} x a worker's "
            f"{ours['worker_peak_mib']:.0f} MiB (an upper bound: pages shared with the parent count twice)"
        )
    print(
        f"PSS MiB: the most the child and its workers held together, shared pages counted once "
        f"(/proc/PID/smaps_rollup, sampled every {PSS_SAMPLE_S * 1000:.0f} ms)"
    )
    print(
        "all wall times, s: "
        + ", ".join(f"{kind} {[round(run['wall_s'], 2) for run in runs[kind]]}" for kind in KINDS)
    )
    print(
        f"validated: {ours['included_annotations']:,} included annotations, {ours['train_images']:,} train "
        "and "
        f"{ours['test_images']:,} test images, manifests {ours['manifest_mib']:,.0f} MiB; warnings "
        f"{ours['warnings']}"
    )
    print(
        "each measurement in a fresh subprocess, imports excluded; best of the runs shown (shared machine); "
        "CPU time includes the workers'"
    )


def _print_goal(
    runs: dict[str, list[dict[str, Any]]], *, load: tuple[tuple[float, float, float], ...]
) -> None:
    ours = min(runs["validate"], key=lambda run: run["wall_s"])
    theirs = min(runs["pycocotools"], key=lambda run: run["wall_s"])
    ratio = ours["wall_s"] / theirs["wall_s"]
    met = ratio <= GOAL_RATIO and ours["pss_mib"] <= GOAL_PEAK_MIB
    print(
        f"goal: ratio (a) / (b) <= {GOAL_RATIO} and peak (PSS, all processes) <= {GOAL_PEAK_MIB} MiB: "
        f"{'met' if met else 'NOT met'} (wall ratio {ratio:.2f}, CPU ratio "
        f"{ours['cpu_s'] / theirs['cpu_s']:.2f}, peak {ours['pss_mib']:.0f} MiB PSS, "
        f"{ours['peak_mib']:.0f} MiB by ru_maxrss)"
    )
    before, after = (", ".join(f"{value:.1f}" for value in averages) for averages in load)
    print(f"load averages (1, 5, 15 min) on {os.cpu_count()} CPUs: before {before}; after {after}")


if __name__ == "__main__":
    main(sys.argv[1:])
