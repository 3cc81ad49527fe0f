"""The worker: runs stages on one broker connection, and keeps the reliability rules.

For each stage, in batches of what the broker has already sent:
decode -> look for duplicates by message id (bus.dedup) -> handle -> publish outputs
(pipelined confirms) -> when every output of an input is confirmed (or its effect committed),
acknowledge it. Inputs are acknowledged in delivery order with one
`multiple` ack, and never before what they caused is safe. Failures are retried through delay queues with
exponential backoff, or dead-lettered with their reason; a failed dead-letter publish
requeues the input rather than lose it. A lost connection is re-established, the topology
redeclared, and whatever was unacknowledged comes back from the broker.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from bus.broker import UNROUTABLE, Broker, Channel, Incoming
from bus.config import Settings
from bus.db import db_error_text
from bus.dedup import Deduplicator
from bus.errors import Failure, TransientError, Unroutable, failure_of
from bus.names import Header, Names
from bus.stage import CLAIM, RECORD, Delivery, Done, Failed, Forward, Stage
from bus.topology import Topology

log = logging.getLogger("govbus.worker")

_PRUNE_EVERY = 3600.0
_RELOAD_RETRY = 5  # seconds before a failed reload is tried again
_VERSION_CHECK = 30.0  # seconds between looks at the routing table's version
# RECORD stages hold acknowledgements up to this long, to record many ids in one transaction
_RECORD_DELAY = 0.1


class _Pending:
    """An input not yet acknowledged, and what it is waiting for."""

    __slots__ = ("incoming", "envelope", "handled", "outstanding", "claimed", "record", "suspect", "requeue_at",
                 "unroutable", "failing")

    def __init__(self, incoming: Incoming) -> None:
        self.incoming = incoming
        self.envelope = None
        self.handled = False  # an outcome is decided; never acknowledged before
        self.outstanding = 0
        self.claimed = False  # its message id is claimed in its queue's scope (CLAIM)
        self.record: str | None = None  # message id to record before the ack (RECORD)
        # it may be a duplicate: the broker redelivered it, an operator replayed it (work done
        # before it failed may be done again), or the stage before marked it so
        headers = incoming.headers
        self.suspect = incoming.redelivered or Header.POSSIBLE_DUPLICATE in headers or Header.REPLAYED_FROM in headers
        self.requeue_at: float | None = None
        self.unroutable: str | None = None
        self.failing = False  # its retry or dead letter is being published


def settle_heap() -> None:
    """Put what the process built to live on (compiled schemas, xmlschema's meta-schema, the
    routing table, SQLAlchemy's caches) out of the cyclic collector's sight. Measured here: a
    full collection over it paused a stage for 40-100 ms, the p99 of the whole pipeline."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _again(incoming: Incoming) -> bool:
    """Handled again despite a claim: redelivered, retried or replayed."""
    headers = incoming.headers
    return incoming.redelivered or bool(headers.get(Header.ATTEMPT)) or Header.REPLAYED_FROM in headers


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class StageRunner:
    """One stage on its own channel: the batch, the confirm window, the acks."""

    def __init__(self, stage: Stage, channel: Channel, settings: Settings, names: Names, dedup: Deduplicator,
                 stats: Counter[str] | None = None) -> None:
        self.stage = stage
        self.channel = channel
        self.settings = settings
        self.names = names
        self.dedup = dedup
        self.log = logging.getLogger(f"govbus.{stage.name}")
        self.stats: Counter[str] = Counter() if stats is None else stats
        self._batch: list[Incoming] = []
        self._pending: deque[_Pending] = deque()
        self._by_seq: dict[int, _Pending] = {}
        self._releases: list[tuple[str, str]] = []
        self._acks: list[int] = []  # done, to acknowledge once their ids are recorded
        self._records: list[tuple[str, str]] = []
        self._acks_since = 0.0
        self._requeue_backoff = 0.5

    def start(self, topology: Topology) -> None:
        self.stage.declare(topology)
        self.channel.qos(self.settings.prefetch)
        for queue in self.stage.queues():
            self.channel.consume(queue, self._receive)

    def _receive(self, incoming: Incoming) -> None:
        self._batch.append(incoming)

    @property
    def busy(self) -> bool:
        return bool(self._batch or self._pending or self._acks)

    def next_due(self) -> float | None:
        due = [t for t in (self.channel.next_due(), self._pending[0].requeue_at if self._pending else None) if t]
        if self._acks:
            due.append(self._acks_since + _RECORD_DELAY)
        return min(due) if due else None

    def flush(self) -> None:
        """Handle what arrived, take the confirms that came back, acknowledge what is done."""
        self.channel.tick()
        if self._batch:
            batch, self._batch = self._batch, []
            self._process(batch)
        self._take_confirms()
        self._settle()

    # -- processing -------------------------------------------------------------------------

    def _process(self, batch: list[Incoming]) -> None:
        stage = self.stage
        live: list[tuple[_Pending, Delivery]] = []
        in_batch: set[tuple[str, str]] = set()
        for incoming in batch:
            pending = _Pending(incoming)
            self._pending.append(pending)
            try:
                delivery = stage.decode(incoming)
            except Exception as exc:
                self._fail(pending, exc)
                continue
            pending.envelope = delivery.envelope
            if stage.dedupe and delivery.envelope is not None:
                key = (incoming.queue, delivery.envelope.message_id)
                if key in in_batch:
                    self.stats["duplicates"] += 1
                    pending.handled = True
                    continue
                in_batch.add(key)
            live.append((pending, delivery))
        if stage.dedupe == CLAIM and live:
            live = self._claim(live)
        elif stage.dedupe == RECORD and live:
            live = self._check(live)
        if not live:
            return
        try:
            outcomes = stage.handle([d for _, d in live])
        except Exception as exc:
            self.log.warning("batch of %d failed: %s", len(live), exc)
            outcomes = [Failed(exc)] * len(live)
        for (pending, delivery), outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, Forward):
                for publish in outcome.publishes:
                    env = publish.envelope
                    headers = env.headers()
                    if pending.suspect:
                        headers[Header.POSSIBLE_DUPLICATE] = 1
                    seq = self.channel.publish(
                        publish.exchange, publish.routing_key, env.body, env.message_id, env.correlation_id, headers
                    )
                    self._by_seq[seq] = pending
                    pending.outstanding += 1
                self.stats["forwarded"] += 1
            elif isinstance(outcome, Done):
                self.stats["done"] += 1
            else:
                self._fail(pending, outcome.error)
                continue
            pending.handled = True
            if stage.dedupe == RECORD:
                pending.record = delivery.envelope.message_id  # type: ignore[union-attr]

    def _claim(self, live: list[tuple[_Pending, Delivery]]) -> list[tuple[_Pending, Delivery]]:
        by_queue: dict[str, list[str]] = {}
        for pending, delivery in live:
            by_queue.setdefault(pending.incoming.queue, []).append(delivery.envelope.message_id)  # type: ignore[union-attr]
        try:
            new = {(q, m) for q, ids in by_queue.items() for m in self.dedup.claim(q, ids)}
        except Exception as exc:  # the database is away: nothing can be promised, retry later
            for pending, _ in live:
                self._fail(pending, TransientError(f"idempotency store unavailable: {db_error_text(exc)}"))
            return []
        kept = []
        for pending, delivery in live:
            incoming = pending.incoming
            pending.claimed = True
            if (incoming.queue, delivery.envelope.message_id) in new or _again(incoming):  # type: ignore[union-attr]
                kept.append((pending, delivery))
            else:
                self.stats["duplicates"] += 1
                pending.handled = True
        return kept

    def _check(self, live: list[tuple[_Pending, Delivery]]) -> list[tuple[_Pending, Delivery]]:
        by_queue: dict[str, list[str]] = {}
        for pending, delivery in live:
            if pending.suspect:
                by_queue.setdefault(pending.incoming.queue, []).append(delivery.envelope.message_id)  # type: ignore[union-attr]
        if not by_queue:
            return live
        # handled here already, but not yet recorded: still in flight, or waiting to be batched
        seen = set(self._records)
        seen.update((p.incoming.queue, p.record) for p in self._pending if p.record is not None)
        try:
            seen.update((q, m) for q, ids in by_queue.items() for m in self.dedup.seen(q, ids))
        except Exception as exc:  # the database is away: the suspects wait, the rest go on
            for pending, _ in live:
                if pending.suspect:
                    self._fail(pending, TransientError(f"idempotency store unavailable: {db_error_text(exc)}"))
            return [(p, d) for p, d in live if not p.suspect]
        kept = []
        for pending, delivery in live:
            if pending.suspect and (pending.incoming.queue, delivery.envelope.message_id) in seen:  # type: ignore[union-attr]
                self.stats["duplicates"] += 1
                pending.handled = True
            else:
                kept.append((pending, delivery))
        return kept

    def _fail(self, pending: _Pending, exc: BaseException) -> None:
        failure = failure_of(exc)
        pending.handled = True
        pending.record = None
        incoming = pending.incoming
        if not self.stage.dead_letters:
            self.log.warning("requeueing a message: %s", failure.describe())
            self._hold(pending)
            return
        try:
            attempt = int(incoming.headers.get(Header.ATTEMPT) or 0) + 1
        except (TypeError, ValueError):
            attempt = 1
        now = _now_text()
        headers: dict[str, Any] = dict(incoming.headers)
        headers.setdefault(Header.ORIGIN_EXCHANGE, incoming.exchange)
        headers.setdefault(Header.ORIGIN_ROUTING_KEY, incoming.routing_key)
        headers.setdefault(Header.FIRST_FAILURE, now)
        headers[Header.LAST_FAILURE] = now
        headers[Header.ATTEMPT] = attempt
        headers[Header.LAST_ERROR] = failure.describe()[:1000]
        message_id = pending.envelope.message_id if pending.envelope is not None else incoming.message_id
        retry = self.settings.retry
        if not failure.permanent and attempt < retry.attempts:
            seq = self.channel.publish_delayed(
                retry.delay_ms(attempt), incoming.queue, incoming.body, message_id, incoming.correlation_id,
                headers, self.names.retry_exchange(),
            )
            self.stats["retried"] += 1
            self.log.info("retrying %s from %s in %.1fs (attempt %d failed): %s", message_id, incoming.queue,
                          retry.delay_ms(attempt) / 1000, attempt, failure.describe())
        else:
            headers.update(self._dead_letter_headers(failure, incoming.queue))
            if pending.claimed and pending.envelope is not None:
                # so that the sender may send it again, corrected, under the same id
                self._releases.append((incoming.queue, pending.envelope.message_id))
            seq = self.channel.publish(
                self.names.dead_letter_exchange(), incoming.queue, incoming.body, message_id,
                incoming.correlation_id, headers,
            )
            self.stats["dead_lettered"] += 1
            self.log.info("dead-lettered %s from %s: %s [%s]", message_id, incoming.queue, failure.describe(), failure.code)
        pending.failing = True
        self._by_seq[seq] = pending
        pending.outstanding += 1

    def _dead_letter_headers(self, failure: Failure, queue: str) -> dict[str, Any]:
        extra: dict[str, Any] = {
            Header.REASON: failure.code,
            Header.REASON_TEXT: failure.message[:1000],
            Header.STAGE: self.stage.name,
            Header.QUEUE: queue,
            Header.DEAD_LETTER_ID: str(uuid.uuid4()),
        }
        for name, value in ((Header.RULE, failure.rule), (Header.LINE, failure.line), (Header.COLUMN, failure.column)):
            if value is not None:
                extra[name] = value
        return extra

    def _hold(self, pending: _Pending) -> None:
        # Requeued messages come straight back: give the cause (a database, say) time to pass.
        pending.requeue_at = time.monotonic() + self._requeue_backoff
        self._requeue_backoff = min(self._requeue_backoff * 2, 30.0)

    # -- confirms and acks -----------------------------------------------------------------

    def _take_confirms(self) -> None:
        for seq, failure in self.channel.take_confirms():
            pending = self._by_seq.pop(seq, None)
            if pending is None:
                continue
            pending.outstanding -= 1
            if failure is not None:
                if failure.startswith(UNROUTABLE) and not pending.failing:
                    pending.unroutable = failure
                else:  # a nack, or the retry or dead letter itself could not be published
                    self.log.error("could not publish for %s: %s; requeueing it", pending.incoming.queue, failure)
                    self._hold(pending)
            if pending.outstanding == 0 and pending.unroutable and pending.requeue_at is None:
                reason, pending.unroutable = pending.unroutable, None
                self._fail(pending, Unroutable(reason))

    def finish(self) -> None:
        """Acknowledge what is done now, without waiting to batch it: the worker is stopping."""
        self._take_confirms()
        self._settle(force=True)

    def _settle(self, force: bool = False) -> None:
        now = time.monotonic()
        pending_queue = self._pending
        while pending_queue:
            pending = pending_queue[0]
            if pending.outstanding or not pending.handled:
                break
            if pending.requeue_at is not None:
                if pending.requeue_at > now:
                    break
                pending_queue.popleft()
                self.channel.reject(pending.incoming.tag, requeue=True)
                self.stats["requeued"] += 1
                continue
            pending_queue.popleft()
            if not self._acks:
                self._acks_since = now
            self._acks.append(pending.incoming.tag)
            if pending.record is not None:
                self._records.append((pending.incoming.queue, pending.record))
        if self._releases:
            releases, self._releases = self._releases, []
            try:
                self.dedup.release(releases)
            except Exception as exc:  # only a resend under the same id is affected
                self.log.warning("could not give back %d claims: %s", len(releases), db_error_text(exc))
        if not self._acks:
            return
        if self._records:
            if not force and len(self._acks) < self.settings.batch_size and now - self._acks_since < _RECORD_DELAY:
                return  # a few more ids in the same transaction
            try:
                self.dedup.record(self._records)
            except Exception as exc:  # the effect is safe; a redelivery may repeat it downstream,
                self.log.warning("could not record %d handled ids: %s", len(self._records), db_error_text(exc))  # where it is caught
            self._records = []
        acks, self._acks = self._acks, []
        self.channel.ack(acks)
        self._requeue_backoff = 0.5

    def reset(self) -> None:
        """Forget everything in flight: after a lost connection the broker redelivers it."""
        self._batch = []
        self._pending.clear()
        self._by_seq.clear()
        self._acks, self._records = [], []


class Worker:
    """Runs stages on one connection until stopped; reconnects when the broker goes away.

    With `rebuild` (a factory of stages on a freshly loaded routing table) and `version` (the
    routing table's version), the worker reloads when told on the control exchange, or when
    it finds the version changed (checked every 30 seconds): it stops consuming, finishes and
    acknowledges what is in hand, and starts the stages anew. Nothing in flight is lost; the
    process goes on.
    """

    def __init__(self, settings: Settings, stages: Sequence[Stage], dedup: Deduplicator, *, names: Names | None = None,
                 rebuild: Callable[[], list[Stage]] | None = None, version: Callable[[], int] | None = None) -> None:
        self.settings = settings
        self.stages = list(stages)
        self.dedup = dedup
        self.names = names or Names(settings.prefix)
        self.broker = Broker(settings.broker_url)
        self.runners: list[StageRunner] = []
        self._rebuild = rebuild
        self._version = version
        self._loaded_version: int | None = None
        self._reload_wanted = False
        self._next_version_check = 0.0
        self._id = uuid.uuid4().hex[:12]
        # per stage, across reconnections
        self._stats: dict[str, Counter[str]] = {stage.name: Counter() for stage in self.stages}
        self.connected = threading.Event()

    @property
    def routing_version(self) -> int | None:
        """The version of the routing table the stages run on (None without reloading)."""
        return self._loaded_version

    def stats(self) -> dict[str, Counter[str]]:
        """What each stage did: forwarded, done, duplicates, retried, dead_lettered, requeued."""
        return self._stats

    def _start(self) -> None:
        self.broker.connect()
        topology = Topology(self.broker.connection.default_channel, self.settings, self.names)  # type: ignore[union-attr]
        if self._rebuild is not None:
            control = self.broker.channel()
            control.consume(topology.control(self._id), self._notice)
            self._control = control
            if self._loaded_version is None:
                self._loaded_version = self._version() if self._version else None
        self._start_runners(topology)
        settle_heap()
        self.connected.set()

    def _start_runners(self, topology: Topology) -> None:
        self.runners = []
        for stage in self.stages:
            self._stats.setdefault(stage.name, Counter())
            runner = StageRunner(stage, self.broker.channel(), self.settings, self.names, self.dedup, self._stats[stage.name])
            runner.start(topology)
            self.runners.append(runner)

    def _notice(self, incoming: Incoming) -> None:
        self._control.ack([incoming.tag])
        self._reload_wanted = True

    def _maybe_reload(self, now: float) -> None:
        if self._rebuild is None:
            return
        if not self._reload_wanted and now >= self._next_version_check and self._version is not None:
            self._next_version_check = now + _VERSION_CHECK
            try:
                self._reload_wanted = self._version() != self._loaded_version
            except Exception as exc:  # the catalogue database is away: keep routing on the table in hand
                log.warning("cannot read the routing version (%s); still on version %s", exc, self._loaded_version)
        if self._reload_wanted:
            self._reload(now)

    def _reload(self, now: float) -> None:
        """Finish what is in hand on the old stages, then start new ones on the new table.

        The new stages are built first: if the catalogue cannot be read, the old stages go on
        with the table they have, and the reload is tried again a few seconds later."""
        self._reload_wanted = False
        try:
            version = self._version() if self._version else None
            stages = self._rebuild()  # type: ignore[misc]
        except Exception as exc:
            log.warning("routing table not reloaded (%s); still on version %s, trying again in %d s",
                        exc, self._loaded_version, _RELOAD_RETRY)
            self._next_version_check = now + _RELOAD_RETRY
            return
        for runner in self.runners:
            runner.channel.cancel()
        deadline = time.monotonic() + 10.0
        while any(r.busy for r in self.runners) and time.monotonic() < deadline:
            self.broker.drain(0.05)
            for runner in self.runners:
                runner.flush()
                runner.finish()
        for runner in self.runners:
            runner.finish()
        self.broker.drain(0)  # sends the acknowledgements
        for runner in self.runners:
            runner.channel.close()
        self.stages = stages
        self._start_runners(Topology(self.broker.connection.default_channel, self.settings, self.names))  # type: ignore[union-attr]
        self._loaded_version = version
        log.info("routing table reloaded (version %s)", version)

    def run(self, stop: threading.Event | None = None, *, idle_exit: float | None = None, reconnect: bool = True) -> None:
        """Run until `stop` is set, or, with `idle_exit`, until nothing has happened for that
        many seconds and nothing is in flight.

        Raises:
            the broker's connection error, when `reconnect` is False and it cannot connect.
        """
        stop = stop or threading.Event()
        backoff = 0.5
        try:
            while not stop.is_set():
                try:
                    self._start()
                    backoff = 0.5
                    self._loop(stop, idle_exit)
                    return
                except self.broker.errors + self.broker.channel_errors as exc:
                    # A channel error (an exchange deleted under us, say) is cured the same
                    # way: a new connection declares the topology again.
                    self.connected.clear()
                    for runner in self.runners:
                        runner.reset()
                    self.broker.close()
                    if not reconnect:
                        raise
                    log.warning("broker connection lost (%s); reconnecting in %.1fs", exc or type(exc).__name__, backoff)
                    if stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, 15.0)
        finally:
            self.connected.clear()
            self.broker.close()
            self.dedup.close()

    def _loop(self, stop: threading.Event, idle_exit: float | None) -> None:
        self._turn(stop, idle_exit)
        # stopping: acknowledge what is done rather than have the broker redeliver it
        for runner in self.runners:
            runner.finish()
        self.broker.drain(0)  # sends the acknowledgements

    def _turn(self, stop: threading.Event, idle_exit: float | None) -> None:
        broker = self.broker
        runners = self.runners
        burst = self.settings.batch_size
        last_activity = time.monotonic()
        next_prune = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            timeout = 0.25
            for runner in runners:
                due = runner.next_due()
                if due is not None:
                    timeout = max(0.0, min(timeout, due - now))
            got = broker.drain(timeout)
            if got:
                events = 1
                while events < burst and broker.drain(0):
                    events += 1
            for runner in self.runners:
                runner.flush()
            broker.heartbeat_check()
            now = time.monotonic()
            self._maybe_reload(now)
            runners = self.runners
            if got or any(r.busy for r in runners):
                last_activity = now
            elif idle_exit is not None and now - last_activity >= idle_exit and all(r.next_due() is None for r in runners):
                return
            if now >= next_prune:
                next_prune = now + _PRUNE_EVERY
                try:
                    self.dedup.prune(timedelta(days=self.settings.dedup_days))
                except Exception as exc:
                    log.warning("could not prune the idempotency store: %s", exc)
