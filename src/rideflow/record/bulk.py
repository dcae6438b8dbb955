"""PostgreSQL bulk statements: a batch's rows as one array per column, spread back into rows by
`UNNEST`, so that a thousand rows are one statement with one parameter per column.

An executemany (or a multi-row VALUES) of the same rows costs a bind per value in the driver
and an execution per row in the server: for the recorder's batches that was most of its time.
SQLite keeps the plain statements (it runs in the process; a bind there costs nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, Table, TextClause, bindparam, text
from sqlalchemy.dialects import postgresql

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


class Rows:
    """Rows of `table` with the columns `names`, as `UNNEST(...) AS v(names)`."""

    def __init__(self, table: Table, names: Sequence[str]) -> None:
        self.table, self.names = table, list(names)
        columns = [table.c[n] for n in self.names]
        arrays = ", ".join(
            f"CAST(:a_{c.name} AS {ARRAY(c.type).compile(dialect=_DIALECT)})" for c in columns
        )
        self.source = f"UNNEST({arrays}) AS v({', '.join(self.names)})"
        self.binds = [bindparam(f"a_{c.name}", type_=ARRAY(c.type)) for c in columns]

    def params(self, rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
        return {f"a_{n}": [r[n] for r in rows] for n in self.names}

    def insert(self, tail: str = "") -> TextClause:
        """`INSERT INTO table (names) SELECT ... FROM UNNEST(...)`, then `tail` (`ON CONFLICT
        ...`, `RETURNING ...`)."""
        names = ", ".join(self.names)
        sql = f"INSERT INTO {self.table.name} ({names}) SELECT {names} FROM {self.source}"
        return text(f"{sql} {tail}".strip()).bindparams(*self.binds)

    def update(self, key: str = "id") -> TextClause:
        """`UPDATE table SET every other column FROM UNNEST(...) WHERE key matches`."""
        sets = ", ".join(f"{n} = v.{n}" for n in self.names if n != key)
        sql = f"UPDATE {self.table.name} AS t SET {sets} FROM {self.source} WHERE t.{key} = v.{key}"
        return text(sql).bindparams(*self.binds)
