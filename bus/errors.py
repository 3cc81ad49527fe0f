"""The bus's errors, and the one place where any failure becomes a dead-letter reason.

Permanent errors (the same message would fail the same way again) go to the dead-letter queue
at once; transient ones are retried with backoff up to a cap. `failure_of` turns any exception
raised by a stage, ours or a library's, into the `Failure` that travels in dead-letter headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import ValidationError


class BusError(Exception):
    """Base of the bus's own errors. `code` is the stable reason code operators filter on."""

    code = "bus_error"
    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(BusError):
    """A setting, file or wiring that cannot work; raised when a process starts."""

    code = "config_error"


class UnknownResource(BusError):
    code = "unknown_resource"


class NotAuthorized(BusError):
    """The sender is not the resource's provider (or not allowed to do what it asked)."""

    code = "not_authorized"


class HeaderMismatch(BusError):
    """AMQP properties say something other than the envelope they carry."""

    code = "header_mismatch"


class Undecodable(BusError):
    """A message lacking what the stage needs to even read it (e.g. routing headers)."""

    code = "undecodable"


class Unroutable(BusError):
    """The broker returned a publish: no queue is bound for its exchange and routing key."""

    code = "unroutable"


class BrokerRefused(BusError):
    """The broker refused an operation (no such exchange, no permission)."""

    code = "broker_refused"


class TransientError(BusError):
    """Worth retrying: the same message may succeed later (adapter down, database locked)."""

    code = "transient"
    permanent = False


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message could not go on: what travels in dead-letter headers."""

    code: str
    message: str
    permanent: bool
    rule: str | None = None
    line: int | None = None
    column: int | None = None

    def describe(self) -> str:
        """One line for people: message, rule, line and column."""
        parts = [self.message]
        if self.rule:
            parts.append(f"[{self.rule}]")
        if self.line:
            parts.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        return " ".join(parts)


def failure_of(exc: BaseException) -> Failure:
    """Classify any exception raised while handling a message."""
    if isinstance(exc, ValidationError):
        return Failure(exc.code, exc.message, True, exc.rule, exc.line, exc.column)
    if isinstance(exc, BusError):
        return Failure(exc.code, exc.message, exc.permanent)
    # Anything else is a bug or an outage we did not foresee: retrying costs little and gives
    # the operator time; after the last attempt the message is dead-lettered with the text.
    return Failure("stage_error", f"{type(exc).__name__}: {exc}", False)
