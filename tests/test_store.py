"""store.Table: a mapping over an SQLite table that behaves exactly like a dict."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns import store
from leasedns.store import Spec, Table, text_in, text_out

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
    for ddl in SPEC.ddl():
        db.execute(ddl)
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
        assert t.ordered_values() == [want[k] for k in sorted(want)]
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
    rows = dict(db.execute("SELECT typeof(k), typeof(note) FROM t").fetchall())
    assert rows == {"blob": "blob", "text": "text"}
    assert dict(Table(db, SPEC).items()) == {"x\udcff": (1, "caf\udce9"), "plain": (2, "text")}


def test_damaged_means_throw_away_and_operational_means_try_later() -> None:
    assert store.damaged(sqlite3.DatabaseError("file is not a database"))
    assert not store.damaged(sqlite3.OperationalError("database or disk is full"))
