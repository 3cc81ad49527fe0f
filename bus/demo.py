"""`govbus demo`: the whole flow on the embedded default, with the sample data in examples/.

The sample catalogue (examples/catalog.xml: the departments of the specification, their
resources and the subscriptions between them) is imported into the embedded database, which
changes nothing the second time. Each sample envelope is then sent with a fresh message id
(the platform would otherwise recognise the ids and skip them), and the report says for each
where it went, with which data items, or why it was refused.
"""

from __future__ import annotations

import re
import uuid
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from bus.app import open_context
from bus.client import fates, run_embedded, send_files
from bus.config import Settings
from bus.deliver import inbox
from bus.errors import ConfigError

_MESSAGE_ID = re.compile(rb"(<(?:\w+:)?MessageId>)[0-9a-fA-F-]{36}(</)")
_COMMENT = re.compile(rb"<!--(.*?)-->", re.S)
_ITEM = re.compile(r"<(?:\w+:)?(\w+)>[^<]*</")


def default_examples() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"


def _fresh_id(data: bytes) -> bytes:
    # Same length, so every line and column the report quotes matches the file on disk.
    return _MESSAGE_ID.sub(lambda m: m.group(1) + str(uuid.uuid4()).encode() + m.group(2), data, count=1)


def _describe(path: Path) -> str:
    found = _COMMENT.search(path.read_bytes()[:2000])
    return found.group(1).decode("utf-8", "replace").strip() if found else path.name


def _load_catalog(context: Any, catalog_file: Path) -> dict[str, dict[str, int]]:
    """Import the sample catalogue through the catalogue package (found by entry point: bus
    does not import it), acting as the platform."""
    [entry] = [e for e in entry_points(group="govbus.demo") if e.name == "catalog"]
    return entry.load()(context, catalog_file.read_bytes())  # type: ignore[no-any-return]


def run_demo(examples: Path | None = None) -> None:
    examples = examples or default_examples()
    catalog_file = examples / "catalog.xml"
    messages = sorted((examples / "messages").glob("*.xml"))
    if not catalog_file.is_file() or not messages:
        raise ConfigError(f"{examples} lacks catalog.xml or messages/*.xml; pass --examples FOLDER")
    base = Settings.from_env()
    settings = base.copy(broker_url="memory://", database_url=f"sqlite:///{base.data_dir / 'govbus.db'}", routes=None)
    context = open_context(settings)
    echo = click.echo
    echo("govbus demo: the embedded default (in-memory broker, SQLite at "
         f"{settings.data_dir / 'govbus.db'}); nothing here is durable.\n")
    counts = _load_catalog(context, catalog_file)
    echo(f"Sample catalogue ({catalog_file}): " + ", ".join(
        f"{c['created'] + c['updated'] + c['unchanged']} {kind}" for kind, c in counts.items()))
    table = context.table
    echo("Routing table compiled from it:")
    for resource in sorted(table.resources.values(), key=lambda r: r.code):
        provider = table.departments[resource.provider]
        recipients = ", ".join(
            f"{table.departments[r.subscriber].name} ({r.subscriber}"
            + (f", {len(r.items)} data items" if r.items is not None else "") + ")"
            for r in table.routes(resource.code)
        )
        echo(f"  {resource.code} {resource.name} [{resource.specification}]: "
             f"from {provider.name} ({provider.code}) to {recipients or 'nobody'}")
    echo(f"\nSending {len(messages)} envelopes as the departments would, through ingress -> router -> deliver:\n")
    submissions = run_embedded(
        context,
        lambda broker, channel: send_files(
            broker, channel, messages, context.names, context.parser, context.schemas, rewrite=_fresh_id
        ),
    )
    outcome = fates(context, [s.message_id for s in submissions if s.message_id])
    delivered = dead = 0
    for s in submissions:
        echo(f"* {s.path.name}: {_describe(s.path)}")
        fate = outcome.get(s.message_id or "")
        if fate is None:
            echo(f"    not a readable envelope: {s.unreadable}")
            continue
        for code in fate.delivered_to:
            delivered += 1
            items = _items_received(context, code, s.message_id or "")
            echo(f"    delivered to {table.departments[code].name} ({code}): {', '.join(items)}")
        for letter in fate.dead_letters:
            dead += 1
            rule = f" [{letter.rule}]" if letter.rule else ""
            echo(f"    dead-lettered as #{letter.id} by the {letter.stage} stage: {letter.reason}{rule}{letter.where()}")
            echo(f"      {letter.reason_text}")
        if not fate.delivered_to and not fate.dead_letters:
            echo("    accepted; no department subscribes to it")
    echo(f"\nReport: {len(submissions)} sent, {delivered} copies delivered, {dead} dead-lettered with their reasons.")
    echo("Inspect the dead letters:  govbus dlq list   then   govbus dlq show ID")
    echo("The catalogue:             govbus routes show;  govbus catalog init --admin admin, then")
    echo("                           govbus catalog --as admin search hjrk")


def _items_received(context: Any, department: str, message_id: str) -> list[str]:
    """The data items in the copy a department received (a field mask leaves some out)."""
    with context.engine.connect() as conn:
        body = conn.execute(inbox.select().where(inbox.c.department == department, inbox.c.message_id == message_id)
                            ).first().body.decode()
    payload = body[body.index("<", body.index("Body>") + 5):]
    return [name for name in _ITEM.findall(payload)]
