"""What the restore tests share: a small PostgreSQL database, a digest of
its rows, and the backup object that dumps it with ``pg_dump -Fc | zstd``
and restores it with ``zstd -d | pg_restore``."""

from __future__ import annotations

import itertools
import os
import shutil

import pytest
from conftest import inline

_names = itertools.count(1)


def unique(stem: str) -> str:
    """A database name no other test of this session (or worker) uses."""
    return f"{stem}_{os.getpid()}_{next(_names)}"


def need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (Debian package {program})")


def make_database(postgres) -> str:
    """A database with two tables, NULLs, bytes and text of every kind."""
    name = postgres.create_database(unique("palhm_src"))
    postgres.psql(
        name,
        """
        CREATE TABLE items (id int PRIMARY KEY, name text, digest bytea, price numeric);
        INSERT INTO items
            SELECT i, md5(i::text), sha256(i::text::bytea),
                   CASE WHEN i % 7 = 0 THEN NULL ELSE i / 3.0 END
            FROM generate_series(1, 20000) i;
        CREATE TABLE notes (id serial PRIMARY KEY, body text);
        INSERT INTO notes (body)
            SELECT repeat(E'n\\u00f6te \\t', i % 50) FROM generate_series(1, 5000) i;
        """,
    )
    return name


def rows(postgres, database: str) -> dict[str, list[str]]:
    """Every row of both tables, as text, in key order."""
    return {
        table: postgres.psql(database, f"SELECT t::text FROM {table} t ORDER BY id").splitlines()
        for table in ("items", "notes")
    }


def pg_object(postgres, source: str, target: str) -> dict:
    """The object dumping ``source`` and restoring it into ``target``, with
    the ``pg_restore --list`` check."""
    return {
        "path": "db/dump.pgc.zst",
        "pipeline": [
            inline(postgres.program("pg_dump"), "-Fc", *postgres.connection(source)),
            inline("zstd", "-q"),
        ],
        "restore": [
            inline("zstd", "-dq"),
            inline(postgres.program("pg_restore"), "--exit-on-error", *postgres.connection(target)),
        ],
        "check": [inline("zstd", "-dq"), inline(postgres.program("pg_restore"), "--list")],
    }
