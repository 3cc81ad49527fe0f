"""`govbus adapters credentials ...`: the departments' SOAP gateway secrets."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import click

from bus.app import Context, open_context
from bus.config import Settings
from bus.errors import ConfigError

from adapters.gateway.credentials import CredentialStore, check_secret, generate_secret


def _context() -> Context:
    return open_context(Settings.from_env())


def _store(context: Context) -> CredentialStore:
    return CredentialStore(context.engine, context.settings.data_dir)


def _operator() -> str:
    try:
        return os.environ.get("GOVBUS_USER") or getpass.getuser()
    except Exception:  # no user name to be had (a container without passwd entry)
        return "unknown"


@click.group()
def credentials() -> None:
    """The departments' SOAP gateway secrets (WS-Security UsernameToken, username = department code)."""


@credentials.command("set")
@click.argument("department")
@click.option("--secret-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the secret from this file (its first line); without it, a random one is generated and printed once.")
def set_secret(department: str, secret_file: Path | None) -> None:
    """Give DEPARTMENT a gateway secret, replacing any it had (its clients must then use the new one)."""
    context = _context()
    if department not in context.table.departments:
        known = ", ".join(sorted(context.table.departments)) or "none"
        raise ConfigError(f"no department {department} in the routing table; known: {known}")
    if secret_file is not None:
        lines = secret_file.read_text(encoding="utf-8").splitlines()
        secret = check_secret(lines[0] if lines else "")
    else:
        secret = generate_secret()
    store = _store(context)
    # Without the key file a new key is made, and every other stored secret becomes unusable.
    stranded = [] if store.key.path.exists() else [c.department for c in store.list() if c.department != department]
    store.set(department, secret, _operator())
    if stranded:
        click.echo(f"warning: no platform key was found, so a new one was created at {store.key.path}; the secrets of "
                   f"{', '.join(stranded)} were sealed with the old key and must be set again", err=True)
    if secret_file is None:
        click.echo(f"secret of {department} (shown only now; give it to the department's system):")
        click.echo(secret)
    else:
        click.echo(f"secret of {department} set from {secret_file}")


@credentials.command("list")
def list_secrets() -> None:
    """The departments that have a gateway secret, with when and by whom it was set."""
    rows = _store(_context()).list()
    click.echo(f"{'DEPARTMENT':12}  {'SET AT':25}  SET BY")
    for row in rows:
        click.echo(f"{row.department:12}  {row.created_at.isoformat(timespec='seconds'):25}  {row.created_by}")


@credentials.command("remove")
@click.argument("department")
def remove_secret(department: str) -> None:
    """Remove DEPARTMENT's gateway secret: its calls are refused (within seconds in running gateways)."""
    if not _store(_context()).remove(department):
        raise click.ClickException(f"department {department} has no gateway secret")
    click.echo(f"secret of {department} removed")
