"""JSON text for message content that user code helped build.

Reply and IOPub content leaves Python as JSON text (the runtime signs and sends it as is), and
parts of it come from user code: display data, user_expressions, payloads, exception messages.
ipykernel runs such content through ``json_clean``; this is the same idea with stdlib ``json``:
the fast path is one ``json.dumps``, and only content that fails it (bytes, datetimes, numpy
scalars, NaN, non-string keys) takes the slow cleaning walk. Content never makes the engine fail:
anything left over is sent as its ``repr``.
"""

from __future__ import annotations

import json
import math
from base64 import b64encode
from datetime import date, datetime

__all__ = ["dumps", "json_clean"]


def _default(obj):
    """Fallback for values ``json`` does not know, in the spirit of ipykernel's json_clean."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        # binary display data (e.g. image/png) travels base64-encoded
        return b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        try:
            return tolist()
        except Exception:
            pass
    return repr(obj)


def json_clean(obj, _depth: int = 0):
    """A copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts."""
    if _depth > 100:
        return repr(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            return repr(obj)
        return obj
    if isinstance(obj, dict):
        return {str(k): json_clean(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_clean(v, _depth + 1) for v in obj]
    converted = _default(obj)
    if isinstance(converted, (list, dict)):
        return json_clean(converted, _depth + 1)
    return converted


def dumps(obj) -> str:
    """Serialize message content to JSON text; never raises for odd content."""
    try:
        return json.dumps(obj, default=_default, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(json_clean(obj))
