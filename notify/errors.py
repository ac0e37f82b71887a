"""How a channel says a notification did not go out."""
from __future__ import annotations


class DeliveryError(Exception):
    """The provider did not take the message. `permanent` when retrying cannot help (an invalid
    number, an unapproved template, bad credentials); otherwise the outbox retries with backoff."""

    def __init__(self, message: str, permanent: bool = False, retry_at=None):
        super().__init__(message)
        self.permanent = permanent
        # Not a failure but "not now" (a reminder in quiet hours or a paused campaign): the row waits
        # until then and the attempt does not count.
        self.retry_at = retry_at
