"""`govbus adapters ...`: the installed adapter types, checking an adapters file, running it."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click

from bus.app import open_context
from bus.config import Settings
from bus.errors import ConfigError

from adapters.registry import adapter_types, build, check_outbounds, direction_of, read_config, run_inbound


@click.group()
def adapters() -> None:
    """Adapters to department systems: list the types, check and run an adapters file."""


@adapters.command("list")
@click.option("--settings", "show_settings", is_flag=True, help="Also every setting each type declares.")
def list_types(show_settings: bool) -> None:
    """Every installed adapter type (entry points of the group govbus.adapters)."""
    click.echo(f"{'TYPE':14}  {'DIRECTION':9}  SUMMARY")
    for name, kind in adapter_types().items():
        click.echo(f"{name:14}  {direction_of(kind):9}  {getattr(kind, 'summary', '') or kind.__doc__ or ''}".rstrip())
        if show_settings:
            for setting in getattr(kind, "settings", ()):
                click.echo(f"{'':27}{setting.describe()}")


@adapters.command("check")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
def check(config: Path | None) -> None:
    """Check an adapters file's settings, and the outbound of every subscribing department.

    Exit 0 when everything can start; 2 with one line per problem otherwise."""
    context = open_context(Settings.from_env())
    problems = []
    if config is not None:
        for spec in read_config(config):
            # started and stopped again: a missing table or an unreachable service shows now
            try:
                adapter = build(spec, context)
            except ConfigError as exc:
                problems.append(exc.message)
                continue
            try:
                adapter.start()
            except ConfigError as exc:
                problems.append(exc.message)
                continue
            except Exception as exc:
                problems.append(f"adapter {spec.name} cannot start: {type(exc).__name__}: {exc}")
                continue
            finally:
                adapter.stop()
            click.echo(f"ok  {spec.name}: {spec.type} ({direction_of(type(adapter))}) for {spec.department}")
            for setting in type(adapter).settings:
                value = "****" if setting.secret else adapter.config[setting.name]
                click.echo(f"      {setting.name} = {value}")
    # a worker logs an outbound that cannot start; here it is one of the problems listed below
    logging.getLogger("govbus").setLevel(logging.CRITICAL)
    for department, kind, problem in check_outbounds(context):
        if problem:
            problems.append(problem)
        else:
            click.echo(f"ok  department {department}: outbound {kind}")
    if problems:
        raise ConfigError("\n".join(f"problem: {p}" for p in problems))


@adapters.command("run")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def run(config: Path) -> None:
    """Run the inbound adapters and responders of an adapters file until SIGTERM or Ctrl-C."""
    context = open_context(Settings.from_env())
    built = [build(spec, context) for spec in read_config(config)]
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("govbus").info("signal %d: stopping the adapters", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run_inbound(built, context, stop)


from adapters.gateway.cli import credentials  # noqa: E402  (the gateway's secrets)

adapters.add_command(credentials)
