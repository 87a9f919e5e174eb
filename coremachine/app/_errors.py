"""Errors of the public job API: what a handler raises, and what a bad app is."""

from __future__ import annotations


class RetryableError(Exception):
    """A transient failure: the task is tried again (with backoff) while attempts remain."""


class PermanentError(Exception):
    """A failure retrying cannot fix: the task fails at once."""


class AppError(Exception):
    """An app or its definitions are unusable; the message names the culprit.

    Raised at start-up (loading and checking the apps), so a service with a
    bad app stops before it takes any work.
    """


# Exceptions that mean the input or the code is wrong, so retrying is pointless.
PERMANENT_BY_DEFAULT: tuple[type[BaseException], ...] = (
    PermanentError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    NotImplementedError,
)


def is_retryable(exc: BaseException) -> bool:
    """RetryableError and unknown errors retry; PermanentError and programming errors do not."""
    if isinstance(exc, RetryableError):
        return True
    return not isinstance(exc, PERMANENT_BY_DEFAULT)
