"""Output written to an oxipp engine's file descriptors 1 and 2 (``os.system``, subprocesses,
``os.write``, C extensions) reaches the client as ``stream`` output, as with stock engines
(ipykernel's ``OutStream(watchfd=True)``), while the engine's own logs stay in its log file.

Real processes: our controller, oxipp engines, the stock client. The engines are started by
pytest, so ``PYTEST_CURRENT_TEST`` is in their environment: unlike ipykernel, oxipp engines
capture anyway (docs/engine-runtime.md, "Output written to fds 1 and 2").
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from clusters import Cluster, wait_for

ipp = pytest.importorskip("ipyparallel")

MB = 1 << 20


@pytest.fixture
def cluster(oxipp_bin, tmp_path):
    c = Cluster(oxipp_bin, tmp_path / "profile", engine_kind="oxipp")
    yield c
    c.stop()


def finish(ar, timeout: float = 20):
    """The result, once the output is complete: ``get`` returns on the reply, and stock clients
    fill ``ar.stdout`` from IOPub until the request's ``status: idle`` (published after the
    request's output)."""
    r = ar.get(timeout=timeout)
    assert ar.wait_for_output(10)
    return r


def engine_log(cluster: Cluster, i: int = 0) -> str:
    return (cluster.profile_dir.parent / f"engine{i}.log").read_text(errors="replace")


def start(cluster: Cluster, *engine_args: str):
    cluster.start_controller()
    cluster.start_engine(*engine_args)
    rc = cluster.client()
    rc.wait_for_engines(1, timeout=30)
    return rc


@ipp.interactive  # shipped by value: engines cannot import this test module
def environ():
    import os

    return dict(os.environ)


@ipp.interactive
def write_everywhere():
    import os
    import subprocess

    os.system("echo from-os-system")
    subprocess.run(["sh", "-c", "echo from-subprocess; echo sub-err >&2"], check=True)
    os.write(1, b"from-os-write-1\n")
    os.write(2, b"from-os-write-2\n")
    return "done"


@ipp.interactive
def interleave():
    import os

    print("py1")
    os.write(1, b"fd1\n")
    print("py2")
    os.write(1, b"fd2\n")
    os.system("echo sys3")
    print("py4", end="")
    return 1


@ipp.interactive
def write_fully(fd, n):
    import os

    data = b"".join(b"%07d\n" % i for i in range(n // 8))
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


@ipp.interactive
def write_split_utf8():
    import os
    import time

    for ch in ("é", "€", "😀"):
        b = ch.encode()
        for i in range(len(b)):
            os.write(1, b[i : i + 1])
            time.sleep(0.06)  # each piece in a read of its own
    os.write(1, b"\n")
    return 1


@ipp.interactive
def write_then_return(i):
    import os

    os.write(1, b"last-%d\n" % i)
    os.write(2, b"err-%d\n" % i)
    return i


def test_execute_forwards_os_system_subprocess_and_os_write(cluster):
    with start(cluster) as rc:
        code = (
            "import os, subprocess\n"
            "os.system('echo from-os-system')\n"
            "subprocess.run(['sh', '-c', 'echo from-subprocess; echo sub-err >&2'])\n"
            "os.write(1, b'from-os-write-1\\n')\n"
            "os.write(2, b'from-os-write-2\\n')\n"
        )
        ar = rc[0].execute(code, block=False)
        finish(ar, 20)
        assert ar.stdout == "from-os-system\nfrom-subprocess\nfrom-os-write-1\n"
        assert ar.stderr == "sub-err\nfrom-os-write-2\n"
        assert "PYTEST_CURRENT_TEST" in rc[0].apply_sync(environ)


def test_apply_forwards_os_system_subprocess_and_os_write(cluster):
    with start(cluster) as rc:
        ar = rc[0].apply_async(write_everywhere)
        assert finish(ar, 20) == "done"
        assert ar.stdout == "from-os-system\nfrom-subprocess\nfrom-os-write-1\n"
        assert ar.stderr == "sub-err\nfrom-os-write-2\n"


def test_python_prints_and_fd_writes_arrive_in_order(cluster):
    with start(cluster) as rc:
        ar = rc[0].apply_async(interleave)
        finish(ar, 20)
        assert ar.stdout == "py1\nfd1\npy2\nfd2\nsys3\npy4"
        # sys.__stdout__ is fd 1: as on stock engines, what is written to it reaches the client
        ar = rc[0].execute("import sys; print('dunder', file=sys.__stdout__, flush=True)")
        finish(ar, 20)
        assert ar.stdout == "dunder\n"


def test_a_megabyte_written_to_a_fd_arrives_whole(cluster):
    with start(cluster) as rc:
        for fd, name in ((1, "stdout"), (2, "stderr")):
            ar = rc[0].apply_async(write_fully, fd, MB)
            assert finish(ar, 30) == MB
            text = getattr(ar, name)
            assert len(text) == MB
            assert text == "".join(f"{i:07d}\n" for i in range(MB // 8))


def test_a_character_split_between_writes_survives(cluster):
    with start(cluster) as rc:
        ar = rc[0].apply_async(write_split_utf8)
        finish(ar, 20)
        assert ar.stdout == "é€😀\n"


def test_output_written_just_before_returning_is_in_that_result(cluster):
    with start(cluster) as rc:
        view = rc[0]
        for i in range(30):
            ar = view.apply_async(write_then_return, i)
            assert finish(ar, 20) == i
            assert (ar.stdout, ar.stderr) == (f"last-{i}\n", f"err-{i}\n")
        ar = view.execute("import os; os.system('echo child-before-return')")
        finish(ar, 20)
        assert ar.stdout == "child-before-return\n"


def test_a_child_outliving_its_task_reports_to_it_and_does_not_hang_shutdown(cluster):
    with start(cluster) as rc:
        ar = rc[0].execute(
            "import subprocess\n"
            "subprocess.Popen(['sh', '-c', 'sleep 0.5; echo late-child'])\n"
            "holder = subprocess.Popen(['sleep', '30'])  # keeps the pipes' write ends open\n"
        )
        finish(ar, 20)
        assert ar.stdout == ""
        # its parent is the request that ran last, as for prints from background threads; the
        # AsyncResult is complete, so the client files it in rc.metadata only
        md = rc.metadata[ar.msg_ids[0]]
        wait_for(lambda: "late-child" in md["stdout"], 10, "the child's output")
        assert md["stdout"] == "late-child\n"
        holder = rc[0].pull("holder.pid", block=True)
        try:
            rc.shutdown(targets=[0], block=True)
            engine = cluster.engines[0]
            t0 = time.monotonic()
            engine.wait(timeout=10)
            assert time.monotonic() - t0 < 5
            assert engine.returncode == 0
            os.kill(holder, 0)  # still there, pipe and all
        finally:
            os.kill(holder, signal.SIGKILL)


def test_the_engine_log_gets_engine_logs_not_user_output(cluster):
    with start(cluster, "--log-level=DEBUG") as rc:
        ar = rc[0].execute(
            "import os, sys, logging\n"
            "os.system('echo USER-MARK-system')\n"
            "os.write(2, b'USER-MARK-fd2\\n')\n"
            "print('USER-MARK-print')\n"
            # as on stock engines, sys.stdout.fileno() is the original fd 1: the log
            "import faulthandler, subprocess\n"
            "faulthandler.enable()\n"
            "subprocess.run(['echo', 'FILENO-MARK'], stdout=sys.stdout, check=True)\n"
            "import atexit\n"
            "atexit.register(os.write, 1, b'AFTER-CLOSE-MARK\\n')\n"
        )
        finish(ar, 20)
        assert "USER-MARK-system" in ar.stdout and "USER-MARK-fd2" in ar.stderr
        rc.shutdown(targets=[0], block=True)
        cluster.engines[0].wait(timeout=10)
    log = engine_log(cluster)
    # Rust tracing, written after fd 2 was captured; Python logging before and after
    assert "registered as engine 0" in log
    assert "Completed registration with id 0" in log
    assert "shutdown requested" in log
    assert "USER-MARK" not in log
    assert "FILENO-MARK" in log
    # fds 1/2 were restored when the engine stopped: later output goes where they went
    assert "AFTER-CLOSE-MARK" in log


@pytest.mark.parametrize("how", ["flag", "env"])
def test_capture_can_be_turned_off(cluster, how, monkeypatch):
    if how == "env":
        monkeypatch.setenv("OXIPP_ENGINE_CAPTURE_FD", "0")
        args = ()
    else:
        args = ("--no-capture-fd",)
    with start(cluster, *args) as rc:
        ar = rc[0].execute("import os; os.system('echo OFF-MARK'); print('printed')")
        finish(ar, 20)
        assert ar.stdout == "printed\n"
        # what a stock engine does without watchfd: the output goes where fd 1 goes
        wait_for(lambda: "OFF-MARK" in engine_log(cluster), 10, "the output in the engine log")


def test_switch_parsing(monkeypatch):
    from oxipp.engine.options import parse_args

    monkeypatch.delenv("OXIPP_ENGINE_CAPTURE_FD", raising=False)
    assert parse_args([]).capture_fd is True
    assert parse_args(["--no-capture-fd"]).capture_fd is False
    assert parse_args(["--IPKernelApp.capture_fd_output=False"]).capture_fd is False
    monkeypatch.setenv("OXIPP_ENGINE_CAPTURE_FD", "off")
    assert parse_args([]).capture_fd is False
    assert parse_args(["--capture-fd"]).capture_fd is True
    assert not parse_args(["--capture-fd", "--no-capture-fd"]).warnings
