"""`govbus masterdata ...`: lookups, statistics, stewardship and the applications of the base
libraries on the command line (joins the `masterdata` group of masterdata.cli).

    govbus masterdata person ID                 a person's golden record, with provenance
    govbus masterdata entity CODE [--history | --facts]
    govbus masterdata search NAME [--kind entity] [--page N]
    govbus masterdata marriage ID               marital status as 民政 records it
    govbus masterdata disagreements [--kind entity]
    govbus masterdata stats population|entities|departments
    govbus masterdata conflicts list|resolve, candidates, findings, rules show|apply

Tables are for people (Chinese labels, China time); `--json` gives scripts the read models of
masterdata.queries. Errors are one line (exit 2: a wrong request; 1: it did not happen).
"""

from __future__ import annotations

import contextlib
import json
import unicodedata
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from bus.app import open_context
from masterdata.cli import masterdata, settings_of
from masterdata.model import ATTRIBUTES, ENTITY, KEY_OF, KINDS, LABELS, PERSON
from masterdata.queries import (
    AGE_BANDS, UNKNOWN, Queries, candidate_of, conflict_of, finding_of, meaning,
)

KIND_LABELS = {PERSON: "自然人", ENTITY: "法人"}
CHANGES = {"recorded": "登记", "changed": "变更", "deleted": "删除"}
STATUSES = ("open", "resolved", "all")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
kind_option = click.option("--kind", type=click.Choice(KINDS), default=None, help="Only persons or legal entities.")


@contextlib.contextmanager
def _queries(ctx: click.Context) -> Iterator[Queries]:
    context = open_context(settings_of(ctx))
    try:
        yield Queries(context.engine)
    finally:
        context.engine.dispose()


# --- output ------------------------------------------------------------------------------------


def _width(text: str) -> int:
    """Terminal columns: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "是" if value else "否"
    text = str(value)
    if len(text) == 25 and text[10] == "T" and text.endswith("+08:00"):  # ISO 8601 in China time, from the read models
        return text[:10] + " " + text[11:19]
    return text


def table(titles: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Aligned columns under Chinese titles; "(无)" for no rows."""
    if not rows:
        click.echo("(无)")
        return
    grid = [[_cell(v) for v in row] for row in rows]
    widths = [max(_width(title), *(_width(r[i]) for r in grid)) for i, title in enumerate(titles)]
    for cells in (list(titles), *grid):
        click.echo("  ".join(c + " " * (w - _width(c)) for c, w in zip(cells, widths)).rstrip())


def emit(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _coded(kind: str, attribute: str, value: str | None) -> str | None:
    """`21 初婚`: a numeric code with its meaning, for people (a code in words stands alone)."""
    label = meaning(kind, attribute, value)
    return f"{value} {label}" if label and value is not None and value.isascii() else value


def _percent(rate: float) -> str:
    return f"{rate * 100:.2f}%"


def _source_cells(source: dict[str, Any] | None) -> list[Any]:
    if source is None:
        return [None, None, None]
    return [source["source_record_id"], source["source_time"], source["message_id"]]


def _show_record(record: dict[str, Any]) -> None:
    kind = record["kind"]
    click.echo(f"{record['key_label']} {record['key']}（规则版本 {record['rules_version']}，"
               f"更新于 {_cell(record['updated_at'])}）")
    rows = []
    for a in record["attributes"]:
        where = a["source"]["department"] if a["source"] else f"数据管理员裁定 #{a['decision_id']}"
        rows.append([a["label"], _coded(kind, a["attribute"], a["value"]), where, *_source_cells(a["source"])])
    table(["属性", "值", "来源部门", "源记录标识", "源系统更新时间", "消息标识"], rows)
    click.echo("\n各部门的值")
    rows = []
    for a in record["attributes"]:
        for d in a["departments"]:
            used = a["source"] is not None and d["source"] == a["source"]
            state = "采用" if used else ("" if d["counted"] else "标记为错误")
            rows.append([a["label"], d["department"], _coded(kind, a["attribute"], d["value"]), state,
                         *_source_cells(d["source"])])
    table(["属性", "部门", "值", "说明", "源记录标识", "源系统更新时间", "消息标识"], rows)


# --- lookups and applications ------------------------------------------------------------------


@click.command()
@click.argument("id_number")
@json_option
@click.pass_context
def person(ctx: click.Context, id_number: str, as_json: bool) -> None:
    """A person's golden record by identity number (15 or 18 digits), with each attribute's
    source department, source record, source time and message, and every department's value."""
    with _queries(ctx) as q:
        record = q.lookup(PERSON, id_number)
    if as_json:
        emit(record)
    else:
        _show_record(record)


@click.command()
@click.argument("credit_code")
@click.option("--history", is_flag=True, help="The changes of an attribute (default: 登记状态) as the departments recorded them.")
@click.option("--attribute", metavar="NAME", help="With --history: which attribute (e.g. TaxStatus; default Status).")
@click.option("--facts", is_flag=True, help="Every department's facts about it, side by side (综合治税).")
@json_option
@click.pass_context
def entity(ctx: click.Context, credit_code: str, history: bool, attribute: str | None, facts: bool, as_json: bool) -> None:
    """A legal entity by unified social credit code: its golden record with provenance, its
    status-change history (--history), or every department's facts (--facts)."""
    if history and facts:
        raise click.UsageError("ask for --history or --facts, one at a time")
    if attribute is not None and not history:
        raise click.UsageError("--attribute goes with --history")
    with _queries(ctx) as q:
        if history:
            found = q.history(ENTITY, credit_code, attribute or "Status")
        elif facts:
            found = q.facts(credit_code)
        else:
            found = q.lookup(ENTITY, credit_code)
    if as_json:
        emit(found)
    elif history:
        _show_history(found)
    elif facts:
        _show_facts(found)
    else:
        _show_record(found)


def _show_history(found: dict[str, Any]) -> None:
    kind, attribute = found["kind"], found["attribute"]
    click.echo(f"{LABELS[KEY_OF[kind]]} {found['key']} {found['name'] or ''}："
               f"{found['label']}现为 {_cell(_coded(kind, attribute, found['value']))}")
    table(["源系统更新时间", "部门", "变更", "值", "原值", "源记录标识", "消息标识"],
          [[c["source_time"], c["department"], CHANGES[c["change"]], _coded(kind, attribute, c["value"]),
            _coded(kind, attribute, c["previous"]), c["source_record_id"], c["message_id"]] for c in found["changes"]])


def _show_facts(found: dict[str, Any]) -> None:
    click.echo(f"统一社会信用代码 {found['key']} {found['name'] or ''}（规则版本 {found['rules_version']}）")
    departments = [d["department"] for d in found["departments"]]
    table(["属性", "基础库", *departments, "一致"],
          [[f["label"], _coded(ENTITY, f["attribute"], f["value"]),
            *(_coded(ENTITY, f["attribute"], f["departments"].get(d)) for d in departments), f["agree"]]
           for f in found["facts"]])
    click.echo("\n各部门最近的记录")
    table(["部门", "属性数", "源系统更新时间", "源记录标识"],
          [[d["department"], d["attributes"], d["source_time"], d["source_record_id"]] for d in found["departments"]])
    if found["conflicts"]:
        click.echo("\n未处理的比对冲突")
        table(["冲突", "属性", "各部门的值"], [[c["id"], LABELS[c["attribute"]],
                                         "；".join(f"{d}={v}" for d, v in c["values"].items())] for c in found["conflicts"]])
    if found["findings"]:
        click.echo("\n数据质量问题")
        table(["部门", "问题", "属性", "值", "应为"],
              [[f["department"], f["code"], f["attribute"], f["value"], f["expected"]] for f in found["findings"]])


@click.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), default=PERSON, show_default=True)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--size", type=click.IntRange(1, 200), default=20, show_default=True, help="Entries per page.")
@json_option
@click.pass_context
def search(ctx: click.Context, name: str, kind: str, page: int, size: int, as_json: bool) -> None:
    """Golden records whose name contains NAME, by name."""
    with _queries(ctx) as q:
        found = q.search(name, kind, page, size)
    if as_json:
        emit(found)
        return
    shown = [a for a in ATTRIBUTES[kind] if found["matches"] and a in found["matches"][0]]
    click.echo(f"名称含“{found['name']}”的{KIND_LABELS[kind]}：共 {found['total']} 条，第 {page} 页")
    table([LABELS[KEY_OF[kind]], *(LABELS[a] for a in shown)],
          [[m["key"], *(_coded(kind, a, m[a]) for a in shown)] for m in found["matches"]])


@click.command()
@click.argument("id_number")
@json_option
@click.pass_context
def marriage(ctx: click.Context, id_number: str, as_json: bool) -> None:
    """A person's marital status as 民政 records it (计生民政婚姻登记信息共享): the status,
    its source and date, and its changes."""
    with _queries(ctx) as q:
        found = q.marriage(id_number)
    if as_json:
        emit(found)
        return
    click.echo(f"公民身份号码 {found['key']} {found['name'] or ''}")
    if found["marital_status"] is None:
        golden = found["golden"]
        elsewhere = (f"；基础库的婚姻状况为 {_coded(PERSON, 'MaritalStatus', golden['value'])}"
                     f"（来源 {golden['source']['department'] if golden['source'] else '数据管理员裁定'}）") if golden else ""
        click.echo(f"民政（{found['department']}）没有此人的婚姻登记信息{elsewhere}")
    else:
        source = found["source"]
        table(["婚姻状况", "来源部门", "登记日期", "源记录标识", "消息标识"],
              [[_coded(PERSON, "MaritalStatus", found["marital_status"]), source["department"], found["date"],
                source["source_record_id"], source["message_id"]]])
    if found["changes"]:
        click.echo("\n婚姻状况变化")
        table(["日期", "婚姻状况", "原状况", "源记录标识"],
              [[c["source_time"][:10], _coded(PERSON, "MaritalStatus", c["value"]) or "（记录删除）",
                _coded(PERSON, "MaritalStatus", c["previous"]), c["source_record_id"]] for c in found["changes"]])


@click.command()
@click.option("--kind", type=click.Choice(KINDS), default=ENTITY, show_default=True)
@click.option("--status", type=click.Choice(STATUSES), default="open", show_default=True, help="Of their conflicts.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--size", type=click.IntRange(1, 200), default=50, show_default=True, help="Entries per page.")
@json_option
@click.pass_context
def disagreements(ctx: click.Context, kind: str, status: str, page: int, size: int, as_json: bool) -> None:
    """The legal entities (or persons) whose departments disagree (综合治税), with the
    attributes and departments in conflict."""
    with _queries(ctx) as q:
        found = q.disagreements(kind, None if status == "all" else status, page, size)
    if as_json:
        emit(found)
        return
    click.echo(f"各部门信息不一致的{KIND_LABELS[kind]}：共 {found['total']} 个，第 {page} 页")
    table([LABELS[KEY_OF[kind]], "名称", "冲突数", "不一致的属性", "涉及部门", "最早发现"],
          [[e["key"], e["name"], e["conflicts"], "、".join(LABELS[a] for a in e["attributes"]),
            "、".join(e["departments"]), e["since"]] for e in found["entries"]])


# --- statistics --------------------------------------------------------------------------------


@click.group()
def stats() -> None:
    """Statistics of the base libraries."""


@stats.command()
@click.option("--at", type=click.DateTime(["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
              help="Reference date of ages (default: today in China).")
@json_option
@click.pass_context
def population(ctx: click.Context, at: datetime | None, as_json: bool) -> None:
    """Persons by district, sex and age band (0-17, 18-34, 35-59, 60+)."""
    with _queries(ctx) as q:
        found = q.population(at.date() if at else None)
    if as_json:
        emit(found)
        return
    sexes = sorted(found["by_sex"])
    bands = [b for b in AGE_BANDS if b in found["by_age_band"]]
    click.echo(f"人口统计（基准日 {found['reference_date']}）：共 {found['total']} 人")
    rows = []
    for district, by_sex in found["by_district_sex_age_band"].items():
        per_band = {b: sum(s.get(b, 0) for s in by_sex.values()) for b in bands}
        rows.append([_district(PERSON, district), *(sum(by_sex.get(s, {}).values()) for s in sexes),
                     *(per_band[b] for b in bands), found["by_district"][district]])
    rows.append(["合计", *(found["by_sex"][s] for s in sexes), *(found["by_age_band"][b] for b in bands), found["total"]])
    table(["行政区划", *(_sex(s) for s in sexes), *(f"{b}岁" for b in bands), "合计"], rows)


@stats.command("entities")
@json_option
@click.pass_context
def entity_stats(ctx: click.Context, as_json: bool) -> None:
    """Legal entities by status, type, district and year of establishment."""
    with _queries(ctx) as q:
        found = q.entities()
    if as_json:
        emit(found)
        return
    click.echo(f"法人统计：共 {found['total']} 个")
    for axis, title, attribute in (("status", "登记状态", "Status"), ("type", "企业类型", "EntityType"),
                                   ("district", "行政区划", "Division"), ("year", "成立年份", None)):
        click.echo("")
        table([title, "数量"], [[_unknown(v) if attribute is None or v == UNKNOWN else _coded(ENTITY, attribute, v), n]
                               for v, n in found[f"by_{axis}"].items()])


@stats.command("departments")
@json_option
@click.pass_context
def department_stats(ctx: click.Context, as_json: bool) -> None:
    """Per department: records received, invalid identifiers and their rate, keys, conflicts
    it takes part in and their rate (of its keys)."""
    with _queries(ctx) as q:
        found = q.departments()
    if as_json:
        emit(found)
        return
    table(["部门", "类别", "接收记录", "无效标识", "无效标识率", "主键数", "比对冲突", "未处理", "冲突率"],
          [[d["department"], KIND_LABELS[d["kind"]], d["records"], d["invalid_identifiers"], _percent(d["invalid_rate"]),
            d["keys"], d["conflicts"], d["open_conflicts"], _percent(d["conflict_rate"])] for d in found])


def _sex(code: str) -> str:
    return _unknown(code) if code == UNKNOWN else (meaning(PERSON, "Sex", code) or code)


def _district(kind: str, code: str) -> str:
    return _unknown(code) if code == UNKNOWN else (_coded(kind, "Division", code) or code)


def _unknown(value: str) -> str:
    return "未知" if value == UNKNOWN else value


# --- stewardship -------------------------------------------------------------------------------


@click.group()
def conflicts() -> None:
    """Disagreements between trusted departments (比对冲突), and their resolution."""


@conflicts.command("list")
@kind_option
@click.option("--status", type=click.Choice(STATUSES), default="open", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@json_option
@click.pass_context
def conflicts_list(ctx: click.Context, kind: str | None, status: str, limit: int, as_json: bool) -> None:
    """Conflicts, oldest first, with every department's value."""
    with _queries(ctx) as q:
        found = [conflict_of(c) for c in q.store.conflicts(None if status == "all" else status, kind, limit=limit)]
    if as_json:
        emit(found)
        return
    table(["冲突", "类别", "主键", "属性", "各部门的值", "状态", "处理", "发现时间"],
          [[c["id"], KIND_LABELS[c["kind"]], c["key"], c["label"],
            "；".join(f"{v['department']}={_coded(c['kind'], c['attribute'], v['value'])}" for v in c["values"]),
            "未处理" if c["status"] == "open" else "已处理", _resolution(c), c["opened_at"]] for c in found])


def _resolution(c: dict[str, Any]) -> str | None:
    if c["resolution"] == "chosen":
        return f"{c['resolved_by']} 选定 {c['resolved_value']}"
    if c["resolution"] == "department_wrong":
        return f"{c['resolved_by']} 认定 {c['wrong_department']} 有误"
    if c["resolution"] == "agreed":
        return "各部门已一致"
    return None


@conflicts.command("resolve")
@click.argument("conflict_id", type=int)
@click.option("--choose", metavar="VALUE", help="The value the golden record takes.")
@click.option("--wrong", metavar="DEPT", help="The department whose value is wrong (it stops counting until it changes).")
@click.option("--reason", required=True, help="Why: kept for audit.")
@click.option("--as", "user", envvar="GOVBUS_USER", metavar="USER", help="Who decides (default: GOVBUS_USER).")
@json_option
@click.pass_context
def conflicts_resolve(ctx: click.Context, conflict_id: int, choose: str | None, wrong: str | None, reason: str,
                      user: str | None, as_json: bool) -> None:
    """Resolve conflict CONFLICT_ID by choosing its value or by marking a department wrong."""
    if (choose is None) == (wrong is None):
        raise click.UsageError("resolve with --choose VALUE or with --wrong DEPT (one of them)")
    if not user:
        raise click.UsageError("say who decides: --as USER (or GOVBUS_USER)")
    with _queries(ctx) as q:
        done = conflict_of(q.store.resolve(conflict_id, choose_value=choose, wrong_department=wrong.upper() if wrong else None,
                                           by=user, reason=reason))
    if as_json:
        emit(done)
    else:
        click.echo(f"冲突 {done['id']}（{done['key']} {done['label']}）已处理：{_resolution(done)}")


@click.command()
@kind_option
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@json_option
@click.pass_context
def candidates(ctx: click.Context, kind: str | None, limit: int, as_json: bool) -> None:
    """Records without a valid identifier, for review, with the golden records they may be."""
    with _queries(ctx) as q:
        found = [candidate_of(c) for c in q.store.candidates(kind, limit=limit)]
    if as_json:
        emit(found)
        return
    table(["编号", "类别", "部门", "源记录标识", "原标识", "问题", "名称", "出生日期", "可能是"],
          [[c["id"], KIND_LABELS[c["kind"]], c["department"], c["source"]["source_record_id"], c["given_key"],
            " ".join(c["reasons"]), c["values"].get("Name"), c["values"].get("BirthDate"), " ".join(c["matches"])]
           for c in found])


@click.command()
@click.option("--department", metavar="CODE", help="Only this department's records.")
@kind_option
@click.option("--code", metavar="CODE", help="Only this finding, e.g. id_check_digit.")
@click.option("--severity", type=click.Choice(["invalid", "warning", "mismatch"]), default=None)
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@json_option
@click.pass_context
def findings(ctx: click.Context, department: str | None, kind: str | None, code: str | None, severity: str | None,
             limit: int, as_json: bool) -> None:
    """Data-quality findings: invalid identifiers, the credit-code anomaly, fields that
    disagree with what the identifier says."""
    with _queries(ctx) as q:
        found = [finding_of(f) for f in q.store.findings(kind, department, code, severity, limit=limit)]
    if as_json:
        emit(found)
        return
    table(["编号", "部门", "源记录标识", "标识", "问题", "级别", "属性", "值", "应为"],
          [[f["id"], f["department"], f["source"]["source_record_id"], f["key"], f["code"], f["severity"],
            LABELS.get(f["attribute"] or "", f["attribute"]), f["value"], f["expected"]] for f in found])


@click.group()
def rules() -> None:
    """The survivorship rules (数据存留规则)."""


@rules.command("show")
@json_option
@click.pass_context
def rules_show(ctx: click.Context, as_json: bool) -> None:
    """The rules in force: per attribute, the departments in rank order."""
    with _queries(ctx) as q:
        found = q.rules()
    if as_json:
        emit(found)
        return
    click.echo(f"现行规则版本 {found['version']}（排名靠前者优先；“/”并列）")
    table(["类别", "属性", "部门排名"],
          [[KIND_LABELS[kind], LABELS[a], " > ".join("/".join(tier) for tier in tiers)]
           for kind in KINDS for a in ATTRIBUTES[kind] if (tiers := found["tiers"].get(kind, {}).get(a))])
    click.echo("\n历次版本")
    table(["版本", "现行", "登记时间", "最近计算"],
          [[v["version"], v["in_force"], v["created_at"], v["applied_at"]] for v in found["versions"]])


@rules.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def rules_apply(ctx: click.Context, file: Path) -> None:
    """Put the rules FILE in force: every golden record and conflict is recomputed from the
    stored assertions (no reload from the departments; nothing is lost)."""
    from masterdata.rules import load_rules

    new = load_rules(file)
    with _queries(ctx) as q:
        changed = q.store.recompute(new)
    click.echo(f"规则版本 {new.version} 已生效：重新计算全部基础信息，{changed} 条发生变化")


COMMANDS = (person, entity, search, marriage, disagreements, stats, conflicts, candidates, findings, rules)
for _command in COMMANDS:  # also when this module, not masterdata.cli, is the entry point
    masterdata.add_command(_command)

__all__ = ["COMMANDS", "masterdata", "table"]
