"""Decoding untrusted audio in child processes, so a decoder crash cannot take the caller down.

FFmpeg and PyAV are C code fed with bytes from strangers; a bug there is a segfault of the whole
process. :func:`decode_untrusted` runs :func:`voice_core.decode.decode_audio` in one of a few
long-lived child interpreters instead. A child that dies (segfault, abort, OOM kill) or runs past
its time limit fails only the call it was serving, with an :class:`AudioDecodeError`; it is
killed and a fresh one takes its place on the next call.

The children are started with ``subprocess`` as fresh interpreters (never forked: the callers run
threads), lazily, and stay idle between calls, blocked on a socket. A child exits by itself when
its parent goes away. Tasks and results travel as pickles over a socket pair.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from voice_core.decode import DEFAULT_MAX_CHANNELS, decode_audio
from voice_core.errors import AudioDecodeError, VoiceError

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
DEFAULT_TIMEOUT_S = 30.0

decode_function: Callable[..., np.ndarray] = decode_audio
"""What :func:`decode_untrusted` runs in the child. Tests point it at a module-level function that
crashes or hangs; it travels to the child by reference (module and name), so it must be importable."""

# The child's first message is the parent's sys.path, so it imports the same code as the parent.
_BOOTSTRAP = (
    "import sys\n"
    "from multiprocessing.connection import Connection\n"
    "conn = Connection(int(sys.argv[1]))\n"
    "sys.path[:] = conn.recv()\n"
    "from voice_core.isolated import serve\n"
    "serve(conn)\n"
)


class _Worker:
    """One child interpreter and the parent's end of its socket."""

    def __init__(self) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(child_end.fileno())],
                pass_fds=[child_end.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        self.conn = Connection(parent_end.detach())
        self.conn.send(sys.path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> int | None:
        """Kill the child (if still running), reap it and return its exit status."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            status = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a process stuck in the kernel; the OS reaps it later
            status = None
        self.conn.close()
        return status


def _describe_exit(status: int | None) -> str:
    if status is not None and status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


class DecoderPool:
    """A few child processes that run functions on untrusted input, one call per child at a time.

    Children start on first use (or :meth:`warm_up`) and are reused. A child that crashes or
    overruns its time limit is killed; only its own call fails, and the next call starts a new one.

    Args:
        workers: most children (and so most calls running at once; further calls queue).

    """

    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        """Make an empty pool; nothing starts until the first call."""
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, got {workers!r}")
        self.workers = workers
        self._idle: list[_Worker] = []
        self._running = 0  # children started and not yet killed, idle or busy
        self._changed = threading.Condition()
        self._threads: ThreadPoolExecutor | None = None
        self._closed = False

    def _acquire(self) -> _Worker:
        with self._changed:
            while True:
                if self._closed:
                    raise RuntimeError("the decoder pool is closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    log.warning("idle decoder process %d had exited (%s)", worker.pid, _describe_exit(worker.kill()))
                    self._running -= 1
                if self._running < self.workers:
                    self._running += 1
                    break
                self._changed.wait()
        try:
            return _Worker()
        except BaseException:
            self._discard(None)
            raise

    def _release(self, worker: _Worker) -> None:
        with self._changed:
            if self._closed:
                worker.kill()
                return
            self._idle.append(worker)
            self._changed.notify()

    def _discard(self, worker: _Worker | None) -> int | None:
        status = worker.kill() if worker is not None else None
        with self._changed:
            self._running -= 1
            self._changed.notify()
        return status

    def warm_up(self) -> None:
        """Start every child now (they import the decoder while the caller goes on)."""
        started = []
        with self._changed:
            missing = 0 if self._closed else self.workers - self._running
            self._running += missing
        for _ in range(missing):
            try:
                started.append(_Worker())
            except BaseException:
                self._discard(None)
                raise
        for worker in started:
            self._release(worker)

    def run(self, function: Callable[..., Any], *args: Any, timeout_s: float, **kwargs: Any) -> Any:
        """Call ``function(*args, **kwargs)`` in a child and return its result (blocking).

        Args:
            function: a module-level function (it is sent by reference); its arguments and result
                must pickle.
            *args: positional arguments.
            timeout_s: longest time the child may take, in seconds.
            **kwargs: keyword arguments.

        Returns:
            The function's result.

        Raises:
            AudioDecodeError: the child died during the call, or took longer than ``timeout_s``.
            Exception: whatever the function raised, re-raised here.

        """
        task = (function, args, kwargs)
        worker = self._acquire()
        try:
            try:
                worker.conn.send(task)
            except OSError:  # the idle child died after it was checked, not because of this input
                self._discard(worker)
                worker = None
                worker = self._acquire()
                worker.conn.send(task)
            if not worker.conn.poll(timeout_s):
                self._discard(worker)
                worker = None
                log.warning("decoder process ran past %g s and was killed", timeout_s)
                raise AudioDecodeError(
                    f"decoding took longer than {timeout_s:g} s and was stopped; the file is damaged or "
                    "unusually hard to decode. Send an undamaged, shorter audio file."
                )
            outcome, value = worker.conn.recv()
        except (EOFError, OSError) as exc:
            status = self._discard(worker) if worker is not None else None
            worker = None
            how = _describe_exit(status)
            log.warning("decoder process crashed (%s): %s", how, exc)
            raise AudioDecodeError(
                f"the decoder crashed on this file ({how}); it is damaged or made to break decoders. "
                "Send an undamaged wav, flac, mp3, ogg or m4a file."
            ) from None
        except BaseException:
            if worker is not None:  # interrupted mid-call: the child's state is unknown
                self._discard(worker)
                worker = None
            raise
        finally:
            if worker is not None:
                self._release(worker)
        if outcome == "error":
            if isinstance(value, MemoryError):
                raise AudioDecodeError("decoding this file ran out of memory. Send a shorter or smaller audio file.")
            raise value
        return value

    async def run_async(self, function: Callable[..., Any], *args: Any, timeout_s: float, **kwargs: Any) -> Any:
        """:meth:`run` from a coroutine: the event loop stays free while the child works.

        Calls beyond the pool's size wait in a queue without holding a thread.
        """
        with self._changed:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="avs-decode")
            threads = self._threads

        def call() -> Any:
            return self.run(function, *args, timeout_s=timeout_s, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(threads, call)

    def pids(self) -> list[int]:
        """Process ids of the idle children (for tests and diagnostics)."""
        with self._changed:
            return [worker.pid for worker in self._idle]

    def close(self) -> None:
        """Kill every idle child; busy ones are killed when their call ends. Later calls fail."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._running -= len(idle)
            threads, self._threads = self._threads, None
            self._changed.notify_all()
        for worker in idle:
            worker.kill()
        if threads is not None:
            threads.shutdown(wait=False)


_pool: DecoderPool | None = None
_pool_lock = threading.Lock()


def default_pool() -> DecoderPool:
    """The process's shared pool of :data:`DEFAULT_WORKERS` children, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DecoderPool(DEFAULT_WORKERS)
        return _pool


def warm_up_decoders() -> None:
    """Start the shared pool's children now, so the first upload does not wait for them."""
    default_pool().warm_up()


async def decode_untrusted(
    data: bytes,
    sample_rate: int,
    *,
    max_seconds: float | None = None,
    max_channels: int = DEFAULT_MAX_CHANNELS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> np.ndarray:
    """Decode uploaded audio with :func:`voice_core.decode.decode_audio` in a child process.

    Args:
        data: the upload's bytes.
        sample_rate: rate of the returned samples in Hz.
        max_seconds: longest accepted audio (see ``decode_audio``).
        max_channels: most accepted channels (see ``decode_audio``).
        timeout_s: longest time the decoding may take, in seconds.

    Returns:
        Mono ``float32`` samples at ``sample_rate``.

    Raises:
        AudioDecodeError: the audio is not accepted (see ``decode_audio``), or the decoder
            crashed on it or ran out of time.
        InvalidInputError: a bad ``sample_rate``, ``max_seconds`` or ``max_channels``.

    """
    return await default_pool().run_async(
        decode_function,
        bytes(data),
        sample_rate,
        max_seconds=max_seconds,
        max_channels=max_channels,
        timeout_s=timeout_s,
    )


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, with the child's traceback attached when it is a bug."""
    if not isinstance(exc, VoiceError):
        exc.add_note("in the decoder process:\n" + "".join(traceback.format_exception(exc)))
    try:
        pickle.dumps(exc)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def serve(conn: Connection) -> None:
    """The child's loop: run each task received on ``conn`` and send back its outcome.

    Returns when the parent closes its end (or dies).
    """
    import resource

    # A decoder crash must not leave a core file per hostile upload.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    import av  # noqa: F401  (imported now so the first task does not wait for it)

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        except Exception as exc:  # the task's function could not be unpickled here
            conn.send(("error", _portable(exc)))
            continue
        function, args, kwargs = task
        try:
            reply = ("ok", function(*args, **kwargs))
        except Exception as exc:
            reply = ("error", _portable(exc))
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # raised before a byte is written
            conn.send(("error", RuntimeError(f"the result could not be sent back: {exc}")))
