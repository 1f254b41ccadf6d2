"""Content of ``kernel_info_reply`` as a stock (ipykernel-based) engine sends it.

Built without importing IPython or ipykernel: the runtime asks for it once at start-up, before
the engine registers, and start-up must stay fast. The values are the ones ipykernel's
``IPythonKernel`` reports (implementation ``ipython`` with IPython's version, protocol 5.3,
Python language_info, IPython's default banner, ipykernel's help links); clients mostly read
``protocol_version`` and ``language_info``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["PROTOCOL_VERSION", "kernel_info"]

#: the messaging protocol version ipykernel 6/7 report in kernel_info_reply
PROTOCOL_VERSION = "5.3"


def _ipython_version() -> str:
    """IPython's version without importing IPython.

    ``importlib.metadata.version`` costs ~60 ms (it scans every distribution); the
    ``ipython-<version>.dist-info`` folder next to the package gives the same answer in ~1 ms.
    """
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        return getattr(ipython, "__version__", "")
    try:
        spec = importlib.util.find_spec("IPython")
        if spec is None or not spec.submodule_search_locations:
            return ""
        site = os.path.dirname(list(spec.submodule_search_locations)[0])
        for entry in os.listdir(site):
            low = entry.lower()
            if low.startswith("ipython-") and low.endswith((".dist-info", ".egg-info")):
                return entry[len("ipython-") :].rsplit(".", 1)[0]
    except Exception:
        pass
    return ""


def _help_links() -> list:
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return [
        {"text": "Python Reference", "url": f"https://docs.python.org/{py}"},
        {"text": "IPython Reference", "url": "https://ipython.readthedocs.io/en/stable/"},
        {"text": "NumPy Reference", "url": "https://docs.scipy.org/doc/numpy/reference/"},
        {"text": "SciPy Reference", "url": "https://docs.scipy.org/doc/scipy/reference/"},
        {"text": "Matplotlib Reference", "url": "https://matplotlib.org/contents.html"},
        {"text": "SymPy Reference", "url": "http://docs.sympy.org/latest/index.html"},
        {"text": "pandas Reference", "url": "https://pandas.pydata.org/pandas-docs/stable/"},
    ]


def kernel_info() -> dict:
    """A fresh dict: ``{"status": "ok", "protocol_version", "implementation", …}``."""
    ipython_version = _ipython_version()
    banner = (
        "Python {}\n".format(sys.version.split("\n")[0])
        + "Type 'copyright', 'credits' or 'license' for more information\n"
        + f"IPython {ipython_version} -- An enhanced Interactive Python. Type '?' for help.\n"
    )
    return {
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "ipython",
        "implementation_version": ipython_version,
        "language_info": {
            "name": "python",
            "version": sys.version.split()[0],
            "mimetype": "text/x-python",
            "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
            "pygments_lexer": "ipython3",
            "nbconvert_exporter": "python",
            "file_extension": ".py",
        },
        "banner": banner,
        "help_links": _help_links(),
        "supported_features": [],
    }
