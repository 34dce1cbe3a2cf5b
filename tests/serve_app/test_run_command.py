"""The README run command starts the service on a fresh local Ray and answers /health."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import free_port, get_json, wait_for_http

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_command_serves_health_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="avs-ray-", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = {
        **os.environ,
        "AVS_DEMO_TINY_MODEL": "true",
        "AVS_STORAGE_ROOT": str(tmp_path / "storage"),
        "AVS_PORT": str(port),
        "RAY_TMPDIR": ray_tmp,
    }
    env.pop("RAY_ADDRESS", None)
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(REPO / "run.sh"), "serve"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status, body = wait_for_http(
            f"http://127.0.0.1:{port}/health/engines", 240, alive=lambda: process.poll() is None
        )
        assert status == 200
        model = body["TTSDeployment"]["model"]
        assert model["model_id"] == "tiny-xtts"
        assert model["untrained"] is True
        assert model["device"] == "cpu"
        assert model["sample_rate"] == 24000
        assert get_json(f"http://127.0.0.1:{port}/health") == (200, {"status": "ok"})
        assert (tmp_path / "storage" / "models" / "tiny-xtts" / "model.pth").is_file()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
        assert "stopping" in log_path.read_text(errors="replace")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_run_command_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    env = {**os.environ, "AVS_DEMO_TINY_MODEL": "true", "AVS_STORAGE_ROOT": str(tmp_path / "s"), "AVS_HOST": "0.0.0.0"}
    for name in ("AVS_API_KEYS", "AVS_ALLOW_UNAUTHENTICATED", "RAY_ADDRESS"):
        env.pop(name, None)
    done = subprocess.run(
        [str(REPO / "run.sh"), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refusing to serve on 0.0.0.0 without API keys" in done.stderr
    assert "AVS_ALLOW_UNAUTHENTICATED" in done.stderr
    assert not (tmp_path / "s").exists()  # nothing was started or written
