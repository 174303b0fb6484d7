"""When to retry a request, and how long to wait: Dataverse's service protection and transient failures.

429: wait what `Retry-After` says (each wait and the total bounded), then retry any request: a throttled
request was not executed. 502/503/504, timeouts and dropped connections: retry with jittered exponential
backoff, but only requests that are safe to repeat. The clock and the random source are injectable so tests
run without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

TRANSIENT_STATUSES = frozenset({502, 503, 504})


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    max_retry_after: float = 60.0
    max_total_wait: float = 180.0
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = field(default=anyio.sleep, repr=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the `attempt`-th retry (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return float(ceiling * (0.5 + self.jitter() / 2))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (Dataverse sends seconds; HTTP dates are not used by it)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(seconds, 0.0)
