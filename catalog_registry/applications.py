"""Share applications and the subscriptions they become.

A consumer department applies for a published resource, for all of its data items or some,
states its purpose, and may ask for a content filter. Two kinds, as the specification names
them: a usage or authorisation application (信息授权/使用申请), and a self-negotiated one
(自协商共享申请), agreed between the two departments. Staff propose; their admin submits.

- unconditional resources are granted on submission;
- conditional ones need the provider's approval, and for a usage application on the shared
  catalogue the platform admin's too; each reply is due within 10 working days, and an
  application waiting past that is flagged overdue;
- not-shared resources cannot be applied for.

An approved application becomes the consumer's subscription to the resource (replacing any
earlier one); revoking it, by either department's admin or a platform admin, ends it.
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree
from sqlalchemy import Connection, insert, select, update

from catalog_registry import tables as t
from catalog_registry.auth import Actor, require_admin_of, require_member_of, require_platform_admin
from catalog_registry.catalog import Catalog, now
from catalog_registry.errors import Conflict, Forbidden, Invalid, NotFound
from catalog_registry.resources import IN_FORCE, Resources
from catalog_registry.workdays import add_workdays, today

KINDS = ("usage", "negotiated")
PENDING = ("pending_provider", "pending_platform")
REPLY_DAYS = 10


class Applications:
    def __init__(self, catalog: Catalog, resources: Resources) -> None:
        self.catalog = catalog
        self.resources = resources

    # -- reading ---------------------------------------------------------------------------

    def _query(self) -> Any:
        consumer = t.department.alias("consumer")
        provider = t.department.alias("provider")
        return (select(t.application, t.resource.c.code.label("resource"), consumer.c.code.label("consumer"),
                       provider.c.code.label("provider"), t.directory.c.kind.label("catalogue"),
                       t.resource.c.provider_id)
                .select_from(t.application.join(t.resource, t.application.c.resource_id == t.resource.c.id)
                             .join(consumer, t.application.c.consumer_id == consumer.c.id)
                             .join(provider, t.resource.c.provider_id == provider.c.id)
                             .join(t.directory, t.resource.c.directory_id == t.directory.c.id)))

    def _row(self, conn: Connection, application_id: int) -> Any:
        row = conn.execute(self._query().where(t.application.c.id == application_id)).first()
        if row is None:
            raise NotFound(f"no application {application_id}")
        return row

    @staticmethod
    def _view(row: Any) -> dict[str, Any]:
        view = dict(row._mapping)
        view["items"] = json.loads(view["items"]) if view["items"] else None
        view["overdue"] = view["status"] in PENDING and view["deadline"] is not None and today() > view["deadline"]
        return view

    def get(self, application_id: int) -> dict[str, Any]:
        with self.catalog.engine.connect() as conn:
            return self._view(self._row(conn, application_id))

    def list(self, *, status: str | None = None, consumer: str | None = None, provider: str | None = None,
             overdue: bool = False) -> list[dict[str, Any]]:
        query = self._query().order_by(t.application.c.id)
        if status:
            query = query.where(t.application.c.status == status)
        with self.catalog.engine.connect() as conn:
            views = [self._view(r) for r in conn.execute(query)]
        return [v for v in views if (consumer is None or v["consumer"] == consumer)
                and (provider is None or v["provider"] == provider) and (not overdue or v["overdue"])]

    def history(self, application_id: int) -> list[dict[str, Any]]:
        with self.catalog.engine.connect() as conn:
            self._row(conn, application_id)
            return [dict(r._mapping) for r in conn.execute(
                select(t.application_event).where(t.application_event.c.application_id == application_id)
                .order_by(t.application_event.c.id))]

    def subscriptions(self, *, resource: str | None = None, subscriber: str | None = None,
                      active: bool = True) -> list[dict[str, Any]]:
        provider = t.department.alias("provider")
        query = (select(t.subscription, t.resource.c.code.label("resource"), t.department.c.code.label("subscriber"),
                        provider.c.code.label("provider"))
                 .select_from(t.subscription.join(t.resource, t.subscription.c.resource_id == t.resource.c.id)
                              .join(t.department, t.subscription.c.subscriber_id == t.department.c.id)
                              .join(provider, t.resource.c.provider_id == provider.c.id))
                 .order_by(t.subscription.c.id))
        if active:
            query = query.where(t.subscription.c.status == "active")
        if resource:  # codes are qualified by domain: the platform's own
            query = query.where(t.resource.c.code == resource, t.resource.c.domain == self.catalog.domain)
        if subscriber:
            query = query.where(t.department.c.code == subscriber, t.department.c.domain == self.catalog.domain)
        with self.catalog.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["items"] = json.loads(row["items"]) if row["items"] else None
        return rows

    # -- changing --------------------------------------------------------------------------

    def _record(self, conn: Connection, application_id: int, action: str, before: str | None, after: str,
                actor: Actor, reason: str = "") -> None:
        conn.execute(insert(t.application_event).values(
            application_id=application_id, action=action, from_status=before, to_status=after, actor=actor.username,
            at=now(), reason=reason))

    def apply(self, actor: Actor, resource: str, consumer: str, *, purpose: str, kind: str = "usage",
              items: list[str] | None = None, filter: str | None = None) -> dict[str, Any]:
        """Propose an application (a draft) for `consumer`; its admin submits it."""
        department = self.catalog.department(consumer)
        require_member_of(actor, department["id"], consumer, "apply for its department")
        if kind not in KINDS:
            raise Invalid(f"an application is one of {', '.join(KINDS)}")
        if not purpose.strip():
            raise Invalid("an application states its purpose")
        wanted = self.resources.get(resource)
        if wanted["status"] not in IN_FORCE:
            raise Conflict(f"resource {resource} is {wanted['status']}: only a published resource is applied for")
        if wanted["sharing_type"] == "not_shared":
            raise Conflict(f"resource {resource} ({wanted['name']}) is not shared: it cannot be applied for")
        if wanted["provider"] == consumer:
            raise Invalid(f"department {consumer} provides {resource} itself")
        self._check_items(wanted, items)
        self._check_filter(wanted, filter)
        with self.catalog.write() as conn:
            resource_id = conn.execute(select(t.resource.c.id).where(
                t.resource.c.domain == self.catalog.domain, t.resource.c.code == resource)).scalar_one()
            application_id = conn.execute(insert(t.application).values(
                kind=kind, resource_id=resource_id, consumer_id=department["id"],
                items=json.dumps(items) if items is not None else None, filter=filter or None, purpose=purpose.strip(),
                status="draft", created_by=actor.username, created_at=now())).inserted_primary_key[0]
            self._record(conn, application_id, "apply", None, "draft", actor)
        return self.get(application_id)

    def _check_items(self, resource: dict[str, Any], items: list[str] | None) -> None:
        if items is None:
            return
        known = {i["path"] for i in resource["data_items"]}
        if not items:
            raise Invalid("an application for some data items names at least one")
        unknown = [i for i in items if i not in known]
        if unknown:
            raise Invalid(f"resource {resource['code']} has no data item {', '.join(unknown)} "
                          f"(its items: {', '.join(sorted(known)) or 'none'})")

    def _check_filter(self, resource: dict[str, Any], filter: str | None) -> None:
        if not filter:
            return
        namespace = self.catalog.registry.model(resource["specification"], resource["specification_version"]).namespace \
            if resource["specification"] else ""
        try:
            etree.XPath(filter, namespaces={"r": namespace})
        except etree.XPathSyntaxError as exc:
            raise Invalid(f"content filter {filter!r} is not XPath 1.0: {exc}; data items are r:Name, e.g. "
                          "r:Division = '440402'") from None

    def submit(self, actor: Actor, application_id: int) -> dict[str, Any]:
        """The consumer's admin submits: unconditional resources are granted at once."""
        with self.catalog.write(routing=True, listing=False) as conn:
            row = self._row(conn, application_id)
            require_admin_of(actor, row.consumer_id, row.consumer, "submit its applications")
            if row.status != "draft":
                raise Conflict(f"application {application_id} is {row.status}, not a draft")
            sharing = self.resources.get(row.resource)["sharing_type"]
            if sharing == "not_shared":
                raise Conflict(f"resource {row.resource} is no longer shared: it cannot be applied for")
            values: dict[str, Any] = {"submitted_at": now()}
            if sharing == "unconditional":
                self._grant(conn, row, actor, "submit", "granted on application: the resource is shared unconditionally")
            else:
                values.update(status="pending_provider", deadline=add_workdays(today(), REPLY_DAYS))
                self._record(conn, application_id, "submit", "draft", "pending_provider", actor)
            conn.execute(update(t.application).where(t.application.c.id == application_id).values(**values))
        return self.get(application_id)

    def approve(self, actor: Actor, application_id: int, reason: str = "") -> dict[str, Any]:
        """The provider's admin approves; then, for a usage application on the shared
        catalogue, a platform admin."""
        with self.catalog.write(routing=True, listing=False) as conn:
            row = self._row(conn, application_id)
            if row.status == "pending_provider":
                require_admin_of(actor, row.provider_id, row.provider, "approve applications for its resources")
                if row.catalogue == "shared" and row.kind == "usage":
                    conn.execute(update(t.application).where(t.application.c.id == application_id).values(
                        status="pending_platform", deadline=add_workdays(today(), REPLY_DAYS)))
                    self._record(conn, application_id, "approve", row.status, "pending_platform", actor, reason)
                else:
                    self._grant(conn, row, actor, "approve", reason)
            elif row.status == "pending_platform":
                require_platform_admin(actor, "approve applications on the shared catalogue")
                self._grant(conn, row, actor, "approve", reason)
            else:
                raise Conflict(f"application {application_id} is {row.status}: nothing awaits approval")
        return self.get(application_id)

    def reject(self, actor: Actor, application_id: int, reason: str) -> dict[str, Any]:
        if not reason.strip():
            raise Invalid("a rejection states its reason")
        with self.catalog.write() as conn:
            row = self._row(conn, application_id)
            if row.status == "pending_provider":
                require_admin_of(actor, row.provider_id, row.provider, "reject applications for its resources")
            elif row.status == "pending_platform":
                require_platform_admin(actor, "reject applications on the shared catalogue")
            else:
                raise Conflict(f"application {application_id} is {row.status}: nothing awaits a decision")
            conn.execute(update(t.application).where(t.application.c.id == application_id).values(status="rejected"))
            self._record(conn, application_id, "reject", row.status, "rejected", actor, reason.strip())
        return self.get(application_id)

    def revoke(self, actor: Actor, application_id: int, reason: str) -> dict[str, Any]:
        """End the subscription an approved application became."""
        if not reason.strip():
            raise Invalid("a revocation states its reason")
        with self.catalog.write(routing=True, listing=False) as conn:
            row = self._row(conn, application_id)
            if not (actor.platform_admin or actor.admin_of(row.consumer_id) or actor.admin_of(row.provider_id)):
                raise Forbidden(f"only an admin of {row.consumer} or {row.provider}, or a platform admin, may revoke")
            if row.status != "approved":
                raise Conflict(f"application {application_id} is {row.status}: only an approved one is revoked")
            conn.execute(update(t.application).where(t.application.c.id == application_id).values(status="revoked"))
            conn.execute(update(t.subscription).where(t.subscription.c.id == row.subscription_id,
                                                      t.subscription.c.status == "active")
                         .values(status="revoked", revoked_at=now(), revoked_by=actor.username, revoke_reason=reason.strip()))
            self._record(conn, application_id, "revoke", "approved", "revoked", actor, reason.strip())
        return self.get(application_id)

    def _grant(self, conn: Connection, row: Any, actor: Actor, action: str, reason: str) -> None:
        """Make the application a subscription, ending the consumer's earlier one to the resource."""
        conn.execute(update(t.subscription).where(
            t.subscription.c.resource_id == row.resource_id, t.subscription.c.subscriber_id == row.consumer_id,
            t.subscription.c.status == "active",
        ).values(status="revoked", revoked_at=now(), revoked_by=actor.username,
                 revoke_reason=f"superseded by application {row.id}"))
        subscription_id = conn.execute(insert(t.subscription).values(
            resource_id=row.resource_id, subscriber_id=row.consumer_id, items=row.items, filter=row.filter,
            status="active", application_id=row.id, created_at=now())).inserted_primary_key[0]
        conn.execute(update(t.application).where(t.application.c.id == row.id)
                     .values(status="approved", subscription_id=subscription_id))
        self._record(conn, row.id, action, row.status, "approved", actor, reason)
