"""BENCH schema-check: checking a 200-element specification's new version, and the validator cache.

Compatibility: the time `govbus schemas check` spends on two versions of a specification of
200 data items (inspection of the file, both component models, the comparison), median of
several runs. Cache: the cost of validating the first message of a version (the validator is
compiled then) against the 50th (it is cached), in the same run; the ratio is the second over
the first.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine

from bench.common import bench_line
from bus.envelope import build_envelope
from schemas import Registry, SafeParser, SchemaSet, model
from schemas.registry import XSD_ROOT, metadata

NS = "urn:zhuhai:govbus:bench-wide"


def specification(items: int, extra: bool = False) -> str:
    """A flat record of `items` data items of varied types, as wide department tables are."""
    kinds = ['type="w:Code"', 'type="w:Text"', 'type="xs:date"', 'type="w:Amount"']
    elements = "".join(
        f'<xs:element name="F{i:03d}" {kinds[i % 4]} minOccurs="{1 if i < 20 else 0}">'
        f'<xs:annotation><xs:documentation xml:lang="zh">字段{i}</xs:documentation></xs:annotation></xs:element>'
        for i in range(items)
    )
    if extra:
        elements += '<xs:element name="Remark" type="w:Text" minOccurs="0"/>'
    codes = "".join(f'<xs:enumeration value="{c:02d}"/>' for c in range(1, 40))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:w="{NS}" targetNamespace="{NS}" elementFormDefault="qualified">
  <xs:element name="Record"><xs:complexType><xs:sequence>{elements}</xs:sequence></xs:complexType></xs:element>
  <xs:simpleType name="Code"><xs:restriction base="xs:string">{codes}</xs:restriction></xs:simpleType>
  <xs:simpleType name="Text"><xs:restriction base="xs:string"><xs:maxLength value="200"/></xs:restriction></xs:simpleType>
  <xs:simpleType name="Amount"><xs:restriction base="xs:decimal"><xs:totalDigits value="18"/><xs:fractionDigits value="2"/></xs:restriction></xs:simpleType>
</xs:schema>
"""


def payload(items: int) -> bytes:
    values = ["01", "文本", "2026-01-01", "12.50"]
    inner = "".join(f"<w:F{i:03d}>{values[i % 4]}</w:F{i:03d}>" for i in range(items))
    return f'<w:Record xmlns:w="{NS}">{inner}</w:Record>'.encode()


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="govbus-bench-schema-"))
    try:
        for version, extra in (("1.0", False), ("1.1", True)):
            (work / "src" / version).mkdir(parents=True)
            (work / "src" / version / "wide.xsd").write_text(specification(args.items, extra), encoding="utf-8")
        engine = create_engine(f"sqlite:///{work / 'registry.db'}")
        metadata.create_all(engine)
        registry = Registry(engine, work / "cache", builtin=work / "none")
        registry.publish(work / "src" / "1.0" / "wide.xsd", "wide", "1.0")
        check_times = []
        for _ in range(args.runs):
            registry._models.clear()  # as a fresh `govbus schemas check` process would
            model._MODELS.clear()
            start = time.perf_counter()
            mode, findings = registry.check(work / "src" / "1.1" / "wide.xsd", "wide", "1.1")
            check_times.append(time.perf_counter() - start)
            assert mode == "BACKWARD" and not findings, findings

        # the validator cache: a SchemaSet over a folder holding the envelope and the spec
        root = work / "xsd"
        shutil.copytree(XSD_ROOT / "envelope", root / "envelope")
        (root / "wide" / "1.0").mkdir(parents=True)
        shutil.copy(work / "src" / "1.0" / "wide.xsd", root / "wide" / "1.0" / "wide.xsd")
        schemas, safe = SchemaSet(root), SafeParser()
        bodies = [build_envelope("GA", "GA-001", "1.0", payload(args.items)).body for _ in range(50)]
        costs = []
        for body in bodies:
            start = time.perf_counter()
            schemas.validator("wide", "1.0").check(safe.parse(body, check_depth=False), body, safe)
            costs.append(time.perf_counter() - start)
        first, fiftieth = costs[0], costs[49]
        return bench_line(
            "schema-check", fiftieth / first, "<=0.05", items=args.items,
            check_ms=f"{statistics.median(check_times) * 1000:.0f}",
            first_message_ms=f"{first * 1000:.1f}", fiftieth_message_us=f"{fiftieth * 1e6:.0f}",
            message_bytes=len(bodies[0]),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
