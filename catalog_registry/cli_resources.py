"""`govbus catalog resources|applications|subscriptions ...`."""

from __future__ import annotations

from typing import Any

import click

from catalog_registry import views
from catalog_registry.applications import KINDS
from catalog_registry.cli_common import State, pass_state, show_json, table
from catalog_registry.resources import OPEN_TYPES, SHARING_MODES, SHARING_TYPES, UPDATE_CYCLES


def _metadata(options: dict[str, Any]) -> dict[str, Any]:
    """Resource fields from command options, leaving out those not given."""
    values = {k: v for k, v in options.items() if v not in (None, ())}
    if "theme" in values:
        values["themes"] = list(values.pop("theme"))
    if "related" in values:
        values["related_codes"] = list(values.pop("related"))
    if "spec" in values:
        name, _, version = values.pop("spec").partition(":")
        if not version:
            raise click.BadParameter("NAME:VERSION, e.g. person:1.0", param_hint="--spec")
        values["specification"], values["specification_version"] = name, version
    return values


def metadata_options(func: Any) -> Any:
    for option in reversed([
        click.option("--classification", default=None, help="类.项[.目[.细目]], e.g. 1.01.001."),
        click.option("--name", default=None, help="The resource's name (Chinese)."),
        click.option("--abstract", default=None),
        click.option("--format", "format", default=None, help="Default XML."),
        click.option("--sharing", "sharing_type", type=click.Choice(SHARING_TYPES), default=None),
        click.option("--conditions", "sharing_conditions", default=None, help="Sharing conditions (for conditional)."),
        click.option("--mode", "sharing_mode", type=click.Choice(SHARING_MODES), default=None),
        click.option("--open", "open_type", type=click.Choice(OPEN_TYPES), default=None),
        click.option("--update-cycle", "update_cycle", type=click.Choice(UPDATE_CYCLES), default=None),
        click.option("--publish-date", "publish_date", default=None, metavar="YYYY-MM-DD"),
        click.option("--spec", default=None, metavar="NAME:VERSION", help="Its data specification."),
        click.option("--theme", multiple=True, help="A data theme code (repeatable)."),
        click.option("--related", multiple=True, help="A related resource code (repeatable)."),
    ]):
        func = option(func)
    return func


@click.group()
def resources() -> None:
    """Information resources (信息资源) and their lifecycle."""


@resources.command("list")
@click.option("--provider", default=None)
@click.option("--status", default=None)
@click.option("--catalogue", type=click.Choice(["shared", "department"]), default=None)
@pass_state
def resources_list(state: State, provider: str | None, status: str | None, catalogue: str | None) -> None:
    rows = views.resources(state.service, state.actor, provider=provider, status=status, catalogue=catalogue)
    table(rows, [("code", "CODE"), ("name", "NAME"), ("provider", "PROVIDER"), ("catalogue", "CATALOGUE"),
                 ("status", "STATUS"), ("sharing_type", "SHARING"), ("specification", "SPEC")])


@resources.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="Everything, as JSON.")
@pass_state
def resources_show(state: State, code: str, as_json: bool) -> None:
    view = views.resource(state.service, state.actor, code)
    if as_json:
        show_json(view)
        return
    click.echo(f"{view['code']} {view['name']} ({view['status']}, revision {view['revision']})")
    click.echo(f"provider: {view['provider']} {view['provider_name']}; {view['catalogue']} catalogue; "
               f"classification {view['classification']}")
    click.echo(f"sharing: {view['sharing_type']} by {view['sharing_mode']}"
               + (f"; conditions: {view['sharing_conditions']}" if view['sharing_conditions'] else ""))
    click.echo(f"specification: {view['specification']} {view['specification_version']}; update: {view['update_cycle']}; "
               f"published: {view['publish_date'] or '-'}; themes: {', '.join(view['themes']) or '-'}")
    if view["pending"]:
        click.echo(f"pending: revision {view['pending']['number']} ({view['pending']['state']})")
    table(view["data_items"], [("path", "DATA ITEM"), ("label", "NAME"), ("type", "TYPE"), ("length", "LENGTH")])


@resources.command("create")
@click.option("--provider", required=True)
@click.option("--directory", "directory_id", type=int, required=True)
@click.option("--code", default=None, help="Default: classification code plus sequence.")
@metadata_options
@pass_state
def resources_create(state: State, provider: str, directory_id: int, code: str | None, **options: Any) -> None:
    """Propose a resource (a draft)."""
    view = state.service.resources.create(state.actor, provider, directory_id, code=code, **_metadata(options))
    click.echo(f"resource {view['code']} created ({view['status']})")


@resources.command("update")
@click.argument("code")
@click.option("--directory", "directory_id", type=int, default=None)
@metadata_options
@pass_state
def resources_update(state: State, code: str, directory_id: int | None, **options: Any) -> None:
    """Edit the draft."""
    state.service.resources.update(state.actor, code, directory_id=directory_id, **_metadata(options))
    click.echo(f"resource {code} updated")


@resources.command("revise")
@click.argument("code")
@metadata_options
@pass_state
def resources_revise(state: State, code: str, **options: Any) -> None:
    """Start a new revision of a published resource."""
    view = state.service.resources.revise(state.actor, code, **_metadata(options))
    click.echo(f"resource {code}: revision {view['pending']['number']} drafted")


def _transition(name: str, help: str, needs_reason: bool) -> None:
    @resources.command(name, help=help)
    @click.argument("code")
    @click.option("--reason", required=needs_reason, default=None if needs_reason else "")
    @pass_state
    def command(state: State, code: str, reason: str) -> None:
        action = getattr(state.service.resources, name)
        view = action(state.actor, code, reason) if needs_reason or reason else action(state.actor, code)
        click.echo(f"resource {code} is {view['status']}")


_transition("submit", "Submit the draft (the provider's admin): published at once on the department's "
            "own catalogue, for review on the shared one.", False)
_transition("approve", "Approve what awaits review (a platform admin).", False)
_transition("reject", "Reject what awaits review, saying why (a platform admin).", True)
_transition("deregister", "Deregister (注销) a published resource, saying why.", True)


@resources.command("history")
@click.argument("code")
@pass_state
def resources_history(state: State, code: str) -> None:
    """Every transition: who, when, what, why."""
    table(views.history(state.service, state.actor, code), [("at", "AT"), ("revision", "REV"), ("action", "ACTION"),
                                                  ("from_status", "FROM"), ("to_status", "TO"), ("actor", "BY"), ("reason", "REASON")])


@click.group()
def applications() -> None:
    """Share applications (信息授权/使用申请, 自协商共享申请)."""


@applications.command("list")
@click.option("--status", default=None)
@click.option("--consumer", default=None)
@click.option("--provider", default=None)
@click.option("--overdue", is_flag=True, help="Only those waiting past their reply deadline.")
@pass_state
def applications_list(state: State, status: str | None, consumer: str | None, provider: str | None, overdue: bool) -> None:
    rows = views.applications(state.service, state.actor, status=status, consumer=consumer, provider=provider, overdue=overdue)
    for row in rows:
        row["flag"] = "OVERDUE" if row["overdue"] else ""
    table(rows, [("id", "ID"), ("kind", "KIND"), ("resource", "RESOURCE"), ("consumer", "CONSUMER"), ("status", "STATUS"),
                 ("deadline", "REPLY BY"), ("flag", "")])


@applications.command("show")
@click.argument("application_id", type=int)
@pass_state
def applications_show(state: State, application_id: int) -> None:
    show_json(views.application(state.service, state.actor, application_id))


@applications.command("apply")
@click.argument("resource")
@click.option("--consumer", required=True, help="The department applying.")
@click.option("--purpose", required=True)
@click.option("--kind", type=click.Choice(KINDS), default="usage", show_default=True)
@click.option("--item", "items", multiple=True, metavar="PATH", help="A data item wanted (repeatable; default: all).")
@click.option("--filter", "filter_", default=None, metavar="XPATH", help="Only messages matching, e.g. r:Division = '440402'.")
@click.option("--submit", is_flag=True, help="Submit at once (the consumer's admin).")
@pass_state
def applications_apply(state: State, resource: str, consumer: str, purpose: str, kind: str, items: tuple[str, ...],
                       filter_: str | None, submit: bool) -> None:
    """Apply for a resource (a draft; --submit to submit at once)."""
    service = state.service.applications
    view = service.apply(state.actor, resource, consumer, purpose=purpose, kind=kind, items=list(items) or None, filter=filter_)
    if submit:
        view = service.submit(state.actor, view["id"])
    click.echo(f"application {view['id']} is {view['status']}" + (f", reply due by {view['deadline']}" if view["deadline"] else ""))


def _decision(name: str, help: str, needs_reason: bool) -> None:
    @applications.command(name, help=help)
    @click.argument("application_id", type=int)
    @click.option("--reason", required=needs_reason, default=None if needs_reason else "")
    @pass_state
    def command(state: State, application_id: int, reason: str) -> None:
        action = getattr(state.service.applications, name)
        view = action(state.actor, application_id, reason) if needs_reason or reason else action(state.actor, application_id)
        click.echo(f"application {application_id} is {view['status']}")


_decision("submit", "Submit an application (the consumer's admin).", False)
_decision("approve", "Approve (the provider's admin, then a platform admin where needed).", False)
_decision("reject", "Reject, saying why.", True)
_decision("revoke", "End the subscription an approved application became, saying why.", True)


@click.group()
def subscriptions() -> None:
    """Subscriptions: what the routing table is compiled from."""


@subscriptions.command("list")
@click.option("--resource", default=None)
@click.option("--subscriber", default=None)
@click.option("--all", "everything", is_flag=True, help="Revoked ones too.")
@pass_state
def subscriptions_list(state: State, resource: str | None, subscriber: str | None, everything: bool) -> None:
    rows = views.subscriptions(state.service, state.actor, resource=resource, subscriber=subscriber, active=not everything)
    for row in rows:
        row["items"] = ", ".join(row["items"]) if row["items"] else "all"
    table(rows, [("id", "ID"), ("resource", "RESOURCE"), ("subscriber", "SUBSCRIBER"), ("status", "STATUS"),
                 ("items", "DATA ITEMS"), ("filter", "FILTER")])
