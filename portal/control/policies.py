"""Which credentials are sensitive, and what they need: the global default rules, a minimum
for every environment, and the rules an environment adds to them.

A rule matches a credential when each of its fields matches (NULL: anything; resource,
credential and account types compared without regard to case; `username` may hold `*`
wildcards). A credential matched by several rules needs everything they ask for together,
and break-glass is allowed only when every matching rule allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from flask import g, has_app_context
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from .. import audit
from ..alerts import notifications
from ..models import REQUIREMENTS, AccessPolicy, Environment
from ..platform import clock
from ..platform.extensions import db

MAX_RULES = 100
# The most `*` wildcards a username pattern may hold.
MAX_STARS = 8
# Where the gate keeps the rules it read for the request (or job) in progress (flask.g).
CACHE = "control_rules"
Requirement = Literal["approval", "checkout"]


class Rule(BaseModel):
    """One rule: what it matches (null or missing: anything) and what it requires."""

    model_config = ConfigDict(extra="forbid")

    resource_type: str | None = Field(None, max_length=64, examples=["ESXI"])
    credential_type: str | None = Field(None, max_length=64, examples=["SSH"])
    account_type: str | None = Field(None, max_length=64, examples=["USER", "SERVICE"])
    username: str | None = Field(
        None, max_length=512, description="`*` matches any characters", examples=["root"]
    )
    requires: list[Requirement] = Field(
        min_length=1, description="approval (four eyes), checkout (exclusive use), or both"
    )
    break_glass: bool = Field(
        True, description="The requester may open a window alone in an emergency"
    )

    @field_validator("resource_type", "credential_type", "account_type", "username")
    @classmethod
    def _blank_is_any(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if any(ord(c) < 32 for c in value):
            raise ValueError("no control characters")
        return value or None

    @field_validator("username")
    @classmethod
    def _few_stars(cls, value: str | None) -> str | None:
        if value is not None and value.count("*") > MAX_STARS:
            raise ValueError(f"at most {MAX_STARS} `*` wildcards")
        return value

    @field_validator("requires")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        return [r for r in REQUIREMENTS if r in value]


class PolicyIn(BaseModel):
    """The rules of an environment (or the global default), replacing those stored."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(max_length=MAX_RULES)


@dataclass(frozen=True)
class Match:
    """What a credential's rules ask: its requirements and whether break-glass is allowed."""

    requires: tuple[str, ...] = ()
    break_glass: bool = True


NOTHING = Match()


def rule_dict(rule: AccessPolicy) -> dict:
    """The API shape of a stored rule."""
    return {
        "resource_type": rule.resource_type,
        "credential_type": rule.credential_type,
        "account_type": rule.account_type,
        "username": rule.username,
        "requires": [r for r in rule.requires.split(",") if r],
        "break_glass": rule.break_glass,
    }


def stored_rules(environment_id: int | None) -> list[AccessPolicy]:
    """The rules of an environment (None: the global default), in order."""
    query = select(AccessPolicy).order_by(AccessPolicy.position, AccessPolicy.id)
    if environment_id is None:
        query = query.where(AccessPolicy.environment_id.is_(None))
    else:
        query = query.where(AccessPolicy.environment_id == environment_id)
    return list(db.session.scalars(query))


def describe(environment: Environment | None) -> dict:
    """The policy as the API and pages show it: the environment's own rules (for the global
    default: the defaults) and the defaults, which apply to every environment as well."""
    defaults = [rule_dict(r) for r in stored_rules(None)]
    if environment is None:
        return {"environment_id": None, "rules": defaults, "defaults": defaults}
    own = [rule_dict(r) for r in stored_rules(environment.id)]
    return {"environment_id": environment.id, "rules": own, "defaults": defaults}


def _line(rules: list[dict]) -> str:
    parts = []
    for rule in rules:
        fields = [
            f"{name}={rule[name]}"
            for name in ("resource_type", "credential_type", "account_type", "username")
            if rule[name]
        ]
        glass = "" if rule["break_glass"] else " no-break-glass"
        parts.append(f"[{' '.join(fields) or 'any'} -> {'+'.join(rule['requires'])}{glass}]")
    return " ".join(parts) or "(none)"


def set_rules(environment: Environment | None, policy: PolicyIn, actor_name: str) -> dict:
    """Replace the rules of an environment (None: the global default); audited with the
    rules before and after. Answers `describe`."""
    env_id = environment.id if environment else None
    before = [rule_dict(r) for r in stored_rules(env_id)]
    for old in stored_rules(env_id):
        db.session.delete(old)
    db.session.flush()
    now = clock.now()
    for position, rule in enumerate(policy.rules):
        db.session.add(
            AccessPolicy(
                environment_id=env_id,
                position=position,
                resource_type=rule.resource_type,
                credential_type=rule.credential_type,
                account_type=rule.account_type,
                username=rule.username,
                requires=",".join(rule.requires),
                break_glass=rule.break_glass,
                updated_by=actor_name,
                updated_at=now,
            )
        )
    db.session.flush()
    if has_app_context():
        g.pop(CACHE, None)  # the gate reads the new rules from now on
    after = [rule_dict(r) for r in stored_rules(env_id)]
    if before != after:
        where = environment.name if environment else "global default"
        audit.record(
            "policy.change",
            where,
            details={
                "environment_id": env_id or "",
                "scope": "environment" if environment else "global default",
                "before": _line(before),
                "after": _line(after),
            },
        )
        notifications.emit(
            "policy.changed",
            f"{actor_name} changed the rules for sensitive credentials ({where})",
            f"{actor_name} changed the rules for sensitive credentials of {where}.\n"
            f"Before: {_line(before)}\nAfter: {_line(after)}",
            {
                "environment": where,
                "by": actor_name,
                "before": _line(before),
                "after": _line(after),
            },
        )
    return describe(environment)


def glob_match(pattern: str, value: str) -> bool:
    """Whether `value` matches `pattern`, where `*` matches any characters (case ignored).
    Linear: the fixed head and tail, then each segment found in order (leftmost is enough)."""
    pattern, value = pattern.casefold(), value.casefold()
    if "*" not in pattern:
        return pattern == value
    head, *middle, tail = pattern.split("*")
    if len(head) + len(tail) > len(value) or not (value.startswith(head) and value.endswith(tail)):
        return False
    at, end = len(head), len(value) - len(tail)
    for segment in middle:
        found = value.find(segment, at, end)
        if found < 0:
            return False
        at = found + len(segment)
    return True


def _same(wanted: str | None, value: str | None) -> bool:
    return wanted is None or wanted.casefold() == (value or "").casefold()


def matches(rule: AccessPolicy, cred: Any) -> bool:
    """Whether a rule matches a credential."""
    return (
        _same(rule.resource_type, cred.resource_type)
        and _same(rule.credential_type, cred.credential_type)
        and _same(rule.account_type, cred.account_type)
        and (rule.username is None or glob_match(rule.username, cred.username or ""))
    )


def combine(rules: list[AccessPolicy], cred: Any) -> Match:
    """What the rules that match a credential ask together."""
    wanted: set[str] = set()
    glass = True
    for rule in rules:
        if matches(rule, cred):
            wanted.update(r for r in rule.requires.split(",") if r)
            glass = glass and rule.break_glass
    if not wanted:
        return NOTHING
    return Match(tuple(r for r in REQUIREMENTS if r in wanted), glass)


# Distinct fields remembered by a matcher at most: an estate's credentials share a few
# hundred combinations of types and user names; a hostile one cannot grow it without end.
MATCHER_MEMORY = 20_000


def matcher(rules: list[AccessPolicy]) -> Callable[[Any], Match]:
    """`combine(rules, ·)`, remembered per distinct resource type, credential type, account
    type and user name: an export or a page of 100,000 credentials matches each combination
    once."""
    seen: dict[tuple, Match] = {}

    def match(cred: Any) -> Match:
        key = (cred.resource_type, cred.credential_type, cred.account_type, cred.username)
        found = seen.get(key)
        if found is None:
            found = combine(rules, cred)
            if len(seen) < MATCHER_MEMORY:
                seen[key] = found
        return found

    return match


def rules_by_environment(environment_ids: set[int]) -> dict[int, list[AccessPolicy]]:
    """The rules that apply in each environment: the global defaults (a minimum, whatever
    the environment's managers set), then its own."""
    if not environment_ids:
        return {}
    rows = db.session.scalars(
        select(AccessPolicy)
        .where(
            (AccessPolicy.environment_id.in_(sorted(environment_ids)))
            | AccessPolicy.environment_id.is_(None)
        )
        .order_by(AccessPolicy.position, AccessPolicy.id)
    ).all()
    own: dict[int | None, list[AccessPolicy]] = {}
    for row in rows:
        own.setdefault(row.environment_id, []).append(row)
    defaults = own.get(None, [])
    return {env_id: defaults + own.get(env_id, []) for env_id in environment_ids}
