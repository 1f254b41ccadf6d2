"""Pickling code objects the way stock ipyparallel does.

A code object travels as ``code_ctor(*args)`` where ``args`` are the positional parameters of
``types.CodeType`` for the *sender's* CPython, in signature order (3.11: argcount,
posonlyargcount, kwonlyargcount, nlocals, stacksize, flags, codestring, constants, names,
varnames, filename, name, qualname, firstlineno, linetable, exceptiontable, freevars, cellvars).
Bytecode is version-specific, so client and engines must run the same CPython minor version.

Unlike stock, importing this module does not register a process-wide ``copyreg`` reducer: only
oxipp's own picklers (``_wire``) use :func:`reduce_code`, so oxipp does not change how other
code in the process pickles code objects.
"""

from __future__ import annotations

import inspect
import sys
import types

from ._wire import wire_name

__all__ = ["code_ctor", "reduce_code"]


@wire_name("ipyparallel.serialize.codeutil")
def code_ctor(*args):
    """Rebuild a code object from ``types.CodeType`` positional arguments."""
    return types.CodeType(*args)


# CodeType parameter names that do not match the co_* attribute names
_RENAMED = {"codestring": "code", "constants": "consts"}


def _code_field_names() -> tuple[str, ...]:
    is_pypy = hasattr(sys, "pypy_version_info")
    if sys.version_info >= (3, 10):
        try:
            params = inspect.signature(types.CodeType).parameters
        except (TypeError, ValueError):
            params = None
        if params is not None:
            # every parameter, like stock (its kind filter is always true)
            return tuple(
                _RENAMED.get(name, name) for name in params if not (is_pypy and name == "magic")
            )
    # CPython 3.9: CodeType has no introspectable signature
    names = [
        "argcount",
        "posonlyargcount",
        "kwonlyargcount",
        "nlocals",
        "stacksize",
        "flags",
        "code",
        "consts",
        "names",
        "varnames",
        "filename",
        "name",
        "firstlineno",
        "lnotab",
        "freevars",
        "cellvars",
    ]
    if not hasattr(types.CodeType, "co_posonlyargcount"):
        names.remove("posonlyargcount")
    return tuple(names)


_CODE_FIELDS = _code_field_names()


def reduce_code(code: types.CodeType):
    """``copyreg``-style reducer: ``(code_ctor, constructor args)``."""
    return code_ctor, tuple(getattr(code, "co_" + name) for name in _CODE_FIELDS)
