"""The OpenAPI document describes the API exactly: schemathesis, every check on, against the real service.

Schemathesis (pinned test dependency) reads ``/openapi.json`` of a real Serve deployment with the tiny model
and sends schema-generated requests (valid and invalid ones) to every operation, with every check on:
no 5xx, every status code and content type documented, schema-valid requests accepted, invalid ones
refused, ``Allow`` on 405, auth enforced. The run is bounded (fixed seed, a few examples per operation, a
time limit) and must end with zero failures. Exclusions are in ``schemathesis.toml`` beside this file, each
with its reason.

It runs on an application of its own (route prefix ``/fuzz``, private storage), so the requests it makes
(jobs, voices) never touch the state other tests rely on, and deleting the application ends its work.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for_http
from tests.serve_app.conftest import API_KEY, app_args

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def fuzz_url(service, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A second application of the same service, mounted at ``/fuzz`` with its own storage."""
    from ray import serve

    from serve_app.app import build_app

    storage = tmp_path_factory.mktemp("fuzz") / "storage"
    (storage / "models").mkdir(parents=True)
    shutil.copytree(tiny_model_dir, storage / "models" / "tiny-xtts")
    args = app_args(storage)
    args["tts"]["max_queued_requests"] = 64  # the fuzzer sends one request at a time; no 503 from a small queue
    serve.run(build_app(args), name="fuzz", route_prefix="/fuzz")
    url = f"{service.url}/fuzz"
    wait_for_http(f"{url}/health", 60)
    yield url
    serve.delete("fuzz")


def test_schemathesis_finds_no_failure(fuzz_url: str, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{fuzz_url}/openapi.json",
        "--max-time",
        "150",
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    summary = done.stdout[-6000:]
    artifacts = Path("test-artifacts")
    artifacts.mkdir(exist_ok=True)
    (artifacts / "schemathesis.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, summary + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated", summary)
    assert generated is not None and int(generated[1]) >= 200, summary  # it really sent requests
