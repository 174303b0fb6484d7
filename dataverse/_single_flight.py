"""Single-flight loads: concurrent callers of one key share one load, and nothing of one caller leaks into another.

The first caller of a key (the leader) runs its load; callers arriving while it runs wait for its outcome.
- A value reaches every waiter.
- A failure (an `Exception`) reaches every waiter too, each as its own copy: no two tasks raise, and so
  mutate (traceback, context, notes, attributes such as `written`), one exception object.
- Nothing is kept: once a load ends, the next call of the key loads again; caching is the caller's part.
- A leader that is cancelled (or leaves by any other `BaseException`) abandons the load; it does not fail it.
  Its waiters are not cancelled: one of them loads again with its own load, the others wait for that one.
- A waiter that is cancelled only stops waiting: the load and the other waiters go on.
Metadata, tokens and environment discovery all load through it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

V = TypeVar("V")
E = TypeVar("E", bound=BaseException)


@dataclass(eq=False)
class _Flight(Generic[V]):
    done: anyio.Event = field(default_factory=anyio.Event)
    value: tuple[V] | None = None  # a tuple, so a loaded None is told apart from no value
    error: Exception | None = None


class SingleFlight(Generic[V]):
    """Loads by key: concurrent calls of one key share one load; each caller gets the value or its own error."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[V]] = {}

    async def run(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """The value of `load()`, or of the load of `key` already running; raises what that load raised."""
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.error is not None:
                raise copy_of(flight.error)
            if flight.value is not None:
                return flight.value[0]
            # The leader left without an outcome (cancelled): load again, or wait for whoever does.
        flight = self._flights[key] = _Flight()
        try:
            value = await load()
        except Exception as error:
            # A snapshot, taken before the leader's own callers see (and may change) the exception.
            flight.error = copy_of(error)
            raise
        else:
            flight.value = (value,)
            return value
        finally:
            # Without a value or an error (the leader was cancelled), the waiters wake to load again.
            del self._flights[key]
            flight.done.set()


def copy_of(error: E) -> E:
    """A distinct exception equal to `error`: type, arguments, attributes, notes, cause, context and traceback.

    `__init__` is not called: it may take keyword-only arguments (`ServiceError`) or arguments other than
    `args` (`UnknownTable`), and it has already run; `__new__` plus the instance's attributes rebuild it.
    """
    kind = type(error)
    if isinstance(error, BaseExceptionGroup):
        duplicate = kind.__new__(kind, error.message, [copy_of(member) for member in error.exceptions])
    else:
        duplicate = kind.__new__(kind, *error.args)
    duplicate.__dict__.update(vars(error))
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        duplicate.__notes__ = list(notes)
    duplicate.__cause__ = error.__cause__
    duplicate.__context__ = error.__context__
    duplicate.__suppress_context__ = error.__suppress_context__
    return duplicate.with_traceback(error.__traceback__)
