"""Run the benchmarks: `python bench/run.py [validate|pipeline|latency|schema-check ...]` (all by default).

Each prints one line `BENCH <name> ratio=<r> target=<t> <details>`, its baseline measured in
the same run. They need RabbitMQ with its management API and PostgreSQL (`make bench` checks),
and a quiet machine: their figures are ratios, but two cores shared with anything else still
move them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bulk_load, catalog, latency, pipeline, schema_check, soap_submit, validate  # noqa: E402

BENCHMARKS = {
    "validate": validate.main,
    "pipeline": pipeline.main,
    "latency": latency.main,
    "schema-check": schema_check.main,
    "catalog": catalog.main,
    "soap-submit": soap_submit.main,
    "bulk-load": bulk_load.main,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"bench: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        BENCHMARKS[name]([])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
