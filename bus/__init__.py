"""The bus core: configuration, the envelope, broker topology, the confirmed pipeline, retry
and dead letters, idempotency, the database engine and the `govbus` command line."""

from bus.envelope import Envelope, build_envelope

__all__ = ["Envelope", "build_envelope"]
