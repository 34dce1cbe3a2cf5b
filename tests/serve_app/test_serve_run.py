"""``serve run serve_config.yaml`` (Ray's own CLI) deploys the application."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.helpers import free_port, get_json, wait_for_http

REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 180


def _default_sigint() -> None:
    """Give ``serve run`` the default SIGINT handling (Ctrl-C).

    A test run started in the background (``cmd &`` in a script) ignores SIGINT; the child would
    inherit that and never stop.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_serve_run_deploys_the_config(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["args"]["settings"] = {"storage_root": str(tmp_path / "storage"), "demo_tiny_model": True}
    app["args"]["tts"]["num_cpus"] = 0.5
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    ray_tmp = tempfile.mkdtemp(prefix="avs-ray-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}  # the log is complete if it hangs
    env.pop("RAY_ADDRESS", None)
    serve_cli = Path(sys.executable).with_name("serve")
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(serve_cli), "run", str(path)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=_default_sigint,
    )  # fmt: skip
    try:
        status, body = wait_for_http(
            f"http://127.0.0.1:{port}/health/engines", 240, alive=lambda: process.poll() is None
        )
        assert status == 200
        assert body["TTSDeployment"]["default_model"] == "tiny-xtts"
        assert get_json(f"http://127.0.0.1:{port}/profiles")[0] == 200
        process.send_signal(signal.SIGINT)
        # Serve stops every replica gracefully (up to graceful_shutdown_timeout_s each), then Ray.
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            tail = (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"serve run did not stop within {STOP_TIMEOUT_S} s of SIGINT; its log ends:\n{tail}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
