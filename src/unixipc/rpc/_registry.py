"""The table of a server's methods, and how each kind of function is run (private)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from ._protocol import MethodInfo, check_name

_F = TypeVar("_F", bound=Callable[..., Any])

# How a method runs: in a thread, or on the server's event loop; streaming or not.
SYNC, SYNC_STREAM, ASYNC, ASYNC_STREAM = 0, 1, 2, 3


def _mode(function: Callable[..., Any]) -> int:
    target = function
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(function, "__call__", function)  # noqa: B004 (callable objects)
    if inspect.isasyncgenfunction(target):
        return ASYNC_STREAM
    if inspect.iscoroutinefunction(target):
        return ASYNC
    if inspect.isgeneratorfunction(target):
        return SYNC_STREAM
    return SYNC


class Method:
    """One registered function."""

    __slots__ = ("function", "inline", "mode", "name", "slow")

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.name = name
        self.function = function
        self.mode = _mode(function)
        # Seen running for a watchdog tick or more: its calls get a thread of their
        # own at once (until one of them turns out quick again).
        self.slow = False
        # Its calls may run in the thread that read them (the server's fast path).
        self.inline = self.mode == SYNC

    def set_slow(self, slow: bool) -> None:
        self.slow = slow
        self.inline = self.mode == SYNC and not slow

    def info(self) -> MethodInfo:
        try:
            signature = str(inspect.signature(self.function))
        except (TypeError, ValueError):  # some builtins have none
            signature = "(...)"
        doc = inspect.getdoc(self.function) or ""
        return MethodInfo(self.name, signature, doc, self.mode in (SYNC_STREAM, ASYNC_STREAM))


class Registry:
    """The methods a server offers: ``@server.function`` and ``server.register(obj)``."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    @overload
    def function(self, function: _F, /) -> _F: ...

    @overload
    def function(self, /, *, name: str | None = None) -> Callable[[_F], _F]: ...

    def function(
        self, function: Callable[..., Any] | None = None, /, *, name: str | None = None
    ) -> Any:
        """Offer a function to clients, as a decorator: ``@server.function`` or
        ``@server.function(name="add")``.

        A plain function runs in one of the server's threads; an ``async def``
        function runs on the server's event loop; a generator (or async
        generator) function streams the items it yields. The function is
        returned unchanged.

        Raises:
            TypeError: not callable, or the name is not a str.
            ValueError: the name is empty, starts with '_', or is taken.
        """
        if function is None:

            def decorate(decorated: _F) -> _F:
                self._offer(decorated, name)
                return decorated

            return decorate
        self._offer(function, name)
        return function

    def _offer(self, function: Callable[..., Any], name: str | None) -> None:
        if not callable(function):
            raise TypeError(f"server.function needs a callable, not {type(function).__name__}")
        self._add(name if name is not None else getattr(function, "__name__", None), function)

    def register(self, obj: object) -> None:
        """Offer every public method of ``obj`` (names not starting with '_').

        Raises:
            ValueError: a name is already taken (nothing is registered then).
        """
        found = {
            name: member
            for name, member in inspect.getmembers(obj, callable)
            if not name.startswith("_") and not inspect.isclass(member)
        }
        taken = sorted(set(found) & set(self._methods))
        if taken:
            raise ValueError(f"methods already registered: {', '.join(taken)}")
        for name, member in found.items():
            self._add(name, member)

    def _add(self, name: object, function: Callable[..., Any]) -> None:
        checked = check_name(name)
        if checked in self._methods:
            raise ValueError(f"a method named {checked!r} is already registered")
        self._methods[checked] = Method(checked, function)

    def _listing(self) -> list[list[Any]]:
        """What a LIST request answers: [name, signature, doc, streaming] per method."""
        result = []
        for name in sorted(self._methods):
            info = self._methods[name].info()
            result.append([info.name, info.signature, info.doc, info.streaming])
        return result
