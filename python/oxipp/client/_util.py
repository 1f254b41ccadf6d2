"""Small helpers shared by the client modules (kept apart so they import nothing heavy)."""

from __future__ import annotations

__all__ = ["getname"]


def getname(f) -> str:
    """A label for ``f`` in result names and messages.

    Views apply arbitrary callables (partials, instances with ``__call__``, remote references),
    not only functions, so fall back from ``__name__`` to ``.name`` to ``str(f)``; any error in an
    attribute lookup (properties may raise anything) just moves on to the next choice.
    """
    for attr in ("__name__", "name"):
        try:
            return getattr(f, attr)
        except Exception:  # noqa: BLE001, S112 - user objects may raise anything here
            continue
    return str(f)
