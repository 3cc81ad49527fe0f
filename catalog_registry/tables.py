"""The catalogue's tables (SQLAlchemy Core; migrations in catalog_registry/migrations).

Identity of everything catalogued is (domain, code): the platform's own domain and those
imported from the provincial or district platforms live side by side.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Boolean, Column, Date, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint,
)

from bus.db import UtcDateTime

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = MetaData()

domain = Table(
    "catalog_domain", metadata,
    Column("code", String(12), primary_key=True),  # GB/T 2260 division code of the platform
    Column("name", String(100), nullable=False),
    Column("parent", String(12)),
    Column("level", String(16), nullable=False),  # province, city, district
)

department = Table(
    "catalog_department", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(12), ForeignKey("catalog_domain.code"), nullable=False),
    Column("code", String(32), nullable=False),
    Column("name", String(100), nullable=False),
    Column("parent_id", Integer, ForeignKey("catalog_department.id")),
    Column("outbound", String(64), nullable=False, default="inbox"),
    Column("outbound_settings", Text, nullable=False, default="{}"),  # JSON
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("domain", "code", name="uq_catalog_department_code"),
)

user = Table(
    "catalog_user", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(100), nullable=False),
    Column("role", String(32), nullable=False),  # platform_admin, department_admin, department_staff
    Column("department_id", Integer, ForeignKey("catalog_department.id")),
    Column("password_hash", String(200), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
)

directory = Table(
    "catalog_directory", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(12), ForeignKey("catalog_domain.code"), nullable=False),
    Column("kind", String(16), nullable=False),  # shared (平台共享目录) or department (部门自有目录)
    Column("department_id", Integer, ForeignKey("catalog_department.id")),  # the owner, for kind=department
    Column("parent_id", Integer, ForeignKey("catalog_directory.id")),
    Column("name", String(100), nullable=False),
    Column("position", Integer, nullable=False, default=0),
)

theme = Table(
    "catalog_theme", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(12), ForeignKey("catalog_domain.code"), nullable=False),
    Column("code", String(32), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", Text, nullable=False, default=""),
    UniqueConstraint("domain", "code", name="uq_catalog_theme_code"),
)

resource = Table(
    "catalog_resource", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain", String(12), ForeignKey("catalog_domain.code"), nullable=False),
    Column("code", String(64), nullable=False),
    Column("provider_id", Integer, ForeignKey("catalog_department.id"), nullable=False),
    Column("directory_id", Integer, ForeignKey("catalog_directory.id"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("published_revision", Integer),  # the revision in force, if any
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("domain", "code", name="uq_catalog_resource_code"),
)

revision = Table(
    "catalog_revision", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("resource_id", Integer, ForeignKey("catalog_resource.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # draft, submitted, published, superseded
    # GB/T 21063.3 core metadata, as the 2017 政务信息资源目录编制指南 uses it
    Column("classification", String(32), nullable=False),  # 类.项.目[.细目], e.g. 1.01.001
    Column("name", String(200), nullable=False),
    Column("abstract", Text, nullable=False, default=""),
    Column("format", String(64), nullable=False, default="XML"),
    Column("sharing_type", String(16), nullable=False),  # unconditional, conditional, not_shared
    Column("sharing_conditions", Text, nullable=False, default=""),
    Column("sharing_mode", String(32), nullable=False),  # subscription, query, file
    Column("open_type", String(16), nullable=False, default="not_open"),  # open, conditional, not_open
    Column("open_conditions", Text, nullable=False, default=""),
    Column("update_cycle", String(16), nullable=False, default="irregular"),
    Column("publish_date", Date),
    Column("related_codes", Text, nullable=False, default="[]"),  # JSON list of resource codes
    Column("themes", Text, nullable=False, default="[]"),  # JSON list of theme codes
    Column("specification", String(64)),
    Column("specification_version", String(16)),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("resource_id", "number", name="uq_catalog_revision_number"),
)

resource_event = Table(
    "catalog_resource_event", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("resource_id", Integer, ForeignKey("catalog_resource.id"), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_status", String(32)),
    Column("to_status", String(32), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False, default=""),
)

application = Table(
    "catalog_application", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # usage (信息授权/使用申请) or negotiated (自协商共享申请)
    Column("resource_id", Integer, ForeignKey("catalog_resource.id"), nullable=False),
    Column("consumer_id", Integer, ForeignKey("catalog_department.id"), nullable=False),
    Column("items", Text),  # JSON list of data item paths; NULL: all of them
    Column("filter", Text),  # XPath content filter, optional
    Column("purpose", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("submitted_at", UtcDateTime),
    Column("deadline", Date),  # the reply is due by the end of this day
    Column("subscription_id", Integer),
)

application_event = Table(
    "catalog_application_event", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_id", Integer, ForeignKey("catalog_application.id"), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("from_status", String(32)),
    Column("to_status", String(32), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False, default=""),
)

subscription = Table(
    "catalog_subscription", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("resource_id", Integer, ForeignKey("catalog_resource.id"), nullable=False, index=True),
    Column("subscriber_id", Integer, ForeignKey("catalog_department.id"), nullable=False),
    Column("items", Text),  # JSON list of data item paths; NULL: all of them
    Column("filter", Text),
    Column("status", String(16), nullable=False),  # active, revoked
    Column("application_id", Integer),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("revoked_by", String(64)),
    Column("revoke_reason", Text),
)

# One row: bumped by every change that the routing table depends on.
catalog_state = Table(
    "catalog_state", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),  # of what the routing table holds
    Column("listing_version", Integer, nullable=False),  # of what search lists
)
