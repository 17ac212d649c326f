"""The Things Stack's webhook retries, as the demo's stand-in network server follows them.

By default The Things Stack tries a webhook once for each uplink: a body answered with a status outside
200-299 (or not answered within 10 s) is lost. With the webhook's Retries ticked (The Things Stack
3.30.1 on, Cloud Plus), a failed request is queued and tried again: 7 tries in all, the second 4 minutes
after the first failed, the third 8 minutes after the second, then four more 15 minutes apart, each
interval with 15 % jitter (docs: integrations/webhooks/retries; the deployment's defaults). The demo
posts as a network with Retries ticked: a body the bridge answered 503 (its store held, full or gone)
goes again on this schedule, in the herd's simulated time, and is given up after the seventh try.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

# The wait after each failed try (simulated seconds): 7 tries with the first.
RETRY_AFTER_S = (240.0, 480.0, 900.0, 900.0, 900.0, 900.0)
TRIES = len(RETRY_AFTER_S) + 1
JITTER = 0.15  # each wait drawn within +-15 % of its value


@dataclass(order=True)
class _Queued:
    due_s: float
    order: int
    body: dict = field(compare=False)
    tries: int = field(compare=False)  # tries made so far


class WebhookRetries:
    """The bodies waiting for their next try, by simulated time due; rng: a seed or a numpy Generator
    (same seed, same waits)."""

    def __init__(self, rng: int | np.random.Generator = 0) -> None:
        self.rng = np.random.default_rng(rng)
        self._queue: list[_Queued] = []
        self._order = 0
        self.retried = 0  # tries after a first, made
        self.given_up = 0  # bodies whose seventh try failed: lost, as The Things Stack loses them

    def failed(self, body: dict, tries: int, at_s: float) -> bool:
        """The tries-th try of body failed at simulated time at_s: queue its next try; False when that was
        the last (the body is given up)."""
        if tries >= TRIES:
            self.given_up += 1
            return False
        wait_s = RETRY_AFTER_S[tries - 1] * (1.0 + self.rng.uniform(-JITTER, JITTER))
        self._order += 1
        heapq.heappush(self._queue, _Queued(at_s + wait_s, self._order, body, tries))
        return True

    def due(self, now_s: float) -> list[tuple[dict, int]]:
        """The bodies due by simulated time now_s, oldest due first, with the try each is for (2 to 7);
        they leave the queue (`failed` puts one back)."""
        taken = []
        while self._queue and self._queue[0].due_s <= now_s:
            queued = heapq.heappop(self._queue)
            taken.append((queued.body, queued.tries + 1))
        self.retried += len(taken)
        return taken

    def next_due_s(self) -> float | None:
        """When the next queued try is due (simulated seconds), None when none waits."""
        return self._queue[0].due_s if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)
