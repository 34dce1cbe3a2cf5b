"""Helpers shared by tests that start processes or servers."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    """GET ``url`` and return ``(status, parsed JSON body)``; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for_http(url: str, deadline_s: float, alive: Any = None) -> tuple[int, Any]:
    """Poll ``url`` until it answers 200 or the deadline passes.

    Args:
        url: the URL to GET.
        deadline_s: seconds to keep trying.
        alive: optional callable; when it returns False the wait stops early (process died).

    Returns:
        The last ``(status, body)``.

    Raises:
        TimeoutError: no 200 before the deadline.
    """
    end = time.monotonic() + deadline_s
    last: tuple[int, Any] = (0, None)
    while time.monotonic() < end:
        if alive is not None and not alive():
            raise RuntimeError(f"process ended before {url} answered")
        try:
            last = get_json(url, timeout=5)
            if last[0] == 200:
                return last
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer 200 within {deadline_s}s (last: {last})")
