"""The base libraries answer SOAP `Query`: a platform service of `govbus serve` (entry point
`masterdata` of the group `govbus.services`, `run(context, stop)`).

The base libraries are departments of the catalogue: 市人口基础信息库 (RKK) provides the person
lookup resources, 市法人基础信息库 (FRK) the legal-entity ones. This service answers the queries
on every resource either provides (bus.query.serve_queries), and follows the routing table
when it changes. Departments ask as usual, through the gateway's `Query(resource, criteria)`,
and only with an active subscription to the resource (default deny, bus.query.may_query).

Criteria: an identity number (15 or 18 digits; full-width accepted) or a credit code; or
`name=TEXT` for a search by name, optionally followed by `&page=N` and `&size=N`.

The answer (namespace NS) is XML:
- `<md:Lookup kind= key= found="true" rulesVersion= updatedAt=>`: the golden record as the
  specification's own record (`<p:Person>` / `<le:LegalEntity>`), then `<md:Provenance>`: per
  attribute its golden value with its source (department, source record id, source time,
  message id, received time; or the steward's decision) and every department's value;
  `found="false"` and nothing inside when the base library does not know the key;
- `<md:Search kind= name= page= size= total=>` with one specification record per match.
Times are ISO 8601 in China time. A subscription limited to some data items (a field mask)
gets those attributes only. An invalid identifier or criteria is refused (`Client.invalid_identifier`,
`Client.invalid_query`), with the reason.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lxml import etree

from bus.errors import NotAuthorized
from bus.query import Query, serve_queries
from bus.routing import RoutingTable
from masterdata.model import ATTRIBUTES, ENTITY, KEY_OF, LABELS, PERSON
from masterdata.queries import MAX_PAGE, NotFound, Queries, QueryError, check_key, golden_of, namespace

if TYPE_CHECKING:
    from bus.app import Context

log = logging.getLogger("govbus.masterdata")

PERSON_LIBRARY = "RKK"  # 市人口基础信息库: provides the person lookups
ENTITY_LIBRARY = "FRK"  # 市法人基础信息库: provides the legal-entity lookups
LIBRARIES: Mapping[str, str] = {PERSON_LIBRARY: PERSON, ENTITY_LIBRARY: ENTITY}
NS = "urn:zhuhai:govbus:masterdata"
ROOT = {PERSON: "Person", ENTITY: "LegalEntity"}  # the specifications' record elements
WATCH_SECONDS = 10.0  # how often the routing table is checked for new lookup resources
_SEARCH = re.compile(r"name=(?P<name>.*?)(?:&page=(?P<page>\d{1,6}))?(?:&size=(?P<size>\d{1,4}))?", re.S)


def lookup_resources(table: RoutingTable) -> dict[str, str]:
    """Resource code -> kind, for every resource a base library provides."""
    return {code: LIBRARIES[r.provider] for code, r in sorted(table.resources.items()) if r.provider in LIBRARIES}


class Answerer:
    """Answers one query on a lookup resource with XML (see the module)."""

    def __init__(self, queries: Queries, table: RoutingTable) -> None:
        self.queries = queries
        self.table = table
        self.kinds = lookup_resources(table)

    def answer(self, query: Query) -> bytes:
        """The answer to `query`. Raises QueryError (refused: invalid criteria or identifier),
        NotAuthorized (a search by name the asker's field mask does not allow)."""
        kind = self.kinds.get(query.resource)
        if kind is None:  # the table changed under us: the service restarts with the new one
            raise QueryError(f"resource {query.resource} is not answered by the base libraries any more")
        allowed = self._allowed(query, kind)
        criteria = query.criteria.strip()
        if not criteria:
            raise QueryError(f"give a {LABELS[KEY_OF[kind]]}, or name=... to search by name")
        search = _SEARCH.fullmatch(criteria)
        if search is not None:
            if "Name" not in allowed:
                raise NotAuthorized(f"the subscription of {query.asker} to {query.resource} does not include the name; "
                                    "it cannot search by name")
            page, size = int(search["page"] or 1), int(search["size"] or 20)
            return _xml(self._search(kind, search["name"], page, min(size, MAX_PAGE), allowed))
        return _xml(self._lookup(kind, criteria, allowed))

    def _allowed(self, query: Query, kind: str) -> frozenset[str]:
        """The attributes the asker may receive: its subscription's data items (all without a mask)."""
        route = next((r for r in self.table.routes(query.resource) if r.subscriber == query.asker), None)
        if route is None or route.items is None:
            return frozenset(ATTRIBUTES[kind])
        prefix = f"/{ROOT[kind]}/"
        return frozenset(p[len(prefix):] for p in route.items if p.startswith(prefix)) & frozenset(ATTRIBUTES[kind])

    def _lookup(self, kind: str, criteria: str, allowed: frozenset[str]) -> etree._Element:
        root = etree.Element(f"{{{NS}}}Lookup", nsmap={"md": NS}, kind=kind)
        try:
            golden = self.queries.golden(kind, criteria)
        except NotFound:
            root.attrib.update({"key": check_key(kind, criteria), "found": "false"})
            return root
        record = golden_of(golden)
        root.attrib.update({"key": golden.key, "found": "true", "rulesVersion": record["rules_version"],
                            "updatedAt": record["updated_at"]})
        shown = [a for a in record["attributes"] if a["attribute"] in allowed]
        root.append(_record(kind, golden.key, {a["attribute"]: a["value"] for a in shown}))
        provenance = etree.SubElement(root, f"{{{NS}}}Provenance")
        for a in shown:
            item = etree.SubElement(provenance, f"{{{NS}}}Attribute", name=a["attribute"], label=a["label"])
            value = etree.SubElement(item, f"{{{NS}}}Golden", _source(a["source"]))
            if a["decision_id"] is not None:
                value.set("decision", str(a["decision_id"]))
            value.text = a["value"]
            for d in a["departments"]:
                other = etree.SubElement(item, f"{{{NS}}}Department", code=d["department"],
                                         counted="true" if d["counted"] else "false", **_source(d["source"], False))
                other.text = d["value"]
        return root

    def _search(self, kind: str, name: str, page: int, size: int, allowed: frozenset[str]) -> etree._Element:
        found = self.queries.search(name, kind, page, size)
        root = etree.Element(f"{{{NS}}}Search", nsmap={"md": NS}, kind=kind, name=found["name"], page=str(page),
                             size=str(size), total=str(found["total"]))
        for match in found["matches"]:
            root.append(_record(kind, match["key"], {a: v for a, v in match.items() if a in allowed}))
        return root


def _record(kind: str, key: str, values: Mapping[str, str | None]) -> etree._Element:
    """The specification's own record element, attributes in its order."""
    ns = namespace(kind)
    record = etree.Element(f"{{{ns}}}{ROOT[kind]}", nsmap={"p" if kind == PERSON else "le": ns})
    etree.SubElement(record, f"{{{ns}}}{KEY_OF[kind]}").text = key
    for attribute in ATTRIBUTES[kind]:
        if values.get(attribute) is not None:
            etree.SubElement(record, f"{{{ns}}}{attribute}").text = values[attribute]
    return record


def _source(source: dict[str, Any] | None, department: bool = True) -> dict[str, str]:
    if source is None:
        return {}
    found = {"sourceRecordId": source["source_record_id"], "sourceTime": source["source_time"],
             "messageId": source["message_id"], "receivedAt": source["received_at"]}
    return {"department": source["department"], **found} if department else found


def _xml(root: etree._Element) -> bytes:
    return etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def run(context: Context, stop: threading.Event) -> None:
    """Entry point of `govbus.services`: answer the base libraries' lookup resources until
    `stop`, starting again with the new routing table whenever it changes. Returns (and is
    restarted by `govbus serve`) when the broker is lost."""
    queries = Queries(context.engine)
    table, version = context.table, context.routing_source.version()
    while not stop.is_set():
        kinds = lookup_resources(table)
        changed = threading.Event()
        watcher = threading.Thread(target=_watch, args=(context, version, changed, stop), name="masterdata-watch",
                                   daemon=True)
        watcher.start()
        try:
            if kinds:
                serve_queries(context, sorted(kinds), Answerer(queries, table).answer, changed, name="masterdata")
            else:
                log.info("masterdata: no resource of %s in the routing table; no lookups to answer",
                         " or ".join(LIBRARIES))
                changed.wait()
        finally:
            changed.set()
            watcher.join()
        if not stop.is_set():
            version = context.routing_source.version()
            table = context.routing_source.load()
            log.info("masterdata: the routing table changed; answering %s", ", ".join(lookup_resources(table)) or "nothing")


def _watch(context: Context, version: int, changed: threading.Event, stop: threading.Event) -> None:
    """Set `changed` when `stop` is set (within a fraction of a second) or the routing table's
    version has moved on (checked every WATCH_SECONDS); end when `changed` is set."""
    checked = time.monotonic()
    while not changed.wait(0.2):
        if stop.is_set():
            changed.set()
        elif time.monotonic() - checked >= WATCH_SECONDS:
            checked = time.monotonic()
            try:
                moved = context.routing_source.version() != version
            except Exception as exc:  # the catalogue cannot be read now: keep answering with the table in hand
                log.warning("masterdata: cannot check the routing table (%s); trying again", exc)
                moved = False
            if moved:
                changed.set()
