"""Who is acting, and what their role lets them do.

Three roles, as the specification sets them out: the platform admin (平台管理员) manages the
shared catalogue and reviews what departments register on it; a department admin (部门管理员)
manages the department's own catalogue and acts for the department; department staff
(部门工作人员) propose, and their admin submits.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from catalog_registry.errors import Forbidden, Invalid

PLATFORM_ADMIN = "platform_admin"
DEPARTMENT_ADMIN = "department_admin"
DEPARTMENT_STAFF = "department_staff"
ROLES = (PLATFORM_ADMIN, DEPARTMENT_ADMIN, DEPARTMENT_STAFF)
_ITERATIONS = 200_000


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller: a catalogue user."""

    username: str
    role: str
    department_id: int | None
    department_code: str | None

    @property
    def platform_admin(self) -> bool:
        return self.role == PLATFORM_ADMIN

    def admin_of(self, department_id: int) -> bool:
        return self.role == DEPARTMENT_ADMIN and self.department_id == department_id

    def member_of(self, department_id: int) -> bool:
        return self.role in (DEPARTMENT_ADMIN, DEPARTMENT_STAFF) and self.department_id == department_id


def require_platform_admin(actor: Actor, what: str) -> None:
    if not actor.platform_admin:
        raise Forbidden(f"only a platform admin may {what}; {actor.username} is {actor.role}")


def require_admin_of(actor: Actor, department_id: int, code: str, what: str) -> None:
    if not actor.admin_of(department_id):
        raise Forbidden(f"only an admin of department {code} may {what}; {actor.username} is {_who(actor)}")


def require_member_of(actor: Actor, department_id: int, code: str, what: str) -> None:
    if not actor.member_of(department_id):
        raise Forbidden(f"only a member of department {code} may {what}; {actor.username} is {_who(actor)}")


def sees(actor: Actor, *departments: str) -> bool:
    """Whether `actor` may read what concerns only `departments` (drafts, reviews,
    applications): a platform admin, or a member of one of them. Published metadata is for all."""
    return actor.platform_admin or actor.department_code in departments


def _who(actor: Actor) -> str:
    return actor.role if actor.department_code is None else f"{actor.role} of {actor.department_code}"


def hash_password(password: str) -> str:
    """PBKDF2-SHA256 with a random salt, as `pbkdf2_sha256$iterations$salt$hash`."""
    if len(password) < 8:
        raise Invalid("a password needs at least 8 characters")
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _ITERATIONS)
    return f"pbkdf2_sha256${_ITERATIONS}${salt.hex()}${digest.hex()}"


# Passwords verified in this process, as keyed digests of (stored hash, password): the REST API
# authenticates every request, and 200,000 PBKDF2 rounds (~0.1 s of CPU) each time would make
# the console crawl. Keyed by the stored hash, a changed password misses the cache; failures
# are never cached, so guessing stays slow.
_CACHE_KEY = os.urandom(32)
_verified: set[str] = set()
_VERIFIED_MAX = 4096


def check_password(password: str, stored: str) -> bool:
    token = hmac.new(_CACHE_KEY, stored.encode() + b"\0" + password.encode(), hashlib.sha256).hexdigest()
    if token in _verified:
        return True
    if _slow_check(password, stored):
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified.add(token)
        return True
    return False


def _slow_check(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(candidate.hex(), digest)
