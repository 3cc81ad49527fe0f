"""`govbus`: the command line of the platform.

Exit codes a script can rely on: 0 done; 1 the operation failed (a broker refused, a replay
failed); 2 a usage, input or configuration error. Errors are one line, never a traceback.
Command groups of later packages join through the `govbus.commands` entry-point group.
"""

from __future__ import annotations

import getpass
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from schemas import SafeParser, SchemaSet, ValidationError

from bus.app import STAGES, Context, open_context, plugins
from bus.broker import Broker
from bus.cli_schemas import schemas as schemas_commands
from bus.client import fates, run_embedded, send_files
from bus.config import Settings
from bus.deadletter import STATUSES, DeadLetterStore
from bus.errors import BrokerRefused, BusError
from bus.names import Names

EMBEDDED_BANNER = (
    "govbus is running on its embedded default: the in-memory broker and SQLite at {db}.\n"
    "Nothing in flight survives a restart, and only this process reaches the broker; this mode is\n"
    "for trying the platform out (govbus send and govbus demo run the whole flow in their own process).\n"
    "Set GOVBUS_BROKER_URL=amqp://... and GOVBUS_DATABASE_URL=postgresql+psycopg://... for production.\n"
    "Stop with Ctrl-C."
)


class Failed(click.ClickException):
    """The command ran, but what it was asked to do did not (fully) happen: exit 1."""

    exit_code = 1


def _settings(ctx: click.Context) -> Settings:
    return ctx.find_root().obj["settings"]  # type: ignore[no-any-return]


def _context(ctx: click.Context, **kwargs: Any) -> Context:
    return open_context(_settings(ctx), **kwargs)


def _connect(settings: Settings) -> Broker:
    broker = Broker(settings.broker_url)
    try:
        broker.connect()
    except broker.errors as exc:
        raise Failed(f"cannot reach the broker at {settings.broker_url.split('@')[-1]}: {exc}") from None
    return broker


def _serve_until_signalled(context: Context, stages: tuple[str, ...], http: tuple[str, int] | None = None) -> None:
    """Run `stages` (and, with `http`, the HTTP server on (host, port)) until SIGTERM or Ctrl-C."""
    settings = context.settings
    if settings.embedded:
        click.echo(EMBEDDED_BANNER.format(db=settings.database_url.removeprefix("sqlite:///")), err=True)
    stop = threading.Event()
    worker = context.worker(stages)
    logging.getLogger("govbus").info(
        "serving stages %s on %s", ", ".join(stages), settings.broker_url.split("@")[-1]
    )
    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("govbus").info("signal %d: stopping", signum)
        stop.set()

    # Installed in both cases: uvicorn captures SIGTERM/SIGINT while it runs, then restores
    # these handlers and re-raises the signal, which must stop us, not kill us.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if set(stages) == set(STAGES):
        _start_services(context, stop)
    if http is None:
        worker.run(stop)
    else:
        from bus.http import serve_http

        failure: list[BaseException] = []

        def run_stages() -> None:
            try:
                worker.run(stop)
            except BaseException as exc:  # re-raised in the main thread, which reports it
                failure.append(exc)
            finally:
                stop.set()  # the HTTP server goes down with the stages

        thread = threading.Thread(target=run_stages, name="stages", daemon=True)
        thread.start()
        serve_http(context, http[0], http[1], stop)  # returns on SIGTERM, Ctrl-C or `stop`
        thread.join(30)
        if failure:
            raise failure[0]
    for name, stats in worker.stats().items():
        if stats:
            logging.getLogger("govbus").info("%s: %s", name, ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))


def _start_services(context: Context, stop: threading.Event) -> None:
    """Start the platform services of the `govbus.services` group (e.g. the base libraries
    answering queries), each `run(context, stop)` in a thread of its own, restarted after a
    failure: `govbus serve` is the whole platform, and on the embedded default the only process."""
    for name, entry in sorted(plugins("govbus.services").items()):
        run = entry.load()

        def keep_running(run: Any = run, name: str = name) -> None:
            while not stop.is_set():
                try:
                    run(context, stop)
                except Exception as exc:  # logged, then tried again: the rest of the platform goes on
                    logging.getLogger("govbus").warning("service %s failed (%s); restarting in 5 s", name, exc)
                stop.wait(5.0)

        threading.Thread(target=keep_running, name=f"service-{name}", daemon=True).start()
        logging.getLogger("govbus").info("service %s started", name)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """govbus: the government data-sharing and exchange bus.

    Configured by GOVBUS_* environment variables; with none set, it runs on its embedded
    default (in-memory broker, SQLite under ./var).
    """
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    if ctx.invoked_subcommand in ("serve", "worker"):
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"settings": Settings.from_env()}


@cli.command()
@click.option("--stage", "stages", multiple=True, type=click.Choice(STAGES), help="Only these stages (default: all).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the HTTP server (REST API).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--http/--no-http", default=True, help="Host the REST API (default) or only the stages.")
@click.pass_context
def serve(ctx: click.Context, stages: tuple[str, ...], host: str, port: int, http: bool) -> None:
    """Run every stage and the REST API in this process, until SIGTERM or Ctrl-C."""
    _serve_until_signalled(_context(ctx), stages or STAGES, (host, port) if http else None)


@cli.command()
@click.option("--stage", required=True, type=click.Choice(STAGES), help="The stage to run.")
@click.option("--department", "departments", multiple=True, metavar="CODE",
              help="deliver only: consume only these subscribers' queues.")
@click.pass_context
def worker(ctx: click.Context, stage: str, departments: tuple[str, ...]) -> None:
    """Run one stage; start several to scale out as competing consumers."""
    if departments and stage != "deliver":
        raise click.UsageError("--department applies to --stage deliver only")
    settings = _settings(ctx)
    if settings.embedded:
        raise click.UsageError(
            "a worker on its own needs a shared broker: set GOVBUS_BROKER_URL=amqp://... "
            "(on the embedded default, use govbus serve)"
        )
    _serve_until_signalled(_context(ctx, departments=departments), (stage,))


@cli.group()
def topology() -> None:
    """Broker topology."""


@topology.command("declare")
@click.pass_context
def topology_declare(ctx: click.Context) -> None:
    """Declare every exchange and queue (idempotent)."""
    context = _context(ctx)
    broker = _connect(context.settings)
    try:
        declared = context.declare(broker)
    finally:
        broker.close()
    for name in declared:
        click.echo(name)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def send(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Submit envelope FILES to the ingress, as a department would.

    On RabbitMQ each file is confirmed by the broker and then validated by the ingress stage;
    on the embedded default the whole pipeline runs here and the outcome is printed.
    """
    settings = _settings(ctx)
    if settings.embedded:
        context = _context(ctx)
        submissions = run_embedded(
            context, lambda broker, channel: send_files(broker, channel, files, context.names, context.parser, context.schemas)
        )
        outcome = fates(context, [s.message_id for s in submissions if s.message_id])
    else:
        broker = _connect(settings)
        try:
            submissions = send_files(broker, broker.channel(), files, Names(settings.prefix), SafeParser(settings.xml), SchemaSet())
        finally:
            broker.close()
        outcome = {}
    refused = 0
    for s in submissions:
        line = f"{s.path}: message {s.message_id or '(no readable id)'}"
        if s.refused:
            refused += 1
            line += f" refused by the broker: {s.refused}"
        elif s.message_id in outcome:
            fate = outcome[s.message_id]
            parts = []
            if fate.delivered_to:
                parts.append("delivered to " + ", ".join(fate.delivered_to))
            for letter in fate.dead_letters:
                parts.append(f"dead-lettered (#{letter.id}): {letter.explain()}")
            line += " " + ("; ".join(parts) or "accepted (no subscribers)")
        else:
            line += " accepted by the broker"
            if s.unreadable:
                line += f"; it is not a readable envelope ({s.unreadable}) and will be dead-lettered"
        click.echo(line)
    if refused:
        raise Failed(f"{refused} of {len(submissions)} file(s) refused by the broker")


@cli.group()
def dlq() -> None:
    """Inspect, replay and discard dead letters."""


def _collect(context: Context) -> None:
    """Move what waits in the dead-letter queue into the database first (RabbitMQ only)."""
    if context.settings.embedded:
        return
    try:
        context.worker(["deadletter"]).run(threading.Event(), idle_exit=0.3, reconnect=False)
    except Exception as exc:  # the operator still gets what was collected before
        click.echo(f"warning: could not collect new dead letters from the broker ({exc}); showing those already collected", err=True)


@dlq.command("list")
@click.option("--status", type=click.Choice((*STATUSES, "all")), default="pending", show_default=True)
@click.option("--reason", metavar="CODE", help="Only this reason code (e.g. schema_violation).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.pass_context
def dlq_list(ctx: click.Context, status: str, reason: str | None, limit: int) -> None:
    """Dead letters, newest first."""
    context = _context(ctx)
    _collect(context)
    letters = DeadLetterStore(context.engine).list(status=None if status == "all" else status, reason=reason, limit=limit)
    if not letters:
        click.echo("no dead letters")
        return
    click.echo(f"{'ID':>6}  {'CAPTURED (UTC)':19}  {'STATUS':9}  {'STAGE':8}  {'REASON':22}  {'RESOURCE':14}  MESSAGE")
    for d in letters:
        click.echo(
            f"{d.id:>6}  {d.captured_at:%Y-%m-%d %H:%M:%S}  {d.status:9}  {d.stage or '-':8}  {d.reason:22}  "
            f"{d.resource or '-':14}  {d.message_id or '-'}"
        )


@dlq.command("show")
@click.argument("id", type=int)
@click.option("--no-body", is_flag=True, help="Leave out the message body.")
@click.pass_context
def dlq_show(ctx: click.Context, id: int, no_body: bool) -> None:
    """One dead letter: why, where, when, its headers and its body."""
    context = _context(ctx)
    _collect(context)
    d = DeadLetterStore(context.engine).get(id)
    rows = [
        ("id", d.id), ("status", d.status), ("reason", d.reason), ("explanation", d.explain()),
        ("rule", d.rule), ("line", d.line), ("column", d.column), ("stage", d.stage), ("queue", d.queue),
        ("attempts", d.attempts), ("message id", d.message_id), ("correlation id", d.correlation_id),
        ("sender", d.sender), ("resource", d.resource),
        ("published to", f"{d.origin_exchange or '(default exchange)'} / {d.origin_routing_key}"),
        ("first failure", d.first_failure), ("last failure", d.last_failure), ("captured", d.captured_at),
        ("resolved", f"{d.resolved_at} by {d.resolved_by}: {d.resolution}" if d.resolved_at else None),
    ]
    for label, value in rows:
        if value is not None:
            click.echo(f"{label + ':':16} {value}")
    click.echo("headers:")
    for key, value in sorted(d.headers.items()):
        click.echo(f"  {key}: {value}")
    if not no_body:
        click.echo(f"body ({len(d.body)} bytes):")
        click.echo(d.body.decode("utf-8", "replace"))


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")


def _report(results: dict[int, str | None], verb: str) -> None:
    failed = 0
    for i, problem in results.items():
        if problem is None:
            click.echo(f"#{i}: {verb}")
        else:
            failed += 1
            click.echo(f"#{i}: not {verb}: {problem}")
    if failed:
        raise Failed(f"{failed} of {len(results)} dead letter(s) not {verb}")


@dlq.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--reason", metavar="CODE", help="Replay every pending dead letter with this reason code.")
@click.pass_context
def dlq_replay(ctx: click.Context, ids: tuple[int, ...], reason: str | None) -> None:
    """Publish dead letters again where they were first published (after fixing the cause)."""
    if not ids and not reason:
        raise click.UsageError("give the IDs to replay, or --reason CODE")
    context = _context(ctx)
    _collect(context)
    store = DeadLetterStore(context.engine)
    chosen = list(ids) + [d.id for d in store.list(status="pending", reason=reason, limit=100000)] if reason else list(ids)
    if not chosen:
        click.echo(f"no pending dead letters with reason {reason}")
        return
    if context.settings.embedded:
        results = run_embedded(context, lambda broker, _channel: store.replay(chosen, broker, _operator()))
    else:
        broker = _connect(context.settings)
        try:
            results = store.replay(chosen, broker, _operator())
        finally:
            broker.close()
    _report(results, "replayed")


@dlq.command("discard")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--reason", "why", required=True, metavar="TEXT", help="Why they are discarded (kept with them).")
@click.pass_context
def dlq_discard(ctx: click.Context, ids: tuple[int, ...], why: str) -> None:
    """Mark dead letters as dealt with, without replaying them."""
    context = _context(ctx)
    _report(DeadLetterStore(context.engine).discard(ids, why, _operator()), "discarded")


@cli.command()
@click.option("--examples", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder with catalog.xml and messages/ (default: the project's examples/).")
def demo(examples: Path | None) -> None:
    """A guided run of the whole flow on the embedded default, with the sample data."""
    from bus.demo import run_demo

    run_demo(examples)


cli.add_command(schemas_commands, "schemas")


def _add_plugin_commands() -> None:
    for name, entry in sorted(plugins("govbus.commands").items()):
        if name not in cli.commands:
            cli.add_command(entry.load(), name)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one line per error, stable exit codes."""
    try:
        _add_plugin_commands()
        cli.main(args=argv, prog_name="govbus", standalone_mode=False)
        return 0
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "usage: govbus COMMAND")
        return 0
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"govbus: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:  # exit 1: the operation failed; else a usage error
        prefix = "" if exc.exit_code == 1 else "error: "
        click.echo(f"govbus: {prefix}{exc.format_message()}", err=True)
        return exc.exit_code
    except BrokerRefused as exc:
        click.echo(f"govbus: {exc}", err=True)
        return 1
    except (BusError, ValidationError) as exc:
        code = getattr(exc, "exit_code", 2)  # 1: refused (e.g. not allowed), 2: a wrong request
        click.echo(f"govbus: {'error: ' if code == 2 else ''}{exc}", err=True)
        return code
    except (click.exceptions.Abort, KeyboardInterrupt):
        return 130
    except (OSError, TimeoutError) as exc:
        click.echo(f"govbus: {exc}", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
