"""When a webhook attempt counts as delivered, when it is retried, and how long to wait first.

A receiver that is briefly down (5xx), asks us to slow down (429), or cannot be reached gets
another attempt after a doubling, jittered pause; one that answers with any other 4xx or with a
redirect has told us something that retrying will not change, so that answer is final. The pause
lives in the outbox row (`next_attempt_at`), never in a sleeping coroutine, so a waiting event
costs nothing and survives a restart.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Literal

from agent_growth.settings import Settings

Outcome = Literal["delivered", "retry", "failed"]

DEFAULT_BACKOFF_BASE_S = 1.0
"""First pause; each later one doubles, so three attempts wait 1 s, then 2 s."""

DEFAULT_JITTER_RATIO = 0.25
"""Pauses vary by up to a quarter either way, so events that failed together spread out."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    jitter_ratio: float = DEFAULT_JITTER_RATIO

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        backoff_base_s: float = DEFAULT_BACKOFF_BASE_S,
        jitter_ratio: float = DEFAULT_JITTER_RATIO,
    ) -> DeliveryPolicy:
        return cls(
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
            backoff_base_s=backoff_base_s,
            jitter_ratio=jitter_ratio,
        )

    def backoff_s(self, *, attempt: int) -> float:
        """Pause after failed attempt number `attempt` (1-based) before the next one."""
        nominal_s = self.backoff_base_s * 2 ** (attempt - 1)
        return nominal_s * random.uniform(1 - self.jitter_ratio, 1 + self.jitter_ratio)

    def outcome(self, *, retryable: bool, attempt: int) -> Outcome:
        """`retry` while attempts remain for a retryable failure, otherwise `failed`."""
        if retryable and attempt < self.max_attempts:
            return "retry"
        return "failed"


def is_retryable_status(status_code: int) -> bool:
    """True for answers that may change by themselves: 5xx and 429 Too Many Requests."""
    return status_code >= 500 or status_code == 429
