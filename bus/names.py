"""Every exchange, queue and header name the bus uses, each from one helper.

Names hang off one prefix (`GOVBUS_PREFIX`, default `govbus`), so that two platforms, or two
tests, can share a broker without sharing a queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CODE = re.compile(r"[A-Z0-9]{2,32}\Z")


@dataclass(frozen=True, slots=True)
class Names:
    prefix: str = "govbus"

    # Departments publish here (topic; routing key `<sender>.<resource>`, not relied on).
    def ingress_exchange(self) -> str:
        return f"{self.prefix}.ingress"

    def ingress_queue(self) -> str:
        return f"{self.prefix}.ingress"

    # Envelopes that passed ingress, waiting for the router (routing key: resource code).
    def routing_exchange(self) -> str:
        return f"{self.prefix}.routing"

    def routing_queue(self) -> str:
        return f"{self.prefix}.routing"

    # One queue per subscribing department (direct; routing key: the department code).
    def deliver_exchange(self) -> str:
        return f"{self.prefix}.deliver"

    def deliver_queue(self, department: str) -> str:
        if not _CODE.match(department):
            raise ValueError(f"department code must be 2-32 of A-Z and 0-9, got {department!r}")
        return f"{self.prefix}.deliver.{department}"

    # Delayed retry: a headers exchange routes by the delay header to a queue whose TTL then
    # dead-letters the message through the default exchange back to the queue it came from.
    def retry_exchange(self) -> str:
        return f"{self.prefix}.retry"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.prefix}.retry.{delay_ms}ms"

    # Dead letters: published by stages with their reason, or dead-lettered by the broker
    # when a message exceeds the delivery limit.
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dlq"

    # Notices to every worker (fanout): the routing table changed, reload it. Each worker
    # listens on a queue of its own that lives as long as its connection.
    def control_exchange(self) -> str:
        return f"{self.prefix}.control"

    def control_queue(self, worker: str) -> str:
        return f"{self.prefix}.control.{worker}"

    # Synchronous queries (SOAP Query): a direct exchange routes by resource code to the queue
    # its provider's responder consumes; answers go through the default exchange to the
    # asking process's own reply queue.
    def query_exchange(self) -> str:
        return f"{self.prefix}.query"

    def query_queue(self, resource: str) -> str:
        return f"{self.prefix}.query.{resource}"

    def reply_queue(self, process: str) -> str:
        return f"{self.prefix}.reply.{process}"

    def stage_queues(self) -> list[str]:
        return [self.ingress_queue(), self.routing_queue()]


class Header:
    """AMQP header names. Only names beginning with `govbus-`: RabbitMQ's headers exchange
    ignores every header beginning with `x-` when it matches."""

    SENDER = "govbus-sender"
    RESOURCE = "govbus-resource"
    VERSION = "govbus-version"
    OPERATION = "govbus-operation"
    ATTEMPT = "govbus-attempt"
    LAST_ERROR = "govbus-last-error"
    DELAY = "govbus-delay"
    # where the message was first published, kept across retries for dead-lettering and replay
    ORIGIN_EXCHANGE = "govbus-origin-exchange"
    ORIGIN_ROUTING_KEY = "govbus-origin-routing-key"
    FIRST_FAILURE = "govbus-first-failure"
    LAST_FAILURE = "govbus-last-failure"
    # dead letters only
    REASON = "govbus-reason"
    REASON_TEXT = "govbus-reason-text"
    RULE = "govbus-rule"
    LINE = "govbus-line"
    COLUMN = "govbus-column"
    STAGE = "govbus-stage"
    QUEUE = "govbus-queue"
    DEAD_LETTER_ID = "govbus-dead-letter-id"
    REPLAYED_FROM = "govbus-replayed-from"
    # queries: where the answer goes, who asks, how long the asker waits (ms); on an answer, a
    # refusal's reason code and text
    REPLY_TO = "govbus-reply-to"
    ASKER = "govbus-asker"
    ANSWER_ERROR = "govbus-answer-error"
    ANSWER_ERROR_TEXT = "govbus-answer-error-text"
    # set by a stage on what it publishes while handling a redelivered (or so marked) message
    POSSIBLE_DUPLICATE = "govbus-possible-duplicate"
