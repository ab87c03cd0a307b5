"""Schema-driven fuzzing of the HTTP API: schemathesis against the local gateway, with its own
/openapi.json as the contract.

Given the embedded local stack (moto server, gateway, the real API function) on loopback ports, with
a completed version and a training one seeded through the real ingestion path, when schemathesis
generates requests from the document (positive and negative data; examples, coverage and fuzzing
phases; fixed seed, bounded examples), then no answer is a server error, every status is one the
route documents, and every body matches the schema documented for its status.

Path parameters are steered half of the time to the seeded project, versions and images, so the GET
routes answer with real data and not only 404s. Requests go to `127.0.0.1:PORT` (the Host requests
sends) with no Origin header: what the gateway accepts from a local client.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from segpipe_local.config import LocalConfig
from tests.helpers.seed import seed_completed_version, seed_unfinished_version
from tests.helpers.stack_process import local_config, local_stack_process
from tests.helpers.synthetic import SeedSpec

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.xdist_group("fuzz")]

SEED = 0
#: Hypothesis examples per operation in the fuzzing phase; the coverage phase adds its own
#: deterministic cases. About a minute on two shared cores; raise it for a deeper run.
MAX_EXAMPLES = int(os.environ.get("SEGPIPE_FUZZ_EXAMPLES", "30"))
PROJECT = "fuzz"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
    "response_headers_conformance",
)


class Seeded:
    """The seeded data the path parameters are steered to."""

    def __init__(self, config: LocalConfig) -> None:
        completed = seed_completed_version(
            config=config, spec=SeedSpec(project=PROJECT, images=6, objects=60, width=256, height=192)
        )
        training = seed_unfinished_version(config=config, project=PROJECT, status="training")
        failed = seed_unfinished_version(config=config, project=PROJECT, status="failed")
        self.versions = [completed.version, training, failed]
        self.stems = {
            split: [image["stem"] for image in _predictions(config, completed.version, split)["images"]]
            for split in ("train", "test")
        }


def _predictions(config: LocalConfig, version: int, split: str) -> Any:
    url = f"{config.api_url}/projects/{PROJECT}/models/{version}/predictions?split={split}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalConfig, Seeded]]:
    data_dir: Path = tmp_path_factory.mktemp("segpipe-fuzz")
    with local_stack_process(config=local_config(data_dir=data_dir)) as config:
        yield config, Seeded(config)


def _schema(config: LocalConfig, seeded: Seeded) -> Any:
    settings = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "request-timeout": 30,
        }
    )
    schema = schemathesis.openapi.from_url(f"{config.api_url}/openapi.json", config=settings, timeout=30)

    @schema.hook
    def flatmap_path_parameters(context: Any, path: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        """Half of the cases keep what was generated; the others name seeded data."""
        if not isinstance(path, dict) or "project" not in path:
            return st.just(path)
        steered: dict[str, st.SearchStrategy[Any]] = {"project": st.just(PROJECT)}
        if "version" in path:
            steered["version"] = st.sampled_from(seeded.versions)
        if "stem" in path:
            stems = seeded.stems.get(str(path.get("split")), []) or seeded.stems["test"]
            steered["stem"] = st.sampled_from(stems)
        same = {key: st.just(value) for key, value in path.items()}
        return st.one_of(st.just(path), st.fixed_dictionaries({**same, **steered}))

    return schema


@dataclass
class Run:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def record(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.NonFatalError | events.FatalError):
            self.errors.append(repr(event))
        if not isinstance(event, events.ScenarioFinished):
            return
        recorder = event.recorder
        self.cases += len(recorder.cases)
        for case_id, interaction in recorder.interactions.items():
            if interaction.response is not None:
                self.statuses[interaction.response.status_code] += 1
            for check in recorder.checks.get(case_id, []):
                if check.status is Status.ERROR:
                    self.errors.append(f"{event.label}: {check.name} errored")
                elif check.failure_info is not None:
                    self.failures.append(_describe(check.failure_info, check.name))


def _describe(info: Any, check: str) -> str:
    failure = info.failure
    return f"{check} [{failure.operation}] {failure.title}: {failure.message}\n    {info.code_sample}"


def test_the_api_answers_as_its_openapi_document_says(stack: tuple[LocalConfig, Seeded]) -> None:
    config, seeded = stack
    assert config.api_url.startswith("http://127.0.0.1:")  # loopback only; requests sends Host 127.0.0.1:PORT
    run = Run()
    started = time.monotonic()

    for event in from_schema(_schema(config, seeded)).execute():
        run.record(event)

    seconds = time.monotonic() - started
    summary = (
        f"schemathesis: {run.cases} generated cases in {seconds:.0f} s (seed {SEED}), "
        f"statuses {dict(sorted(run.statuses.items()))}"
    )
    print(summary)
    unique = sorted(set(run.failures))
    assert not run.errors, summary + "\n" + "\n".join(run.errors)
    assert not unique, f"{summary}\n{len(unique)} findings:\n" + "\n".join(unique)
    assert run.cases > 500, summary
    assert run.statuses[200] > 0 and run.statuses[404] > 0, summary
