"""The merge state's SQLite file: tables read and written one key at a time.

A build that folds in a thousand new events touches a few thousand keys of
tables that hold a few hundred thousand. Loading and saving all of them (as
one marshalled blob) cost ten times the rest of the build, so each table is
a `Table`: a mapping that reads a key from the database on first use, keeps
what it read and what was changed in memory, and writes back only the
changes (`flush`). Code that needs every key (a full resolve, reconcile)
iterates, which reads the table whole once.

The database is a cache of what the journals say, never the truth, and
nothing read from it is trusted blindly. Every row carries a check value
(CRC-32 over the table's name and the row as stored) and the key of the row
after it, so that

- a row found is the row written (a flipped bit, a row of another table, a
  type changed: `Damaged`);
- a key not found is proven absent by the row before it, whose "next" lies
  beyond it (a page lost, swapped or pointing elsewhere cannot hide a row);
- a whole read sees every row: the chain from the table's first row (a
  sentinel holding the row count) through every "next" to the last.

A damaged file is thrown away and rebuilt from the journals; a full disk or
an I/O error leaves it for the next build (`damaged`, and see `mergestate`).
Damage can be met midway through a build, when a page is first read.
WAL mode lets readers (reconcile, record) see the last
committed build while the next one writes; synchronous=NORMAL keeps it
consistent (not necessarily current) across a power cut, which is all a
cache needs.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import zlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import suppress
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

DB_FILE = "merge-state.sqlite"
ABSENT: Any = object()
# SQLite's primary result codes that say "not now" rather than "not this file": permission,
# busy, locked, out of memory, read-only, interrupted, I/O error, disk full, cannot open,
# locking protocol.
TEMPORARY = frozenset({3, 5, 6, 7, 8, 9, 10, 13, 14, 15})


class Damaged(sqlite3.DatabaseError):
    """What a table gave back is not what was written: the file is damaged (thrown away and
    rebuilt from the journals, like a file SQLite itself finds malformed)."""


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


def seed_of(table: str) -> int:
    return zlib.crc32(table.encode())


def check(seed: int, stored: tuple[Any, ...]) -> int:
    """The check value of a row as stored (repr tells every SQLite type apart)."""
    return zlib.crc32(repr(stored).encode(), seed)


def _rank(v: Any) -> tuple[int, Any]:
    t = type(v)
    if t is str:
        return (2, v)
    if t is int or t is float:
        return (1, v)
    if v is None:
        return (0, 0)
    return (3, bytes(v))


def order(params: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """A key as stored, comparable in SQLite's order: NULL, numbers, TEXT (by UTF-8 bytes,
    which is code point order), BLOBs."""
    return tuple(map(_rank, params))


def _lt(x: tuple[Any, ...], y: tuple[Any, ...]) -> bool:
    """order(x) < order(y), quicker for one text column (code point order is SQLite's)."""
    if len(x) == 1 and type(x[0]) is str and type(y[0]) is str:
        return bool(x[0] < y[0])
    return order(x) < order(y)


def _same(k: Any) -> Any:
    return k


def _pair(k: Any, _v: Any) -> Any:
    return k


def _true(_k: Any, _r: Any) -> bool:
    return True


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
    index: str = ""  # a value column to find keys by (`Table.expiring`), if any

    @property
    def nexts(self) -> tuple[str, ...]:
        """Columns holding the key of the next row (NULL in the last)."""
        return tuple(f"next_{k}" for k in self.keys)

    def by_index(self) -> Spec[tuple[Any, ...], bool]:
        """The companion table that orders the keys by the `index` column."""
        return Spec(
            f"{self.name}_by_{self.index}",
            (self.index, *self.keys),
            (),
            _same,
            _pair,
            _true,
            tuple,
        )

    def ddl(self) -> list[str]:
        cols = ", ".join(self.keys + self.values + self.nexts + ("n", "chk"))
        out = [
            f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}, "
            f"PRIMARY KEY ({', '.join(self.keys)})) WITHOUT ROWID"
        ]
        if self.index:
            out.extend(self.by_index().ddl())
        return out


class Table(MutableMapping[K, V]):
    """A mapping over one table of an open transaction; changes stay in memory until `flush`.

    Rows as stored are (keys, values, next key, n): n is NULL but in the
    sentinel, the first row (its key all zeros: numbers sort before text),
    where it counts the other rows.
    """

    def __init__(self, db: sqlite3.Connection, spec: Spec[K, V]) -> None:
        self.db, self.spec = db, spec
        nk, nv = len(spec.keys), len(spec.values)
        self._a, self._b = nk + nv, nk + nv + nk  # where the next key starts, where n is
        self._seed = seed_of(spec.name)
        self._sentinel: tuple[Any, ...] = (0,) * nk
        self._end: tuple[Any, ...] = (None,) * nk
        self._cache: dict[K, V] = {}  # read or changed; ABSENT for "not there"
        self._was: dict[K, bool] = {}  # changed keys: were they in the database?
        self._raw: dict[K, tuple[Any, ...] | None] = {}  # rows as read (checked) since a flush
        keys = ", ".join(spec.keys)
        cols = ", ".join(spec.keys + spec.values + spec.nexts + ("n", "chk"))
        where = " AND ".join(f"{k} = ?" for k in spec.keys)
        qs = ", ".join("?" * nk)
        self._at_or_before = (
            f"SELECT {cols} FROM {spec.name} WHERE ({keys}) <= ({qs}) "
            f"ORDER BY {', '.join(k + ' DESC' for k in spec.keys)} LIMIT 1"
        )
        self._before = (
            f"SELECT {cols} FROM {spec.name} WHERE ({keys}) < ({qs}) "
            f"ORDER BY {', '.join(k + ' DESC' for k in spec.keys)} LIMIT 1"
        )
        self._all = f"SELECT {cols} FROM {spec.name} ORDER BY {keys}"
        self._delete = f"DELETE FROM {spec.name} WHERE {where}"
        self._upsert = (
            f"INSERT OR REPLACE INTO {spec.name} ({cols}) VALUES ({', '.join('?' * (self._b + 2))})"
        )
        self._whole: dict[K, V] | None = None
        self._index: Table[tuple[Any, ...], bool] | None = None
        self._ix = -1
        if spec.index:
            self._index = Table(db, spec.by_index())
            self._ix = nk + spec.values.index(spec.index)

    # --- reading, checked ------------------------------------------------------------------

    def _damaged(self, what: str) -> Damaged:
        return Damaged(f"table {self.spec.name}: {what}")

    def _checked(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        stored = row[:-1]
        if check(self._seed, stored) != row[-1]:
            raise self._damaged(f"a row fails its check value ({str(stored)[:80]})")
        return stored

    def _stored(self, kp: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The checked row of a key as stored, or None when it is proven absent: the row
        before it (one query finds either) links past it."""
        row = self.db.execute(self._at_or_before, kp).fetchone()
        if row is None:
            raise self._damaged("its first row is missing")
        stored = self._checked(row)
        at = stored[: len(kp)]
        if at == kp:
            return stored
        nxt = stored[self._a : self._b]
        if not _lt(at, kp) or (nxt[0] is not None and not _lt(kp, nxt)):
            raise self._damaged(f"{kp} was not found, but the row before it says otherwise")
        return None

    def _pred(self, kp: tuple[Any, ...]) -> tuple[Any, ...]:
        """The checked row before a key (the sentinel at least)."""
        row = self.db.execute(self._before, kp).fetchone()
        if row is None:
            raise self._damaged("its first row is missing")
        return self._checked(row)

    def _decode(self, k: K, stored: tuple[Any, ...]) -> V:
        try:
            return self.spec.decode(k, stored[len(self.spec.keys) : self._a])
        except (TypeError, ValueError, AttributeError, IndexError, UnicodeError) as e:
            raise self._damaged(f"a row does not decode ({e})") from None

    def _scan(self, limit: Any = ABSENT) -> list[tuple[Any, ...]]:
        """Every row as stored but the sentinel, in key order, checked along the chain of keys.

        With `limit`: only the rows whose first key column is <= limit (a prefix of the
        chain, so the rest is not read)."""
        seed, nk, a, b = self._seed, len(self.spec.keys), self._a, self._b
        expect = self._sentinel
        out: list[tuple[Any, ...]] = []
        lim = None if limit is ABSENT else _rank(limit)
        if lim is None and nk == 1:
            out, expect = self._scan1()
        else:
            cur = self.db.execute(self._all)
            try:
                for row in cur:
                    stored = row[:-1]
                    if check(seed, stored) != row[-1]:
                        raise self._damaged(f"a row fails its check value ({str(stored)[:80]})")
                    if stored[:nk] != expect:
                        raise self._damaged(f"rows out of their chain at {str(stored[:nk])[:80]}")
                    if lim is not None and out and _rank(stored[0]) > lim:
                        return out[1:]
                    out.append(stored)
                    expect = stored[a:b]
            finally:
                cur.close()
        if not out:
            raise self._damaged("its first row is missing")
        if expect != self._end:
            raise self._damaged("its chain of rows ends early")
        if lim is None and out[0][b] != len(out) - 1:
            raise self._damaged(f"it counts {out[0][b]} rows but holds {len(out) - 1}")
        return out[1:]

    def _scan1(self) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
        """`_scan`'s loop for a whole table of one key column (100,000 rows a read, for
        reconcile): every row as stored, the sentinel first, each checked and following
        the one before it; and the next key of the last."""
        seed, a, crc32 = self._seed, self._a, zlib.crc32  # `check`, inline
        out: list[tuple[Any, ...]] = []
        append = out.append
        expect = self._sentinel[0]
        for row in self.db.execute(self._all).fetchall():
            stored = row[:-1]
            if crc32(repr(stored).encode(), seed) != row[-1]:
                raise self._damaged(f"a row fails its check value ({str(stored)[:80]})")
            if stored[0] != expect:
                raise self._damaged(f"rows out of their chain at {str(stored[:1])[:80]}")
            append(stored)
            expect = stored[a]
        return out, (expect,)

    def _get(self, k: K) -> Any:
        if self._whole is not None:
            return self._whole.get(k, ABSENT)
        v = self._cache.get(k, ABSENT)
        if v is ABSENT and k not in self._cache:
            stored = self._stored(self.spec.key_params(k))
            self._raw[k] = stored
            v = ABSENT if stored is None else self._decode(k, stored)
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

    def _count(self) -> int:
        s = self._stored(self._sentinel)
        n = None if s is None else s[self._b]
        if type(n) is not int:
            raise self._damaged("its row count is missing")
        return n

    def __len__(self) -> int:
        if self._whole is not None:
            return len(self._whole)
        n = self._count()
        for k, was in self._was.items():
            now = self._cache[k] is not ABSENT
            n += now - was
        return n

    def whole(self) -> dict[K, V]:
        """Every key and value (read once, then kept up to date by changes)."""
        if self._whole is None:
            key_of, nk = self.spec.key_of, len(self.spec.keys)
            out = {}
            for stored in self._scan():
                k = key_of(stored[:nk])
                out[k] = self._decode(k, stored)
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

    def columns(self, cols: tuple[str, ...]) -> dict[K, tuple[Any, ...]]:
        """See the module-level `columns`."""
        spec = self.spec
        nk = len(spec.keys)
        pick = [nk + spec.values.index(c) for c in cols]
        if self._whole is not None:
            changed: Any = self._whole.items()
            out: dict[K, tuple[Any, ...]] = {}
        else:
            rows = self._scan()
            # itemgetter gives a tuple of several items, or of one as a slice
            get = itemgetter(*pick) if len(pick) > 1 else itemgetter(slice(pick[0], pick[0] + 1))
            keys = map(spec.key_of, map(itemgetter(slice(0, nk)), rows))
            out = dict(zip(keys, map(get, rows), strict=True))
            changed = self.changes().items()
        for k, v in changed:
            if v is ABSENT:
                out.pop(k, None)
            else:
                row = spec.row_of(k, v)
                out[k] = tuple(row[i] for i in pick)
        return out

    def upto(self, limit: Any) -> list[tuple[Any, ...]]:
        """Keys as stored whose first column is <= limit, in order (as in the database: the
        changes in memory are not among them)."""
        nk = len(self.spec.keys)
        return [r[:nk] for r in self._scan(limit)]

    def keys_upto(self, limit: Any) -> list[K]:
        """Keys whose first key column is <= limit, as changed in memory, in key order."""
        spec = self.spec
        out = {spec.key_of(kp) for kp in self.upto(limit)} - set(self._was)
        lim = _rank(limit)
        for k in self._was:
            if self._cache[k] is not ABSENT and _rank(spec.key_params(k)[0]) <= lim:
                out.add(k)
        return sorted(out)  # type: ignore[type-var]

    def first(self) -> K | None:
        """The first key as in the database (changes in memory aside), or None when empty."""
        s = self._stored(self._sentinel)
        if s is None:
            raise self._damaged("its first row is missing")
        nxt = s[self._a : self._b]
        if nxt[0] is None:
            return None
        if self._stored(nxt) is None:
            raise self._damaged(f"its first key {nxt} is missing")
        return self.spec.key_of(nxt)

    def expiring(self, column: str, limit: int) -> list[K]:
        """Keys whose (indexed) `column` is <= limit, as changed in memory."""
        spec = self.spec
        assert self._index is not None and column == spec.index
        out = {spec.key_of(r[1:]) for r in self._index.upto(limit)} - set(self._was)
        i = len(spec.keys) + spec.values.index(column)
        for k in self._was:
            v = self._cache[k]
            if v is not ABSENT:
                x = spec.row_of(k, v)[i]
                if x is not None and x <= limit:
                    out.add(k)
        return list(out)

    def forget(self) -> None:
        """Drop what was read (the database changed under it); unflushed changes must not exist."""
        assert not self._was
        self._cache.clear()
        self._raw.clear()
        self._whole = None
        if self._index is not None:
            self._index.forget()

    # --- writing ---------------------------------------------------------------------------

    def _write(self, stored: tuple[Any, ...]) -> None:
        self.db.execute(self._upsert, (*stored, check(self._seed, stored)))

    def flush(self) -> None:
        """Write the changes into the (open) transaction, keeping the chain of keys."""
        if not self._was:
            return
        spec, a, b = self.spec, self._a, self._b
        key_params, row_of = spec.key_params, spec.row_of
        moved: list[tuple[Any, Any, tuple[Any, ...]]] = []  # index: (old, new, key)
        put, come, go = [], [], []
        for k, was in self._was.items():
            v = self._cache[k]
            if v is ABSENT:
                if was:
                    go.append(k)
            elif was:  # a value changed in place: the chain stays as it is
                kp = key_params(k)
                old = self._raw.get(k) or self._stored(kp)
                if old is None:
                    raise self._damaged(f"{kp} vanished while changed")
                stored = (*row_of(k, v), *old[a:b], None)
                put.append((*stored, check(self._seed, stored)))
                if self._ix >= 0:
                    moved.append((old[self._ix], stored[self._ix], kp))
            else:
                come.append(k)
        if put:
            self.db.executemany(self._upsert, put)
        for k in come:  # after its predecessor, which now links to it
            kp = key_params(k)
            p = self._pred(kp)
            nxt = p[a:b]
            if nxt[0] is not None and not order(kp) < order(nxt):
                raise self._damaged(f"{kp} is new, but the row before it links to it")
            stored = (*row_of(k, self._cache[k]), *nxt, None)
            self._write(stored)
            self._write((*p[:a], *kp, p[b]))
            if self._ix >= 0:
                moved.append((None, stored[self._ix], kp))
        for k in go:  # its predecessor links past it
            kp = key_params(k)
            old = self._stored(kp)
            p = self._pred(kp)
            if old is None or p[a:b] != kp:
                raise self._damaged(f"{kp} goes, but the chain does not lead to it")
            self._write((*p[:a], *old[a:b], p[b]))
            self.db.execute(self._delete, kp)
            if self._ix >= 0:
                moved.append((old[self._ix], None, kp))
        if len(come) != len(go):
            s = self._stored(self._sentinel)
            if s is None or type(s[b]) is not int:
                raise self._damaged("its row count is missing")
            self._write((*s[:b], s[b] + len(come) - len(go)))
        self._was.clear()
        self._raw.clear()
        if self._index is not None:
            ix = self._index
            for old_x, new_x, kp in moved:
                if old_x == new_x and type(old_x) is type(new_x):
                    continue
                if old_x is not None:
                    del ix[(old_x, *kp)]
                if new_x is not None:
                    ix[(new_x, *kp)] = True
            ix.flush()

    def replace(self, everything: Mapping[K, V]) -> None:
        """Make the table hold exactly `everything` (a cold build's result)."""
        spec = self.spec
        self.db.execute(f"DELETE FROM {spec.name}")
        key_params, row_of = spec.key_params, spec.row_of
        # in key order: appending to a B-tree is twice as fast as inserting all over it
        try:
            keys: list[Any] = sorted(everything)  # type: ignore[type-var,unused-ignore]
        except TypeError:  # text and BLOBs in one key column
            keys = list(everything)
        kps = [key_params(k) for k in keys]
        if set(map(type, itertools.chain.from_iterable(kps))) - {str}:  # SQLite's order
            pairs = sorted(zip(kps, keys, strict=True), key=lambda p: order(p[0]))
            kps, keys = [p[0] for p in pairs], [p[1] for p in pairs]
        seed, nv = self._seed, len(spec.values)
        head = (*self._sentinel, *(None,) * nv, *(kps[0] if kps else self._end), len(kps))
        rows = [(*head, check(seed, head))]
        nexts = kps[1:]
        if kps:
            nexts.append(self._end)
        append, crc32 = rows.append, zlib.crc32  # `check`, inline: 500,000 rows in a cold build
        for k, nxt in zip(keys, nexts, strict=True):
            stored = (*row_of(k, everything[k]), *nxt, None)
            append((*stored, crc32(repr(stored).encode(), seed)))
        self.db.executemany(self._upsert, rows)
        self._cache.clear()
        self._was.clear()
        self._raw.clear()
        self._whole = None
        if self._index is not None:
            ix = self._ix
            self._index.replace(
                {(r[ix], *r[: len(spec.keys)]): True for r in rows[1:] if r[ix] is not None}
            )


def create(db: sqlite3.Connection, spec: Spec[Any, Any]) -> None:
    """Create a table (and its companion) with its sentinel, unless it exists."""
    (there,) = db.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (spec.name,)
    ).fetchone()
    if not there:
        for ddl in spec.ddl():
            db.execute(ddl)
        Table(db, spec).replace({})


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
        db.execute("PRAGMA cell_size_check=ON")  # more damage found as SQLite reads a page
    except BaseException:
        db.close()
        raise
    return db


def damaged(e: BaseException) -> bool:
    """The file is damaged (throw it away), rather than unreachable for now (disk full, I/O
    error, locked, out of memory: leave it for the next build).

    By SQLite's result code: malformed, not a database, a schema that is not ours ("no such
    table"), and errors raised without a code (text that does not decode as UTF-8) all are
    damage, as is what `Table` finds (`Damaged`).
    """
    if isinstance(e, Damaged):
        return True
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    code = getattr(e, "sqlite_errorcode", None)
    return code is None or (code & 0xFF) not in TEMPORARY


def discard(path: Path) -> None:
    """Remove a database and its WAL files (damaged or from another version). A reader that
    may not remove them (show, check or reconcile run as another user) leaves them for the
    next apply, which rebuilds them."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError, PermissionError):
            os.unlink(f"{path}{suffix}")
