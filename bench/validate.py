"""BENCH validate: our validation of one message, against raw lxml, in the same run.

Ours: the hardened parse (no DTD, no entities, no network, size and depth limits), the cached
validator of the (specification, version) from the registry, and one XSD pass over envelope
and payload, errors mapped to rule, line and column. Raw: `lxml.etree.fromstring` +
`XMLSchema.validate` of the same 2 KB documents with the same compiled schema. Best of several
rounds each. Reported beside it: the whole judgement of the ingress stage (the above, plus
reading the envelope header and checking the sender against the routing table).
"""

from __future__ import annotations

import argparse
import time

from lxml import etree

from bench.common import ROUTES, bench_line, person_messages
from bus.envelope import read_envelope
from routes.table import parse_table
from schemas import SafeParser, SchemaSet


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    bodies = [e.body for e in person_messages(args.n)]
    schemas = SchemaSet()
    safe = SafeParser()
    table = parse_table(ROUTES)
    schema = schemas.validator("person", "1.0")._schema  # the very schema object ours uses

    def ours() -> None:
        parse, validator = safe.parse, schemas.validator
        for body in bodies:
            validator("person", "1.0").check(parse(body, check_depth=False), body, safe)

    def ingress() -> None:
        for body in bodies:
            env, root = read_envelope(body, safe, schemas, check_depth=False)
            resource = table.authorise(env.sender, env.resource)
            schemas.validator(resource.specification, env.version).check(root, body, safe)

    def raw() -> None:
        validate = schema.validate
        fromstring = etree.fromstring
        for body in bodies:
            if not validate(fromstring(body)):
                raise AssertionError("sample message invalid")

    best = {"ours": float("inf"), "raw": float("inf"), "ingress": float("inf")}
    for _ in range(args.rounds):
        for name, run in (("raw", raw), ("ours", ours), ("ingress", ingress)):
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    per = {k: v / args.n * 1e6 for k, v in best.items()}
    return bench_line(
        "validate", per["ours"] / per["raw"], "<=1.15", n=args.n, size="2KB",
        govbus_us=f"{per['ours']:.1f}", raw_lxml_us=f"{per['raw']:.1f}",
        ingress_judgement_us=f"{per['ingress']:.1f}", rounds=args.rounds,
    )


if __name__ == "__main__":
    main()
