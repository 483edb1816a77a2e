"""store.Table: a mapping over an SQLite table that behaves exactly like a dict."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns.engine import store
from leasedns.engine.store import Spec, Table, text_in, text_out

# name -> (end or None, text with odd characters): the shape of the outcome table
SPEC: Spec[str, tuple[int | None, str]] = Spec(
    "t",
    ("k",),
    ("end", "note"),
    lambda k: (text_in(k),),
    lambda k, v: (text_in(k), v[0], text_in(v[1])),
    lambda _k, r: (r[0], text_out(r[1])),
    lambda k: text_out(k[0]),
    index="end",
)
KEYS = st.sampled_from(["a", "b", "c", "dd", "e\udcff", "ä", "z:1", ""])
VALUES = st.tuples(st.one_of(st.none(), st.integers(0, 20)), st.text(max_size=5))
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, VALUES),
        st.tuples(st.just("del"), KEYS),
        st.tuples(st.just("get"), KEYS),
        st.tuples(st.just("flush")),
        st.tuples(st.just("reopen")),  # commit, then a new Table over the same rows
        st.tuples(st.just("whole")),
    ),
    max_size=30,
)


def _open(path: Path) -> sqlite3.Connection:
    db = store.connect(path, create=True)
    store.create(db, SPEC)
    return db


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(KEYS, VALUES), OPS, st.integers(0, 20))
def test_table_behaves_like_a_dict(
    initial: dict[str, tuple[int | None, str]], ops: list[tuple], limit: int
) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        db = _open(Path(tmp) / "s.sqlite")
        db.execute("BEGIN")
        Table(db, SPEC).replace(initial)
        db.execute("COMMIT")
        db.execute("BEGIN")
        t, want = Table(db, SPEC), dict(initial)
        for op in ops:
            if op[0] == "set":
                t[op[1]] = op[2]
                want[op[1]] = op[2]
            elif op[0] == "del":
                if op[1] in want:
                    del t[op[1]]
                    del want[op[1]]
                else:
                    with pytest.raises(KeyError):
                        del t[op[1]]
            elif op[0] == "get":
                assert t.get(op[1], "none") == want.get(op[1], "none")
                assert (op[1] in t) == (op[1] in want)
            elif op[0] == "flush":
                t.flush()
            elif op[0] == "reopen":
                t.flush()
                db.execute("COMMIT")
                db.execute("BEGIN")
                t = Table(db, SPEC)
            else:
                assert dict(t.items()) == want
            assert len(t) == len(want)
        # unflushed changes show in every view
        assert sorted(t) == sorted(want)
        assert sorted(t.expiring("end", limit)) == sorted(
            k for k, v in want.items() if v[0] is not None and v[0] <= limit
        )
        assert dict(t.items()) == want
        t.flush()
        db.execute("COMMIT")
        assert dict(Table(db, SPEC).items()) == want
        db.close()


def test_lone_surrogates_survive_as_blobs_and_plain_text_stays_text(tmp_path: Path) -> None:
    db = _open(tmp_path / "s.sqlite")
    t = Table(db, SPEC)
    t["x\udcff"] = (1, "caf\udce9")
    t["plain"] = (2, "text")
    t.flush()
    rows = dict(db.execute("SELECT typeof(k), typeof(note) FROM t WHERE n IS NULL").fetchall())
    assert rows == {"blob": "blob", "text": "text"}
    assert dict(Table(db, SPEC).items()) == {"x\udcff": (1, "caf\udce9"), "plain": (2, "text")}


def _error(cls: type[sqlite3.Error], msg: str, code: int | None) -> sqlite3.Error:
    e = cls(msg)
    if code is not None:
        e.sqlite_errorcode = code  # type: ignore[attr-defined]
    return e


@pytest.mark.parametrize(
    ("error", "damage"),
    [
        (_error(sqlite3.DatabaseError, "file is not a database", 26), True),
        (_error(sqlite3.DatabaseError, "database disk image is malformed", 11), True),
        (_error(sqlite3.OperationalError, "no such table: latest", 1), True),
        # raised by the sqlite3 module itself, without a result code: bad bytes in a TEXT
        (_error(sqlite3.OperationalError, "Could not decode to UTF-8 column 'ip'", None), True),
        (store.Damaged("table latest: a row fails its check value"), True),
        (_error(sqlite3.OperationalError, "database or disk is full", 13), False),
        (_error(sqlite3.OperationalError, "disk I/O error", 10 | (4 << 8)), False),
        (_error(sqlite3.OperationalError, "database is locked", 5), False),
        (_error(sqlite3.OperationalError, "unable to open database file", 14), False),
    ],
)
def test_damaged_means_throw_away_and_full_or_io_means_try_later(
    error: sqlite3.Error, damage: bool
) -> None:
    assert store.damaged(error) is damage


def test_undecodable_text_is_classified_as_damage_as_sqlite3_raises_it(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite")
    db.execute("CREATE TABLE t (a)")
    db.execute("INSERT INTO t VALUES (CAST(x'ff41' AS TEXT))")
    with pytest.raises(sqlite3.OperationalError) as e:
        db.execute("SELECT a FROM t").fetchall()
    assert store.damaged(e.value)


def _filled(tmp_path: Path, n: int = 300) -> tuple[sqlite3.Connection, dict[str, tuple[int, str]]]:
    db = _open(tmp_path / "s.sqlite")
    want = {f"k{i:04d}": (i, f"note {i}") for i in range(0, 2 * n, 2)}
    db.execute("BEGIN")
    Table(db, SPEC).replace(want)
    db.execute("COMMIT")
    return db, want


def _every_read(db: sqlite3.Connection, want: dict[str, tuple[int, str]]) -> list[str]:
    """What each way of reading makes of the table: 'ok', 'damaged' or 'WRONG'."""
    out = []
    probes = [*list(want)[::17], "k0001", "k0599", "a", "zzz"]
    reads = [
        lambda t: dict(t.items()) == want,
        lambda t: len(t) == len(want),
        lambda t: (
            sorted(t.expiring("end", 100)) == sorted(k for k, v in want.items() if v[0] <= 100)
        ),
        lambda t: all(t.get(k) == want.get(k) for k in probes),
        lambda t: store.columns(t, SPEC, ("note",)) == {k: (v[1],) for k, v in want.items()},
    ]
    for read in reads:
        try:
            out.append("ok" if read(Table(db, SPEC)) else "WRONG")
        except sqlite3.DatabaseError as e:
            assert store.damaged(e)
            out.append("damaged")
    return out


@pytest.mark.parametrize(
    "how",
    [
        "value",
        "key",
        "rekeyed",
        "type",
        "check",
        "next",
        "moved",
        "deleted",
        "count",
        "sentinel",
        "index",
    ],
)
def test_a_changed_row_is_found_by_every_read_that_meets_it(tmp_path: Path, how: str) -> None:
    db, want = _filled(tmp_path)
    assert _every_read(db, want) == ["ok"] * 5
    q = {
        "value": "UPDATE t SET note = 'note 99' WHERE k = 'k0100'",
        "key": "UPDATE t SET k = 'k0101' WHERE k = 'k0100'",
        # a row under another key with a check value to match: the count holds, only the
        # chain (k0098 links to k0100) shows it
        "rekeyed": "UPDATE t SET k = 'k0101', chk = {} WHERE k = 'k0100'".format(
            store.check(store.seed_of("t"), ("k0101", 100, "note 100", "k0102", None))
        ),
        "type": "UPDATE t SET \"end\" = '100' WHERE k = 'k0100'",
        "check": "UPDATE t SET chk = chk + 1 WHERE k = 'k0100'",
        "next": "UPDATE t SET next_k = 'k0104' WHERE k = 'k0100'",
        # a row as another table would hold it: its check value is for that table
        "moved": "UPDATE t SET chk = {} WHERE k = 'k0100'".format(
            store.check(store.seed_of("u"), ("k0100", 100, "note 100", "k0102", None))
        ),
        "deleted": "DELETE FROM t WHERE k = 'k0100'",
        "count": "UPDATE t SET n = n - 1 WHERE n IS NOT NULL",
        "sentinel": "DELETE FROM t WHERE n IS NOT NULL",
        "index": 'DELETE FROM t_by_end WHERE "end" = 50',
    }[how]
    db.execute(q)
    got = _every_read(db, want)
    assert "WRONG" not in got and "damaged" in got, got
    db.close()


def test_a_lost_or_swapped_page_cannot_hide_a_row(tmp_path: Path) -> None:
    """Lookups of keys that are there and keys that are not, after two leaf pages of the
    table swap places: every answer is right or the table is damaged, never a wrong 'absent'."""
    path = tmp_path / "s.sqlite"
    db, want = _filled(tmp_path, n=3000)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (page,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    raw = bytearray(path.read_bytes())
    pages = [raw[i : i + page] for i in range(0, len(raw), page)]
    leaves = [i for i, p in enumerate(pages) if i and p[0] == 0x0A]  # index b-tree leaves
    assert len(leaves) > 4
    i, j = leaves[1], leaves[len(leaves) // 2]
    pages[i], pages[j] = pages[j], pages[i]
    path.write_bytes(b"".join(pages))
    db = store.connect(path, create=False)
    outcomes = set()
    for k in [*list(want)[::7], *(f"k{i:04d}" for i in range(1, 6000, 97))]:
        try:
            outcomes.add("ok" if Table(db, SPEC).get(k) == want.get(k) else "WRONG")
        except sqlite3.DatabaseError as e:
            assert store.damaged(e)
            outcomes.add("damaged")
    assert outcomes == {"ok", "damaged"}
