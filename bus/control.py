"""Notices to running workers: the routing table changed, reload it.

Whatever changes the catalogue calls `announce` after its commit; every worker listening on
the control exchange reloads between two batches (bus.worker). A notice lost (no broker just
then, a worker reconnecting) costs little: workers also compare the table's version every
30 seconds.
"""

from __future__ import annotations

import json
import logging
import uuid

import kombu

from bus.config import Settings
from bus.names import Names

log = logging.getLogger("govbus.control")


def announce(settings: Settings, version: int) -> None:
    """Tell the workers on `settings`' broker that routing version `version` is out. Never raises."""
    names = Names(settings.prefix)
    try:
        with kombu.Connection(settings.broker_url, connect_timeout=3) as connection:
            exchange = kombu.Exchange(names.control_exchange(), type="fanout", durable=True, auto_delete=False)
            producer = connection.Producer(exchange=exchange)
            exchange(producer.channel).declare()
            producer.publish(
                json.dumps({"event": "routing-changed", "version": version}).encode(),
                content_type="application/json", content_encoding="binary", message_id=str(uuid.uuid4()),
                delivery_mode=1, retry=False,
            )
    except Exception as exc:  # the workers' periodic check catches up
        log.warning("could not announce routing version %d to the workers: %s", version, exc)
