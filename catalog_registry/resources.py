"""Information resources (信息资源) and their lifecycle, with full history.

    draft ──submit──▶ submitted ──approve──▶ published ──revise, submit──▶ revision_submitted
      ▲                   │reject                 │ ▲                           │approve: a new
      └───────────────────┘                       │ └──────────reject───────────┘revision
                                                  └──deregister──▶ deregistration_submitted ──approve──▶ deregistered

On a department's own catalogue its admin acts without review: submit publishes, deregister
deregisters. On the shared catalogue every submission waits for a platform admin, who approves
or rejects with a reason. Staff propose (create, edit, revise); their department admin
submits. Every transition is recorded: who, when, what, why.

Metadata follows GB/T 21063.3 as the 2017 政务信息资源目录编制指南 uses it. The data items
(信息项) are never typed: they are read from the resource's specification in the registry.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from schemas.dictionary import data_items
from sqlalchemy import Connection, func, insert, select, update

from catalog_registry import tables as t
from catalog_registry.auth import Actor, require_admin_of, require_member_of, require_platform_admin
from catalog_registry.catalog import Catalog, now, text
from catalog_registry.errors import Conflict, Invalid, NotFound
from catalog_registry.workdays import today

SHARING_TYPES = ("unconditional", "conditional", "not_shared")
SHARING_MODES = ("subscription", "query", "file")
OPEN_TYPES = ("open", "conditional", "not_open")
UPDATE_CYCLES = ("realtime", "daily", "weekly", "monthly", "quarterly", "yearly", "irregular")
STATUSES = ("draft", "submitted", "published", "revision_submitted", "deregistration_submitted", "deregistered")
IN_FORCE = ("published", "revision_submitted", "deregistration_submitted")  # a published revision applies
_CLASSIFICATION = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3}){1,3}\Z")
_CODE = re.compile(r"[A-Z0-9][A-Z0-9/\-]{1,63}\Z")
_FIELDS = ("classification", "name", "abstract", "format", "sharing_type", "sharing_conditions", "sharing_mode",
           "open_type", "open_conditions", "update_cycle", "publish_date", "related_codes", "themes",
           "specification", "specification_version")


class Resources:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- reading ---------------------------------------------------------------------------

    def _resource(self, conn: Connection, code: str, domain: str | None = None) -> Any:
        row = conn.execute(
            select(t.resource, t.department.c.code.label("provider"), t.department.c.name.label("provider_name"),
                   t.directory.c.kind.label("catalogue"))
            .select_from(t.resource.join(t.department, t.resource.c.provider_id == t.department.c.id)
                         .join(t.directory, t.resource.c.directory_id == t.directory.c.id))
            .where(t.resource.c.domain == (domain or self.catalog.domain), t.resource.c.code == code)
        ).first()
        if row is None:
            raise NotFound(f"no information resource {code}")
        return row

    def _revisions(self, conn: Connection, resource_id: int) -> dict[int, dict[str, Any]]:
        rows = conn.execute(select(t.revision).where(t.revision.c.resource_id == resource_id).order_by(t.revision.c.number))
        return {r.number: _revision_view(r) for r in rows}

    def get(self, code: str, domain: str | None = None) -> dict[str, Any]:
        """The resource, its metadata in force (the published revision, else the latest), any
        revision pending, and its data items."""
        with self.catalog.engine.connect() as conn:
            row = self._resource(conn, code, domain)
            revisions = self._revisions(conn, row.id)
        return self._view(row, revisions)

    def _view(self, row: Any, revisions: dict[int, dict[str, Any]]) -> dict[str, Any]:
        latest = max(revisions)
        current = revisions[row.published_revision] if row.published_revision else revisions[latest]
        pending = revisions[latest] if latest != row.published_revision and row.status != "deregistered" else None
        return {
            "code": row.code, "domain": row.domain, "provider": row.provider, "provider_name": row.provider_name,
            "catalogue": row.catalogue, "directory_id": row.directory_id, "status": row.status,
            "revision": current["number"], "published_revision": row.published_revision,
            **{k: current[k] for k in _FIELDS},
            "pending": pending, "data_items": self.items(current["specification"], current["specification_version"]),
            "updated_at": row.updated_at,
        }

    def items(self, specification: str | None, version: str | None) -> list[dict[str, Any]]:
        """The data items of a specification version, from the schema registry."""
        if not specification or not version:
            return []
        return [{"path": i["path"], "name": i["name"], "label": i["label"], "type": i["type"], "length": i["length"]}
                for i in data_items(self.catalog.registry.model(specification, version))]

    def list(self, *, provider: str | None = None, status: str | None = None, catalogue: str | None = None,
             domain: str | None = None) -> list[dict[str, Any]]:
        """Resources with their metadata in force, by code (without data items)."""
        current = t.revision.alias("current")
        number = func.coalesce(t.resource.c.published_revision,
                               select(func.max(t.revision.c.number)).where(t.revision.c.resource_id == t.resource.c.id)
                               .scalar_subquery())
        query = (select(t.resource.c.code, t.resource.c.domain, t.resource.c.status, t.department.c.code.label("provider"),
                        t.department.c.name.label("provider_name"), t.directory.c.kind.label("catalogue"),
                        *[current.c[f] for f in _FIELDS])
                 .select_from(t.resource.join(t.department, t.resource.c.provider_id == t.department.c.id)
                              .join(t.directory, t.resource.c.directory_id == t.directory.c.id)
                              .join(current, (current.c.resource_id == t.resource.c.id) & (current.c.number == number)))
                 .where(t.resource.c.domain == (domain or self.catalog.domain)).order_by(t.resource.c.code))
        if provider:
            query = query.where(t.department.c.code == provider)
        if status:
            query = query.where(t.resource.c.status == status)
        if catalogue:
            query = query.where(t.directory.c.kind == catalogue)
        with self.catalog.engine.connect() as conn:
            return [_revision_view(r) for r in conn.execute(query)]

    def history(self, code: str) -> list[dict[str, Any]]:
        with self.catalog.engine.connect() as conn:
            row = self._resource(conn, code)
            return [dict(r._mapping) for r in conn.execute(
                select(t.resource_event).where(t.resource_event.c.resource_id == row.id).order_by(t.resource_event.c.id))]

    # -- changing --------------------------------------------------------------------------

    def _metadata(self, values: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
        """Checked metadata: `values` over `base`. Raises Invalid naming the field."""
        unknown = set(values) - set(_FIELDS)
        if unknown:
            raise Invalid(f"unknown resource field(s): {', '.join(sorted(unknown))}")
        merged = {**(base or {"abstract": "", "format": "XML", "sharing_conditions": "", "open_type": "not_open",
                              "open_conditions": "", "update_cycle": "irregular", "publish_date": None,
                              "related_codes": [], "themes": [], "specification": None, "specification_version": None}),
                  **{k: v for k, v in values.items() if v is not None}}
        for field in ("classification", "name", "format", "sharing_type", "sharing_mode"):
            if not (merged.get(field) or "").strip():
                raise Invalid(f"a resource needs its {field.replace('_', ' ')}")
        for field, limit in (("name", 200), ("format", 64), ("abstract", None), ("sharing_conditions", None),
                             ("open_conditions", None)):
            merged[field] = text(merged[field], f"a resource's {field.replace('_', ' ')}", limit)
        if not _CLASSIFICATION.match(merged["classification"]):
            raise Invalid("a classification is 类.项[.目[.细目]] in digits, e.g. 1.01.001")
        for field, allowed in (("sharing_type", SHARING_TYPES), ("sharing_mode", SHARING_MODES),
                               ("open_type", OPEN_TYPES), ("update_cycle", UPDATE_CYCLES)):
            if merged[field] not in allowed:
                raise Invalid(f"{field.replace('_', ' ')} is one of {', '.join(allowed)}, got {merged[field]!r}")
        if merged["sharing_type"] == "conditional" and not merged["sharing_conditions"].strip():
            raise Invalid("a conditionally shared resource states its sharing conditions")
        if isinstance(merged["publish_date"], str):
            try:
                merged["publish_date"] = date.fromisoformat(merged["publish_date"])
            except ValueError:
                raise Invalid(f"publish date {merged['publish_date']!r} is not YYYY-MM-DD") from None
        spec, version = merged["specification"], merged["specification_version"]
        if bool(spec) != bool(version):
            raise Invalid("a specification is named with its version")
        if spec:
            status = {e.version: e.status for e in self.catalog.registry.entries(spec)}
            if status.get(version) not in ("published", "deprecated"):
                raise Invalid(f"specification {spec} has no published version {version}")
        known = {th["code"] for th in self.catalog.themes()}
        missing = [c for c in merged["themes"] if c not in known]
        if missing:
            raise Invalid(f"no data theme {', '.join(missing)}")
        bad = [c for c in merged["related_codes"] if not _CODE.match(c)]
        if bad:
            raise Invalid(f"not resource codes: {', '.join(bad)}")
        return merged

    def record(self, conn: Connection, resource_id: int, revision: int, action: str, before: str | None,
               after: str, actor: Actor, reason: str = "") -> None:
        """Keep a transition in the resource's history (the import's too)."""
        conn.execute(insert(t.resource_event).values(
            resource_id=resource_id, revision=revision, action=action, from_status=before, to_status=after,
            actor=actor.username, at=now(), reason=reason))

    def create(self, actor: Actor, provider: str, directory_id: int, *, code: str | None = None,
               **values: Any) -> dict[str, Any]:
        """Propose a resource (a draft), filed in the shared catalogue or the provider's own."""
        department = self.catalog.department(provider)
        require_member_of(actor, department["id"], provider, "catalogue its resources")
        metadata = self._metadata(values)
        directory = self.catalog.directory(directory_id)
        if directory["kind"] == "department" and directory["department_id"] != department["id"]:
            raise Invalid("a resource is filed in the shared catalogue or its provider's own")
        with self.catalog.write() as conn:
            if code is None:
                code = self._next_code(conn, metadata["classification"])
            elif not _CODE.match(code):
                raise Invalid(f"a resource code is 2-64 of A-Z, 0-9, '-' and '/', got {code!r}")
            if conn.execute(select(t.resource.c.id).where(t.resource.c.domain == self.catalog.domain,
                                                          t.resource.c.code == code)).first():
                raise Conflict(f"resource {code} exists already")
            stamp = now()
            resource_id = conn.execute(insert(t.resource).values(
                domain=self.catalog.domain, code=code, provider_id=department["id"], directory_id=directory_id,
                status="draft", published_revision=None, created_at=stamp, updated_at=stamp)).inserted_primary_key[0]
            self._insert_revision(conn, resource_id, 1, "draft", metadata, actor)
            self.record(conn, resource_id, 1, "create", None, "draft", actor)
        return self.get(code)

    def _next_code(self, conn: Connection, classification: str) -> str:
        """Classification code plus sequence: 1.01.001 -> 101001-0001, -0002 ..."""
        prefix = classification.replace(".", "") + "-"
        taken = conn.execute(select(t.resource.c.code).where(
            t.resource.c.domain == self.catalog.domain, t.resource.c.code.like(prefix + "%"))).scalars()
        numbers = [int(c[len(prefix):]) for c in taken if c[len(prefix):].isdigit()]
        return f"{prefix}{max(numbers, default=0) + 1:04d}"

    def _insert_revision(self, conn: Connection, resource_id: int, number: int, state: str,
                         metadata: dict[str, Any], actor: Actor) -> None:
        conn.execute(insert(t.revision).values(
            resource_id=resource_id, number=number, state=state, created_by=actor.username, created_at=now(),
            **{**metadata, "related_codes": json.dumps(metadata["related_codes"]), "themes": json.dumps(metadata["themes"])}))

    def _pending(self, conn: Connection, row: Any) -> dict[str, Any] | None:
        revisions = self._revisions(conn, row.id)
        latest = revisions[max(revisions)]
        return latest if latest["number"] != row.published_revision else None

    def update(self, actor: Actor, code: str, *, directory_id: int | None = None, **values: Any) -> dict[str, Any]:
        """Edit the draft (a first draft, or a revision not yet submitted)."""
        with self.catalog.write() as conn:
            row = self._resource(conn, code)
            require_member_of(actor, row.provider_id, row.provider, "edit its resources")
            pending = self._pending(conn, row)
            if pending is None or pending["state"] != "draft":
                raise Conflict(f"{code} has no draft to edit ({row.status}); a published resource is revised")
            metadata = self._metadata(values, {k: pending[k] for k in _FIELDS})
            conn.execute(update(t.revision).where(t.revision.c.resource_id == row.id, t.revision.c.number == pending["number"])
                         .values(**{**metadata, "related_codes": json.dumps(metadata["related_codes"]),
                                    "themes": json.dumps(metadata["themes"])}))
            if directory_id is not None:
                directory = self.catalog.directory(directory_id, conn)
                if row.status != "draft" or (directory["kind"] == "department" and directory["department_id"] != row.provider_id):
                    raise Invalid("only a draft moves, to the shared catalogue or its provider's own")
                conn.execute(update(t.resource).where(t.resource.c.id == row.id).values(directory_id=directory_id))
            conn.execute(update(t.resource).where(t.resource.c.id == row.id).values(updated_at=now()))
            self.record(conn, row.id, pending["number"], "edit", row.status, row.status, actor)
        return self.get(code)

    def revise(self, actor: Actor, code: str, **values: Any) -> dict[str, Any]:
        """Start a new revision of a published resource, as a draft."""
        with self.catalog.write() as conn:
            row = self._resource(conn, code)
            require_member_of(actor, row.provider_id, row.provider, "revise its resources")
            if row.status != "published" or self._pending(conn, row) is not None:
                raise Conflict(f"{code} is {row.status}{' with a revision pending' if row.status == 'published' else ''}: "
                               "only a published resource without a pending revision is revised")
            current = self._revisions(conn, row.id)[row.published_revision]
            metadata = self._metadata(values, {k: current[k] for k in _FIELDS})
            number = row.published_revision + 1
            self._insert_revision(conn, row.id, number, "draft", metadata, actor)
            self.record(conn, row.id, number, "revise", row.status, row.status, actor)
        return self.get(code)

    def submit(self, actor: Actor, code: str, reason: str = "") -> dict[str, Any]:
        """The provider's admin submits the draft: published at once on the department's own
        catalogue, submitted for review on the shared one."""
        with self.catalog.write(routing=True) as conn:
            row = self._resource(conn, code)
            require_admin_of(actor, row.provider_id, row.provider, "submit its resources")
            pending = self._pending(conn, row)
            if pending is None or pending["state"] != "draft":
                raise Conflict(f"{code} has no draft to submit ({row.status})")
            if row.catalogue == "department":
                self._publish(conn, row, pending["number"], actor, "publish", reason)
            else:
                after = "submitted" if row.published_revision is None else "revision_submitted"
                self._set_revision_state(conn, row.id, pending["number"], "submitted")
                self._set_status(conn, row.id, after)
                self.record(conn, row.id, pending["number"], "submit", row.status, after, actor, reason)
        return self.get(code)

    def approve(self, actor: Actor, code: str, reason: str = "") -> dict[str, Any]:
        """A platform admin approves what is submitted on the shared catalogue."""
        require_platform_admin(actor, "review the shared catalogue")
        with self.catalog.write(routing=True) as conn:
            row = self._resource(conn, code)
            if row.status in ("submitted", "revision_submitted"):
                self._publish(conn, row, self._pending(conn, row)["number"], actor, "approve", reason)
            elif row.status == "deregistration_submitted":
                self._deregister(conn, row, actor, "approve", reason)
            else:
                raise Conflict(f"{code} is {row.status}: nothing awaits review")
        return self.get(code)

    def reject(self, actor: Actor, code: str, reason: str) -> dict[str, Any]:
        """A platform admin rejects a submission, saying why."""
        require_platform_admin(actor, "review the shared catalogue")
        if not reason.strip():
            raise Invalid("a rejection states its reason")
        with self.catalog.write() as conn:
            row = self._resource(conn, code)
            if row.status == "submitted":
                after = "draft"
            elif row.status in ("revision_submitted", "deregistration_submitted"):
                after = "published"
            else:
                raise Conflict(f"{code} is {row.status}: nothing awaits review")
            pending = self._pending(conn, row)
            if pending is not None and pending["state"] == "submitted":
                self._set_revision_state(conn, row.id, pending["number"], "draft")
            self._set_status(conn, row.id, after)
            # a rejected deregistration concerns the revision in force, even with a new one drafted
            number = pending["number"] if pending and row.status != "deregistration_submitted" else row.published_revision
            self.record(conn, row.id, number, "reject", row.status, after, actor, reason.strip())
        return self.get(code)

    def deregister(self, actor: Actor, code: str, reason: str) -> dict[str, Any]:
        """The provider's admin deregisters (注销) a published resource: at once on the
        department's own catalogue, after review on the shared one."""
        if not reason.strip():
            raise Invalid("a deregistration states its reason")
        with self.catalog.write(routing=True) as conn:
            row = self._resource(conn, code)
            require_admin_of(actor, row.provider_id, row.provider, "deregister its resources")
            if row.status != "published":
                raise Conflict(f"{code} is {row.status}: only a published resource is deregistered")
            if row.catalogue == "department":
                self._deregister(conn, row, actor, "deregister", reason.strip())
            else:
                self._set_status(conn, row.id, "deregistration_submitted")
                self.record(conn, row.id, row.published_revision, "deregister", row.status, "deregistration_submitted",
                             actor, reason.strip())
        return self.get(code)

    def _set_status(self, conn: Connection, resource_id: int, status: str, **more: Any) -> None:
        conn.execute(update(t.resource).where(t.resource.c.id == resource_id).values(status=status, updated_at=now(), **more))

    def _set_revision_state(self, conn: Connection, resource_id: int, number: int, state: str) -> None:
        conn.execute(update(t.revision).where(t.revision.c.resource_id == resource_id, t.revision.c.number == number)
                     .values(state=state))

    def _publish(self, conn: Connection, row: Any, number: int, actor: Actor, action: str, reason: str) -> None:
        if row.published_revision is not None:
            self._set_revision_state(conn, row.id, row.published_revision, "superseded")
        self._set_revision_state(conn, row.id, number, "published")
        revisions = self._revisions(conn, row.id)
        if revisions[number]["publish_date"] is None:
            conn.execute(update(t.revision).where(t.revision.c.resource_id == row.id, t.revision.c.number == number)
                         .values(publish_date=today()))
        self._set_status(conn, row.id, "published", published_revision=number)
        self.record(conn, row.id, number, action, row.status, "published", actor, reason)

    def _deregister(self, conn: Connection, row: Any, actor: Actor, action: str, reason: str) -> None:
        self._set_status(conn, row.id, "deregistered")
        self.record(conn, row.id, row.published_revision, action, row.status, "deregistered", actor, reason)
        # nothing is delivered of a deregistered resource: its subscriptions end with it
        conn.execute(update(t.subscription).where(t.subscription.c.resource_id == row.id, t.subscription.c.status == "active")
                     .values(status="revoked", revoked_at=now(), revoked_by=actor.username,
                             revoke_reason=f"resource {row.code} deregistered"))


def _revision_view(row: Any) -> dict[str, Any]:
    view = dict(row._mapping)
    for field in ("related_codes", "themes"):
        if isinstance(view.get(field), str):
            view[field] = json.loads(view[field])
    return view
