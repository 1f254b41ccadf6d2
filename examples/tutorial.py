"""The seed tutorial, "Introduction to parallel computing with IPython", in Python 3.

Every cell of the tutorial (../shared/seed/introduction-to-parallel-computing-with-ipython.txt)
runs here, in order, through an IPython shell so that its magics (`%pylab`, `%px`, `%%px`) work
as they do in the notebook; only Python 2 syntax is updated (`print x` -> `print(x)`,
`map(...)` -> `list(map(...))`, `from IPython import parallel` -> `import oxipp as parallel`)
and `rc[:, 2]` becomes `rc[::2]` (the old form is an error in ipyparallel 8+ too).

Needs a running cluster of 4 engines: `oxipp start -n 4 --daemonize` (scripts/main.sh starts
one, runs this, and stops it). Exits non-zero if any cell fails unexpectedly.

    python examples/tutorial.py [--profile-dir DIR] [--cluster-id ID] [--module ipyparallel]

`--module ipyparallel` runs the same cells with the stock client, for comparison (the
`bind_kernel` cell runs on the engines, where `oxipp.bind_kernel` serves oxipp engines and
defers to stock's on stock engines).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))

# (cell source, the exception class name the tutorial expects it to raise, or None)
CELLS: list[tuple[str, str | None]] = [
    (
        """
        %pylab inline
        import numpy as np
        import matplotlib.pyplot as plt
        """,
        None,
    ),
    (
        """
        from IPython.display import Image
        Image(os.path.join(HERE, "parallel_architecture400.png"))
        """,
        None,
    ),
    (
        """
        from multiprocessing import cpu_count
        print(cpu_count())
        """,
        None,
    ),
    (
        """
        import MODULE as parallel

        rc = parallel.Client(**CLIENT_ARGS)
        rc.block = True
        """,
        None,
    ),
    (
        """
        def power(a, b):
            return a**b
        """,
        None,
    ),
    ("dv = rc[0]\ndv", None),
    ("dv.apply(power, 2, 10)", None),
    ("x = [1, 2, 3, 4]\nx", None),
    ("x[:]", None),
    ("rc[:].apply_sync(power, 2, 10)", None),
    ("list(map(power, [2] * 10, range(10)))", None),
    ("view = rc.load_balanced_view()\nview.map(power, [2] * 10, range(10))", None),
    # The Direct Interface
    ("rc = parallel.Client(**CLIENT_ARGS)", None),
    ("rc.block = True", None),
    ("dview = rc[:]", None),
    (
        """
        dview.block = False

        dview["a"] = 5  # shorthand for push
        dview["b"] = 7

        dview.apply_sync(lambda x: a + b + x, 27)
        """,
        None,
    ),
    ('dview.push(dict(msg="Hi, there"), block=True)', None),
    ("dview.block = True", None),
    ('dview.execute("x = msg")', None),
    ("%px y = msg + ' you'", None),
    ('print(dview["x"])  # shorthand for pull\nprint(dview["y"])', None),
    ('rc[::2].execute("c = a + b")\nrc[1::2].execute("c = a - b")', None),
    ('dview.pull("c")', None),
    (
        """
        def wait(t):
            import time

            tic = time.time()
            time.sleep(t)
            return time.time() - tic
        """,
        None,
    ),
    ("ar = dview.apply_async(wait, 2)", None),
    ("type(ar)", None),
    ("ar.get()", None),
    ("ar = dview.apply_async(wait, 15)\nprint(ar.ready())", None),
    ("ar.get(5)", "TimeoutError"),
    ("result_list = [dview.apply_async(wait, 1) for i in range(8)]", None),
    ("dview.wait(result_list)", None),
    ("result_list[0].get()", None),
    # Connecting directly to your engines
    (
        """
        %%px
        from oxipp import bind_kernel
        bind_kernel()
        """,
        None,
    ),
    ("dview.scatter('eid', rc.ids, flatten=True)", None),
    ('rc[0].execute("%qtconsole")', None),
    # Scatter and Gather
    ("dview.scatter('x', range(64))", None),
    ("%%px\ny = [i**10 for i in x]", None),
    ("y = dview.gather('y')", None),
    ("print(y[:10])", None),
    # The Task Interface
    ("rc = parallel.Client(**CLIENT_ARGS)\n\nlview = rc.load_balanced_view()", None),
    (
        """
        lview.block = True

        parallel_result = lview.map(lambda x: x**10, range(32))

        print(parallel_result[:10])
        """,
        None,
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile-dir", help="the cluster's profile directory")
    parser.add_argument("--cluster-id", default="", help="the cluster id, if any")
    parser.add_argument(
        "--module", default="oxipp", help="the ipyparallel-compatible package to use (oxipp)"
    )
    args = parser.parse_args(argv)

    from IPython.core.interactiveshell import InteractiveShell

    class NotebookLikeShell(InteractiveShell):
        """`%pylab inline` asks the shell for a GUI event loop; like a notebook kernel, the
        inline backend needs none (the base class raises NotImplementedError)."""

        def enable_gui(self, gui=None):
            pass

    shell = NotebookLikeShell.instance(colors="nocolor")
    client_args = {"cluster_id": args.cluster_id}
    if args.profile_dir:
        client_args["profile_dir"] = args.profile_dir
    shell.user_ns.update(CLIENT_ARGS=client_args, HERE=HERE, os=os)

    failures = 0
    for n, (source, expected_error) in enumerate(CELLS, start=1):
        source = textwrap.dedent(source).strip().replace("MODULE", args.module)
        print(f"\nIn [{n}]: " + source.replace("\n", "\n" + " " * (len(str(n)) + 7)), flush=True)
        result = shell.run_cell(source, store_history=True)
        error = result.error_in_exec or result.error_before_exec
        if expected_error is None and error is not None:
            failures += 1
            print(f"tutorial: cell {n} failed: {error!r}", file=sys.stderr)
        elif expected_error is not None:
            if type(error).__name__ != expected_error:
                failures += 1
                print(f"tutorial: cell {n} should raise {expected_error}, got {error!r}")
            else:
                print(f"(the tutorial expects this {expected_error})")
    print(f"\ntutorial: {len(CELLS)} cells, {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
