"""`govbus catalog ...`: the resource catalogue from the command line.

Each command acts as a catalogue user (`--as USER`, or GOVBUS_USER), and the same role and
department checks apply as in the REST API: the command line has the database, not more
rights. `govbus catalog init` creates the first platform admin.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from catalog_registry import views
from catalog_registry.auth import ROLES
from catalog_registry.cli_common import State, pass_state, settings_of, table
from catalog_registry.cli_resources import applications, resources, subscriptions
from catalog_registry.exchange import Exchange, read_file


@click.group()
@click.option("--as", "user", metavar="USER", default=lambda: os.environ.get("GOVBUS_USER"),
              help="The catalogue user to act as (default: GOVBUS_USER).")
@click.pass_context
def catalog(ctx: click.Context, user: str | None) -> None:
    """The resource catalogue (目录管理): departments, users, directories, themes, resources,
    applications, search, export and import."""
    ctx.obj = State(user)


@catalog.command()
@click.option("--admin", "username", required=True, help="User name of the first platform admin.")
@click.option("--name", "display_name", default="平台管理员", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@pass_state
def init(state: State, username: str, display_name: str, password: str) -> None:
    """Create the first platform admin (only while the catalogue has no users)."""
    state.service.catalog.add_user(None, username, display_name, "platform_admin", password)
    click.echo(f"platform admin {username} created")


# -- structure --------------------------------------------------------------------------------


@catalog.group()
def domains() -> None:
    """Domains (域): the city platform and the district platforms."""


@domains.command("list")
@pass_state
def domains_list(state: State) -> None:
    table(state.reader.catalog.domains(), [("code", "CODE"), ("level", "LEVEL"), ("parent", "PARENT"), ("name", "NAME")])


@domains.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--level", type=click.Choice(["province", "city", "district"]), required=True)
@click.option("--parent", default=None)
@pass_state
def domains_add(state: State, code: str, name: str, level: str, parent: str | None) -> None:
    state.service.catalog.add_domain(state.actor, code, name, level, parent)
    click.echo(f"domain {code} added")


@catalog.group()
def departments() -> None:
    """Departments of the platform's domain."""


@departments.command("list")
@pass_state
def departments_list(state: State) -> None:
    table(state.reader.catalog.departments(), [("code", "CODE"), ("name", "NAME"), ("parent_code", "PARENT"),
                                                ("outbound", "OUTBOUND")])


@departments.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--parent", default=None, metavar="CODE")
@click.option("--outbound", default="inbox", show_default=True, help="How it takes deliveries.")
@click.option("--setting", "settings", multiple=True, metavar="KEY=VALUE", help="A setting of its outbound.")
@pass_state
def departments_add(state: State, code: str, name: str, parent: str | None, outbound: str, settings: tuple[str, ...]) -> None:
    state.service.catalog.add_department(state.actor, code, name, parent, outbound, settings_of(settings))
    click.echo(f"department {code} added")


@departments.command("update")
@click.argument("code")
@click.option("--name", default=None)
@click.option("--outbound", default=None)
@click.option("--setting", "settings", multiple=True, metavar="KEY=VALUE")
@pass_state
def departments_update(state: State, code: str, name: str | None, outbound: str | None, settings: tuple[str, ...]) -> None:
    state.service.catalog.update_department(state.actor, code, name=name, outbound=outbound,
                                            outbound_settings=settings_of(settings) if settings else None)
    click.echo(f"department {code} updated")


@catalog.group()
def users() -> None:
    """Catalogue users and their roles."""


@users.command("list")
@pass_state
def users_list(state: State) -> None:
    table(state.service.catalog.users(state.actor), [("username", "USER"), ("display_name", "NAME"), ("role", "ROLE"),
                                                      ("department", "DEPARTMENT"), ("active", "ACTIVE")])


@users.command("add")
@click.argument("username")
@click.option("--name", "display_name", default="")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--department", default=None, metavar="CODE")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@pass_state
def users_add(state: State, username: str, display_name: str, role: str, department: str | None, password: str) -> None:
    state.service.catalog.add_user(state.actor, username, display_name, role, password, department)
    click.echo(f"user {username} added")


@users.command("set")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default=None)
@click.option("--active/--inactive", default=None)
@click.option("--password", default=None)
@pass_state
def users_set(state: State, username: str, role: str | None, active: bool | None, password: str | None) -> None:
    state.service.catalog.set_user(state.actor, username, role=role, active=active, password=password)
    click.echo(f"user {username} updated")


@catalog.group()
def directories() -> None:
    """The directory trees (目录): the shared catalogue, and each department's own."""


@directories.command("list")
@click.option("--catalogue", type=click.Choice(["shared", "department"]), default=None)
@click.option("--department", default=None)
@pass_state
def directories_list(state: State, catalogue: str | None, department: str | None) -> None:
    rows = state.reader.catalog.directories(catalogue, department)
    table(rows, [("id", "ID"), ("kind", "CATALOGUE"), ("department", "DEPARTMENT"), ("parent_id", "PARENT"), ("name", "NAME")])


@directories.command("add")
@click.argument("name")
@click.option("--catalogue", "kind", type=click.Choice(["shared", "department"]), required=True)
@click.option("--department", default=None)
@click.option("--parent", "parent_id", type=int, default=None)
@pass_state
def directories_add(state: State, name: str, kind: str, department: str | None, parent_id: int | None) -> None:
    made = state.service.catalog.add_directory(state.actor, name, kind=kind, department=department, parent_id=parent_id)
    click.echo(f"directory {made['id']} added")


@directories.command("rename")
@click.argument("directory_id", type=int)
@click.argument("name")
@pass_state
def directories_rename(state: State, directory_id: int, name: str) -> None:
    state.service.catalog.rename_directory(state.actor, directory_id, name)
    click.echo(f"directory {directory_id} renamed")


@directories.command("remove")
@click.argument("directory_id", type=int)
@pass_state
def directories_remove(state: State, directory_id: int) -> None:
    state.service.catalog.remove_directory(state.actor, directory_id)
    click.echo(f"directory {directory_id} removed")


@catalog.group()
def themes() -> None:
    """Data themes (数据主题)."""


@themes.command("list")
@pass_state
def themes_list(state: State) -> None:
    table(state.reader.catalog.themes(), [("code", "CODE"), ("name", "NAME"), ("description", "DESCRIPTION")])


@themes.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--description", default="")
@pass_state
def themes_add(state: State, code: str, name: str, description: str) -> None:
    state.service.catalog.add_theme(state.actor, code, name, description)
    click.echo(f"data theme {code} added")


@themes.command("update")
@click.argument("code")
@click.option("--name", default=None)
@click.option("--description", default=None)
@pass_state
def themes_update(state: State, code: str, name: str | None, description: str | None) -> None:
    state.service.catalog.update_theme(state.actor, code, name, description)
    click.echo(f"data theme {code} updated")


@themes.command("remove")
@click.argument("code")
@pass_state
def themes_remove(state: State, code: str) -> None:
    state.service.catalog.remove_theme(state.actor, code)
    click.echo(f"data theme {code} removed")


# -- search, export, import -----------------------------------------------------------------------


@catalog.command()
@click.argument("query", required=False, default="")
@click.option("--department", default=None)
@click.option("--classification", default=None)
@click.option("--theme", default=None)
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--size", type=click.IntRange(1, 200), default=20, show_default=True)
@pass_state
def search(state: State, query: str, department: str | None, classification: str | None, theme: str | None,
           page: int, size: int) -> None:
    """Find resources by keyword (exact, substring, pinyin initials such as hjrk, typos), or
    browse them by department, classification and theme."""
    from catalog_registry.search import SearchIndex  # pypinyin: loaded when searching only

    index = SearchIndex(views.search_documents(state.reader))
    found = index.search(query, department=department, classification=classification, theme=theme, page=page, size=size)
    click.echo(f"{found.total} found; page {found.page} of {max(1, -(-found.total // found.size))}")
    table([{"code": h.document.code, "name": h.document.name, "provider": h.document.provider,
             "classification": h.document.classification, "reason": h.reason} for h in found.hits],
           [("code", "CODE"), ("name", "NAME"), ("provider", "PROVIDER"), ("classification", "CLASS"), ("reason", "MATCHED BY")])


@catalog.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--domain", default=None, help="One domain only (default: all).")
@click.option("--subscriptions", is_flag=True, help="Include active subscriptions.")
@pass_state
def export(state: State, file: Path, domain: str | None, subscriptions: bool) -> None:
    """Write the catalogue as XML (schemas/xsd/catalog/1.0) for the provincial catalogue."""
    data = views.export(state.service, state.actor, domain=domain, subscriptions=subscriptions)
    try:
        file.write_bytes(data)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {file}: {exc.strerror}", param_hint="FILE") from None
    click.echo(f"wrote {file} ({len(data)} bytes)")


@catalog.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_state
def import_(state: State, file: Path) -> None:
    """Merge a catalogue XML file in; importing it again changes nothing."""
    counts = Exchange(state.service.catalog, state.service.resources).import_(state.actor, read_file(file))
    for kind, c in counts.items():
        click.echo(f"{kind}: {c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged")


catalog.add_command(resources)
catalog.add_command(applications)
catalog.add_command(subscriptions)
