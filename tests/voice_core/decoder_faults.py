"""Stand-ins for the decoder that misbehave; the isolated-decoding tests run them in its children.

They live in an importable module (not the test file) because a child receives the function by
reference and imports it.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any


def segfault(*_args: Any, **_kwargs: Any) -> None:
    """Read address 0: SIGSEGV, as a decoder bug would."""
    ctypes.string_at(0)


def abort(*_args: Any, **_kwargs: Any) -> None:
    """Abort the process (SIGABRT), as a failed C assertion would."""
    os.abort()


def hang(*_args: Any, **_kwargs: Any) -> None:
    """Never return, as a decoder stuck in a loop would."""
    time.sleep(3600)


def pid(*_args: Any, **_kwargs: Any) -> int:
    """The process id of the process it runs in."""
    return os.getpid()
