"""Export and import of the catalogue, for docking with the provincial catalogue.

The XML follows schemas/xsd/catalog/1.0/catalog.xsd. Every code is qualified by its domain,
directories by their path of names, resources carry their published revision. Importing a
file creates what is missing and updates what differs; importing it again changes nothing,
and a catalogue exported, imported elsewhere and exported again gives the same bytes.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from lxml import etree
from schemas import SafeParser, XmlLimits
from schemas.registry import XSD_ROOT
from sqlalchemy import Connection, insert, select, update

from catalog_registry import tables as t
from catalog_registry.auth import Actor, require_platform_admin
from catalog_registry.catalog import Catalog, now
from catalog_registry.errors import Conflict, Invalid
from catalog_registry.resources import IN_FORCE, Resources

NS = "urn:zhuhai:govbus:catalog"
C = f"{{{NS}}}"
_SCHEMA: etree.XMLSchema | None = None
_PARSER = SafeParser(XmlLimits(max_bytes=200 * 1024 * 1024, max_depth=16))


def _schema() -> etree.XMLSchema:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = etree.XMLSchema(etree.parse(str(XSD_ROOT / "catalog" / "1.0" / "catalog.xsd")))
    return _SCHEMA


def _sub(under: etree._Element, tag: str, text: str | None = None, **attrs: Any) -> etree._Element:
    element = etree.SubElement(under, C + tag, {k: str(v) for k, v in attrs.items() if v not in (None, "")})
    if text is not None:
        element.text = text
    return element


class Exchange:
    def __init__(self, catalog: Catalog, resources: Resources) -> None:
        self.catalog = catalog
        self.resources = resources

    # -- export --------------------------------------------------------------------------------

    def export(self, *, domain: str | None = None, subscriptions: bool = False) -> bytes:
        """The catalogue (every domain, or one) as catalog.xsd XML; deterministic."""
        with self.catalog.engine.connect() as conn:
            domains = [d for d in conn.execute(select(t.domain).order_by(t.domain.c.code)) if domain in (None, d.code)]
            codes = {d.code for d in domains}
            departments = [d for d in conn.execute(select(t.department).order_by(t.department.c.domain, t.department.c.code))
                           if d.domain in codes]
            code_of = {d.id: d.code for d in departments}
            root = etree.Element(C + "Catalog", {"domain": domain or self.catalog.domain, "version": "1.0"}, nsmap={"cat": NS})
            section = _sub(root, "Domains")
            for d in domains:
                _sub(_sub(section, "Domain", code=d.code, level=d.level, parent=d.parent), "Name", d.name)
            section = _sub(root, "Departments")
            for d in departments:
                _sub(_sub(section, "Department", domain=d.domain, code=d.code, parent=code_of.get(d.parent_id)), "Name", d.name)
            section = _sub(root, "Themes")
            for th in conn.execute(select(t.theme).order_by(t.theme.c.domain, t.theme.c.code)):
                if th.domain in codes:
                    theme = _sub(section, "Theme", domain=th.domain, code=th.code)
                    _sub(theme, "Name", th.name)
                    if th.description:
                        _sub(theme, "Description", th.description)
            paths = self._paths(conn)
            section = _sub(root, "Directories")
            for directory_id, (kind, department_id, path, dir_domain) in sorted(paths.items(), key=lambda p: (p[1][3], p[1][0], code_of.get(p[1][1]) or "", p[1][2])):
                if dir_domain in codes:
                    _sub(section, "Directory", domain=dir_domain, catalogue=kind, department=code_of.get(department_id), path=path)
            section = _sub(root, "Resources")
            for code_domain in sorted(codes):
                for view in self.resources.list(domain=code_domain):
                    if view["status"] not in IN_FORCE:
                        continue
                    self._resource(conn, section, code_domain, view["code"], paths, code_of)
            if subscriptions:
                section = _sub(root, "Subscriptions")
                rows = conn.execute(
                    select(t.subscription, t.resource.c.code.label("resource"), t.resource.c.domain)
                    .select_from(t.subscription.join(t.resource, t.subscription.c.resource_id == t.resource.c.id))
                    .where(t.subscription.c.status == "active").order_by(t.resource.c.domain, t.resource.c.code))
                for s in sorted(rows, key=lambda s: (s.domain, s.resource, code_of.get(s.subscriber_id) or "")):
                    if s.domain in codes and s.subscriber_id in code_of:
                        element = _sub(section, "Subscription", domain=s.domain, resource=s.resource, subscriber=code_of[s.subscriber_id])
                        if s._mapping["items"]:
                            items = _sub(element, "Items")
                            for item in json.loads(s._mapping["items"]):
                                _sub(items, "Item", item)
                        if s._mapping["filter"]:
                            _sub(element, "Filter", s._mapping["filter"])
        _schema().assertValid(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def _paths(self, conn: Connection) -> dict[int, tuple[str, int | None, str, str]]:
        rows = {d.id: d for d in conn.execute(select(t.directory))}

        def path(directory_id: int) -> str:
            names = []
            current: int | None = directory_id
            while current is not None:
                names.append(rows[current].name)
                current = rows[current].parent_id
            return "/".join(reversed(names))

        return {i: (d.kind, d.department_id, path(i), d.domain) for i, d in rows.items()}

    def _resource(self, conn: Connection, section: etree._Element, domain: str, code: str,
                  paths: dict[int, tuple[str, int | None, str, str]], code_of: dict[int, str]) -> None:
        row = conn.execute(select(t.resource).where(t.resource.c.domain == domain, t.resource.c.code == code)).one()
        rev = conn.execute(select(t.revision).where(t.revision.c.resource_id == row.id,
                                                    t.revision.c.number == row.published_revision)).one()
        kind, _, path, _ = paths[row.directory_id]
        element = _sub(section, "Resource", domain=domain, code=code, provider=code_of[row.provider_id], catalogue=kind,
                       directory=path, revision=rev.number)
        _sub(element, "Classification", rev.classification)
        _sub(element, "Name", rev.name)
        _sub(element, "Abstract", rev.abstract)
        _sub(element, "Format", rev.format)
        _sub(_sub(element, "Sharing", type=rev.sharing_type, mode=rev.sharing_mode), "Conditions", rev.sharing_conditions)
        _sub(_sub(element, "Open", type=rev.open_type), "Conditions", rev.open_conditions)
        _sub(element, "UpdateCycle", rev.update_cycle)
        if rev.publish_date:
            _sub(element, "PublishDate", rev.publish_date.isoformat())
        if rev.specification:
            _sub(element, "Specification", name=rev.specification, version=rev.specification_version)
        themes = json.loads(rev.themes)
        if themes:
            parent = _sub(element, "Themes")
            for theme in themes:
                _sub(parent, "Theme", theme)
        related = json.loads(rev.related_codes)
        if related:
            parent = _sub(element, "Related")
            for other in related:
                _sub(parent, "Code", other)
        items = self._items(rev.specification, rev.specification_version)
        if items:
            parent = _sub(element, "DataItems")
            for item in items:
                _sub(parent, "Item", path=item["path"], label=item["label"], type=item["type"], length=item["length"])

    def _items(self, specification: str | None, version: str | None) -> list[dict[str, Any]]:
        try:
            return self.resources.items(specification, version)
        except Exception:  # a specification of another platform, not registered here
            return []

    # -- import --------------------------------------------------------------------------------

    def import_(self, actor: Actor, data: bytes) -> dict[str, dict[str, int]]:
        """Merge a catalog.xsd document in. Returns, per kind, how many were created, updated
        and unchanged. Raises Invalid (with rule, line) for a document that is not one."""
        require_platform_admin(actor, "import a catalogue")
        try:
            root = _PARSER.parse(data)
        except Exception as exc:
            raise Invalid(f"not a catalogue document: {exc}") from None
        if not _schema().validate(root):
            error = _schema().error_log[0]
            raise Invalid(f"not a valid catalogue document: {error.message} (line {error.line})")
        counts: dict[str, dict[str, int]] = {}

        def count(kind: str, outcome: str) -> None:
            counts.setdefault(kind, {"created": 0, "updated": 0, "unchanged": 0})[outcome] += 1

        with self.catalog.write(routing=True) as conn:
            for element in root.iterfind(f"{C}Domains/{C}Domain"):
                values = {"name": element.findtext(C + "Name"), "level": element.get("level"), "parent": element.get("parent")}
                count("domains", self._upsert(conn, t.domain, {"code": element.get("code")}, values))
            for element in root.iterfind(f"{C}Departments/{C}Department"):
                count("departments", self._upsert(conn, t.department, {"domain": element.get("domain"), "code": element.get("code")},
                                                  {"name": element.findtext(C + "Name")}, {"created_at": now()}))
            for element in root.iterfind(f"{C}Departments/{C}Department"):  # parents, now that all exist
                parent = element.get("parent")
                parent_id = self._department_id(conn, element.get("domain"), parent) if parent else None
                conn.execute(update(t.department).where(t.department.c.domain == element.get("domain"),
                                                        t.department.c.code == element.get("code")).values(parent_id=parent_id))
            for element in root.iterfind(f"{C}Themes/{C}Theme"):
                count("themes", self._upsert(conn, t.theme, {"domain": element.get("domain"), "code": element.get("code")},
                                             {"name": element.findtext(C + "Name"), "description": element.findtext(C + "Description") or ""}))
            for element in root.iterfind(f"{C}Directories/{C}Directory"):
                count("directories", "unchanged" if self._directory(conn, element.get("domain"), element.get("catalogue"),
                                                                     element.get("department"), element.get("path"))[1] else "created")
            for element in root.iterfind(f"{C}Resources/{C}Resource"):
                count("resources", self._import_resource(conn, actor, element))
            for element in root.iterfind(f"{C}Subscriptions/{C}Subscription"):
                count("subscriptions", self._import_subscription(conn, actor, element))
        return counts

    @staticmethod
    def _upsert(conn: Connection, table: Any, key: dict[str, Any], values: dict[str, Any],
                on_create: dict[str, Any] | None = None) -> str:
        where = [table.c[k] == v for k, v in key.items()]
        row = conn.execute(select(table).where(*where)).first()
        if row is None:
            conn.execute(insert(table).values(**key, **values, **(on_create or {})))
            return "created"
        if all(row._mapping[k] == v for k, v in values.items()):
            return "unchanged"
        conn.execute(update(table).where(*where).values(**values))
        return "updated"

    @staticmethod
    def _department_id(conn: Connection, domain: str | None, code: str | None) -> int:
        found = conn.execute(select(t.department.c.id).where(t.department.c.domain == domain, t.department.c.code == code)).scalar()
        if found is None:
            raise Invalid(f"department {domain}/{code} is neither in the file nor in the catalogue")
        return int(found)

    def _directory(self, conn: Connection, domain: str | None, kind: str | None, department: str | None,
                   path: str | None) -> tuple[int, bool]:
        """The directory at `path`, created with its missing ancestors; and whether it existed."""
        department_id = self._department_id(conn, domain, department) if department else None
        parent_id: int | None = None
        existed = True
        for name in (path or "").split("/"):
            found = conn.execute(select(t.directory.c.id).where(
                t.directory.c.domain == domain, t.directory.c.kind == kind, t.directory.c.department_id == department_id,
                t.directory.c.parent_id == parent_id if parent_id is not None else t.directory.c.parent_id.is_(None),
                t.directory.c.name == name)).scalar()
            if found is None:
                existed = False
                found = conn.execute(insert(t.directory).values(domain=domain, kind=kind, department_id=department_id,
                                                                parent_id=parent_id, name=name, position=0)).inserted_primary_key[0]
            parent_id = int(found)
        assert parent_id is not None
        return parent_id, existed

    def _import_resource(self, conn: Connection, actor: Actor, element: etree._Element) -> str:
        domain, code = element.get("domain"), element.get("code")
        provider_id = self._department_id(conn, domain, element.get("provider"))
        directory_id, _ = self._directory(conn, domain, element.get("catalogue"),
                                          element.get("provider") if element.get("catalogue") == "department" else None,
                                          element.get("directory"))
        sharing, opened, spec = element.find(C + "Sharing"), element.find(C + "Open"), element.find(C + "Specification")
        published = element.findtext(C + "PublishDate")
        metadata = {
            "classification": element.findtext(C + "Classification"), "name": element.findtext(C + "Name"),
            "abstract": element.findtext(C + "Abstract") or "", "format": element.findtext(C + "Format"),
            "sharing_type": sharing.get("type"), "sharing_mode": sharing.get("mode"),
            "sharing_conditions": sharing.findtext(C + "Conditions") or "",
            "open_type": opened.get("type"), "open_conditions": opened.findtext(C + "Conditions") or "",
            "update_cycle": element.findtext(C + "UpdateCycle"),
            "publish_date": date.fromisoformat(published) if published else None,
            "specification": spec.get("name") if spec is not None else None,
            "specification_version": spec.get("version") if spec is not None else None,
            "themes": json.dumps([e.text for e in element.iterfind(f"{C}Themes/{C}Theme")]),
            "related_codes": json.dumps([e.text for e in element.iterfind(f"{C}Related/{C}Code")]),
        }
        if domain == self.catalog.domain and metadata["specification"]:
            # the platform's own resources are routed and validated by their specification
            name, version = metadata["specification"], metadata["specification_version"]
            if {e.version: e.status for e in self.catalog.registry.entries(name)}.get(version) not in ("published", "deprecated"):
                raise Invalid(f"resource {code}: specification {name} {version} is not published in this platform's "
                              f"schema registry; publish it first (govbus schemas publish)")
        number = int(element.get("revision"))
        row = conn.execute(select(t.resource).where(t.resource.c.domain == domain, t.resource.c.code == code)).first()
        stamp = now()
        if row is None:
            resource_id = conn.execute(insert(t.resource).values(
                domain=domain, code=code, provider_id=provider_id, directory_id=directory_id, status="published",
                published_revision=number, created_at=stamp, updated_at=stamp)).inserted_primary_key[0]
            conn.execute(insert(t.revision).values(resource_id=resource_id, number=number, state="published",
                                                   created_by=actor.username, created_at=stamp, **metadata))
            self.resources.record(conn, resource_id, number, "import", None, "published", actor, "imported")
            return "created"
        current = conn.execute(select(t.revision).where(t.revision.c.resource_id == row.id,
                                                        t.revision.c.number == row.published_revision)).first()
        same = (current is not None and row.status in IN_FORCE and row.provider_id == provider_id
                and row.directory_id == directory_id and current.number == number
                and all(current._mapping[k] == v for k, v in metadata.items()))
        if same:
            return "unchanged"  # whatever is under review here stays so
        latest = conn.execute(select(t.revision.c.number).where(t.revision.c.resource_id == row.id)
                              .order_by(t.revision.c.number.desc())).scalar() or 0
        if row.status not in ("published", "deregistered") or latest != row.published_revision:
            # overwriting would silently drop a draft or a review in progress
            raise Conflict(f"resource {code} of {domain} is {row.status} with work in progress "
                           f"(revision {latest}): finish or withdraw it before importing a new version")
        new_number = max(number, latest + 1)
        conn.execute(update(t.revision).where(t.revision.c.resource_id == row.id, t.revision.c.state == "published")
                     .values(state="superseded"))
        conn.execute(insert(t.revision).values(resource_id=row.id, number=new_number, state="published",
                                               created_by=actor.username, created_at=stamp, **metadata))
        conn.execute(update(t.resource).where(t.resource.c.id == row.id).values(
            provider_id=provider_id, directory_id=directory_id, status="published", published_revision=new_number,
            updated_at=stamp))
        self.resources.record(conn, row.id, new_number, "import", row.status, "published", actor, "imported")
        return "updated"

    def _import_subscription(self, conn: Connection, actor: Actor, element: etree._Element) -> str:
        domain = element.get("domain")
        resource_id = conn.execute(select(t.resource.c.id).where(
            t.resource.c.domain == domain, t.resource.c.code == element.get("resource"))).scalar()
        if resource_id is None:
            raise Invalid(f"subscription to {element.get('resource')}, which is neither in the file nor in the catalogue")
        subscriber_id = self._department_id(conn, domain, element.get("subscriber"))
        items = [e.text for e in element.iterfind(f"{C}Items/{C}Item")]
        values = {"items": json.dumps(items) if items else None, "filter": element.findtext(C + "Filter") or None}
        active = conn.execute(select(t.subscription).where(
            t.subscription.c.resource_id == resource_id, t.subscription.c.subscriber_id == subscriber_id,
            t.subscription.c.status == "active")).first()
        if active is not None and active._mapping["items"] == values["items"] and active._mapping["filter"] == values["filter"]:
            return "unchanged"
        if active is not None:
            conn.execute(update(t.subscription).where(t.subscription.c.id == active.id).values(
                status="revoked", revoked_at=now(), revoked_by=actor.username, revoke_reason="replaced by an import"))
        conn.execute(insert(t.subscription).values(resource_id=resource_id, subscriber_id=subscriber_id, status="active",
                                                   application_id=None, created_at=now(), **values))
        return "created" if active is None else "updated"


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror}") from None
