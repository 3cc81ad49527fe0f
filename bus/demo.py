"""`govbus demo`: the whole flow on the embedded default, with the sample data in examples/.

Each sample envelope is sent with a fresh message id (so the demo can run again and again
against the same database: the platform would otherwise recognise the ids and skip them), and
the report says for each where it went or why it was refused.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import click

from bus.app import open_context
from bus.client import fates, run_embedded, send_files
from bus.config import Settings
from bus.errors import ConfigError

_MESSAGE_ID = re.compile(rb"(<(?:\w+:)?MessageId>)[0-9a-fA-F-]{36}(</)")
_COMMENT = re.compile(rb"<!--(.*?)-->", re.S)


def default_examples() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"


def _fresh_id(data: bytes) -> bytes:
    # Same length, so every line and column the report quotes matches the file on disk.
    return _MESSAGE_ID.sub(lambda m: m.group(1) + str(uuid.uuid4()).encode() + m.group(2), data, count=1)


def _describe(path: Path) -> str:
    found = _COMMENT.search(path.read_bytes()[:2000])
    return found.group(1).decode("utf-8", "replace").strip() if found else path.name


def run_demo(examples: Path | None = None) -> None:
    examples = examples or default_examples()
    routes = examples / "routes.toml"
    messages = sorted((examples / "messages").glob("*.xml"))
    if not routes.is_file() or not messages:
        raise ConfigError(f"{examples} lacks routes.toml or messages/*.xml; pass --examples FOLDER")
    base = Settings.from_env()
    settings = base.copy(
        broker_url="memory://",
        database_url=f"sqlite:///{base.data_dir / 'govbus.db'}",
        routes=routes,
    )
    context = open_context(settings)
    table = context.table
    echo = click.echo
    echo("govbus demo: the embedded default (in-memory broker, SQLite at "
         f"{settings.data_dir / 'govbus.db'}); nothing here is durable.\n")
    echo(f"Routing table ({routes}):")
    for resource in table.resources.values():
        provider = table.departments[resource.provider]
        subscribers = ", ".join(f"{table.departments[r.subscriber].name} ({r.subscriber})" for r in table.routes(resource.code))
        echo(f"  {resource.code} {resource.name} [{resource.specification}]: "
             f"from {provider.name} ({provider.code}) to {subscribers or 'nobody'}")
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
            echo(f"    delivered to {table.departments[code].name} ({code})")
        for letter in fate.dead_letters:
            dead += 1
            rule = f" [{letter.rule}]" if letter.rule else ""
            echo(f"    dead-lettered as #{letter.id} by the {letter.stage} stage: {letter.reason}{rule}{letter.where()}")
            echo(f"      {letter.reason_text}")
        if not fate.delivered_to and not fate.dead_letters:
            echo("    accepted; no department subscribes to it")
    echo(f"\nReport: {len(submissions)} sent, {delivered} copies delivered, {dead} dead-lettered with their reasons.")
    echo("Inspect the dead letters:  govbus dlq list   then   govbus dlq show ID")
