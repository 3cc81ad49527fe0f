"""`govbus masterdata ...`: the base libraries on the command line (entry point `masterdata`
of the group `govbus.commands`).

This module makes the group and its `load` command. Other commands live in modules
`masterdata/cli_<topic>.py`, each listing its click commands in `COMMANDS`; they join the
group when it is built, so that no module needs to import another's commands. They find the
platform's settings with `settings_of(ctx)`.

Exit codes as everywhere in govbus: 0 done; 1 the operation did not (fully) happen; 2 a usage
or input error. Errors are one line.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import click

from bus.app import open_context
from bus.config import Settings


def settings_of(ctx: click.Context) -> Settings:
    """The settings `govbus` read at start (GOVBUS_* variables)."""
    obj = ctx.find_root().obj
    if isinstance(obj, dict) and isinstance(obj.get("settings"), Settings):
        return obj["settings"]
    return Settings.from_env()


@click.group()
def masterdata() -> None:
    """The natural-person and legal-entity base libraries (人口、法人基础信息库)."""


@masterdata.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--department", required=True, metavar="CODE", help="The department whose extract it is (the sender).")
@click.option("--resource", required=True, metavar="CODE", help="The resource it is loaded as (the department provides it).")
@click.option("--version", default="1.1", show_default=True, help="Specification version; needs the batch element (1.1 or later).")
@click.option("--batch", type=click.IntRange(1, 10000), default=1000, show_default=True, help="Records per batch message.")
@click.option("--window", type=click.IntRange(1, 100), default=4, show_default=True,
              help="Batches published before waiting for the broker's confirms.")
@click.option("--rate", type=click.FloatRange(min=1, min_open=False), default=None, metavar="ROWS_PER_SECOND",
              help="At most this many rows a second (to spare the platform during working hours).")
@click.option("--encoding", default="utf-8-sig", show_default=True, help="Encoding of a CSV extract (e.g. gb18030).")
@click.option("--restart", is_flag=True, help="Ignore the checkpoint: send every batch again (repeats are dropped).")
@click.pass_context
def load(ctx: click.Context, file: Path, department: str, resource: str, version: str, batch: int, window: int,
         rate: float | None, encoding: str, restart: bool) -> None:
    """Load a department's full extract FILE (CSV or XML) through the bus, in batches.

    A CSV extract has a header of element names (IdNumber or CreditCode, Name, ...,
    SourceRecordId, RecordUpdatedAt, Deleted) or their Chinese names. Progress goes to
    stderr. Interrupted, the same command resumes after the last batch the broker confirmed
    (checkpoint FILE.govbus-load.json). Records the specification refuses are left out and
    listed in FILE.rejected.csv with the reason (exit status 1).
    """
    from tqdm import tqdm

    from masterdata.bulk import BulkLoad, LoadError

    settings = settings_of(ctx)
    context = open_context(settings)
    try:
        try:
            loader = BulkLoad(context, file, department=department, resource=resource, version=version, batch=batch,
                              window=window, rate=rate, encoding=encoding, restart=restart)
        except LoadError as exc:
            raise (click.UsageError if exc.usage else click.ClickException)(str(exc)) from None
        bar = tqdm(desc=f"{department} {resource}", unit=" rows", unit_scale=True, file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5, disable=None)

        def notice(text: str) -> None:
            bar.write(f"govbus: {text}", file=sys.stderr)

        def start(total: int, done: int) -> None:
            bar.reset(total=total or None)
            bar.initial = bar.n = done  # resumed: the bar starts where the last run got to
            bar.refresh()

        try:
            report = loader.run(progress=bar.update, notice=notice, start=start)
        except LoadError as exc:
            raise (click.UsageError if exc.usage else click.ClickException)(str(exc)) from None
        except UnicodeDecodeError as exc:
            raise click.UsageError(f"{file} is not {encoding} ({exc.reason} at byte {exc.start}); "
                                   "give its encoding with --encoding, e.g. gb18030") from None
        finally:
            bar.close()
    finally:
        context.engine.dispose()
    _summarise(file, report, embedded=settings.embedded)


def _summarise(file: Path, report, *, embedded: bool) -> None:  # type: ignore[no-untyped-def]
    if report.complete and not report.rows and not report.batches and report.skipped_batches:
        click.echo(f"{file}: loaded already ({report.skipped_rows} rows in {report.skipped_batches} batches); "
                   "nothing to do (--restart sends it again)")
    else:
        rate = report.rows / report.seconds if report.seconds else 0.0
        resumed = f", after {report.skipped_rows} rows confirmed before" if report.skipped_rows else ""
        where = "applied to the base library" if embedded else "confirmed by the broker"
        click.echo(f"{file}: {report.rows} rows in {report.batches} batches {where} in {report.seconds:.1f}s "
                   f"({rate:.0f} rows/s){resumed}")
    if report.rejected:
        rejects = file.with_name(file.name + ".rejected.csv")
        raise click.ClickException(f"{len(report.rejected)} row(s) refused by the specification were left out; "
                                   f"see {rejects}: put the corrected rows in a file of their own, with the extract's "
                                   "header, and load it")
    if report.dead_letters:
        message_id, why = report.dead_letters[0]
        raise click.ClickException(f"{len(report.dead_letters)} batch(es) dead-lettered, e.g. {message_id}: {why} "
                                   "(govbus dlq list)")


def _join_commands() -> None:
    """Add the commands of every masterdata/cli_*.py module (listed in its COMMANDS)."""
    package = Path(__file__).resolve().parent
    for module in sorted(m.name for m in pkgutil.iter_modules([str(package)]) if m.name.startswith("cli_")):
        for command in getattr(importlib.import_module(f"masterdata.{module}"), "COMMANDS", ()):
            masterdata.add_command(command)


_join_commands()
