"""`govbus routes ...`: the routing table as the platform sees it."""

from __future__ import annotations

import click

from bus.app import open_context
from bus.config import Settings


@click.group()
def routes() -> None:
    """The routing table."""


@routes.command("show")
def show() -> None:
    """Print every resource, its provider and its recipients."""
    table = open_context(Settings.from_env()).table
    click.echo(f"{'RESOURCE':16}  {'SPECIFICATION':22}  {'PROVIDER':10}  RECIPIENTS")
    for code, resource in sorted(table.resources.items()):
        recipients = ", ".join(
            r.subscriber + "".join(f" ({note})" for note in (
                f"{len(r.items)} items" if r.items is not None else "", "filtered" if r.filter else "") if note)
            for r in table.routes(code)
        ) or "(none: not delivered)"
        click.echo(f"{code:16}  {resource.specification:22}  {resource.provider:10}  {recipients}")
        click.echo(f"{'':16}  {resource.name}")
