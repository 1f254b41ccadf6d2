"""oxipp's implementation of the apply/result serialization of ipyparallel (spec §5).

Pickles produced here are the ones stock ipyparallel 9.2 produces (same buffers, stock global
names), and pickles from stock peers load here without ipyparallel installed. Module layout
mirrors stock's (``canning``, ``serialize``, ``codeutil``) because stock peers ship code that
runs against these modules' globals; ``_wire`` explains the naming.

Nothing here imports ``oxipp._oxipp`` or ``ipyparallel``.
"""

from . import stock_helpers  # noqa: F401  (registers wire names of the shipped helpers)
from ._wire import WireUnpickler, dumps, loads
from .canning import (
    CannedArray,
    CannedBuffer,
    CannedBytes,
    CannedCell,
    CannedClass,
    CannedFunction,
    CannedMemoryView,
    CannedObject,
    CannedPartial,
    Reference,
    can,
    can_map,
    interactive,
    uncan,
    uncan_map,
    use_cloudpickle,
    use_dill,
    use_pickle,
)
from .codeutil import code_ctor
from .dependency import Dependency, depend, dependent, require
from .errors import UnmetDependency
from .serialize import (
    PrePickled,
    deserialize_object,
    pack_apply_message,
    serialize_object,
    unpack_apply_message,
)

__all__ = [
    "CannedArray",
    "CannedBuffer",
    "CannedBytes",
    "CannedCell",
    "CannedClass",
    "CannedFunction",
    "CannedMemoryView",
    "CannedObject",
    "CannedPartial",
    "Dependency",
    "PrePickled",
    "Reference",
    "UnmetDependency",
    "WireUnpickler",
    "can",
    "can_map",
    "code_ctor",
    "depend",
    "dependent",
    "deserialize_object",
    "dumps",
    "interactive",
    "loads",
    "pack_apply_message",
    "require",
    "serialize_object",
    "uncan",
    "uncan_map",
    "unpack_apply_message",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
]
