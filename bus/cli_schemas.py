"""`govbus schemas ...`: the registry of data specifications, for standards staff.

Exit codes a script can rely on: 0 compatible or done, 1 incompatible (or refused for it),
2 a usage or input error (an unknown name, a hostile or broken XSD).
"""

from __future__ import annotations

import getpass
import unicodedata
from pathlib import Path

import click
from schemas import Incompatible
from schemas.compat import MODES, Finding
from schemas.dictionary import as_html, as_json, data_items

from bus.app import open_context
from bus.config import Settings


class Refused(click.ClickException):
    exit_code = 1


def _registry():  # type: ignore[no-untyped-def]
    return open_context(Settings.from_env()).registry


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _pad(text: str, width: int) -> str:
    """Left-align for a terminal, where a Chinese character takes two columns."""
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - used)


def _findings(findings: list[Finding]) -> None:
    for finding in findings:
        click.echo(f"  - {finding}")


def _spec_and_version(text: str) -> tuple[str, str | None]:
    name, _, version = text.partition(":")
    return name, version or None


mode_option = click.option(
    "--mode", type=click.Choice(MODES, case_sensitive=False), default=None,
    help="Compatibility mode (default: the specification's, else BACKWARD).",
)


@click.group()
def schemas() -> None:
    """Data specifications: versions, compatibility, data dictionaries."""


@schemas.command("list")
def list_() -> None:
    """Every specification version and its status."""
    entries = _registry().entries()
    click.echo(f"{'SPECIFICATION':16}  {'VERSION':8}  {'STATUS':10}  {'MODE':20}  {'PUBLISHED (UTC)':16}  NAMESPACE")
    for e in entries:
        published = f"{e.published_at:%Y-%m-%d %H:%M}" if e.published_at else "-"
        click.echo(f"{e.name:16}  {e.version:8}  {e.status:10}  {e.mode:20}  {published:16}  {e.namespace}")


@schemas.command()
@click.argument("name")
@click.argument("version", required=False)
def show(name: str, version: str | None) -> None:
    """A specification's versions, or one version's data items and files."""
    registry = _registry()
    if version is None:
        entries = registry.entries(name)
        if not entries:
            registry.entry(name, "0.0")  # raises UnknownSpecification with the message
        for e in entries:
            dates = ", ".join(f"{label} {value:%Y-%m-%d %H:%M}" for label, value in
                              (("published", e.published_at), ("deprecated", e.deprecated_at)) if value)
            click.echo(f"{e.name} {e.version}: {e.status}, {e.mode}, registered by {e.registered_by}" + (f"; {dates}" if dates else ""))
    else:
        e = registry.entry(name, version)
        model = registry.model(name, version)
        click.echo(f"{e.name} {e.version} ({e.status}, {e.mode}): {model.title or ''}")
        click.echo(f"namespace: {e.namespace}")
        click.echo(f"files: {', '.join(sorted(p.name for p in registry.folder(name, version).iterdir() if p.suffix == '.xsd'))} (sha256 {e.sha256[:16]})")
        click.echo(f"{'DATA ITEM':36}  {'NAME':12}  {'TYPE':8}  {'LENGTH':6}  {'REQUIRED':8}  {'CODES':5}  STANDARD")
        for item in data_items(model):
            click.echo(
                f"{item['path']:36}  {_pad(item['label'] or '', 12)}  {item['type'] or '':8}  {item['length'] or '':6}  "
                f"{'yes' if item['required'] else 'no':8}  {len(item['codes']) if item['codes'] else '':5}  {item['standard'] or ''}"
            )
    uses = [u for u in registry.uses(name) if version is None or u.version == version]
    if uses:
        click.echo("messages under deprecated versions:")
        for u in uses:
            click.echo(f"  {u.version} from {u.sender}: {u.messages} (last {u.last_seen:%Y-%m-%d %H:%M})")


@schemas.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--against", "against", required=True, metavar="NAME[:VERSION]",
              help="The specification (and the version the file would become; default: a new version).")
@mode_option
def check(file: Path, against: str, mode: str | None) -> None:
    """Is FILE compatible with the registered versions? Exit 0 yes, 1 no, 2 input error."""
    name, version = _spec_and_version(against)
    used, findings = _registry().check(file, name, version, mode)
    if findings:
        click.echo(f"{file.name} is not {used} compatible with {name}:")
        _findings(findings)
        raise Refused(f"{len(findings)} incompatibilit{'y' if len(findings) == 1 else 'ies'}")
    click.echo(f"{file.name} is {used} compatible with {name}")


@schemas.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Specification name, e.g. person.")
@click.option("--version", "version", required=True, help="MAJOR.MINOR, e.g. 1.1.")
@mode_option
@click.option("--draft", is_flag=True, help="Register as a draft: kept, not yet accepted in messages.")
def publish(file: Path, name: str, version: str, mode: str | None, draft: bool) -> None:
    """Register FILE as a new version; refused (exit 1) if incompatible under the mode."""
    try:
        done = _registry().publish(file, name, version, mode=mode, draft=draft, who=_who())
    except Incompatible as exc:
        click.echo(f"refused: {exc.message}")
        _findings(exc.findings)
        raise Refused(f"{name} {version} not published") from None
    e = done.entry
    messages = {
        "published": f"{e.name} {e.version} published ({e.mode})",
        "draft": f"{e.name} {e.version} registered as a draft",
        "promoted": f"{e.name} {e.version} published from its draft ({e.mode})",
        "unchanged": f"{e.name} {e.version} is {e.status} already with these files: nothing to do",
    }
    click.echo(messages[done.outcome])
    if done.findings:
        click.echo("it would not be accepted for publication yet:")
        _findings(done.findings)


@schemas.command()
@click.argument("name")
@click.argument("version")
def deprecate(name: str, version: str) -> None:
    """Mark a version deprecated: still accepted, its use counted per sender."""
    e = _registry().deprecate(name, version)
    click.echo(f"{e.name} {e.version} is {e.status}")


@schemas.command()
@click.argument("name")
@click.argument("version")
@click.option("--format", "form", type=click.Choice(["html", "json"]), default="html", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def dictionary(name: str, version: str, form: str, output: Path | None) -> None:
    """The data dictionary of a version: an HTML page, or JSON for programs."""
    registry = _registry()
    e = registry.entry(name, version)
    render = as_html if form == "html" else as_json
    text = render(name, version, e.status, registry.model(name, version))
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot write {output}: {exc.strerror}", param_hint="--output") from None
        click.echo(f"wrote {output}")
