"""A copy holds what its pipelines wrote, whatever the programs do with their
stdout.

Real programs behave differently when their stdout is a regular file:
``pg_dump -Fc`` seeks back to fill in its table of contents, ``echo ... >
/dev/stdout`` truncates the file, a background child goes on writing after
its parent exited. Each test runs the same commands through a shell pipe
(``... | cat > file``) and through PALHM, and checks that the stored object
holds the same bytes, that ``palhm backups verify`` and ``sha256sum -c
SHA256SUMS`` pass, and that ``palhm backups cat`` reads the same bytes back.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import backup_task, copies, inline, run_palhm, write_config

PY = sys.executable
#: pg_dump writes the time into its archive: a fixed clock makes two dumps
#: of the same database comparable byte for byte.
FAKETIME = shutil.which("faketime")
#: A clock that stands still (``faketime -f``): pg_dump's header holds the
#: time it started, which a clock that only starts there (plain ``faketime``)
#: moves on by a second when a loaded machine makes pg_dump start late.
CLOCK = "2020-01-01 00:00:00"
#: Writes a header, data, and then, only if its stdout can seek (a regular
#: file), goes back to rewrite the header, as archivers do.
SEEKER = """
import os
os.write(1, b"header: unset\\n")
for i in range(20000):
    os.write(1, b"%08d data\\n" % i)
try:
    os.lseek(1, 0, os.SEEK_SET)
except OSError:
    pass
else:
    os.write(1, b"header: final\\n")
"""


def through_shell(stages: list[list[str]], out: Path) -> bytes:
    """What ``STAGE | STAGE ... | cat > out`` writes, run by sh."""
    line = " | ".join(shlex.join(argv) for argv in stages)
    subprocess.run(["sh", "-c", f"{line} | cat > {shlex.quote(str(out))}"], check=True, timeout=120)
    return out.read_bytes()


def config(tmp_path: Path, stages: list[list[str]], path: str = "obj", **exec_keys) -> Path:
    """A task ``backup`` of one object made by ``stages`` (each an
    exec-inline with ``exec_keys``) into the localfs root ``tmp_path/root``."""
    pipeline = [inline(*argv, **exec_keys) for argv in stages]
    task = backup_task(objects=[{"path": path, "pipeline": pipeline}], root=str(tmp_path / "root"))
    return write_config(tmp_path, {"tasks": [task]})


def backup(tmp_path: Path, stages: list[list[str]], path: str = "obj", **exec_keys) -> Path:
    """Run the backup; the config file."""
    conf = config(tmp_path, stages, path, **exec_keys)
    result = run_palhm("run", "backup", config=conf)
    assert result.returncode == 0, result.stderr
    return conf


def check_copy(tmp_path: Path, conf: Path, expected: bytes, path: str = "obj") -> bytes:
    """The one copy holds ``expected`` at ``path`` and verifies; the bytes
    ``palhm backups cat`` reads back."""
    root = tmp_path / "root"
    (copy,) = copies(root)
    stored = (root / copy / path).read_bytes()
    assert len(stored) == len(expected)
    assert stored == expected
    verify = run_palhm("backups", "verify", "backup", config=conf)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    sums = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=root / copy, capture_output=True, text=True
    )
    assert sums.returncode == 0, sums.stdout + sums.stderr
    cat = run_palhm("backups", "cat", "backup", "latest", path, config=conf, text=False)
    assert cat.returncode == 0, cat.stderr
    assert cat.stdout == expected
    return cat.stdout


def wait_for(what: str, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.05)


def test_echo_to_dev_stdout_keeps_what_came_before(tmp_path):
    stages = [["sh", "-c", "seq 1 100000; echo summary > /dev/stdout"]]
    expected = through_shell(stages, tmp_path / "shell.out")
    assert expected.endswith(b"100000\nsummary\n")
    check_copy(tmp_path, backup(tmp_path, stages), expected)


def test_a_program_that_seeks_in_a_regular_file_writes_as_into_a_pipe(tmp_path):
    stages = [[PY, "-c", SEEKER]]
    expected = through_shell(stages, tmp_path / "shell.out")
    assert expected.startswith(b"header: unset\n")
    check_copy(tmp_path, backup(tmp_path, stages), expected)


#: Writes about 90 MiB of random bytes in writes of random sizes, some
#: paused: more than PALHM's hashing may lag behind its storing
#: (:data:`palhm_core.readback.MAX_LAG`), in pieces that end anywhere.
UNEVEN_WRITER = """
import os, random, time
rnd = random.Random(12)
left = 90 * 2**20 + 12345
while left:
    n = min(left, rnd.choice((1, 4095, 65536, 300001, 2**20 + 7, 9 * 2**20)))
    os.write(1, rnd.randbytes(n))
    left -= n
    if rnd.random() < 0.01:
        time.sleep(0.01)
"""


def test_a_large_object_written_unevenly_is_hashed_as_stored(tmp_path):
    stages = [[PY, "-c", UNEVEN_WRITER]]
    expected = through_shell(stages, tmp_path / "shell.out")
    assert len(expected) == 90 * 2**20 + 12345
    check_copy(tmp_path, backup(tmp_path, stages), expected)


def test_a_background_writer_is_waited_for(tmp_path):
    """The leader exits at once; its background child writes later, then
    leaves a mark and exits. The run ends after the pipe's end, as the shell
    pipeline does: the copy holds the late bytes."""
    mark = tmp_path / "done"
    script = f"(sleep 1; echo late; touch {shlex.quote(str(mark))}) & echo early"
    stages = [["sh", "-c", script]]
    expected = through_shell(stages, tmp_path / "shell.out")
    assert expected == b"early\nlate\n"
    mark.unlink()
    conf = backup(tmp_path, stages)
    assert mark.exists(), "the run ended before its background writer"
    check_copy(tmp_path, conf, expected)


def test_a_background_writer_past_the_timeout_fails_the_run(tmp_path):
    """A background child that holds the pipe for longer than the stage's
    ``timeout``: the run fails naming the timeout, the copy is rolled back
    and the child is ended."""
    pidfile = tmp_path / "writer.pid"
    script = f"(sleep 120; echo late) & echo $! > {shlex.quote(str(pidfile))}; echo early"
    conf = config(tmp_path, [["sh", "-c", script]], timeout=2)
    result = run_palhm("run", "backup", config=conf, timeout=60)
    assert result.returncode == 1, result.stderr
    failed = [ln for ln in result.stderr.splitlines() if ln.startswith("palhm: ") and "timed" in ln]
    assert len(failed) == 1, result.stderr
    assert "object 'obj'" in failed[0] and "stage 1/1 'sh' timed out after 2 s" in failed[0]
    root = tmp_path / "root"
    assert not root.exists() or list(root.iterdir()) == []
    pid = int(pidfile.read_text())
    wait_for(f"the background writer (pid {pid}) ended", lambda: not alive(pid), 10)


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie waiting for its parent counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def database(postgres):
    """A small database of the test server: two tables, a few MB of rows."""
    if FAKETIME is None:
        pytest.skip(
            "faketime is not installed (Debian package faketime): pg_dump needs a fixed clock"
        )
    name = postgres.create_database("palhm_integrity")
    postgres.psql(
        name,
        """
        CREATE TABLE items (id int PRIMARY KEY, name text, digest bytea);
        INSERT INTO items
            SELECT i, md5(i::text), sha256(i::text::bytea) FROM generate_series(1, 20000) i;
        CREATE TABLE notes (id serial PRIMARY KEY, body text);
        INSERT INTO notes (body) SELECT repeat('note ', i % 50) FROM generate_series(1, 5000) i;
        """,
    )
    return name


def contents(postgres, database: str) -> list[str]:
    """A digest of each table's rows, in key order."""
    return [
        postgres.psql(database, f"SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM {table} t")
        for table in ("items", "notes")
    ]


@pytest.mark.parametrize("compress", [False, True], ids=["pg_dump -Fc", "pg_dump -Fc | zstd"])
def test_pg_dump_custom_format(tmp_path, postgres, database, compress):
    if compress and shutil.which("zstd") is None:
        pytest.skip("zstd is not installed (Debian package zstd)")
    dump = [
        FAKETIME,
        "-f",
        CLOCK,
        postgres.program("pg_dump"),
        "-Fc",
        *postgres.connection(database),
    ]
    stages = [dump, ["zstd"]] if compress else [dump]
    expected = through_shell(stages, tmp_path / "shell.out")
    conf = backup(tmp_path, stages, "db/dump")
    read_back = check_copy(tmp_path, conf, expected, "db/dump")
    archive = tmp_path / "restored.dump"
    if compress:
        with open(archive, "wb") as out:
            subprocess.run(["zstd", "-dc"], input=read_back, stdout=out, check=True)
    else:
        archive.write_bytes(read_back)
    listing = subprocess.run(
        [postgres.program("pg_restore"), "--list", str(archive)], capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    assert "TABLE DATA public items" in listing.stdout
    fresh = postgres.create_database(f"palhm_restored_{os.getpid()}_{int(compress)}")
    restore = subprocess.run(
        [postgres.program("pg_restore"), *postgres.connection(fresh), str(archive)],
        capture_output=True,
        text=True,
    )
    assert restore.returncode == 0, restore.stderr
    assert contents(postgres, fresh) == contents(postgres, database)
