"""The client's futures without a cluster: the light condition they wait on behaves like
``threading.Condition`` for everything ``concurrent.futures`` does with it."""

from __future__ import annotations

import concurrent.futures
import gc
import threading
import time

import pytest
from oxipp.client.futures import MessageFuture, PumpingFuture, _FutureCondition


def resolve_later(future, value, delay=0.05):
    t = threading.Timer(delay, future.set_result, (value,))
    t.start()
    return t


def test_result_waits_for_another_thread_and_times_out_when_nobody_resolves():
    f = MessageFuture("a")
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.05)
    resolve_later(f, 42)
    assert f.result(timeout=10) == 42
    assert f.exception(timeout=0) is None


def test_exception_and_cancel_wake_waiters():
    f = MessageFuture("b")
    threading.Timer(0.05, f.set_exception, (ValueError("boom"),)).start()
    assert isinstance(f.exception(timeout=10), ValueError)
    g = PumpingFuture()
    threading.Timer(0.05, g.cancel).start()
    with pytest.raises(concurrent.futures.CancelledError):
        g.result(timeout=10)


def test_every_waiting_thread_wakes():
    f = MessageFuture("c")
    got = []
    threads = [threading.Thread(target=lambda: got.append(f.result(timeout=10))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    f.set_result("x")
    for t in threads:
        t.join(10)
    assert got == ["x"] * 8


def test_concurrent_futures_wait_and_as_completed():
    fs = [MessageFuture(str(i)) for i in range(5)]
    for i, f in enumerate(fs):
        resolve_later(f, i, delay=0.01 * (i + 1))
    done, pending = concurrent.futures.wait(fs, timeout=10)
    assert not pending and {f.result() for f in done} == set(range(5))
    more = [MessageFuture(str(i)) for i in range(3)]
    for i, f in enumerate(more):
        resolve_later(f, i)
    assert sorted(f.result() for f in concurrent.futures.as_completed(more, timeout=10)) == [
        0,
        1,
        2,
    ]
    first = [MessageFuture("slow"), MessageFuture("fast")]
    resolve_later(first[1], "fast", delay=0.01)
    done, pending = concurrent.futures.wait(
        first, timeout=10, return_when=concurrent.futures.FIRST_COMPLETED
    )
    assert [f.result() for f in done] == ["fast"] and pending == {first[0]}


def test_condition_wait_timeout_notify_and_ownership():
    c = _FutureCondition()
    with pytest.raises(RuntimeError):
        c.wait(0.01)
    with pytest.raises(RuntimeError):
        c.notify_all()
    with c:
        assert c.wait(0.01) is False
        assert c._sleepers == []  # the timed-out waiter is gone
        with c:  # reentrant, like threading.Condition's default RLock
            pass
    woke = []

    def waiter():
        with c:
            woke.append(c.wait(10))

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    while True:
        with c:
            if c._sleepers and len(c._sleepers) == 3:
                c.notify()
                break
        time.sleep(0.01)
    time.sleep(0.05)
    with c:
        c.notify_all()
    for t in threads:
        t.join(10)
    assert woke == [True, True, True]


def test_callbacks_run_once_and_are_dropped():
    f = MessageFuture("d")
    calls = []
    f.add_done_callback(calls.append)
    f.set_result(1)
    f.add_done_callback(calls.append)  # already done: runs at once
    assert calls == [f, f]
    assert f._done_callbacks == []


def test_a_future_is_a_few_tracked_objects():
    """What makes the condition light: a MessageFuture (with its output future) adds few
    objects for the cyclic collector to scan, where threading.Condition added nine."""
    gc.collect()
    before = len(gc.get_objects())
    keep = [MessageFuture(str(i)) for i in range(1000)]
    per_future = (len(gc.get_objects()) - before) / len(keep)
    assert per_future <= 6, per_future


def test_iopub_callbacks_is_a_list_made_when_asked_for():
    f = MessageFuture("e")
    assert f._iopub_callbacks is None
    f.iopub_callbacks.append(print)
    assert f.iopub_callbacks == [print] and f._iopub_callbacks is f.iopub_callbacks
