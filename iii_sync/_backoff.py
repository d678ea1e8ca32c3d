"""The reconnect policy: exponential back-off with jitter, as a value object."""

import random
from typing import Callable, Optional

# Defaults match the official SDKs, so a fleet of mixed workers reconnects to a
# restarted engine at the same pace: 1 s, 2 s, 4 s, ... capped at 30 s, with
# 30 % jitter so that workers do not all knock at the same instant.
DEFAULT_INITIAL = 1.0
DEFAULT_MAXIMUM = 30.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_JITTER = 0.3


class Backoff:
    """How long to wait before each reconnect attempt, and when to give up.

    Immutable and thread-safe. The delay before attempt ``n`` (counting from
    0) is ``min(initial * multiplier ** n, maximum)``, moved by a uniform
    random fraction of up to ``jitter`` either way, never below zero.

    Args:
        initial: Seconds before the first retry.
        maximum: The cap on any one delay, in seconds.
        multiplier: Growth factor between attempts.
        jitter: Fraction of the delay to randomise, from 0 to 1.
        max_retries: Attempts after which the worker gives up and its state
            becomes ``FAILED``; None retries forever.

    Raises:
        ValueError: a negative value, a multiplier below 1 or jitter above 1.
    """

    __slots__ = ("initial", "maximum", "multiplier", "jitter", "max_retries")

    def __init__(
        self,
        initial: float = DEFAULT_INITIAL,
        maximum: float = DEFAULT_MAXIMUM,
        multiplier: float = DEFAULT_MULTIPLIER,
        jitter: float = DEFAULT_JITTER,
        max_retries: Optional[int] = None,
    ) -> None:
        if not (0 <= initial < float("inf") and 0 <= maximum < float("inf")):
            raise ValueError("back-off delays must be finite and not negative")
        if not 1 <= multiplier < float("inf"):
            raise ValueError("multiplier must be finite and at least 1")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be None or at least 0")

        self.initial = float(initial)
        self.maximum = float(maximum)
        self.multiplier = float(multiplier)
        self.jitter = float(jitter)
        self.max_retries = max_retries

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Returns the seconds to wait before retry number ``attempt`` (from 0)."""
        try:
            base = min(self.initial * self.multiplier**attempt, self.maximum)
        except OverflowError:
            base = self.maximum
        spread = base * self.jitter * (2.0 * rand() - 1.0)
        return max(0.0, base + spread)

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` retries have been made and no more are allowed."""
        return self.max_retries is not None and attempt >= self.max_retries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Backoff):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, k) for k in self.__slots__))

    def __repr__(self) -> str:
        return (
            "Backoff(initial=%r, maximum=%r, multiplier=%r, jitter=%r, "
            "max_retries=%r)"
            % (
                self.initial,
                self.maximum,
                self.multiplier,
                self.jitter,
                self.max_retries,
            )
        )
