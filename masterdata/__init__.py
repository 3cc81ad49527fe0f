"""The natural-person and legal-entity base libraries (人口、法人基础信息库): assertions with
provenance, golden records by versioned survivorship rules, comparison (比对) and conflicts,
identifier checks, initial sharing, queries and statistics. Imports `bus` and `schemas` only."""
