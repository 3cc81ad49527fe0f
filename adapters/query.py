"""Responders: adapters that answer synchronous queries on a department's resources.

The protocol (request and reply over the bus, default deny, timeouts) is `bus.query`; a
`Responder` answers the queries on the resources it names, in an adapters file run by
`govbus adapters run`.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

from bus.errors import BusError
from bus.query import Query, serve_queries

from adapters.base import RESPONDER, Adapter, Setting

log = logging.getLogger("govbus.adapters")


class Responder(Adapter):
    """Answers queries on resources: subclass it and implement `answer`.

    Listed in an adapters file like an inbound adapter (setting `resources`: the codes it
    answers, comma-separated) and run by `govbus adapters run`; it may answer only for
    resources its department provides, unless it is a platform service that answers for
    another provider's resource on the platform's behalf (set `on_behalf = true`).
    """

    direction: ClassVar[str] = RESPONDER
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("resources", "resource codes answered, comma-separated"),
        Setting("on_behalf", "answer for resources other departments provide", kind="bool", required=False, default=False),
    )

    def answer(self, query: Query) -> bytes:
        """The answer (XML) to `query`. Raise a BusError to refuse it with its code and text."""
        raise NotImplementedError

    def resources(self) -> list[str]:
        codes = [c.strip() for c in str(self.config["resources"]).split(",") if c.strip()]
        table = self.context.table
        for code in codes:
            found = table.resources.get(code)
            if found is None:
                raise BusError(f"{self.name}: unknown resource {code}")
            if found.provider != self.department and not self.config["on_behalf"]:
                raise BusError(f"{self.name}: {code} is provided by {found.provider}, not {self.department}")
        return codes

    def run(self, stop: threading.Event) -> None:
        """Answer until `stop`; a lost broker is reconnected."""
        while not stop.is_set():
            try:
                serve_queries(self.context, self.resources(), self.answer, stop, self.name)
            except Exception as exc:
                log.warning("%s: lost the broker (%s); reconnecting", self.name, exc)
                stop.wait(1.0)
