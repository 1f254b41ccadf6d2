"""``sys.stdout``/``sys.stderr`` for an engine: text goes to the runtime's stream buffer.

Why not ipykernel's ``OutStream``: that one buffers in Python and runs its own IOPub thread with
a flush timer. On an oxipp engine the Rust runtime already buffers per request and flushes every
50 ms and before each reply (``EngineRuntime.stream``), so the Python side only has to hand text
over: one call per ``write``, no lock, no thread, and writes from any thread are fine because
the runtime serializes them. The parent of each write is the request that is running (or ran
last), read at write time, like ipykernel's global parent: output of a background thread shows up
under the latest request.
"""

from __future__ import annotations

import io as _io
import sys

__all__ = ["OutStream", "RequestContext", "original_stream", "set_original_streams"]

#: The engine's own stdout/stderr while fds 1/2 are captured into IOPub (set by oxipp.engine.app
#: from ``EngineRuntime.original_fds``): text streams on the original descriptors.
_originals: dict = {}


def set_original_streams(stdout, stderr) -> None:
    _originals.update(stdout=stdout, stderr=stderr)


def original_stream(name: str):
    """Where the engine's own ``name`` output goes: the original descriptor's stream while fds
    1/2 are captured (writing to fd 1/2 would loop into IOPub), else ``sys.__stdout__``/
    ``sys.__stderr__``."""
    return _originals.get(name) or getattr(sys, f"__{name}__", None)


class RequestContext:
    """The request whose output is being produced, shared by streams and display hooks.

    A plain attribute rather than a contextvar: the executor runs one request at a time, and a
    background thread's output must follow the running request (contextvars would pin it to the
    request that started the thread, or to nothing).
    """

    __slots__ = ("parent",)

    def __init__(self) -> None:
        self.parent = None


class OutStream(_io.TextIOBase):
    """A text stream whose writes become IOPub ``stream`` messages (``name`` = stdout/stderr)."""

    def __init__(self, name: str, io, context: RequestContext, fallback=None):
        super().__init__()
        self.name = name
        self._io = io
        self._context = context
        # where text goes if the runtime refuses it (closed, shutting down): never lose output,
        # never let a print() raise into user code
        self._fallback = fallback

    # --- the TextIO surface user code and libraries rely on ---------------------------------
    encoding = "UTF-8"
    errors = "strict"
    newlines = None

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """As ipykernel's OutStream while it watches fds 1/2: the *original* descriptor (so
        ``subprocess.run(..., stdout=sys.stdout)`` and ``faulthandler.enable()`` write where a
        stock engine's do: the engine's log). Raises when fds are not captured."""
        original = _originals.get(self.name)
        if original is not None:
            return original.fileno()
        raise _io.UnsupportedOperation("an engine's output stream has no file descriptor")

    def write(self, s) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if s:
            try:
                self._io.stream(self.name, s, self._context.parent)
            except Exception:
                self._write_fallback(s)
        return len(s)

    def _write_fallback(self, s: str) -> None:
        """The runtime refused ``s``: retry once as valid UTF-8 (lone surrogates, e.g. from
        undecodable file names, cannot cross into Rust), else write to the original stream."""
        try:
            self._io.stream(
                self.name,
                s.encode("utf-8", "backslashreplace").decode("utf-8"),
                self._context.parent,
            )
            return
        except Exception:
            pass
        fb = self._fallback
        if fb is not None:
            try:
                fb.write(s)
            except Exception:
                pass

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing to do here: the runtime flushes on its timer and before every reply (and,
        for ordering with display output, before every IOPub publish)."""
