"""bench/gpu_bench.py in its CPU smoke mode: every phase and variant measured, JSON written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bench import gpu_bench


def test_the_gpu_benchmark_runs_on_the_cpu_in_its_tiny_mode(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"

    results = gpu_bench.main(
        ["--device", "cpu", "--preset", "tiny", "--steps", "3", "--warmup", "0", "--json", str(out)]
    )

    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["device"] == "cpu" and results["precision"] == "fp32" and results["size"] == 64
    for phase in ("training", "inference"):
        rows = results["phases"][phase]["rows"]
        assert [row["variant"] for row in rows] == list(gpu_bench.CPU_VARIANTS)
        assert results["phases"][phase]["flops_per_image"] > 0
        for row in rows:
            assert row["images_per_s"] > 0 and row["ms_per_step"] > 0 and row["first_step_s"] > 0
            assert row["mfu_percent"] is None and row["peak_gib"] is None  # no peak or allocator on a CPU
    training, inference = (results["phases"][p]["flops_per_image"] for p in ("training", "inference"))
    assert 2 < training / inference < 4  # backward costs about twice the forward


def test_compiled_variants_go_through_the_logged_fallback_wrapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled_calls: list[int] = []

    def compiler(module: nn.Module, **options: Any) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            compiled_calls.append(1)
            return module(*args)

        return run

    monkeypatch.setattr(torch, "compile", compiler)
    argv = ["--device", "cpu", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--cache", str(tmp_path)]

    results = gpu_bench.main([*argv, "--variants", "all+auto-batch", "--phases", "inference"])

    assert [row["variant"] for row in results["phases"]["inference"]["rows"]] == ["all+auto-batch"]
    assert results["phases"]["inference"]["rows"][0]["batch"] == 2  # the probe is a no-op on a CPU
    assert len(compiled_calls) == 2  # the first step and the timed one


def test_unknown_variants_are_refused() -> None:
    with pytest.raises(SystemExit, match="unknown variants: fastest"):
        gpu_bench.main(["--device", "cpu", "--variants", "eager,fastest"])
