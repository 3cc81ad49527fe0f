"""The catalogue's structure: domains, departments, users, directories (目录) and data themes
(数据主题), and what every other part of the catalogue shares: the caller, the database, and
the notice to the bus that the routing table changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from schemas import Registry
from sqlalchemy import Connection, Engine, func, insert, select, update

from catalog_registry import tables as t
from catalog_registry.auth import (
    DEPARTMENT_ADMIN, DEPARTMENT_STAFF, PLATFORM_ADMIN, ROLES, Actor, check_password, hash_password,
    require_admin_of, require_platform_admin,
)
from catalog_registry.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated

DEPARTMENT_CODE = re.compile(r"[A-Z0-9]{2,32}\Z")
# XML 1.0 cannot carry these: text holding one would make every export of the catalogue fail
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def text(value: str, what: str, limit: int | None = None, *, missing: str | None = None) -> str:
    """`value` stripped, checked: not empty (with `missing`, the message), at most `limit`
    characters, no control characters. Raises Invalid naming `what`."""
    cleaned = value.strip()
    if missing is not None and not cleaned:
        raise Invalid(missing)
    if limit is not None and len(cleaned) > limit:
        raise Invalid(f"{what} is at most {limit} characters, got {len(cleaned)}")
    bad = _CONTROL.search(cleaned)
    if bad:
        raise Invalid(f"{what} holds a control character (U+{ord(bad.group()):04X}) at position {bad.start() + 1}")
    return cleaned
DOMAIN_CODE = re.compile(r"[0-9]{6}\Z")
DOMAIN_LEVELS = ("province", "city", "district")


def now() -> datetime:
    return datetime.now(timezone.utc)


def _dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping) if hasattr(row, "_mapping") else dict(row)


class Catalog:
    """One catalogue database, seen from one platform domain.

    `notify` is called (after the commit) whenever something the routing table depends on
    changed; the composition passes one that tells the bus's workers to reload.
    """

    def __init__(self, engine: Engine, domain: str, registry: Registry,
                 notify: Callable[[int], None] | None = None, domain_name: str = "") -> None:
        self.engine = engine
        self.domain = domain
        self.registry = registry
        self.notify = notify or (lambda version: None)
        self.domain_name = domain_name or domain

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def write(self, *, routing: bool = False, listing: bool | None = None) -> Iterator[Connection]:
        """A transaction; with `routing`, one that changes what the routing table holds; with
        `listing` (by default as `routing`), one that changes what search lists."""
        version = None
        with self.engine.begin() as conn:
            yield conn
            if routing or listing:
                version = self._bump(conn, routing, routing if listing is None else listing)
        if routing and version is not None:
            self.notify(version)

    def _bump(self, conn: Connection, routing: bool, listing: bool) -> int:
        table = t.catalog_state
        updated = conn.execute(update(table).where(table.c.id == 1).values(
            version=table.c.version + int(routing), listing_version=table.c.listing_version + int(listing))).rowcount
        if not updated:
            conn.execute(insert(table).values(id=1, version=int(routing), listing_version=int(listing)))
        return int(conn.execute(select(table.c.version)).scalar_one())

    def version(self) -> int:
        """Changes so far to what the routing table holds; cheap to ask."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(t.catalog_state.c.version)).scalar() or 0)

    def listing_version(self) -> int:
        """Changes so far to what search lists (resources, departments); cheap to ask."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(t.catalog_state.c.listing_version)).scalar() or 0)

    def ensure_domain(self) -> None:
        """Register the platform's own domain if it is not there yet."""
        with self.engine.begin() as conn:
            if conn.execute(select(t.domain.c.code).where(t.domain.c.code == self.domain)).first() is None:
                conn.execute(insert(t.domain).values(code=self.domain, name=self.domain_name, parent=None, level="city"))

    # -- who is calling ----------------------------------------------------------------------

    def actor(self, username: str) -> Actor:
        """The active user `username`. Raises Unauthenticated."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.user, t.department.c.code.label("department_code"))
                .select_from(t.user.outerjoin(t.department, t.user.c.department_id == t.department.c.id))
                .where(t.user.c.username == username)
            ).first()
        if row is None or not row.active:
            raise Unauthenticated(f"no active catalogue user {username!r}")
        return Actor(row.username, row.role, row.department_id, row.department_code)

    def authenticate(self, username: str, password: str) -> Actor:
        """Raises Unauthenticated for an unknown user or a wrong password, alike."""
        with self.engine.connect() as conn:
            stored = conn.execute(select(t.user.c.password_hash, t.user.c.active)
                                  .where(t.user.c.username == username)).first()
        if stored is None or not stored.active or not check_password(password, stored.password_hash):
            raise Unauthenticated("wrong user name or password")
        return self.actor(username)

    # -- domains -----------------------------------------------------------------------------

    def domains(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [_dict(r) for r in conn.execute(select(t.domain).order_by(t.domain.c.code))]

    def add_domain(self, actor: Actor, code: str, name: str, level: str, parent: str | None = None) -> dict[str, Any]:
        require_platform_admin(actor, "add a domain")
        if not DOMAIN_CODE.match(code):
            raise Invalid(f"a domain code is a 6-digit GB/T 2260 division code, got {code!r}")
        if level not in DOMAIN_LEVELS:
            raise Invalid(f"a domain level is one of {', '.join(DOMAIN_LEVELS)}")
        name = text(name, "a domain's name", 100, missing="a domain needs a name")
        with self.write() as conn:
            if conn.execute(select(t.domain.c.code).where(t.domain.c.code == code)).first():
                raise Conflict(f"domain {code} exists already")
            conn.execute(insert(t.domain).values(code=code, name=name, parent=parent, level=level))
        return {"code": code, "name": name, "parent": parent, "level": level}

    # -- departments -------------------------------------------------------------------------

    def departments(self, domain: str | None = None) -> list[dict[str, Any]]:
        parent = t.department.alias("parent")
        query = (select(t.department, parent.c.code.label("parent_code"))
                 .select_from(t.department.outerjoin(parent, t.department.c.parent_id == parent.c.id))
                 .where(t.department.c.domain == (domain or self.domain)).order_by(t.department.c.code))
        with self.engine.connect() as conn:
            return [self._department_view(r) for r in conn.execute(query)]

    @staticmethod
    def _department_view(row: Any) -> dict[str, Any]:
        view = _dict(row)
        view["outbound_settings"] = json.loads(view["outbound_settings"] or "{}")
        return view

    def department(self, code: str, domain: str | None = None, conn: Connection | None = None) -> dict[str, Any]:
        """Raises NotFound."""
        query = select(t.department).where(t.department.c.domain == (domain or self.domain), t.department.c.code == code)
        if conn is None:
            with self.engine.connect() as own:
                row = own.execute(query).first()
        else:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no department {code} in domain {domain or self.domain}")
        return self._department_view(row)

    def add_department(self, actor: Actor, code: str, name: str, parent: str | None = None,
                       outbound: str = "inbox", outbound_settings: dict[str, str] | None = None) -> dict[str, Any]:
        require_platform_admin(actor, "add a department")
        if not DEPARTMENT_CODE.match(code):
            raise Invalid(f"a department code is 2-32 of A-Z and 0-9, got {code!r}")
        name = text(name, "a department's name", 100, missing="a department needs a name")
        with self.write(routing=True) as conn:
            parent_id = self.department(parent, conn=conn)["id"] if parent else None
            exists = conn.execute(select(t.department.c.id).where(
                t.department.c.domain == self.domain, t.department.c.code == code)).first()
            if exists:
                raise Conflict(f"department {code} exists already")
            conn.execute(insert(t.department).values(
                domain=self.domain, code=code, name=name.strip(), parent_id=parent_id, outbound=outbound,
                outbound_settings=json.dumps(outbound_settings or {}, ensure_ascii=False), created_at=now()))
        return self.department(code)

    def update_department(self, actor: Actor, code: str, *, name: str | None = None, outbound: str | None = None,
                          outbound_settings: dict[str, str] | None = None) -> dict[str, Any]:
        """Rename a department or change how it takes deliveries (platform admin, or its admin)."""
        found = self.department(code)
        if not actor.platform_admin:
            require_admin_of(actor, found["id"], code, "change the department")
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = text(name, "a department's name", 100, missing="a department needs a name")
        if outbound is not None:
            values["outbound"] = outbound
        if outbound_settings is not None:
            values["outbound_settings"] = json.dumps(outbound_settings, ensure_ascii=False)
        if values:
            with self.write(routing=True) as conn:
                conn.execute(update(t.department).where(t.department.c.id == found["id"]).values(**values))
        return self.department(code)

    # -- users -------------------------------------------------------------------------------

    def users(self, actor: Actor) -> list[dict[str, Any]]:
        """Every user for a platform admin; a department admin sees the department's."""
        query = (select(t.user.c.id, t.user.c.username, t.user.c.display_name, t.user.c.role, t.user.c.active,
                        t.department.c.code.label("department"))
                 .select_from(t.user.outerjoin(t.department, t.user.c.department_id == t.department.c.id))
                 .order_by(t.user.c.username))
        if not actor.platform_admin:
            if actor.role != DEPARTMENT_ADMIN:
                require_platform_admin(actor, "list users")
            query = query.where(t.user.c.department_id == actor.department_id)
        with self.engine.connect() as conn:
            return [_dict(r) for r in conn.execute(query)]

    def has_users(self) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(select(func.count()).select_from(t.user)).scalar_one())

    def add_user(self, actor: Actor | None, username: str, display_name: str, role: str, password: str,
                 department: str | None = None) -> dict[str, Any]:
        """Add a user. The very first user may be added by nobody and must be a platform admin;
        afterwards a platform admin adds anyone, a department admin the department's staff."""
        if role not in ROLES:
            raise Invalid(f"a role is one of {', '.join(ROLES)}")
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{2,64}", username):
            raise Invalid("a user name is 2-64 of letters, digits and _ . @ -")
        if actor is None:
            if self.has_users():
                raise Conflict("the catalogue has its first user already: a platform admin adds the others")
            if role != PLATFORM_ADMIN:
                raise Invalid("the first user must be a platform admin")
        elif not actor.platform_admin:
            if not (actor.role == DEPARTMENT_ADMIN and role == DEPARTMENT_STAFF
                    and department == actor.department_code):
                raise Forbidden(f"{actor.username} ({actor.role}) may add staff of department {actor.department_code} only")
        if (role == PLATFORM_ADMIN) != (department is None):
            raise Invalid("a platform admin belongs to no department; department users need one")
        display_name = text(display_name, "a user's display name", 100) or username
        with self.write() as conn:
            department_id = self.department(department, conn=conn)["id"] if department else None
            if conn.execute(select(t.user.c.id).where(t.user.c.username == username)).first():
                raise Conflict(f"user {username} exists already")
            conn.execute(insert(t.user).values(
                username=username, display_name=display_name, role=role, department_id=department_id,
                password_hash=hash_password(password), active=True, created_at=now()))
        return {"username": username, "display_name": display_name, "role": role, "department": department}

    def set_user(self, actor: Actor, username: str, *, role: str | None = None, active: bool | None = None,
                 password: str | None = None) -> None:
        """Change a user's role or activity (platform admin), or a password (the user or a platform admin)."""
        if role is not None or active is not None:
            require_platform_admin(actor, "change a user's role or activity")
        elif actor.username != username:
            require_platform_admin(actor, "set another user's password")
        values: dict[str, Any] = {}
        if role is not None:
            if role not in ROLES:
                raise Invalid(f"a role is one of {', '.join(ROLES)}")
            values["role"] = role
            if role == PLATFORM_ADMIN:
                values["department_id"] = None  # a platform admin belongs to no department
        if active is not None:
            values["active"] = active
        if password is not None:
            values["password_hash"] = hash_password(password)
        if not values:
            raise Invalid("nothing to change: give a role, an activity or a password")
        with self.write() as conn:
            user = conn.execute(select(t.user.c.role, t.user.c.department_id).where(t.user.c.username == username)).first()
            if user is None:
                raise NotFound(f"no user {username}")
            if role is not None and role != PLATFORM_ADMIN and user.department_id is None:
                raise Invalid(f"{username} belongs to no department, so cannot be {role}: add a user of the department instead")
            conn.execute(update(t.user).where(t.user.c.username == username).values(**values))
            if not conn.execute(select(t.user.c.id).where(t.user.c.role == PLATFORM_ADMIN, t.user.c.active.is_(True))).first():
                raise Conflict(f"{username} is the last active platform admin: the catalogue would have none")

    # -- directories ---------------------------------------------------------------------------

    def directories(self, kind: str | None = None, department: str | None = None) -> list[dict[str, Any]]:
        """The directory tree(s), parents before children."""
        query = (select(t.directory, t.department.c.code.label("department"))
                 .select_from(t.directory.outerjoin(t.department, t.directory.c.department_id == t.department.c.id))
                 .where(t.directory.c.domain == self.domain).order_by(t.directory.c.position, t.directory.c.id))
        if kind:
            query = query.where(t.directory.c.kind == kind)
        if department:
            query = query.where(t.department.c.code == department)
        with self.engine.connect() as conn:
            return [_dict(r) for r in conn.execute(query)]

    def directory(self, directory_id: int, conn: Connection | None = None) -> dict[str, Any]:
        query = (select(t.directory, t.department.c.code.label("department"))
                 .select_from(t.directory.outerjoin(t.department, t.directory.c.department_id == t.department.c.id))
                 .where(t.directory.c.id == directory_id))
        if conn is None:
            with self.engine.connect() as own:
                row = own.execute(query).first()
        else:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no directory {directory_id}")
        return _dict(row)

    def _may_edit_directory(self, actor: Actor, kind: str, department_id: int | None, code: str | None) -> None:
        if kind == "shared":
            require_platform_admin(actor, "change the shared catalogue's directories")
        else:
            require_admin_of(actor, department_id or 0, code or "?", "change the department's directories")

    def add_directory(self, actor: Actor, name: str, *, kind: str, department: str | None = None,
                      parent_id: int | None = None) -> dict[str, Any]:
        if kind not in ("shared", "department"):
            raise Invalid("a directory belongs to the shared catalogue or to a department's own")
        if (kind == "department") != (department is not None):
            raise Invalid("a department directory names its department; a shared one does not")
        name = text(name, "a directory's name", 100, missing="a directory needs a name")
        with self.write() as conn:
            department_id = self.department(department, conn=conn)["id"] if department else None
            self._may_edit_directory(actor, kind, department_id, department)
            if parent_id is not None:
                parent = self.directory(parent_id, conn)
                if parent["kind"] != kind or parent["department_id"] != department_id:
                    raise Invalid("a directory's parent must be in the same catalogue")
            new_id = conn.execute(insert(t.directory).values(
                domain=self.domain, kind=kind, department_id=department_id, parent_id=parent_id, name=name.strip(),
                position=0)).inserted_primary_key[0]
        return self.directory(new_id)

    def rename_directory(self, actor: Actor, directory_id: int, name: str) -> dict[str, Any]:
        found = self.directory(directory_id)
        self._may_edit_directory(actor, found["kind"], found["department_id"], found["department"])
        name = text(name, "a directory's name", 100, missing="a directory needs a name")
        with self.write() as conn:
            conn.execute(update(t.directory).where(t.directory.c.id == directory_id).values(name=name.strip()))
        return self.directory(directory_id)

    def remove_directory(self, actor: Actor, directory_id: int) -> None:
        found = self.directory(directory_id)
        self._may_edit_directory(actor, found["kind"], found["department_id"], found["department"])
        with self.write() as conn:
            if conn.execute(select(t.directory.c.id).where(t.directory.c.parent_id == directory_id)).first():
                raise Conflict("the directory has sub-directories: remove or move them first")
            if conn.execute(select(t.resource.c.id).where(t.resource.c.directory_id == directory_id)).first():
                raise Conflict("resources are filed in the directory: move or deregister them first")
            conn.execute(t.directory.delete().where(t.directory.c.id == directory_id))

    # -- themes ----------------------------------------------------------------------------------

    def themes(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [_dict(r) for r in conn.execute(
                select(t.theme).where(t.theme.c.domain == self.domain).order_by(t.theme.c.code))]

    def theme(self, code: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.theme).where(t.theme.c.domain == self.domain, t.theme.c.code == code)).first()
        if row is None:
            raise NotFound(f"no data theme {code}")
        return _dict(row)

    def add_theme(self, actor: Actor, code: str, name: str, description: str = "") -> dict[str, Any]:
        require_platform_admin(actor, "create a data theme")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", code) or not name.strip():
            raise Invalid("a theme needs a code (letters, digits, _ and -) and a name")
        name, description = text(name, "a theme's name", 100), text(description, "a theme's description")
        with self.write() as conn:
            if conn.execute(select(t.theme.c.id).where(t.theme.c.domain == self.domain, t.theme.c.code == code)).first():
                raise Conflict(f"data theme {code} exists already")
            conn.execute(insert(t.theme).values(domain=self.domain, code=code, name=name.strip(), description=description))
        return self.theme(code)

    def update_theme(self, actor: Actor, code: str, name: str | None = None, description: str | None = None) -> dict[str, Any]:
        require_platform_admin(actor, "modify a data theme")
        values = {k: text(v, f"a theme's {k}", 100 if k == "name" else None, missing=f"a theme needs a {k}" if k == "name" else None)
                  for k, v in (("name", name), ("description", description)) if v is not None}
        with self.write() as conn:
            if not conn.execute(update(t.theme).where(t.theme.c.domain == self.domain, t.theme.c.code == code)
                                .values(**values)).rowcount:
                raise NotFound(f"no data theme {code}")
        return self.theme(code)

    def remove_theme(self, actor: Actor, code: str) -> None:
        require_platform_admin(actor, "delete a data theme")
        with self.write() as conn:
            if not conn.execute(t.theme.delete().where(t.theme.c.domain == self.domain, t.theme.c.code == code)).rowcount:
                raise NotFound(f"no data theme {code}")
