"""The merge state's SQLite file: tables read and written one key at a time.

A build that folds in a thousand new events touches a few thousand keys of
tables that hold a few hundred thousand. Loading and saving all of them (as
one marshalled blob) cost ten times the rest of the build, so each table is
a `Table`: a mapping that reads a key from the database on first use, keeps
what it read and what was changed in memory, and writes back only the
changes (`flush`). Code that needs every key (a full resolve, reconcile)
iterates, which reads the table whole once.

The database is a cache of what the journals say, never the truth: a
damaged file is thrown away and rebuilt from the journals; a full disk or an
I/O error leaves it for the next build (`damaged`, and see `mergestate`).
SQLite finds damage when it reads a page, so a build can meet it midway.
WAL mode lets readers (reconcile, record) see the last
committed build while the next one writes; synchronous=NORMAL keeps it
consistent (not necessarily current) across a power cut, which is all a
cache needs.
"""

from __future__ import annotations

import bisect
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

DB_FILE = "merge-state.sqlite"
ABSENT: Any = object()


def text_in(s: str) -> str | bytes:
    """A str as SQLite can take it: client names may hold lone surrogates
    (undecodable bytes kept by surrogateescape), which only a BLOB can carry."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape")
    return s


def text_out(v: str | bytes) -> str:
    """Inverse of `text_in`."""
    return v if type(v) is str else bytes(v).decode("utf-8", "surrogateescape")  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Spec(Generic[K, V]):
    """How one mapping is laid out as a table."""

    name: str
    keys: tuple[str, ...]  # key columns (the primary key)
    values: tuple[str, ...]  # value columns
    key_params: Callable[[K], tuple[Any, ...]]
    row_of: Callable[[K, V], tuple[Any, ...]]  # key columns then value columns
    decode: Callable[[K, tuple[Any, ...]], V]  # from the key and the value columns
    key_of: Callable[[tuple[Any, ...]], K]  # from the key columns
    index: str = ""  # a value column to index, if any

    def ddl(self) -> list[str]:
        cols = ", ".join(self.keys + self.values)
        out = [
            f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}, "
            f"PRIMARY KEY ({', '.join(self.keys)})) WITHOUT ROWID"
        ]
        if self.index:
            out.append(
                f"CREATE INDEX IF NOT EXISTS {self.name}_{self.index} ON {self.name} ({self.index})"
            )
        return out


class Table(MutableMapping[K, V]):
    """A mapping over one table of an open transaction; changes stay in memory until `flush`."""

    def __init__(self, db: sqlite3.Connection, spec: Spec[K, V]) -> None:
        self.db, self.spec = db, spec
        self._cache: dict[K, V] = {}  # read or changed; ABSENT for "not there"
        self._was: dict[K, bool] = {}  # changed keys: were they in the database?
        where = " AND ".join(f"{k} = ?" for k in spec.keys)
        self._select = f"SELECT {', '.join(spec.values)} FROM {spec.name} WHERE {where}"
        self._delete = f"DELETE FROM {spec.name} WHERE {where}"
        cols = spec.keys + spec.values
        self._upsert = (
            f"INSERT OR REPLACE INTO {spec.name} ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})"
        )
        self._whole: dict[K, V] | None = None

    def _get(self, k: K) -> Any:
        if self._whole is not None:
            return self._whole.get(k, ABSENT)
        v = self._cache.get(k, ABSENT)
        if v is ABSENT and k not in self._cache:
            row = self.db.execute(self._select, self.spec.key_params(k)).fetchone()
            v = ABSENT if row is None else self.spec.decode(k, row)
            self._cache[k] = v
        return v

    def get(self, k: K, default: Any = None) -> Any:
        v = self._get(k)
        return default if v is ABSENT else v

    def __getitem__(self, k: K) -> V:
        v: V = self._get(k)
        if v is ABSENT:
            raise KeyError(k)
        return v

    def __contains__(self, k: object) -> bool:
        return self._get(k) is not ABSENT  # type: ignore[arg-type]

    def __setitem__(self, k: K, v: V) -> None:
        if k not in self._was:
            self._was[k] = self._get(k) is not ABSENT
        self._cache[k] = v
        if self._whole is not None:
            self._whole[k] = v

    def __delitem__(self, k: K) -> None:
        if self._get(k) is ABSENT:
            raise KeyError(k)
        if k not in self._was:
            self._was[k] = True
        self._cache[k] = ABSENT
        if self._whole is not None:
            del self._whole[k]

    def __len__(self) -> int:
        if self._whole is not None:
            return len(self._whole)
        (n,) = self.db.execute(f"SELECT count(*) FROM {self.spec.name}").fetchone()
        for k, was in self._was.items():
            now = self._cache[k] is not ABSENT
            n += now - was
        return int(n)

    def whole(self) -> dict[K, V]:
        """Every key and value (read once, then kept up to date by changes)."""
        if self._whole is None:
            spec = self.spec
            nk = len(spec.keys)
            cols = ", ".join(spec.keys + spec.values)
            out = {
                (k := spec.key_of(row[:nk])): spec.decode(k, row[nk:])
                for row in self.db.execute(f"SELECT {cols} FROM {spec.name}")
            }
            for k in self._was:
                v = self._cache[k]
                if v is ABSENT:
                    out.pop(k, None)
                else:
                    out[k] = v
            self._whole = out
        return self._whole

    def __iter__(self) -> Iterator[K]:
        return iter(list(self.whole()))

    def items(self) -> Any:
        return self.whole().items()

    def values(self) -> Any:
        return self.whole().values()

    def changes(self) -> dict[K, V]:
        """Changed keys and their values (ABSENT: deleted)."""
        return {k: self._cache[k] for k in self._was}

    def ordered_values(self) -> list[V]:
        """Every value in key order (as Python sorts the keys)."""
        spec = self.spec
        nk = len(spec.keys)
        rows = self.db.execute(
            f"SELECT {', '.join(spec.keys + spec.values)} FROM {spec.name} "
            f"ORDER BY {', '.join(spec.keys)}"
        ).fetchall()
        keys: list[Any] = [spec.key_of(r[:nk]) for r in rows]
        values = [spec.decode(k, r[nk:]) for k, r in zip(keys, rows, strict=True)]
        if keys != sorted(keys):  # SQLite puts BLOBs (odd text, see text_in) after all TEXT
            order = sorted(range(len(keys)), key=keys.__getitem__)
            keys, values = [keys[i] for i in order], [values[i] for i in order]
        changed: list[Any] = sorted(self._was)  # type: ignore[type-var,unused-ignore]
        for k in changed:
            i = bisect.bisect_left(keys, k)
            there = i < len(keys) and keys[i] == k
            v = self._cache[k]
            if v is ABSENT:
                if there:
                    del keys[i], values[i]
            elif there:
                values[i] = v
            else:
                keys.insert(i, k)
                values.insert(i, v)
        return values

    def columns(self, cols: tuple[str, ...]) -> dict[K, tuple[Any, ...]]:
        """See the module-level `columns`."""
        spec = self.spec
        nk = len(spec.keys)
        pick = [nk + spec.values.index(c) for c in cols]
        if self._whole is not None:
            changed: Iterable[tuple[K, Any]] = self._whole.items()
            out: dict[K, tuple[Any, ...]] = {}
        else:
            rows = self.db.execute(f"SELECT {', '.join(spec.keys + cols)} FROM {spec.name}")
            out = {spec.key_of(r[:nk]): r[nk:] for r in rows}
            changed = self.changes().items()
        for k, v in changed:
            if v is ABSENT:
                out.pop(k, None)
            else:
                row = spec.row_of(k, v)
                out[k] = tuple(row[i] for i in pick)
        return out

    def expiring(self, column: str, limit: int) -> list[K]:
        """Keys whose (indexed) `column` is <= limit, as changed in memory."""
        spec = self.spec
        nk = len(spec.keys)
        rows = self.db.execute(
            f"SELECT {', '.join(spec.keys)} FROM {spec.name} "
            f"WHERE {column} IS NOT NULL AND {column} <= ?",
            (limit,),
        ).fetchall()
        out = {spec.key_of(r[:nk]) for r in rows} - set(self._was)
        i = spec.values.index(column)
        for k in self._was:
            v = self._cache[k]
            if v is not ABSENT:
                x = spec.row_of(k, v)[nk + i]
                if x is not None and x <= limit:
                    out.add(k)
        return list(out)

    def forget(self) -> None:
        """Drop what was read (the database changed under it); unflushed changes must not exist."""
        assert not self._was
        self._cache.clear()
        self._whole = None

    def flush(self) -> None:
        """Write the changes into the (open) transaction."""
        gone = [self.spec.key_params(k) for k in self._was if self._cache[k] is ABSENT]
        put = [self.spec.row_of(k, v) for k in self._was if (v := self._cache[k]) is not ABSENT]
        if gone:
            self.db.executemany(self._delete, gone)
        if put:
            self.db.executemany(self._upsert, put)
        self._was.clear()

    def replace(self, everything: dict[K, V]) -> None:
        """Make the table hold exactly `everything` (a cold build's result)."""
        self.db.execute(f"DELETE FROM {self.spec.name}")
        row_of = self.spec.row_of
        # in key order: appending to a B-tree is twice as fast as inserting all over it
        keys: list[Any] = sorted(everything)  # type: ignore[type-var,unused-ignore]
        self.db.executemany(self._upsert, [row_of(k, everything[k]) for k in keys])
        self._cache.clear()
        self._was.clear()
        self._whole = None


def columns(m: Mapping[K, V], spec: Spec[K, V], cols: tuple[str, ...]) -> dict[K, tuple[Any, ...]]:
    """Per key, some value columns as stored (text as `text_in` makes it), from a Table
    (one query, without decoding every row) or a plain dict alike."""
    if isinstance(m, Table) and m.spec is spec:
        return m.columns(cols)
    pick = [len(spec.keys) + spec.values.index(c) for c in cols]
    return {k: tuple(row[i] for i in pick) for k, v in m.items() for row in [spec.row_of(k, v)]}


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open (or create) the database; its transactions are begun and ended explicitly."""
    if not create and not path.exists():
        raise FileNotFoundError(path)
    if create and not path.exists():
        # created group-readable only, like the rest of the state (the umask may be laxer)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o640))
    db = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def damaged(e: sqlite3.Error) -> bool:
    """The file is damaged (throw it away), rather than unreachable for now (disk full, I/O)."""
    return isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError)


def discard(path: Path) -> None:
    """Remove a database and its WAL files (damaged or from another version)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
