"""The engine's background event loop (oxipp.engine.eventloop): what stock's dask helpers and
user code that schedules coroutines from a request expect of a kernel's loop."""

import asyncio
import threading

from oxipp.engine.eventloop import engine_kernel, engine_loop


def test_ensure_future_from_the_request_thread_runs_on_the_loop_promptly():
    def request():
        loop = engine_loop()
        ran_in = []
        done = threading.Event()

        async def job():
            ran_in.append(threading.current_thread().name)
            done.set()

        # what stock become_dask_worker does from a request: no loop runs in this thread
        asyncio.ensure_future(job())
        assert done.wait(5), "a task created from another thread must wake the loop"
        assert ran_in == ["oxipp-engine-loop"]
        assert asyncio.get_event_loop() is loop

    t = threading.Thread(target=request)
    t.start()
    t.join(10)
    assert not t.is_alive()


def test_one_loop_and_kernel_per_process_and_tornado_sees_the_loop():
    kernel = engine_kernel()
    assert kernel is engine_kernel()
    assert kernel.distributed_worker is None
    hits = threading.Event()
    kernel.io_loop.add_callback(hits.set)
    assert hits.wait(5)
    assert kernel.io_loop.asyncio_loop is engine_loop()


def test_run_until_complete_on_the_running_loop_fails_as_on_a_stock_engine():
    loop = engine_loop()
    coro = asyncio.sleep(0)
    try:
        try:
            loop.run_until_complete(coro)
        except RuntimeError as e:
            assert "running" in str(e)
        else:
            raise AssertionError("the engine's loop is running in its own thread")
    finally:
        coro.close()
