"""Token buckets for requests-per-minute and tokens-per-minute limits, and retry back-off."""
from __future__ import annotations

import asyncio
import random
import time


class TokenBucket:
    """Refills `rate_per_minute / 60` units a second up to `capacity` (default: one second's worth, at
    least one). `acquire(n)` waits until the bucket can pay; a cost larger than the capacity is let
    through when the bucket is full and leaves it in debt, so no request can wait forever.
    `adjust(delta)` settles a reservation against the real cost afterwards."""

    def __init__(self, rate_per_minute: float, capacity: float | None = None, clock=time.monotonic):
        if rate_per_minute <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate_per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, self.rate)
        self.level = self.capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, cost: float = 1.0) -> None:
        async with self._lock:  # first come, first served
            while True:
                self._refill()
                need = min(cost, self.capacity)
                if self.level >= need:
                    self.level -= cost
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def adjust(self, delta: float) -> None:
        """Charge (positive) or refund (negative) the difference between estimated and real cost."""
        self._refill()
        self.level = min(self.capacity, self.level - delta)


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Exponential back-off with full jitter; never shorter than the server's Retry-After."""
    rng = rng or random
    delay = rng.uniform(0, min(cap, base * (2 ** attempt)))
    if retry_after is not None and retry_after >= 0:
        delay = max(delay, retry_after)
    return delay
