"""Function dependencies for load-balanced tasks: ``@depend``, ``@require``, ``dependent``,
and the msg-id set ``Dependency`` (spec §7.7).

``dependent`` is written under the stock name ``ipyparallel.controller.dependency.dependent``
with stock's instance attributes (``f``, ``__name__``, ``df``, ``dargs``, ``dkwargs``), so a
dependent function crosses between oxipp and stock peers either way. It travels as a generic
``CannedObject`` whose hook calls :meth:`dependent.check_dependency` while the engine uncans the
request; a dependency function returning ``False`` raises ``UnmetDependency`` and the scheduler
offers the task to another engine.
"""

from __future__ import annotations

from types import ModuleType

from ._wire import wire_name
from .canning import _original_can_map, can, can_dependent, can_map, interactive
from .errors import UnmetDependency

__all__ = ["Dependency", "depend", "dependent", "require"]


class depend:
    """Decorator: ``@depend(df, *args, **kwargs)`` runs ``df(*args, **kwargs)`` on the engine
    before the task, and the task only runs there if that does not return ``False``."""

    def __init__(self, _wrapped_f, *args, **kwargs):
        self.f = _wrapped_f
        self.args = args
        self.kwargs = kwargs

    def __call__(self, f):
        return dependent(f, self.f, *self.args, **self.kwargs)


@wire_name("ipyparallel.controller.dependency")
class dependent:
    """A function paired with a dependency check. An object rather than a closure, so that it
    can be canned."""

    def __init__(self, _wrapped_f, _wrapped_df, *dargs, **dkwargs):
        self.f = _wrapped_f
        self.__name__ = getattr(_wrapped_f, "__name__", "f")
        self.df = _wrapped_df
        self.dargs = dargs
        self.dkwargs = dkwargs

    def check_dependency(self):
        if self.df(*self.dargs, **self.dkwargs) is False:
            raise UnmetDependency()

    def __call__(self, *args, **kwargs):
        return self.f(*args, **kwargs)


can_map[dependent] = _original_can_map[dependent] = can_dependent


# Engine side of ``@require``: import ``modules`` and bind ``mapping`` (canned objects) in the
# user namespace; a missing module is an unmet dependency.
#
# This code runs on engines of either kind (it is interactive, so it travels as code and runs
# in the engine's namespace). So it imports neither package at top level, raises an error
# *named* ``UnmetDependency`` (all a scheduler looks at), and uncans by duck typing, since the
# canned objects are oxipp's on an oxipp engine and stock's on a stock one. oxipp engines also
# run this code in place of stock's ``_require`` (see canning._local_code_for). No docstring:
# it would travel with every request.
@interactive
def _require(*modules, **mapping):
    user_ns = globals()
    try:
        from oxipp.serialize.errors import UnmetDependency
    except ImportError:
        try:
            from ipyparallel.error import UnmetDependency
        except ImportError:
            UnmetDependency = type("UnmetDependency", (Exception,), {})

    for name in modules:
        try:
            exec(f"import {name}", user_ns)
        except ImportError:
            raise UnmetDependency(name) from None

    for name, cobj in mapping.items():
        if any(c.__name__ == "CannedObject" for c in type(cobj).__mro__):
            cobj = cobj.get_object(user_ns)
        user_ns[name] = cobj
    return True


def require(*objects, **mapping):
    """Decorator: the task needs these modules imported and objects defined on the engine.

    Modules (or their names) are imported first; functions passed positionally are pushed under
    their ``__name__``; other objects go by keyword. A missing module is an unmet dependency.
    """
    names = []
    for obj in objects:
        if isinstance(obj, ModuleType):
            obj = obj.__name__
        if isinstance(obj, str):
            names.append(obj)
        elif hasattr(obj, "__name__"):
            mapping[obj.__name__] = obj
        else:
            raise TypeError(
                "Objects other than modules and functions "
                f"must be passed by kwarg, but got: {type(obj)}"
            )
    for name, obj in mapping.items():
        mapping[name] = can(obj)
    return depend(_require, *names, **mapping)


class Dependency(set):
    """A set of msg_ids a task depends on (sent as ``after``/``follow`` in request metadata).

    ``dependencies`` may hold msg_id strings, objects with a ``msg_ids`` list (AsyncResults) or
    be the dict form from :meth:`as_dict`. ``all``: all (True) or any (False) must finish;
    ``success``/``failure``: which outcomes count as finished.
    """

    all = True
    success = True
    failure = True

    def __init__(self, dependencies=(), all=True, success=True, failure=False):
        if isinstance(dependencies, dict):
            all = dependencies.get("all", True)
            success = dependencies.get("success", success)
            failure = dependencies.get("failure", failure)
            dependencies = dependencies.get("dependencies", [])
        if isinstance(dependencies, str) or hasattr(dependencies, "msg_ids"):
            dependencies = [dependencies]
        ids = []
        for d in dependencies:
            if isinstance(d, str):
                ids.append(d)
            elif hasattr(d, "msg_ids"):
                ids.extend(d.msg_ids)
            else:
                raise TypeError(f"invalid dependency type: {type(d)!r}")
        set.__init__(self, ids)
        self.all = all
        if not (success or failure):
            raise ValueError("Must depend on at least one of successes or failures!")
        self.success = success
        self.failure = failure

    def check(self, completed, failed=None) -> bool:
        """Whether the dependency is met, given sets of completed and failed msg_ids."""
        if len(self) == 0:
            return True
        against = set()
        if self.success:
            against = completed
        if failed is not None and self.failure:
            against = against.union(failed)
        if self.all:
            return self.issubset(against)
        return not self.isdisjoint(against)

    def unreachable(self, completed, failed=None) -> bool:
        """Whether the dependency can no longer be met."""
        if len(self) == 0:
            return False
        against = set()
        if not self.success:
            against = completed
        if failed is not None and not self.failure:
            against = against.union(failed)
        if self.all:
            return not self.isdisjoint(against)
        return self.issubset(against)

    def as_dict(self) -> dict:
        """JSON-able form, as sent in request metadata."""
        return dict(
            dependencies=list(self),
            all=self.all,
            success=self.success,
            failure=self.failure,
        )
