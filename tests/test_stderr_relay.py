"""Commands' stderr goes through PALHM line by line, so that PALHM's own
lines (in cron mail, in the journal) always start at the beginning of a
line, whatever its commands wrote, and nothing a command wrote is lost."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import PALHM, backup_task, inline, write_config

PY = sys.executable
#: Writes ``text`` on stderr without a newline, a little at a time, and
#: exits with ``rc``.
UNTERMINATED = """
import os, sys, time
text, rc = sys.argv[1].encode(), int(sys.argv[2])
for i in range(0, len(text), 3):
    os.write(2, text[i : i + 3])
    time.sleep(0.01)
sys.exit(rc)
"""


def unterminated(text: str, rc: int = 0) -> dict:
    return inline(PY, "-c", UNTERMINATED, text, str(rc))


def config(tmp_path, pipeline, **top) -> str:
    task = backup_task(objects=[{"path": "obj", "pipeline": pipeline}], root=str(tmp_path / "root"))
    return write_config(tmp_path, {"tasks": [task], **top})


def run(conf, *options, env=None) -> subprocess.CompletedProcess:
    """palhm with its stderr a pipe of this test's own; a CompletedProcess
    with bytes."""
    read, write = os.pipe()
    full = dict(os.environ)
    full.pop("PALHM_CONFIG", None)
    if env is not None:
        full.update(env(write))
    proc = subprocess.Popen(
        [PALHM, "-f", str(conf), *options, "run", "backup"],
        stdout=subprocess.PIPE,
        stderr=write,
        env=full,
    )
    os.close(write)
    with os.fdopen(read, "rb") as f:
        err = f.read()
    out = proc.communicate(timeout=120)[0]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_unterminated_lines_of_two_failing_stages_never_splice_with_palhm_lines(tmp_path):
    first, second = "first stage says this", "second stage fails with this"
    conf = config(tmp_path, [unterminated(first), unterminated(second, rc=3)])
    result = run(conf)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.decode().splitlines()
    assert result.stderr.endswith(b"\n")
    for line in lines:
        assert line.startswith("palhm: ") or line in (first, second), lines
    assert first in lines and second in lines
    assert any("stage 2/2" in line and "status 3" in line for line in lines), lines


def test_under_the_journal_every_palhm_line_has_its_priority(tmp_path):
    conf = config(tmp_path, [unterminated("child words", rc=1)])

    def journal(fd: int) -> dict:
        st = os.fstat(fd)
        return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}

    result = run(conf, env=journal)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.decode().splitlines()
    for line in lines:
        assert line[:1] == "<" and line[2:3] == ">" or line == "child words", lines
    assert "child words" in lines
    assert any(line.startswith("<3>") and "status 1" in line for line in lines), lines


def test_verbose_names_the_command_of_each_line(tmp_path):
    conf = config(tmp_path, [inline("sh", "-c", "echo one >&2; printf two >&2; echo data")])
    result = run(conf, "-v")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    assert "sh: one" in lines and "sh: two" in lines, lines


def test_a_giant_line_is_passed_on_whole_in_bounded_pieces(tmp_path):
    size = 1 << 20
    conf = config(tmp_path, [inline(PY, "-c", f"import os; os.write(2, b'x' * {size}); exit(1)")])
    result = run(conf)
    assert result.returncode == 1
    pieces = [line for line in result.stderr.split(b"\n") if line.startswith(b"x")]
    assert b"".join(pieces) == b"x" * size
    assert max(map(len, pieces)) < size
    assert result.stderr.split(b"\n")[-2].startswith(b"palhm: ")


def test_hidden_stderr_follows_the_error_redacted(tmp_path):
    step = inline("sh", "-c", "echo 'login with --password=hunter2 refused' >&2; exit 4")
    step["vl-stderr"] = 4
    conf = config(tmp_path, [step])
    result = run(conf, "-q")
    assert result.returncode == 1
    text = result.stderr.decode()
    assert "hunter2" not in text, text
    lines = text.splitlines()
    assert lines[0].startswith("palhm: ") and "status 4" in lines[0], lines
    assert any(line.startswith("palhm: ") and "login with --password" in line for line in lines)
