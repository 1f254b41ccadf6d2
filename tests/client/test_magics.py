"""The parallel magics (``%px``, ``%%px``, ``%autopx``, ``%pxresult``, ``%pxconfig``) driving a
real cluster: our controller, oxipp engines, and an IPython shell in this process.

The magics are registered straight from ``oxipp.client.magics`` (not through ``view.activate``)
so they are ours even while the client under test is stock ipyparallel's.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import pytest
from clusters import Cluster, wait_for

pytest.importorskip("IPython")

from IPython.core.error import UsageError  # noqa: E402
from IPython.utils.io import capture_output  # noqa: E402
from oxipp.client.magics import NO_LAST_RESULT, ParallelMagics  # noqa: E402

N_ENGINES = 3

# Defined on the engines by a %%px cell: two outputs of every kind and a rich result.
GENERATE_OUTPUT = """
import sys
from IPython.display import HTML, Math, display

def generate_output():
    print("stdout")
    print("stderr", file=sys.stderr)
    display(HTML("<b>HTML</b>"))
    print("stdout2")
    print("stderr2", file=sys.stderr)
    display(Math(r"\\alpha=\\beta"))
    return Math("42")
"""


def make_client(profile_dir):
    """The client under test: oxipp's when it exists (unless OXIPP_TEST_CLIENT says otherwise),
    else stock ipyparallel's, which drives views through the same interface."""
    if os.environ.get("OXIPP_TEST_CLIENT", "oxipp") == "oxipp":
        try:
            from oxipp import Client
        except Exception:  # not written yet (or not importable): fall back to stock
            Client = None
        if Client is not None:
            return Client(profile_dir=str(profile_dir), timeout=10)
    import ipyparallel

    return ipyparallel.Client(profile_dir=str(profile_dir), timeout=10)


@pytest.fixture(scope="module")
def ip(tmp_path_factory):
    """A terminal IPython shell of our own (its own IPYTHONDIR), with builtins hooked."""
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from traitlets.config import Config

    old = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))
    config = Config()
    config.TerminalInteractiveShell.simple_prompt = True
    config.HistoryManager.hist_file = ":memory:"
    config.TerminalInteractiveShell.colors = "nocolor"  # plain text to match on
    shell = TerminalInteractiveShell.instance(config=config)
    try:
        with shell.builtin_trap:
            yield shell
    finally:
        TerminalInteractiveShell.clear_instance()
        if old is None:
            os.environ.pop("IPYTHONDIR", None)
        else:
            os.environ["IPYTHONDIR"] = old


@pytest.fixture(scope="module")
def rc(oxipp_bin, tmp_path_factory, ip):
    """A client connected to a controller with N_ENGINES oxipp engines; engine `i` (in sorted
    id order) holds `me = i`."""
    cluster = Cluster(oxipp_bin, tmp_path_factory.mktemp("magics") / "profile", "oxipp")
    cluster.start_controller()
    try:
        for _ in range(N_ENGINES):
            cluster.start_engine()
        client = connect_when_ready(cluster.profile_dir)
        for i, eid in enumerate(sorted(client.ids)):
            client[eid].push({"me": i}, block=True)
        yield client
        client.close()
    finally:
        cluster.stop()


def connect_when_ready(profile_dir, timeout=60):
    """A client that sees all N_ENGINES engines.

    An engine that registers while a client is connecting can be missed by that client (its
    notification subscription is not in place yet), so a client that stays short of engines
    is replaced by a fresh one."""
    deadline = time.monotonic() + timeout
    while True:
        client = make_client(profile_dir)
        try:
            client.wait_for_engines(N_ENGINES, timeout=5)
            return client
        except TimeoutError:
            client.close()
            if time.monotonic() > deadline:
                raise


def activate(ip, view, suffix="", block=True):
    """Register our magics for `view` the way Client/DirectView.activate do."""
    view.block = block
    magics = ParallelMagics(ip, view, suffix)
    ip.magics_manager.register(magics)
    return magics


def settle():
    """An engine that raised drops requests arriving just after the error (ipykernel's
    stop-on-error window), so give it that long before the next test."""
    time.sleep(0.6)


def plain(text):
    """`text` without ANSI colours (engines colour their tracebacks)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def stdout_blocks(text):
    """'[stdout:3]' headers in the order printed, as engine ids."""
    return [int(m) for m in re.findall(r"\[stdout:(\d+)\]", text)]


# --------------------------------------------------------------------------- registration


def test_registers_names_with_and_without_suffix(ip, rc):
    view = rc[:]
    plain = activate(ip, view)
    assert plain.active_view is view
    line, cell = ip.magics_manager.magics["line"], ip.magics_manager.magics["cell"]
    for name in ("px", "pxresult", "pxconfig", "autopx", "result"):
        assert line[name].__self__ is plain, name
    assert cell["px"].__self__ is plain

    other = rc[:]
    suffixed = ParallelMagics(ip, suffix="_sfx")
    suffixed.active_view = other  # the lead's alternative spelling
    ip.magics_manager.register(suffixed)
    for name in ("px_sfx", "pxresult_sfx", "pxconfig_sfx", "autopx_sfx"):
        assert line[name].__self__ is suffixed, name
    assert cell["px_sfx"].__self__ is suffixed
    assert "result_sfx" not in line
    assert line["result"].__self__ is plain, "a suffix does not take over %result"
    assert suffixed.view is other


def test_suffixed_magics_use_their_own_view(ip, rc):
    ids = sorted(rc.ids)
    activate(ip, rc[ids[0]])
    activate(ip, rc.direct_view([ids[-1]]), suffix="_last")
    ip.run_line_magic("px", "where = 'first'")
    ip.run_line_magic("px_last", "where = 'last'")
    assert rc[ids[0]]["where"] == "first"
    assert rc[ids[-1]]["where"] == "last"
    with capture_output(display=False) as io:
        ip.run_cell_magic("px_last", "--no-stream", "print(me)")
    assert stdout_blocks(io.stdout) == [ids[-1]]


# --------------------------------------------------------------------------- %px


def test_px_blocking_prints_engine_output(ip, rc):
    view = rc[-1:]
    activate(ip, view)
    ip.run_line_magic("px", "a = 5")
    assert view["a"] == [5]
    with capture_output() as io:
        ip.run_line_magic(
            "px", "import sys, time; print(a * 2); sys.stdout.flush(); time.sleep(0.2)"
        )
    assert "[stdout:" in io.stdout
    assert "\n\n" not in io.stdout
    assert io.stdout.rstrip().endswith("10")


def test_px_does_not_expand_local_variables(ip, rc):
    view = rc[-1:]
    activate(ip, view)
    ip.user_ns["x"] = "client"
    view["x"] = "engine"
    ip.run_line_magic("px", 'y = f"{x}"')
    assert view["y"] == ["engine"]
    # through run_cell too, where IPython would otherwise expand {x} first
    ip.run_cell('%px z = f"{x}"')
    assert view["z"] == ["engine"]


def test_px_nonblocking_returns_asyncresult(ip, rc):
    view = rc[-1:]
    magics = activate(ip, view, block=False)
    magics.verbose = True
    with capture_output() as io:
        ar = ip.run_line_magic("px", "print('late')")
    assert io.stdout.startswith("Async parallel execution on engine(s):"), io.stdout
    assert "[stdout:" not in io.stdout
    assert ar.msg_ids and magics.last_result is ar
    ar.get(timeout=10)
    ar = ip.run_line_magic("px", "1/0")
    with pytest.raises(Exception) as info:
        ar.get(timeout=10)
    assert "ZeroDivisionError" in str(info.value)
    settle()


# --------------------------------------------------------------------------- %pxresult


def test_pxresult_shows_last_nonblocking_result(ip, rc):
    view = rc[-1]
    magics = activate(ip, view, block=False)
    with pytest.raises(UsageError, match=re.escape(NO_LAST_RESULT)):
        ip.run_line_magic("pxresult", "")
    view.push({"aa": 111, "bb": 222}, block=True)
    for name, value in (("aa", 111), ("bb", 222)):
        ip.run_line_magic("px", name)
        with capture_output(display=False) as io:
            ip.run_line_magic("pxresult", "")
        assert re.search(rf"Out\[\d+:\d+\]: {value}", io.stdout), io.stdout
    with capture_output(display=False) as io:
        ip.run_line_magic("result", "")  # the legacy name
    assert "222" in io.stdout
    ip.run_line_magic("pxresult", "-o saved")
    assert ip.user_ns["saved"] is magics.last_result


def test_pxresult_grouping_options(ip, rc):
    view = rc[:]
    activate(ip, view, block=False)
    ip.run_line_magic("px", "import sys; print('out', me); print('err', me, file=sys.stderr)")
    for option in ("-e", "--group-outputs=engine"):
        with capture_output(display=False) as io:
            ip.run_line_magic("pxresult", option)
        assert stdout_blocks(io.stdout) == sorted(rc.ids), option
        assert io.stderr.count("[stderr:") == N_ENGINES, option
    for option in ("-r", "--group-outputs=order", "--group-outputs=type", ""):
        with capture_output(display=False) as io:
            ip.run_line_magic("pxresult", option)
        assert stdout_blocks(io.stdout) == sorted(rc.ids), option
        assert io.stderr.count("[stderr:") == N_ENGINES, option
    with pytest.raises(UsageError):
        ip.run_line_magic("pxresult", "--group-outputs=bogus")


# --------------------------------------------------------------------------- %%px options


def test_cellpx_block_flags_and_verbose(ip, rc):
    view = rc[-1:]
    magics = activate(ip, view)
    ip.run_line_magic("pxconfig", "--verbose")
    assert magics.verbose is True
    for default in (True, False):
        view.block = default
        with capture_output(display=False) as io:
            ip.run_cell_magic("px", "", "1")
        expected = "Parallel" if default else "Async parallel"
        assert io.stdout.startswith(expected + " execution on engine(s):"), io.stdout
        for flag in ("-b", "--block"):
            with capture_output(display=False) as io:
                assert ip.run_cell_magic("px", flag, "1") is None
            assert io.stdout.startswith("Parallel"), io.stdout
        for flag in ("-a", "--noblock"):
            with capture_output(display=False) as io:
                ar = ip.run_cell_magic("px", flag, "1")
            assert io.stdout.startswith("Async"), io.stdout
            ar.get(timeout=10)
        assert view.block is default, "%%px flags do not change the default"
    ip.run_line_magic("pxconfig", "--no-verbose")
    with capture_output(display=False) as io:
        ip.run_cell_magic("px", "--block", "1")
    assert "execution on engine" not in io.stdout


def test_cellpx_targets_expressions(ip, rc):
    ids = sorted(rc.ids)
    view = rc.direct_view(ids)
    magics = activate(ip, view)
    magics.verbose = True
    ip.user_ns["chosen"] = [ids[1]]
    cases = {
        "::2": ids[::2],
        "1:": ids[1:],
        "all": ids,
        f"[{ids[0]},{ids[2]}]": [ids[0], ids[2]],
        "chosen": [ids[1]],
    }
    for expr, expected in cases.items():
        with capture_output(display=False) as io:
            ip.run_cell_magic("px", f"--no-stream -t {expr}", "print(me)")
        assert sorted(stdout_blocks(io.stdout)) == expected, (expr, io.stdout)
        assert view.targets == ids, "--targets only applies to one cell"
    # a single int target gives a single (unprefixed) result
    with capture_output(display=False) as io:
        ip.run_cell_magic("px", f"--no-stream -t {ids[1]}", "print(me)")
    assert io.stdout.endswith(f"engine(s): {ids[1]}\n1\n"), io.stdout
    with capture_output(display=False) as io:
        ip.run_cell_magic("px", "--targets all", "pass")
    assert "engine(s): all" in io.stdout
    # restored even when the cell fails
    with capture_output(display=False), pytest.raises(Exception, match="ZeroDivisionError"):
        ip.run_cell_magic("px", "--no-stream -t ::2", "1/0")
    assert view.targets == ids
    settle()


def test_cellpx_group_outputs(ip, rc):
    view = rc[:]
    activate(ip, view)
    ip.run_cell_magic("px", "", GENERATE_OUTPUT)
    n = N_ENGINES
    order_lines = {}
    for option in ("--group-outputs=engine", "-e", "--group-outputs=order", "-r", "", "-t all"):
        with capture_output(display=False) as io:
            ip.run_cell_magic("px", f"{option} --no-stream", "generate_output()")
        out, err = io.stdout, io.stderr
        assert "\n\n" not in out, option
        assert out.count("[stdout:") == n and out.count("[output:") >= n, option
        assert len(re.findall(r"Out\[\d+:\d+\]: .*Math", out)) == n, (option, out)
        assert err.count("[stderr:") == n, option
        assert err.count("stderr2") == n, option
        order_lines[option] = [line for line in out.splitlines() if line.startswith("[")]
    # engine: each engine's stdout then its displays; type/order: all stdouts first
    engine = order_lines["--group-outputs=engine"]
    assert engine == order_lines["-e"]
    assert [line[:7] for line in engine[:2]] == ["[stdout", "[output"], engine
    for option in ("--group-outputs=order", "-r", ""):
        kinds = [line[:7] for line in order_lines[option]]
        assert kinds[:n] == ["[stdout"] * n, (option, kinds)
        assert set(kinds[n:]) == {"[output"}, (option, kinds)
    # order: the n-th display of every engine before any engine's n+1-th
    with capture_output(display=False) as io:
        ip.run_cell_magic("px", "-r --no-stream", "generate_output()")
    displays = re.findall(r"IPython\.core\.display\.(HTML|Math)", io.stdout)
    assert displays[: 2 * n] == ["HTML"] * n + ["Math"] * n, displays
    with capture_output(display=False) as io:
        ip.run_cell_magic("px", "--group-outputs=type --no-stream", "generate_output()")
    displays = re.findall(r"IPython\.core\.display\.(HTML|Math)", io.stdout)
    assert displays[: 2 * n] == ["HTML", "Math"] * n, displays


def test_cellpx_out_saves_asyncresult(ip, rc):
    view = rc[-1:]
    activate(ip, view)
    ip.run_cell_magic("px", "-o first_ar", "q = 3")
    assert ip.user_ns["first_ar"].msg_ids
    ip.user_ns["out_name"] = "expanded_ar"
    ip.run_cell_magic("px", "--out {out_name}", "q")  # the %%px line is var-expanded
    ar = ip.user_ns["expanded_ar"]
    assert re.search(r"ExecuteReply\[\d+\]: 3>", repr(ar.get(timeout=10)))


def test_cellpx_local_runs_both_sides(ip, rc):
    view = rc[:]
    activate(ip, view)
    ip.user_ns.pop("both", None)
    with capture_output(display=False) as io:
        result = ip.run_cell_magic("px", "--local --no-stream", "both = 'here'\nprint('ran', both)")
    assert result is None
    assert ip.user_ns["both"] == "here"
    assert view["both"] == ["here"] * N_ENGINES
    assert len(stdout_blocks(io.stdout)) == N_ENGINES
    # non-blocking --local hands back the remote AsyncResult after the local run
    ar = ip.run_cell_magic("px", "--local --noblock", "both = 'again'")
    assert ip.user_ns["both"] == "again"
    ar.get(timeout=10)
    assert view["both"] == ["again"] * N_ENGINES


# --------------------------------------------------------------------------- streaming, progress


def _watch(io, needle, done):
    """Background poller: the perf_counter time `needle` first shows in captured stdout."""
    seen = {}

    def poll():
        while not done.is_set() and "at" not in seen:
            if needle in io.stdout:
                seen["at"] = time.perf_counter()
            time.sleep(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return seen, thread


@pytest.mark.parametrize("stream", [True, False])
def test_blocking_cellpx_streams_output_while_waiting(ip, rc, stream):
    view = rc[-1:]
    activate(ip, view)
    cell = "import sys, time\nprint('early-bird'); sys.stdout.flush()\ntime.sleep(2)\nprint('late')"
    done = threading.Event()
    with capture_output(display=False) as io:
        seen, thread = _watch(io, "early-bird", done)
        start = time.perf_counter()
        ip.run_cell_magic("px", "--stream" if stream else "--no-stream", cell)
        end = time.perf_counter()
        done.set()
        thread.join()
    assert end - start > 1.8
    assert "late" in io.stdout
    if stream:
        assert "at" in seen and seen["at"] - start < 1.5, "output was not shown while waiting"
        assert io.stdout.count("early-bird") == 1, "streamed output is not shown again"
    else:
        assert "at" not in seen or seen["at"] > end - 0.5, "--no-stream printed early"


def test_pxconfig_stream_default(ip, rc):
    view = rc[-1:]
    magics = activate(ip, view)
    ip.run_line_magic("pxconfig", "--no-stream")
    assert magics.stream_output is False
    ar = None
    with capture_output(display=False) as io:
        ip.run_cell_magic("px", "-o streamed_ar", "print('hello')")
    ar = ip.user_ns["streamed_ar"]
    assert not getattr(ar, "_already_streamed", None)
    assert "hello" in io.stdout
    ip.run_line_magic("pxconfig", "--stream")
    assert magics.stream_output is True


def test_noninteractive_env_turns_streaming_off(repo_root):
    import subprocess

    code = (
        "from oxipp.client.magics import ParallelMagics as M;"
        "print(M.stream_output, M.progress_after_seconds)"
    )
    for value, expected in (("1", "False 2"), ("0", "True 2"), ("", "True 2")):
        env = {**os.environ, "IPP_NONINTERACTIVE": value}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert out.strip() == expected, (value, out)


def test_progress_bar_after_delay(ip, rc):
    """Stock draws the bar (tqdm) on stdout."""
    view = rc[:]
    activate(ip, view)
    with capture_output(display=False) as io:
        ip.run_cell_magic("px", "--progress-after 0.2", "import time; time.sleep(1.2)")
    assert re.search(rf"%px: .*{N_ENGINES}/{N_ENGINES}.*tasks", io.stdout), io.stdout
    for option in ("--progress-after -1", "--progress-after 5"):
        with capture_output(display=False) as io:
            ip.run_cell_magic("px", option, "import time; time.sleep(1.2)")
        assert "tasks" not in io.stdout, (option, io.stdout)
    with capture_output(display=False) as io:
        ip.run_cell_magic("px", "--progress-after 0", "pass")
    assert "%px" in io.stdout and "tasks" in io.stdout


# --------------------------------------------------------------------------- %pxconfig


def test_pxconfig_changes_defaults(ip, rc):
    ids = sorted(rc.ids)
    view = rc[ids[-1]]
    magics = activate(ip, view, suffix="_cfg")
    ip.run_line_magic("pxconfig_cfg", "-t :")
    assert view.targets == ids
    ip.run_line_magic("pxconfig_cfg", "-t ::2")
    assert view.targets == ids[::2]
    ip.run_line_magic("pxconfig_cfg", "-t 1::2")
    assert view.targets == ids[1::2]
    ip.run_line_magic("pxconfig_cfg", f"-t {ids[1]}")
    assert view.targets == ids[1]
    ip.run_line_magic("pxconfig_cfg", "--targets all")
    assert view.targets == "all"
    ip.run_line_magic("pxconfig_cfg", "--block")
    assert view.block is True
    ip.run_line_magic("pxconfig_cfg", "-a")
    assert view.block is False
    ip.run_line_magic("pxconfig_cfg", "-b --verbose --no-stream --progress-after 7.5")
    assert (view.block, magics.verbose, magics.stream_output) == (True, True, False)
    assert magics.progress_after_seconds == 7.5
    ip.run_line_magic("pxconfig_cfg", "--signal-on-interrupt 9")
    assert magics.signal_on_interrupt == 9
    ip.run_line_magic("pxconfig_cfg", "--signal-on-interrupt SIGTERM")
    assert magics.signal_on_interrupt == "SIGTERM"
    with pytest.raises(UsageError):
        ip.run_line_magic("pxconfig_cfg", "--progress-after soon")
    # and %px_cfg uses them: all engines, verbose, blocking
    with capture_output(display=False) as io:
        ip.run_line_magic("px_cfg", "print(me)")
    assert io.stdout.startswith("Parallel execution on engine(s): all")
    assert sorted(stdout_blocks(io.stdout)) == ids


# --------------------------------------------------------------------------- %autopx


def test_autopx_blocking(ip, rc):
    view = rc[-1]
    activate(ip, view)
    with capture_output(display=False) as io:
        ip.run_line_magic("autopx", "")
        ip.run_cell("\n".join(("a = 5", "b = 12345", "c = 0")))
        ip.run_cell("b *= 2")
        ip.run_cell("print(b)")
        ip.run_cell("b")
        ip.run_cell("b / c")
        ip.run_cell("%autopx")
    out = io.stdout
    assert out.startswith("%autopx enabled"), out
    assert out.rstrip().endswith("%autopx disabled"), out
    assert "ZeroDivisionError" in out
    assert "\nOut[" in out and ": 24690" in out
    settle()
    assert view["a"] == 5 and view["b"] == 24690
    assert "b" not in ip.user_ns or ip.user_ns["b"] != 24690, "autopx cells ran locally"
    ip.run_cell("after_autopx = 1")
    assert ip.user_ns["after_autopx"] == 1, "run_cell is local again"


def test_autopx_nonblocking_and_suffix(ip, rc):
    view = rc[-1]
    magics = activate(ip, view, suffix="_nb", block=False)
    with capture_output() as io:
        ip.run_line_magic("autopx_nb", "")
        ip.run_cell("\n".join(("a = 5", "b = 10", "c = 0")))
        ip.run_cell("b / c")
        ip.run_cell("%autopx_nb")
    out = io.stdout.rstrip()
    assert out.startswith("%autopx enabled") and out.endswith("%autopx disabled"), out
    assert "ZeroDivisionError" not in out
    with pytest.raises(Exception, match="ZeroDivisionError"):
        magics.last_result.get(timeout=10)
    assert magics._autopx is False
    settle()
    assert view["b"] == 10


# --------------------------------------------------------------------------- errors


def test_error_without_streaming_raises_composite(ip, rc):
    view = rc[:]
    activate(ip, view)
    with capture_output(display=False) as io, pytest.raises(Exception) as info:
        ip.run_cell_magic("px", "--no-stream", "raise RuntimeError(f'oops {me}')")
    assert type(info.value).__name__ == "CompositeError"
    assert io.stderr.strip() == ""
    tb = plain("\n".join(info.value.render_traceback()))
    assert tb.count("RuntimeError:") >= N_ENGINES
    settle()


def test_error_with_streaming_is_already_displayed(ip, rc):
    view = rc[:]
    activate(ip, view)
    with capture_output(display=False) as io, pytest.raises(Exception) as info:
        ip.run_cell_magic("px", "--stream", "raise RuntimeError(f'oops {me}')")
    assert type(info.value).__name__ == "AlreadyDisplayedError"
    assert N_ENGINES <= plain(io.stderr).count("RuntimeError:") < 2 * N_ENGINES, io.stderr
    assert "\n".join(info.value.render_traceback()) == f"{N_ENGINES} errors"
    settle()


def test_errors_render_through_the_shell(ip, rc):
    """A failing %px in a cell shows the engines' traceback, as IPython renders it."""
    ids = sorted(rc.ids)
    activate(ip, rc[ids[0]])
    with capture_output(display=False) as io:
        ip.run_cell("%px 1/0")
    text = io.stdout + io.stderr
    assert "ZeroDivisionError" in text, text
    assert f"[{ids[0]}:execute]" in text, text
    settle()


# --------------------------------------------------------------------------- Ctrl-C


def _interrupt_after(seconds):
    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, raise_interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return previous


@pytest.mark.parametrize("option", ["", "--signal-on-interrupt SIGINT", "--signal-on-interrupt 2"])
def test_keyboard_interrupt_signals_engines(ip, rc, option):
    view = rc[:]
    magics = activate(ip, view)
    cell = "print('Entering...'); import time; time.sleep(6); print('Exiting...')"
    previous = _interrupt_after(1.0)
    try:
        with capture_output(display=False) as io:
            start = time.perf_counter()
            ip.run_cell_magic("px", option, cell)
            elapsed = time.perf_counter() - start
    finally:
        signal.signal(signal.SIGALRM, previous)
    sent = option.split()[-1] if option else "SIGINT"
    assert f"Received Keyboard Interrupt. Sending signal {sent} to engines..." in io.stderr
    assert elapsed < 4
    with pytest.raises(Exception, match="KeyboardInterrupt"):
        magics.last_result.get(timeout=10)
    assert "Exiting..." not in "".join(magics.last_result.stdout)
    settle()


def test_keyboard_interrupt_with_null_signal_leaves_engines_running(ip, rc):
    view = rc[:]
    magics = activate(ip, view)
    ip.run_line_magic("pxconfig", "--signal-on-interrupt 0")
    cell = "import time; time.sleep(2); print('Exiting...')"
    previous = _interrupt_after(0.5)
    try:
        with capture_output(display=False) as io:
            ip.run_cell_magic("px", "", cell)
    finally:
        signal.signal(signal.SIGALRM, previous)
        ip.run_line_magic("pxconfig", "--signal-on-interrupt SIGINT")
    assert "Sending signal 0 to engines" in io.stderr
    magics.last_result.get(timeout=10)  # signal 0 interrupts nothing
    wait_for(lambda: all("Exiting" in s for s in magics.last_result.stdout), 5, "stdout")


def test_long_target_lists_are_elided_in_the_banner():
    from oxipp.client.magics import _describe_targets

    assert _describe_targets(list(range(12))) == "[0, 1, 2, 3, ..., 8, 9, 10, 11]"
    assert _describe_targets([1, 2]) == "[1, 2]"
    assert _describe_targets("all") == "all"
