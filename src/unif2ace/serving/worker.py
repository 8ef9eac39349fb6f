"""One inference thread with a bounded queue: the model is never called from two threads at once.

HTTP handlers :meth:`InferenceWorker.submit` a job and await its future. A full queue raises :class:`ServerBusy`
at once (the server answers 503 "busy" instead of piling up work). A job carries a :class:`threading.Event`;
setting it (timeout, client gone) skips the job if it is still queued, and the pipeline callbacks of a running
job call :func:`check_cancelled`, which stops sampling / decoding at the next step.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

__all__ = ["InferenceWorker", "JobCancelled", "ServerBusy", "check_cancelled"]

log = logging.getLogger(__name__)


class ServerBusy(Exception):
    """The queue is full."""


class JobCancelled(Exception):
    """Raised inside a running job whose request timed out or went away."""


def check_cancelled(cancel: threading.Event) -> None:
    """Raise :class:`JobCancelled` if ``cancel`` is set (called from pipeline callbacks)."""
    if cancel.is_set():
        raise JobCancelled("request cancelled")


@dataclass
class _Job:
    fn: Callable[[], Any]
    future: Future
    cancel: threading.Event


class InferenceWorker:
    """Runs submitted callables one at a time, in order, on a single daemon thread.

    Args:
        max_queue: jobs that may wait while one runs; one more is refused with :class:`ServerBusy`.
    """

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._running = threading.Event()
        self.completed = 0
        self._thread = threading.Thread(target=self._loop, name="unif2ace-inference", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Jobs in the queue (not counting the running one)."""
        return self._jobs.qsize()

    @property
    def busy(self) -> bool:
        """Whether a job is running now."""
        return self._running.is_set()

    def submit(self, fn: Callable[[], Any], cancel: threading.Event | None = None) -> Future:
        """Queue ``fn``; its result (or exception) arrives in the returned future.

        Raises:
            ServerBusy: ``max_queue`` jobs are already waiting.
            RuntimeError: the worker was closed.
        """
        if not self._thread.is_alive():
            raise RuntimeError("inference worker is closed")
        job = _Job(fn, Future(), cancel or threading.Event())
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise ServerBusy(f"{self.max_queue} requests are already waiting") from None
        return job.future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the running job, drop the waiting ones (their futures are cancelled) and stop the thread."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.cancel()
        self._jobs.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.cancel.is_set():
                job.future.cancel()  # timed out or abandoned while waiting
            if not job.future.set_running_or_notify_cancel():
                continue
            self._running.set()
            try:
                job.future.set_result(job.fn())
            except BaseException as err:  # noqa: BLE001 - handed to the awaiting request
                job.future.set_exception(err)
            finally:
                self._running.clear()
                self.completed += 1
