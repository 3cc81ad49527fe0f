"""What the catalogue's commands share: who acts, the service, and table output."""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime, timezone
from typing import Any

import click

from bus.app import open_context
from bus.config import Settings
from catalog_registry.auth import Actor
from catalog_registry.service import Service, service_of
from catalog_registry.workdays import CHINA


class State:
    """The acting user and, once needed, the catalogue service."""

    def __init__(self, user: str | None) -> None:
        self.user = user
        self._service: Service | None = None

    @property
    def service(self) -> Service:
        if self._service is None:
            self._service = service_of(open_context(Settings.from_env()))
        return self._service

    @property
    def reader(self) -> Service:
        """The service, once the acting user is known: reading needs a user, as in the REST API."""
        self.actor  # noqa: B018  (raises for an unknown or missing user)
        return self.service

    @property
    def actor(self) -> Actor:
        if not self.user:
            raise click.UsageError("say who acts: --as USER (or GOVBUS_USER)")
        return self.service.catalog.actor(self.user)


pass_state = click.make_pass_decorator(State)


def cell(value: Any) -> str:
    """A table cell; times in China's time zone, to the second, as the platform's users read them."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite gives naive UTC
        return aware.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    if not rows:
        click.echo("(none)")
        return
    grid = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(title), *(columns_of(cells[i]) for cells in grid)) for i, (_, title) in enumerate(columns)]
    click.echo("  ".join(pad(title, w) for (_, title), w in zip(columns, widths, strict=True)).rstrip())
    for cells in grid:
        click.echo("  ".join(pad(c, w) for c, w in zip(cells, widths, strict=True)).rstrip())


def columns_of(text: str) -> int:
    """Terminal columns `text` takes: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - columns_of(text))


def settings_of(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--setting")
        out[key] = value
    return out


def show_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))
