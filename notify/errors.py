"""How a channel says a notification did not go out."""
from __future__ import annotations


class DeliveryError(Exception):
    """The provider did not take the message. `permanent` when retrying cannot help (an invalid
    number, an unapproved template, bad credentials); otherwise the outbox retries with backoff."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent
