import threading
import time

import pytest

from unif2ace.serving.worker import InferenceWorker, JobCancelled, ServerBusy, check_cancelled


@pytest.fixture
def worker():
    w = InferenceWorker(max_queue=2)
    yield w
    w.close()


def test_jobs_run_in_order_on_one_thread(worker):
    seen = []
    futures = [worker.submit(lambda i=i: seen.append((i, threading.current_thread().name)) or i) for i in range(2)]
    assert [f.result(5) for f in futures] == [0, 1]
    assert [i for i, _ in seen] == [0, 1]
    assert {name for _, name in seen} == {"unif2ace-inference"}


def test_full_queue_is_busy_and_recovers(worker):
    gate = threading.Event()
    running = worker.submit(lambda: gate.wait(5))
    while not worker.busy:
        time.sleep(0.01)
    queued = [worker.submit(lambda i=i: i) for i in range(2)]  # fills max_queue=2
    with pytest.raises(ServerBusy, match="2 requests are already waiting"):
        worker.submit(lambda: None)
    gate.set()
    assert running.result(5) is True
    assert [f.result(5) for f in queued] == [0, 1]
    assert worker.submit(lambda: "again").result(5) == "again"


def test_cancelled_waiting_job_is_skipped(worker):
    gate, ran = threading.Event(), []
    worker.submit(lambda: gate.wait(5))
    while not worker.busy:
        time.sleep(0.01)
    cancel = threading.Event()
    skipped = worker.submit(lambda: ran.append("no"), cancel)
    cancel.set()
    gate.set()
    assert worker.submit(lambda: "next").result(5) == "next"
    assert ran == [] and skipped.cancelled()


def test_exceptions_reach_the_future(worker):
    def boom():
        raise ValueError("bad prompt")

    with pytest.raises(ValueError, match="bad prompt"):
        worker.submit(boom).result(5)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled):
        check_cancelled(cancel)


def test_close_cancels_waiting_jobs():
    w = InferenceWorker(max_queue=4)
    gate = threading.Event()
    w.submit(lambda: gate.wait(5))
    while not w.busy:
        time.sleep(0.01)
    waiting = w.submit(lambda: 1)
    threading.Timer(0.2, gate.set).start()
    w.close()
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        w.submit(lambda: 1)
