"""Async side of the inference worker: await a job with a deadline, or stream its events as they happen.

Job exceptions become HTTP errors here: ``ValueError`` (the pipeline's one-line input errors) -> 400,
:class:`~unif2ace.serving.worker.JobCancelled` -> 504, anything else -> 500 (logged with its traceback).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from unif2ace.serving.errors import APIError
from unif2ace.serving.worker import InferenceWorker, JobCancelled, ServerBusy

__all__ = ["Emit", "job_error", "run_job", "start_stream"]

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]
"""``emit(event)`` hands one event from the worker thread to the request's event loop."""


def busy_error(err: ServerBusy, worker: InferenceWorker) -> APIError:
    """503 "busy" with a ``Retry-After`` hint."""
    return APIError(
        503,
        f"server busy: {worker.max_queue} requests are already waiting for the model; retry in a few seconds",
        code="busy",
        headers={"Retry-After": "2"},
    )


def timeout_error(timeout: float) -> APIError:
    """504 for a request that ran out of time (its job is cancelled)."""
    return APIError(
        504,
        f"request timed out after {timeout:g} s (queue + inference) and was cancelled; retry later or ask for "
        "fewer steps / tokens",
        code="timeout",
    )


def job_error(err: BaseException, timeout: float) -> APIError:
    """The HTTP error for an exception raised by a job."""
    if isinstance(err, APIError):
        return err
    if isinstance(err, ValueError):
        text = str(err).strip().splitlines()
        return APIError(400, text[0] if text else "invalid request")
    if isinstance(err, JobCancelled):
        return timeout_error(timeout)
    log.error("inference failed", exc_info=(type(err), err, err.__traceback__))
    return APIError(500, f"internal error during inference ({type(err).__name__}); see the server log")


async def run_job(worker: InferenceWorker, fn: Callable[[threading.Event], Any], timeout: float) -> Any:
    """Run ``fn(cancel)`` on the worker and await its result for at most ``timeout`` seconds.

    Raises:
        APIError: 503 when the queue is full, 504 on timeout, 400 / 500 when the job raises.
    """
    cancel = threading.Event()
    try:
        future = worker.submit(lambda: fn(cancel), cancel)
    except ServerBusy as err:
        raise busy_error(err, worker) from None
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except asyncio.TimeoutError:
        cancel.set()
        raise timeout_error(timeout) from None
    except asyncio.CancelledError:  # the client went away
        cancel.set()
        raise
    except Exception as err:  # noqa: BLE001 - mapped to an HTTP status
        raise job_error(err, timeout) from None


def start_stream(
    worker: InferenceWorker, fn: Callable[[threading.Event, Emit], Any], timeout: float
) -> AsyncIterator[tuple[str, Any]]:
    """Queue ``fn(cancel, emit)`` now (so a full queue is a 503 before any bytes are sent) and return its events.

    The iterator yields ``("event", payload)`` for each ``emit(payload)``, then ``("done", result)`` or
    ``("error", APIError)``; on timeout it yields a 504 ``("error", ...)`` and cancels the job. Closing the
    iterator early (client gone) cancels the job too.

    Raises:
        APIError: 503 when the queue is full.
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancel = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, item)
        except RuntimeError:  # event loop closed: the server is shutting down
            cancel.set()

    def job() -> None:
        try:
            put(("done", fn(cancel, lambda payload: put(("event", payload)))))
        except BaseException as err:  # noqa: BLE001 - forwarded to the stream
            put(("error", job_error(err, timeout)))

    try:
        worker.submit(job, cancel)
    except ServerBusy as err:
        raise busy_error(err, worker) from None
    return _events(events, cancel, time.monotonic() + timeout, timeout)


async def _events(
    events: asyncio.Queue, cancel: threading.Event, deadline: float, timeout: float
) -> AsyncIterator[tuple[str, Any]]:
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(events.get(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                cancel.set()
                yield "error", timeout_error(timeout)
                return
            yield kind, payload
            if kind != "event":
                return
    finally:
        cancel.set()  # no effect once the job has finished; stops it if the client left early
