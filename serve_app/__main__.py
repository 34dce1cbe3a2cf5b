"""The run command: start (or join) Ray, deploy the application, serve until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from voice_core.errors import VoiceError

log = logging.getLogger("serve_app")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, deploy, and block until SIGINT/SIGTERM; then shut Serve and Ray down."""
    parser = argparse.ArgumentParser(prog="python -m serve_app", description=__doc__)
    parser.add_argument("--config", type=Path, help="a serve_config.yaml whose first application's args to use")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _serve(options.config)
    except VoiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _serve(config: Path | None) -> int:
    import ray
    import yaml
    from ray import serve

    from serve_app.app import build_app
    from serve_app.boundary import check_exposure
    from serve_app.config import AppArgs
    from voice_core.settings import Settings

    args: dict = {}
    if config is not None:
        args = yaml.safe_load(config.read_text())["applications"][0].get("args") or {}
    parsed = AppArgs.model_validate(args)
    settings = Settings.load(**parsed.settings)
    check_exposure(settings, settings.host)  # before Ray starts: an open public address is refused at once
    stop = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    ray.init(address=settings.ray_address, include_dashboard=False if settings.ray_address is None else None)
    # Installed after ray.init, which sets handlers of its own that would end the process abruptly.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_app(parsed), name="voice", route_prefix="/")
        log.info("serving on http://%s:%d/ (Ctrl-C to stop)", settings.host, settings.port)
        while not stop["requested"]:
            time.sleep(0.5)
        log.info("stopping")
        serve.shutdown()
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
