"""The reliability rules, on the in-memory transport and on RabbitMQ: each message is delivered
once per subscriber, transient failures are retried on the policy's schedule, and whatever
cannot be delivered is dead-lettered with its reason, to be replayed or discarded later.

The worker is built from the real ingress, router and dead-letter stages and a deliver stage
whose departments are scripted fakes (`Department`), injected the way nameko tests inject
dependencies.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import kombu
import kombu.transport.memory
import pytest

import bus.deadletter
import bus.ingress
import routes.router
from bus.app import Context, open_context
from bus.broker import Broker, publish_confirmed
from bus.config import RetryPolicy
from bus.deadletter import DeadLetter, DeadLetterStore
from bus.dedup import Deduplicator
from bus.deliver import DeliverStage, Outbound
from bus.envelope import Envelope
from bus.errors import BusError, NotAuthorized, TransientError
from bus.names import Header
from bus.worker import Worker
from tests.conftest import inbox_ids, make_settings, running, submit, wait_until
from tests.samples import person_envelope, random_people


class Department:
    """A department's system behind the deliver stage. The first `fails` attempts at each
    message fail with `error(attempt number)`: raised (the whole batch fails, as when the
    department's service is down) or, with `raises=False`, returned for that message alone.
    Every attempt is timed; what is stored is kept in order, so a duplicate would show."""

    def __init__(
        self, error: Callable[[int], BaseException] | None = None, fails: float = 0, *, raises: bool = True
    ) -> None:
        self.error = error
        self.fails = fails
        self.raises = raises
        self._lock = threading.Lock()
        self._attempts: dict[str, list[float]] = {}
        self._stored: list[Envelope] = []

    def deliver(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        with self._lock:
            results: list[BaseException | None] = []
            for env in envelopes:
                tries = self._attempts.setdefault(env.message_id, [])
                tries.append(time.monotonic())
                results.append(self.error(len(tries)) if self.error and len(tries) <= self.fails else None)
            failures = [r for r in results if r is not None]
            if self.raises and failures:
                raise failures[0]
            self._stored += [env for env, result in zip(envelopes, results) if result is None]
            return results

    def heal(self) -> None:
        """The cause is fixed: from now on every attempt succeeds."""
        with self._lock:
            self.fails = 0

    def stored(self) -> list[str]:
        with self._lock:
            return [e.message_id for e in self._stored]

    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._stored)

    def attempts(self, message_id: str) -> list[float]:
        with self._lock:
            return list(self._attempts.get(message_id, []))


def pipeline(context: Context, **departments: Outbound) -> Worker:
    """The whole pipeline, with `departments` (code=outbound) as the only subscribers served."""
    return Worker(
        context.settings,
        [bus.ingress.create(context), routes.router.create(context), DeliverStage(context.names, departments), bus.deadletter.create(context)],
        Deduplicator(context.engine),
        names=context.names,
    )


def inbox_of(context: Context, code: str) -> Outbound:
    """The department's real outbound: the platform's inbox table."""
    return context.outbound(context.table.departments[code])


@contextlib.contextmanager
def reconfigured(context: Context, **changes: object) -> Iterator[Context]:
    """The same platform (broker, prefix, database) with other settings."""
    other = open_context(context.settings.copy(**changes))
    try:
        yield other
    finally:
        other.engine.dispose()


def dead_letters(context: Context, n: int) -> list[DeadLetter]:
    """Wait until there are `n` pending dead letters, and no more; oldest first."""
    store = DeadLetterStore(context.engine)
    wait_until(lambda: len(store.list()) >= n, message=f"{n} dead letter(s)")
    letters = store.list()
    assert len(letters) == n, [(d.reason, d.message_id) for d in letters]
    return letters[::-1]


def moment(text: str | None) -> datetime:
    assert text, "a failure time is missing"
    return datetime.fromisoformat(text)


def delete_queue(context: Context, name: str, exchange: str) -> None:
    """Delete queue `name` behind the platform's back, as an administrator might."""
    with kombu.Connection(context.settings.broker_url) as connection:
        connection.default_channel.queue_delete(name)
    if context.settings.embedded:
        # kombu's memory transport keeps the binding in the exchange's routing table (and
        # re-creates the queue on the next publish): take it out, as RabbitMQ would.
        table = kombu.transport.memory.Transport.global_state.exchanges[exchange]["table"]
        table[:] = [meta for meta in table if meta[-1] != name]
        kombu.transport.memory.Channel.queues.pop(name, None)


def queue_depth(context: Context, name: str) -> int:
    with kombu.Connection(context.settings.broker_url) as connection:
        return int(connection.default_channel.queue_declare(queue=name, passive=True).message_count)


def declare_everything(context: Context) -> None:
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        context.declare(broker)
    finally:
        broker.close()


# -- idempotency -----------------------------------------------------------------------------


def test_a_message_submitted_twice_is_delivered_once_per_subscriber(context):
    env = person_envelope()
    rs = Department()
    worker = pipeline(context, MZ=inbox_of(context, "MZ"), RS=rs)
    with running(context, worker=worker):
        submit(context, [env])
        wait_until(lambda: inbox_ids(context, "MZ") and rs.stored(), message="the first delivery")
        submit(context, [env])  # the department's system sends it again, e.g. after a timeout
        wait_until(lambda: worker.stats()["ingress"]["duplicates"] == 1, message="the second copy to be seen")
    assert inbox_ids(context, "MZ") == [env.message_id]
    assert rs.stored() == [env.message_id]
    assert DeadLetterStore(context.engine).list(status=None) == []


def test_a_duplicate_in_the_same_batch_is_delivered_once_per_subscriber(context):
    env, other = random_people(2)
    rs = Department()
    worker = pipeline(context, MZ=inbox_of(context, "MZ"), RS=rs)
    declare_everything(context)
    submit(context, [env, env, other, env])  # waiting together: the worker takes them in one batch
    with running(context, worker=worker):
        wait_until(lambda: len(rs.stored()) >= 2 and len(inbox_ids(context, "MZ")) >= 2, message="deliveries")
        wait_until(lambda: worker.stats()["ingress"]["duplicates"] == 2, message="the copies to be seen")
    assert inbox_ids(context, "MZ") == [env.message_id, other.message_id]
    assert rs.stored() == [env.message_id, other.message_id]
    assert worker.stats()["ingress"]["forwarded"] == 2


# -- retries ---------------------------------------------------------------------------------


def test_transient_failures_are_retried_until_the_message_is_delivered_once(context):
    attempts = context.settings.retry.attempts
    env = person_envelope()
    rs = Department(lambda n: TransientError(f"RS web service unavailable (try {n})"), fails=attempts - 1)
    mz = Department()
    worker = pipeline(context, MZ=mz, RS=rs)
    with running(context, worker=worker):
        submit(context, [env])
        wait_until(rs.stored, message="the delivery after retries")
        wait_until(lambda: worker.stats()["deliver"]["done"] == 2, message="both copies done")
    assert rs.stored() == [env.message_id]
    assert len(rs.attempts(env.message_id)) == attempts
    assert rs.envelopes()[0].body == env.body
    assert mz.stored() == [env.message_id]
    assert worker.stats()["deliver"]["retried"] == attempts - 1
    assert worker.stats()["deliver"]["dead_lettered"] == 0
    assert DeadLetterStore(context.engine).list(status=None) == []


def test_a_failure_that_does_not_pass_is_dead_lettered_after_the_policy_attempts(context):
    policy = context.settings.retry
    # what the policy promises: base * factor**(n-1) seconds after failed attempt n, capped
    delays = [min(policy.base_delay * policy.factor ** (n - 1), policy.max_delay) for n in range(1, policy.attempts)]
    assert len(set(delays)) > 1, "the test policy should back off, not repeat one delay"
    env = person_envelope()
    rs = Department(lambda n: TransientError(f"RS web service unavailable (try {n})"), fails=math.inf)
    mz = Department()
    worker = pipeline(context, MZ=mz, RS=rs)
    with running(context, worker=worker):
        submit(context, [env])
        [letter] = dead_letters(context, 1)
        time.sleep(2 * max(delays))  # a further attempt would have come by now
        tries = rs.attempts(env.message_id)
    assert letter.reason == "transient"
    assert letter.message_id == env.message_id
    assert letter.body == env.body
    assert (letter.stage, letter.queue) == ("deliver", context.names.deliver_queue("RS"))
    assert (letter.origin_exchange, letter.origin_routing_key) == (context.names.deliver_exchange(), "RS")
    assert letter.attempts == policy.attempts
    assert f"RS web service unavailable (try {policy.attempts})" in letter.reason_text
    assert f"(try {policy.attempts})" in letter.headers[Header.LAST_ERROR]
    assert moment(letter.first_failure) < moment(letter.last_failure)
    assert len(tries) == policy.attempts
    for attempt, ((before, after), delay) in enumerate(zip(pairwise(tries), delays, strict=True), 1):
        assert delay <= after - before < delay + 3.0, f"retry {attempt} came {after - before:.3f}s later, not {delay}s"
    assert rs.stored() == []
    assert mz.stored() == [env.message_id]
    assert worker.stats()["deliver"]["retried"] == policy.attempts - 1


class RefusedByDepartment(BusError):
    """A department's own permanent refusal, as an adapter would define one."""

    code = "refused_by_department"


@pytest.mark.parametrize(
    ("error", "raises", "reason"),
    [
        (lambda n: NotAuthorized("RS's gateway rejects the platform's certificate"), True, "not_authorized"),
        (lambda n: RefusedByDepartment("RS refuses records without a phone number"), False, "refused_by_department"),
    ],
    ids=["raised", "returned"],
)
def test_a_permanent_error_is_dead_lettered_at_once(context, error, raises, reason):
    env = person_envelope()
    rs = Department(error, fails=math.inf, raises=raises)
    mz = Department()
    worker = pipeline(context, MZ=mz, RS=rs)
    with running(context, worker=worker):
        submit(context, [env])
        [letter] = dead_letters(context, 1)
        time.sleep(2 * context.settings.retry.base_delay)  # a retry would come by now
    assert letter.reason == reason
    assert letter.reason_text == str(error(1))
    assert letter.attempts == 1
    assert letter.first_failure == letter.last_failure
    assert letter.body == env.body
    assert len(rs.attempts(env.message_id)) == 1
    assert worker.stats()["deliver"]["retried"] == 0
    assert mz.stored() == [env.message_id]


def test_an_unexpected_exception_is_retried_then_dead_lettered_as_a_stage_error(context):
    policy = context.settings.retry
    env = person_envelope()
    rs = Department(lambda n: RuntimeError(f"connection reset by peer ({n})"), fails=math.inf)
    worker = pipeline(context, MZ=Department(), RS=rs)
    with running(context, worker=worker):
        submit(context, [env])
        [letter] = dead_letters(context, 1)
    assert letter.reason == "stage_error"
    assert f"RuntimeError: connection reset by peer ({policy.attempts})" in letter.reason_text
    assert letter.attempts == policy.attempts
    assert len(rs.attempts(env.message_id)) == policy.attempts
    assert worker.stats()["deliver"]["retried"] == policy.attempts - 1


def test_a_failing_subscriber_does_not_hold_back_another(context):
    envs = random_people(5)
    ids = [e.message_id for e in envs]
    mz = Department(lambda n: TransientError("MZ database is restarting"), fails=math.inf)
    rs = Department()
    # slower retries, so that MZ is plainly still retrying when RS has everything
    with reconfigured(context, retry=RetryPolicy(attempts=3, base_delay=0.75, factor=2.0, max_delay=2.0)) as slow:
        # a backlog for both departments, so that their copies come to the deliver stage together
        with running(slow, ("ingress", "router", "deadletter")):
            submit(slow, envs)
            for code in ("MZ", "RS"):
                wait_until(lambda: queue_depth(slow, slow.names.deliver_queue(code)) == 5, message=f"{code}'s backlog")
        worker = pipeline(slow, MZ=mz, RS=rs)
        store = DeadLetterStore(slow.engine)
        with running(slow, worker=worker):
            wait_until(lambda: len(rs.stored()) == 5, message="RS's five deliveries")
            assert store.list(status=None) == []
            letters = dead_letters(slow, 5)
    assert sorted(rs.stored()) == sorted(ids)
    assert [len(rs.attempts(m)) for m in ids] == [1] * 5
    assert worker.stats()["deliver"]["retried"] == 5 * 2, "only MZ's copies should have been retried"
    assert mz.stored() == []
    assert sorted(d.message_id for d in letters) == sorted(ids)
    assert {(d.reason, d.queue, d.attempts) for d in letters} == {("transient", slow.names.deliver_queue("MZ"), 3)}


# -- unroutable ------------------------------------------------------------------------------


def test_a_copy_for_a_deleted_queue_is_dead_lettered_as_unroutable_and_not_lost(context):
    names = context.names
    env = person_envelope()
    mz = Department()
    worker = pipeline(context, MZ=mz)  # nobody consumes RS's queue: it can be deleted quietly
    with running(context, worker=worker):
        delete_queue(context, names.deliver_queue("RS"), names.deliver_exchange())
        submit(context, [env])
        [letter] = dead_letters(context, 1)
        assert letter.reason == "unroutable"
        assert letter.stage == "router"
        assert "RS" in letter.reason_text
        assert letter.message_id == env.message_id
        assert letter.body == env.body
        assert mz.stored() == [env.message_id]

        # the administrator puts the queue back; the operator replays: RS gets its copy, MZ
        # does not get a second one
        declare_everything(context)
        broker = Broker(context.settings.broker_url)
        broker.connect()
        try:
            assert DeadLetterStore(context.engine).replay([letter.id], broker, "tester") == {letter.id: None}
        finally:
            broker.close()
        wait_until(lambda: worker.stats()["deliver"]["duplicates"] == 1, message="MZ to recognise the replay")
        wait_until(lambda: queue_depth(context, names.deliver_queue("RS")) == 1, message="RS's copy")
    assert mz.stored() == [env.message_id]
    assert DeadLetterStore(context.engine).list() == []


# -- replay and discard ----------------------------------------------------------------------


def test_dead_letters_are_replayed_once_the_cause_is_fixed_or_discarded_with_a_reason(context):
    env, withdrawn = random_people(2)
    rs = Department(lambda n: NotAuthorized("RS's gateway rejects the platform's certificate"), fails=math.inf)
    mz = Department()
    store = DeadLetterStore(context.engine)
    worker = pipeline(context, MZ=mz, RS=rs)
    with running(context, worker=worker):
        submit(context, [env, withdrawn])
        letters = {d.message_id: d for d in dead_letters(context, 2)}
        letter, other = letters[env.message_id], letters[withdrawn.message_id]
        assert rs.stored() == []

        rs.heal()  # RS renews its certificate
        broker = Broker(context.settings.broker_url)
        broker.connect()
        try:
            assert store.replay([letter.id], broker, "tester") == {letter.id: None}
            wait_until(rs.stored, message="the replayed delivery")
            again = store.replay([letter.id], broker, "tester")
            assert again[letter.id] is not None and "already replayed" in again[letter.id]

            with pytest.raises(BusError, match="reason"):
                store.discard([other.id], "   ", "tester")
            assert store.get(other.id).status == "pending"
            assert store.discard([other.id], "GA withdrew the record", "tester") == {other.id: None}
            refused = store.replay([other.id], broker, "tester")
            assert refused[other.id] is not None and "already discarded" in refused[other.id]
        finally:
            broker.close()
        time.sleep(0.5)  # a wrongly repeated replay would arrive by now
    [delivered] = rs.envelopes()
    assert (delivered.message_id, delivered.body) == (env.message_id, env.body)
    assert sorted(mz.stored()) == sorted([env.message_id, withdrawn.message_id])  # replayed to RS only

    replayed = store.get(letter.id)
    assert (replayed.status, replayed.resolved_by) == ("replayed", "tester")
    assert replayed.resolved_at is not None
    assert context.names.deliver_exchange() in (replayed.resolution or "")
    discarded = store.get(other.id)
    assert (discarded.status, discarded.resolved_by, discarded.resolution) == ("discarded", "tester", "GA withdrew the record")
    assert [d.id for d in store.list(status="discarded")] == [other.id]
    assert [d.id for d in store.list(status="replayed")] == [letter.id]
    assert store.list() == []  # nothing pending: the replay did not fail again


# -- the broker's own dead-lettering (RabbitMQ only: the memory transport has no delivery limit)


class WorkerDied(BaseException):
    """What a crash looks like from inside: nothing of the worker's handles it."""


def capture(context: Context) -> list[DeadLetter]:
    """Move what waits in the dead-letter queue into the store, as `govbus dlq list` does first."""
    context.worker(["deadletter"]).run(threading.Event(), idle_exit=0.3, reconnect=False)
    return DeadLetterStore(context.engine).list()


@pytest.fixture
def poisoned(amqp_url: str, tmp_path: Path) -> Iterator[tuple[Context, Envelope, Department, int]]:
    """A copy for MZ that kills every MZ worker that takes it, restarted until it stops coming.
    Yields the context (delivery limit 2), the envelope, MZ's outbound and the crash count."""
    context = open_context(make_settings(amqp_url, tmp_path, delivery_limit=2))
    try:
        names = context.names
        env = person_envelope()
        declare_everything(context)
        broker = Broker(context.settings.broker_url)  # the copy, as the router publishes it
        broker.connect()
        try:
            assert publish_confirmed(
                broker, broker.channel(), [(names.deliver_exchange(), "MZ", env.body, env.message_id, None, env.headers())]
            ) == [None]
        finally:
            broker.close()
        mz = Department(lambda n: WorkerDied(f"segfault in MZ's driver ({n})"), fails=math.inf)
        crashes = 0
        for _ in range(context.settings.delivery_limit + 3):  # a supervisor restarting the worker
            worker = Worker(context.settings, [DeliverStage(names, {"MZ": mz})], Deduplicator(context.engine), names=names)
            try:
                worker.run(threading.Event(), idle_exit=1.0, reconnect=False)
            except WorkerDied:
                crashes += 1
                continue
            break  # nothing came any more
        yield context, env, mz, crashes
    finally:
        context.engine.dispose()


def test_a_message_that_keeps_killing_its_worker_is_dead_lettered_after_the_delivery_limit(poisoned):
    context, env, mz, crashes = poisoned
    names, limit = context.names, context.settings.delivery_limit
    assert crashes == limit + 1
    assert len(mz.attempts(env.message_id)) == limit + 1
    [letter] = wait_until(lambda: capture(context), message="the broker's dead letter")  # type: ignore[misc]
    assert letter.reason == "delivery_limit"
    assert "delivered too often" in letter.reason_text
    assert letter.message_id == env.message_id
    assert letter.body == env.body
    assert letter.queue == names.deliver_queue("MZ")
    assert (letter.origin_exchange, letter.origin_routing_key) == (names.deliver_exchange(), "MZ")
    assert letter.resource == "GA-001"
    assert queue_depth(context, names.deliver_queue("MZ")) == 0

    # once MZ's driver is fixed, the operator replays it to where it was going
    broker = Broker(context.settings.broker_url)
    broker.connect()
    try:
        assert DeadLetterStore(context.engine).replay([letter.id], broker, "tester") == {letter.id: None}
    finally:
        broker.close()
    wait_until(lambda: queue_depth(context, names.deliver_queue("MZ")) == 1, message="the replayed copy")


def test_a_dead_letter_from_the_delivery_limit_says_how_often_it_was_delivered(poisoned):
    context, env, mz, crashes = poisoned
    [letter] = wait_until(lambda: capture(context), message="the broker's dead letter")  # type: ignore[misc]
    assert letter.reason == "delivery_limit"
    assert letter.attempts == len(mz.attempts(env.message_id)) == context.settings.delivery_limit + 1, (
        f"the dead letter says {letter.attempts} attempt(s); the message was delivered "
        f"{len(mz.attempts(env.message_id))} times"
    )


def test_an_exchange_deleted_under_a_running_worker_is_declared_again_and_nothing_is_lost(amqp_url, tmp_path: Path):
    # RabbitMQ closes the channel of a publish to a missing exchange; a lost channel is a lost
    # connection in all but name: reconnect, redeclare, take the unacknowledged input again.
    context = open_context(make_settings(amqp_url, tmp_path))
    env = person_envelope()
    mz, rs = Department(), Department()
    worker = pipeline(context, MZ=mz, RS=rs)
    stop, died = threading.Event(), []

    def serve() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:
            died.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert worker.connected.wait(15), "worker did not connect"
        with kombu.Connection(amqp_url) as connection:
            connection.default_channel.exchange_delete(context.names.deliver_exchange())
        submit(context, [env])
        wait_until(lambda: died or (mz.stored() and rs.stored()), 15, "the deliveries")
        assert not died, f"the worker died instead of recovering: {died[0]!r}"
        assert (mz.stored(), rs.stored()) == ([env.message_id], [env.message_id])
    finally:
        stop.set()
        thread.join(15)
        context.engine.dispose()
