"""Compatibility between versions of a data specification.

The question is always: will a reader following one version accept every message written to
another? BACKWARD (the default): readers of the new version accept messages of the old one,
so providers may upgrade after their subscribers. FORWARD: readers of the old version accept
messages of the new one. FULL: both. The _TRANSITIVE modes ask it of every earlier version,
not only the latest; NONE asks nothing.

Each finding names the rule broken and the path of the data item:

| rule | the reader refuses messages of the writer because |
|---|---|
| namespace-changed | the target namespace differs |
| element-removed, attribute-removed | the writer's item is unknown to the reader |
| type-removed | a named type of the writer is gone |
| element-required-added, attribute-required-added | the reader requires an item the writer may leave out |
| min-occurs-raised, max-occurs-lowered | the reader wants more, or allows fewer, occurrences |
| enumeration-value-removed, enumeration-added | a code the writer may use is not in the reader's list |
| length-narrowed, pattern-changed, range-narrowed, digits-narrowed | a facet admits fewer values |
| type-changed | the value's base type, or simple against complex content, differs |
| order-changed | the reader's sequence puts the writer's elements in another (or any, xs:all) order |
| wildcard-removed | the writer's open content (xs:any) is closed |
| fixed-value-changed | the reader fixes a value the writer does not fix to the same |
| nillable-removed | the writer may send xsi:nil, the reader refuses it |
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from schemas.model import Item, Model, decimal_or_none

MODES = (
    "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE",
)
DEFAULT_MODE = "BACKWARD"


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    path: str
    message: str
    direction: str = ""  # "backward" (new reads old) or "forward" (old reads new)
    against: str = ""  # the version compared with

    def __str__(self) -> str:
        against = f" (against {self.against}, {self.direction})" if self.against else ""
        return f"{self.rule} at {self.path}: {self.message}{against}"


def check(new: Model, earlier: list[tuple[str, Model]], mode: str = DEFAULT_MODE) -> list[Finding]:
    """Findings that make `new` incompatible under `mode` with `earlier` (version, model)
    pairs, oldest first. Empty when compatible.

    Raises:
        ValueError: an unknown mode.
    """
    mode = mode.upper()
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}; one of {', '.join(MODES)}")
    if mode == "NONE" or not earlier:
        return []
    compared = earlier if mode.endswith("_TRANSITIVE") else earlier[-1:]
    base = mode.removesuffix("_TRANSITIVE")
    findings: list[Finding] = []
    for version, old in compared:
        if base in ("BACKWARD", "FULL"):
            findings += [_tag(f, "backward", version) for f in incompatibilities(writer=old, reader=new)]
        if base in ("FORWARD", "FULL"):
            findings += [_tag(f, "forward", version) for f in incompatibilities(writer=new, reader=old)]
    return findings


def _tag(finding: Finding, direction: str, version: str) -> Finding:
    return Finding(finding.rule, finding.path, finding.message, direction, version)


def incompatibilities(writer: Model, reader: Model) -> list[Finding]:
    """Why some message valid under `writer` would be refused by `reader`."""
    if writer.namespace != reader.namespace:
        return [Finding("namespace-changed", "/", f"target namespace '{writer.namespace}' became '{reader.namespace}'")]
    findings: list[Finding] = []
    for name in sorted(writer.types - reader.types):
        findings.append(Finding("type-removed", name, f"named type {name} no longer exists"))
    # below an item whose content changed kind, its type-changed finding says it all
    changed = [p for p, i in writer.items.items() if p in reader.items and reader.items[p].complex != i.complex]

    def below_changed(path: str) -> bool:
        return any(path.startswith(p + "/") for p in changed)

    for path, item in writer.items.items():
        if below_changed(path):
            continue
        other = reader.items.get(path)
        if other is None:
            parent = path.rsplit("/", 1)[0]
            if parent and parent not in reader.items and parent in writer.items:
                continue  # reported at the parent already
            findings.append(Finding(f"{item.kind}-removed", path, f"{item.kind} {item.name} no longer exists"))
        else:
            findings += _compare(item, other)
    for path, item in reader.items.items():
        parent = path.rsplit("/", 1)[0]
        if path not in writer.items and item.required and parent in writer.items and not below_changed(path):
            findings.append(
                Finding(f"{item.kind}-required-added", path, f"new {item.kind} {item.name} is required")
            )
    return findings


def _compare(w: Item, r: Item) -> list[Finding]:
    out: list[Finding] = []

    def add(rule: str, message: str) -> None:
        out.append(Finding(rule, w.path, message))

    if w.complex != r.complex:
        kinds = ("simple", "complex")
        add("type-changed", f"{kinds[w.complex]} content became {kinds[r.complex]} content")
        return out
    if r.min_occurs > w.min_occurs:
        add("min-occurs-raised", f"minOccurs {w.min_occurs} became {r.min_occurs}")
    if _bound(r.max_occurs) < _bound(w.max_occurs):
        add("max-occurs-lowered", f"maxOccurs {_occurs(w.max_occurs)} became {_occurs(r.max_occurs)}")
    if w.nillable and not r.nillable:
        add("nillable-removed", "xsi:nil is no longer allowed")
    if r.fixed is not None and r.fixed != w.fixed:
        add("fixed-value-changed", f"the value must now be {r.fixed!r}" + (f" (was fixed to {w.fixed!r})" if w.fixed is not None else ""))
    if w.complex:
        if w.open and not r.open:
            add("wildcard-removed", "open content (xs:any) is no longer allowed")
        common = [c for c in w.children if c in r.children]
        if r.ordered and common != [c for c in r.children if c in w.children]:
            add("order-changed", f"children {', '.join(common)} must now come as {', '.join(c for c in r.children if c in common)}")
        elif r.ordered and not w.ordered and len(common) > 1:
            add("order-changed", f"children {', '.join(common)}, in any order before (xs:all), must now come in sequence")
        return out
    if w.base != r.base:
        add("type-changed", f"values of type {w.base} became {r.base}")
        return out
    if r.enumeration is not None:
        if w.enumeration is None:
            add("enumeration-added", f"values are now limited to the codes {', '.join(r.enumeration)}")
        else:
            allowed = {_value(v, r.base) for v in r.enumeration}
            removed = [v for v in w.enumeration if _value(v, w.base) not in allowed]
            if removed:
                add("enumeration-value-removed", f"codes {', '.join(removed)} are no longer allowed")
    narrowed = _length_narrowed(w, r)
    if narrowed:
        add("length-narrowed", narrowed)
    new_patterns = [p for p in r.patterns if p not in w.patterns]
    if new_patterns:
        add("pattern-changed", f"values must now match {' and '.join(new_patterns)}"
            + (f" (were: {' and '.join(w.patterns)})" if w.patterns else ""))
    narrowed = _range_narrowed(w, r)
    if narrowed:
        add("range-narrowed", narrowed)
    for facet, label in (("total_digits", "totalDigits"), ("fraction_digits", "fractionDigits")):
        before, after = getattr(w, facet), getattr(r, facet)
        if after is not None and (before is None or after < before):
            add("digits-narrowed", f"{label} {before if before is not None else 'unlimited'} became {after}")
    return out


def _value(code: str, base: str | None) -> Any:
    """A code as its value: 1.0 and 1.00 are the same decimal."""
    if base in ("decimal", "float", "double"):
        number = decimal_or_none(code)
        if number is not None:
            return number.normalize()
    return code


def _bound(occurs: int | None) -> float:
    return float("inf") if occurs is None else occurs


def _occurs(occurs: int | None) -> str:
    return "unbounded" if occurs is None else str(occurs)


def _length_narrowed(w: Item, r: Item) -> str | None:
    w_min = w.length if w.length is not None else (w.min_length or 0)
    w_max = w.length if w.length is not None else w.max_length
    r_min = r.length if r.length is not None else (r.min_length or 0)
    r_max = r.length if r.length is not None else r.max_length
    if r_min > w_min:
        return f"minimum length {w_min} became {r_min}"
    if r_max is not None and (w_max is None or r_max < w_max):
        return f"maximum length {w_max if w_max is not None else 'unlimited'} became {r_max}"
    if r.length is not None and w.length is None and w_max is not None and w_min != w_max:
        return f"length became exactly {r.length}"
    return None


def _lower(item: Item) -> tuple[Decimal, bool] | None:
    """Lower bound and whether it is inclusive."""
    inclusive, exclusive = decimal_or_none(item.min_inclusive), decimal_or_none(item.min_exclusive)
    if inclusive is None and exclusive is None:
        return None
    if exclusive is None or (inclusive is not None and inclusive > exclusive):
        return inclusive, True  # type: ignore[return-value]
    return exclusive, False


def _upper(item: Item) -> tuple[Decimal, bool] | None:
    inclusive, exclusive = decimal_or_none(item.max_inclusive), decimal_or_none(item.max_exclusive)
    if inclusive is None and exclusive is None:
        return None
    if exclusive is None or (inclusive is not None and inclusive < exclusive):
        return inclusive, True  # type: ignore[return-value]
    return exclusive, False


def _range_narrowed(w: Item, r: Item) -> str | None:
    wl, rl = _lower(w), _lower(r)
    if rl is not None and (wl is None or rl[0] > wl[0] or (rl[0] == wl[0] and wl[1] and not rl[1])):
        return f"lowest value {_show(wl)} became {_show(rl)}"
    wu, ru = _upper(w), _upper(r)
    if ru is not None and (wu is None or ru[0] < wu[0] or (ru[0] == wu[0] and wu[1] and not ru[1])):
        return f"highest value {_show(wu)} became {_show(ru)}"
    return None


def _show(bound: Any) -> str:
    if bound is None:
        return "unlimited"
    value, inclusive = bound
    return f"{value}{'' if inclusive else ' (exclusive)'}"
