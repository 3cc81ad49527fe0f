"""Every broker name comes from one helper of `Names` and hangs off the prefix, so that two
platforms (or two tests) can share a broker without sharing a queue."""

from __future__ import annotations

import pytest

from bus.config import RetryPolicy
from bus.names import Names

DEPARTMENTS = ["GA", "MZ", "RS", "GS", "GSW", "DSW"]  # those of tests/data/routes.toml


def exchanges(names: Names) -> list[str]:
    return [
        names.ingress_exchange(),
        names.routing_exchange(),
        names.deliver_exchange(),
        names.retry_exchange(),
        names.dead_letter_exchange(),
    ]


def queues(names: Names, delays=(200, 400, 1000, 300_000)) -> list[str]:
    return [
        names.ingress_queue(),
        names.routing_queue(),
        names.dead_letter_queue(),
        *(names.deliver_queue(d) for d in DEPARTMENTS),
        *(names.retry_queue(ms) for ms in delays),
    ]


def every_name(names: Names) -> list[str]:
    return exchanges(names) + queues(names)


def test_default_prefix_is_govbus():
    names = Names()
    assert names.prefix == "govbus"
    assert names.ingress_exchange() == "govbus.ingress"
    assert names.deliver_queue("MZ") == "govbus.deliver.MZ"
    assert names.retry_queue(2000) == "govbus.retry.2000ms"
    assert names.dead_letter_queue() == "govbus.dlq"


@pytest.mark.parametrize("prefix", ["govbus", "zh-city", "t0123456789", "prov_gd"])
def test_every_name_starts_with_the_prefix(prefix):
    for name in every_name(Names(prefix)):
        assert name.startswith(prefix + "."), name


def test_only_the_prefix_differs_between_two_prefixes():
    a, b = every_name(Names("alpha")), every_name(Names("beta-2"))
    assert [n.removeprefix("alpha.") for n in a] == [n.removeprefix("beta-2.") for n in b]


def test_two_prefixes_share_no_name():
    # the test suite gives each test its own prefix on one broker: nothing may overlap
    assert not set(every_name(Names("govbus"))) & set(every_name(Names("govbus-test")))
    assert not set(every_name(Names("t1"))) & set(every_name(Names("t12")))


def test_stage_queues_are_ingress_and_routing():
    names = Names("p")
    assert names.stage_queues() == [names.ingress_queue(), names.routing_queue()]


def test_deliver_queue_is_per_department():
    names = Names("p")
    assert names.deliver_queue("MZ") == "p.deliver.MZ"
    assert len({names.deliver_queue(d) for d in DEPARTMENTS}) == len(DEPARTMENTS)


@pytest.mark.parametrize("code", ["GA", "MZ2", "A" * 32, "0123456789"])
def test_deliver_queue_accepts_department_codes(code):
    assert Names("p").deliver_queue(code) == f"p.deliver.{code}"


@pytest.mark.parametrize(
    "code",
    [
        "",  # empty
        "M",  # too short
        "A" * 33,  # too long
        "mz",  # lower case
        "MZ.RS",  # would nest a name under another department's
        "MZ#",  # a topic wildcard
        "MZ*",
        "M Z",
        "MZ\n",  # a trailing newline must not slip past the pattern
        "民政",  # not ASCII
        "MZ-1",
    ],
)
def test_deliver_queue_rejects_bad_department_codes(code):
    with pytest.raises(ValueError, match="department code must be 2-32 of A-Z and 0-9"):
        Names("p").deliver_queue(code)


def test_retry_queue_names_differ_per_delay():
    names = Names("p")
    delays = RetryPolicy(attempts=10, base_delay=0.2, factor=2.0, max_delay=60).delays_ms()
    assert len(delays) > 5
    retry = [names.retry_queue(ms) for ms in delays]
    assert len(set(retry)) == len(delays)
    assert all(ms_name.endswith(f".{ms}ms") for ms_name, ms in zip(retry, delays))


def test_no_two_queue_helpers_give_the_same_name():
    names = queues(Names("govbus"))
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)


def test_no_two_exchange_helpers_give_the_same_name():
    # AMQP keeps exchanges and queues in separate namespaces: an exchange may share its name
    # with the queue it feeds, but two exchanges (or two queues) may never share one.
    names = exchanges(Names("govbus"))
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)


def test_dead_letter_exchange_and_queue_are_apart_from_the_stages():
    names = Names("govbus")
    stage_names = {names.ingress_exchange(), names.routing_exchange(), names.deliver_exchange(),
                   names.retry_exchange(), *names.stage_queues()}
    assert names.dead_letter_exchange() not in stage_names
    assert names.dead_letter_queue() not in stage_names


def test_a_department_code_cannot_take_a_fixed_queue_name():
    names = Names("govbus")
    fixed = {names.ingress_queue(), names.routing_queue(), names.dead_letter_queue()}
    for code in ["DLQ", "INGRESS", "ROUTING", "RETRY", "DLX"]:
        assert names.deliver_queue(code) not in fixed
