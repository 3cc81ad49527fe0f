"""The routing table and the router.

Until the catalogue lands, the table is compiled from a declarative TOML file
(`FileSource`); the router stage builds each message's recipient list from it.
"""

from routes.table import FileSource, parse_table

__all__ = ["FileSource", "parse_table"]
