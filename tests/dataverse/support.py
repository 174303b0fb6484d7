"""Helpers for client tests: a recording sleep (no test waits for real) and token providers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dataverse import AccessToken, RetryPolicy


@dataclass
class RecordedSleep:
    """Stands in for anyio.sleep: records each wait instead of waiting."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def instant_retries(**options: float) -> tuple[RetryPolicy, RecordedSleep]:
    sleep = RecordedSleep()
    return RetryPolicy(sleep=sleep, jitter=lambda: 0.5, **options), sleep  # type: ignore[arg-type]


@dataclass
class RotatingTokens:
    """Hands out `tokens` in turn, one per forced refresh, and counts what was asked."""

    tokens: list[str]
    calls: int = 0
    refreshes: int = 0

    async def token(self, *, force_refresh: bool = False) -> AccessToken:
        self.calls += 1
        if force_refresh:
            self.refreshes += 1
        index = min(self.refreshes, len(self.tokens) - 1)
        return AccessToken(self.tokens[index], time.time() + 3600)
