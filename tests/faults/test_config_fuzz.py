"""Property-based config fuzzing, from seed configs that are valid (checked
first: they pass ``config check``, plan and dry-run).

Mutations that may break a config (wrong types, missing and extra keys, odd
unicode, huge numbers, deep nesting, broken text) never end in a traceback.
``palhm config check`` exits 0, 1 or 2, every exit 2 names a place in the
config: the file, and a JSON path or a line; a mutated config that passes the
check plans each of its tasks. Most cases call the CLI in-process (fast); one
in twenty also runs as a real process, with ``palhm plan`` and, when every
command of the mutated config is a harmless one, ``palhm run --dry-run`` of
a backup task (the null backend: nothing is stored, and the run happens in a
temporary directory).

Mutations that keep a config valid (other worker counts, verbosities and
prefix precisions, objects and tasks in another order, more objects, other
arguments and environments for ``echo``, JSON, JSONC or YAML) pass the check,
plan every task and dry-run the backup and the routine, as real processes.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from palhm_core.prefix import TIMESPECS

from .util import FIGURES, FUZZ_CASES, SEED, palhm, palhm_in_process

#: The seed configs' tasks, each planned and dry-run.
TASKS = [("backup", "check", "routine"), ("backup",)]

#: Commands a mutated config may run for real (with --dry-run): each ends on
#: its own whatever its arguments (not seq, whose arguments a mutation may
#: make huge, nor yes).
HARMLESS = {"echo", "true", "false", "cat", "printf", "gzip", "sort"}


def base_configs(work: str) -> list[dict]:
    """Valid configs using most of the schema; every root is under ``work``."""
    full = {
        "vl": 3,
        "nb-workers": 2,
        "modules": [],
        "execs": [
            {"id": "gen", "argv": ["printf", "%s\n", "1", "3"], "env": {"LC_ALL": "C"}},
            {"id": "zip", "argv": ["gzip", "-c"], "ec": "<2", "vl-stderr": 1, "vl-stdout": 3},
            {"id": "noop", "argv": ["true"]},
        ],
        "tasks": [
            {
                "id": "backup",
                "type": "backup",
                "backend": "localfs",
                "backend-param": {
                    "root": f"{work}/root",
                    "dmode": "750",
                    "fmode": "640",
                    "nb-copy-limit": "3",
                    "root-size-limit": "Infinity",
                    "block-size": 65536,
                    "prefix": {"type": "iso8601", "timespec": "microseconds", "basic": True},
                },
                "object-groups": [{"id": "first"}, {"id": "second", "depends": ["first"]}],
                "objects": [
                    {
                        "path": "a/numbers.gz",
                        "group": "first",
                        "alloc-size": 1000,
                        "pipeline": [
                            {"type": "exec", "exec-id": "gen"},
                            {"type": "exec", "exec-id": "zip"},
                        ],
                    },
                    {
                        "path": "b/more",
                        "group": "second",
                        "pipeline": [
                            {"type": "exec-append", "exec-id": "gen", "argv": ["2"]},
                            {"type": "exec-inline", "argv": ["sort"], "env": {"X": "y"}},
                        ],
                    },
                    {"path": "c", "pipeline": [{"type": "exec-inline", "argv": ["echo", "c"]}]},
                ],
            },
            {
                "id": "check",
                "type": "backup",
                "backend": "null",
                "objects": [{"path": "x", "pipeline": [{"type": "exec", "exec-id": "noop"}]}],
            },
            {
                "id": "routine",
                "type": "routine",
                "routine": [
                    {
                        "type": "builtin",
                        "builtin-id": "sigmask",
                        "param": [
                            {"action": "block", "sig": ["TERM", "INT"]},
                        ],
                    },
                    {"type": "task", "task-id": "check"},
                    {"type": "exec", "exec-id": "noop"},
                    {
                        "type": "builtin",
                        "builtin-id": "sigmask",
                        "param": [
                            {"action": "unblock", "sig": ["TERM", "INT"]},
                        ],
                    },
                ],
            },
        ],
    }
    s3 = {
        "modules": ["aws"],
        "tasks": [
            {
                "id": "backup",
                "type": "backup",
                "backend": "aws-s3",
                "backend-param": {
                    "bucket": "palhm-fuzz",
                    "root": "/palhm/backup",
                    "endpoint-url": "http://127.0.0.1:9",
                    "sink-storage-class": "STANDARD",
                    "rot-storage-class": "STANDARD_IA",
                    "part-size": 8388608,
                    "max-concurrency": 2,
                    "checksum": "SHA256",
                    "nb-copy-limit": 2,
                    "root-size-limit": "1000000000000000000000000",
                },
                "objects": [{"path": "x", "pipeline": [{"type": "exec-inline", "argv": ["true"]}]}],
            }
        ],
    }
    return [full, s3]


ODD_STRINGS = [
    "",
    " ",
    "\0",
    "a\0b",
    "\ud800",
    "\udfff",
    "\udc80",
    "\u202e",
    "\ufeff",
    "\u2028",
    "\x1b[2J",
    "\n",
    "é",
    "\U0001f600",
    "..",
    "/",
    "//",
    "../../etc",
    "inf",
    "-Infinity",
    "NaN",
    "1e999",
    "0x10",
    "-1",
    "9" * 400,
    "==0",
    "<-1",
    "0-999999999999",
    "777",
    "9999",
    "-0",
    "aws",
    "localfs",
    "null",
    "backup",
    "routine",
    "exec",
    "exec-append",
    "exec-inline",
    "builtin",
    "task",
    "sigmask",
    "KILL",
    "SIGSTOP",
    "iso8601",
    "default",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**53 + 1, 2**64, -(2**63) - 1, 10**400, -(10**400), 0, -1, 256])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(ODD_STRINGS)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.text(max_size=12) | st.sampled_from(
    [
        "id",
        "type",
        "argv",
        "env",
        "ec",
        "path",
        "pipeline",
        "objects",
        "tasks",
        "execs",
        "include",
        "backend",
        "backend-param",
        "root",
        "prefix",
        "depends",
        "group",
        "routine",
        "param",
        "exec-id",
        "task-id",
        "builtin-id",
        "alloc-size",
        "vl",
        "nb-workers",
        "modules",
        "nb-copy-limit",
        "root-size-limit",
        "object-groups",
        "boot-report",
        "\0",
        "\ud800",
    ]
)

#: One mutation: (op, which node, a value, a key, a depth).
mutation = st.tuples(
    st.sampled_from(["replace", "delete", "add-key", "odd-string", "number", "deep", "duplicate"]),
    st.integers(min_value=0, max_value=10**6),
    values,
    keys,
    st.integers(min_value=1, max_value=3000),
)


def nodes(doc, path=()):
    """Every (path, value) in ``doc``, the document itself first."""
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from nodes(v, (*path, i))


def set_at(doc, path, value):
    if not path:
        return value
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = value
    return doc


DEEP = "@@deep-nesting@@"


def mutate(doc, muts):
    """Apply ``muts``; the document and the depths of deep nestings."""
    deep = []
    for op, which, value, key, depth in muts:
        all_nodes = list(nodes(doc))
        # The document itself is replaced once in a thousand times.
        inner = all_nodes[1:] if which % 1000 and len(all_nodes) > 1 else all_nodes
        path, node = inner[which % len(inner)]
        if op == "replace":
            doc = set_at(doc, path, value)
        elif op == "delete" and path:
            parent = doc
            for p in path[:-1]:
                parent = parent[p]
            del parent[path[-1]]
        elif op == "add-key":
            containers = [n for _, n in all_nodes if isinstance(n, dict)]
            if containers:
                containers[which % len(containers)][key] = value
        elif op == "odd-string":
            # A string where a string was: past the schema, into the checks
            # of values (modes, exit codes, limits, paths, signals...).
            texts = [p for p, n in all_nodes if isinstance(n, str)] or [path]
            odd = ODD_STRINGS + ([value] if isinstance(value, str) else [])
            doc = set_at(doc, texts[which % len(texts)], odd[depth % len(odd)])
        elif op == "number":
            numbers = [p for p, n in all_nodes if isinstance(n, (int, float))] or [path]
            big = [10**400, -(2**70), 2**63, 2**53 + 1, 1e308, -0.0, 0.5, -1, 0]
            doc = set_at(doc, numbers[which % len(numbers)], big[depth % len(big)])
        elif op == "deep":
            deep.append(depth)
            doc = set_at(doc, path, DEEP)
        elif op == "duplicate" and isinstance(node, list) and node:
            node.append(copy.deepcopy(node[which % len(node)]))
    return doc, deep


def render(doc, deep, fmt: str, cut: int | None, garbage: bytes) -> bytes:
    if fmt == "yaml":
        try:
            text = yaml.safe_dump(doc, allow_unicode=False)
        except (yaml.YAMLError, UnicodeError, RecursionError):
            text = json.dumps(doc)  # YAML is a superset of JSON
        quoted = f"'{DEEP}'"
    else:
        text = json.dumps(doc, indent=1)
        if fmt == "jsonc":
            text = "// fuzzed\n" + text.replace("\n", " // c\n", 3)
        quoted = f'"{DEEP}"'
    for depth in deep:
        text = text.replace(quoted, "[" * depth + "1" + "]" * depth, 1)
        text = text.replace(DEEP, "[" * depth + "]" * depth, 1)
    data = text.encode("utf-8", "surrogatepass")
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    if garbage:
        at = len(data) // 2
        data = data[:at] + garbage + data[at:]
    return data


def names_a_place(stderr: str, conf: Path) -> bool:
    """Every error line names the config file, and what follows it names a
    place (``: tasks[0].x: ...``, ``:3:7: ...``) or the file's problem."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("palhm: ")]
    return bool(lines) and all(f"{conf}" in ln for ln in lines)


def task_ids(doc) -> set[str]:
    """The ids of the tasks of a config that passed the check."""
    return {t["id"] for t in doc.get("tasks") or []}


def commands(doc) -> set[str]:
    found = set()
    for path, node in nodes(doc):
        if path and path[-1] == "argv" and isinstance(node, list) and node:
            found.add(str(node[0]))
    return found


@seed(SEED)
@settings(
    max_examples=FUZZ_CASES,
    deadline=None,
    database=None,
    # No shrinking: it can take minutes; the failing example is printed as found.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(
    which=st.integers(min_value=0, max_value=1),
    muts=st.lists(mutation, min_size=1, max_size=3),
    fmt=st.sampled_from(["json", "jsonc", "yaml"]),
    cut=st.none() | st.none() | st.none() | st.integers(min_value=0),
    garbage=st.just(b"") | st.just(b"") | st.just(b"") | st.binary(min_size=1, max_size=6),
)
def test_mutated_configs_never_crash(which, muts, fmt, cut, garbage):
    work = tempfile.mkdtemp(prefix="palhm-fuzz-")
    try:
        doc, deep = mutate(base_configs(work)[which], muts)
        suffix = {"json": ".json", "jsonc": ".jsonc", "yaml": ".yaml"}[fmt]
        conf = Path(work) / f"palhm{suffix}"
        conf.write_bytes(render(doc, deep, fmt, cut, garbage))
        FIGURES.fuzz_cases += 1
        rc, stderr = palhm_in_process("-f", str(conf), "config", "check")
        FIGURES.fuzz_exits[rc] += 1
        assert rc in (0, 1, 2), f"exit {rc}:\n{stderr}\n{conf.read_bytes()[:2000]!r}"
        if rc == 2:
            assert names_a_place(stderr, conf), stderr
        if rc == 0:
            exact = cut is None and not garbage and not deep  # the file says what doc says
            for task in ("backup", "routine"):
                prc, perr = palhm_in_process("-f", str(conf), "plan", task)
                assert prc in (0, 2), perr
                if exact and task in task_ids(doc):
                    assert prc == 0, f"a valid config does not plan {task}:\n{perr}"
        if FIGURES.fuzz_cases % 20 == 0:  # not drawn: Hypothesis favours 0
            run_as_process(conf, rc, doc, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_as_process(conf: Path, rc_in_process, doc, work: str) -> None:
    FIGURES.fuzz_processes += 1
    result = palhm("config", "check", config=conf, cwd=work)
    assert result.returncode == rc_in_process, (result.returncode, rc_in_process, result.stderr)
    if result.returncode != 0:
        return
    plan = palhm("plan", "backup", config=conf, cwd=work)
    assert plan.returncode in (0, 2), plan.stderr
    if not isinstance(doc, dict) or not commands(doc) <= HARMLESS:
        return
    tasks = [t for t in doc.get("tasks") or [] if isinstance(t, dict)]
    if not any(t.get("id") == "backup" and t.get("type") == "backup" for t in tasks):
        return
    locks = Path(work) / "locks"
    locks.mkdir(exist_ok=True)
    run = palhm("run", "--dry-run", "--lock-dir", str(locks), "backup", config=conf, cwd=work)
    assert run.returncode in (0, 1, 2), run.stderr


def write(work: str, doc, fmt: str) -> Path:
    conf = Path(work) / f"palhm.{fmt}"
    conf.write_bytes(render(doc, [], fmt, None, b""))
    return conf


def assert_runs(conf: Path, doc, work: str) -> None:
    """``config check`` passes, every task plans, and a dry run of the backup
    task and of the routine (when there is one) succeeds; as processes."""
    result = palhm("config", "check", config=conf, cwd=work)
    assert result.returncode == 0, result.stderr
    for task in sorted(task_ids(doc)):
        plan = palhm("plan", task, config=conf, cwd=work)
        assert plan.returncode == 0, f"plan {task}: {plan.stderr}"
    locks = Path(work) / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    for task in ("backup", "routine"):
        if task in task_ids(doc):
            run = palhm("run", "--dry-run", "--lock-dir", str(locks), task, config=conf, cwd=work)
            assert run.returncode == 0, f"run --dry-run {task}: {run.stderr}"
            FIGURES.fuzz_processes += 1


def test_seed_configs_are_valid(tmp_path):
    """Fuzzing starts from configs that pass the check, plan and dry-run:
    else its mutations mostly test the error that was already there."""
    for which, doc in enumerate(base_configs(str(tmp_path))):
        work = tmp_path / str(which)
        work.mkdir()
        assert task_ids(doc) == set(TASKS[which])
        assert_runs(write(str(work), doc, "json"), doc, str(work))


#: Text an ``echo`` argument or an environment value may hold (no NUL, no
#: lone surrogate: neither can be an argument).
ARG_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12
)
ENV_NAME = st.from_regex(r"[A-Z_][A-Z0-9_]{0,7}", fullmatch=True)
#: One change that keeps a seed config valid: (op, a number, a text, a name).
valid_change = st.tuples(
    st.sampled_from(["workers", "vl", "timespec", "reverse", "add-object", "echo", "env"]),
    st.integers(min_value=0, max_value=10**6),
    ARG_TEXT,
    ENV_NAME,
)


def change(doc: dict, op: str, n: int, text: str, name: str) -> None:
    """Apply one valid change to ``doc`` in place."""
    backup = next(t for t in doc["tasks"] if t["id"] == "backup")
    if op == "workers":
        doc["nb-workers"] = n % 9 - 1  # -1 (Python's default), 0 (the CPUs) or 1..7
    elif op == "vl":
        doc["vl"] = n % 5
    elif op == "timespec":
        params = backup["backend-param"]
        prefix = params.setdefault("prefix", {"type": "iso8601"})
        prefix["timespec"] = sorted(TIMESPECS)[n % len(TIMESPECS)]
    elif op == "reverse":
        [doc["tasks"], backup["objects"], backup.get("object-groups", [])][n % 3].reverse()
    elif op == "add-object":
        path = f"extra/{len(backup['objects'])}-{n}"
        backup["objects"].append(
            {"path": path, "pipeline": [{"type": "exec-inline", "argv": ["echo", text]}]}
        )
    elif op == "echo":
        echoes = [o for o in backup["objects"] if o["pipeline"][0].get("argv", [None])[0] == "echo"]
        if echoes:
            echoes[n % len(echoes)]["pipeline"][0]["argv"].append(text)
    elif op == "env":
        inline = [s for o in backup["objects"] for s in o["pipeline"] if "exec-id" not in s]
        if inline:
            inline[n % len(inline)].setdefault("env", {})[f"FUZZ_{name}"] = text


@seed(SEED)
@settings(
    max_examples=max(1, FUZZ_CASES // 20),
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(
    which=st.integers(min_value=0, max_value=1),
    changes=st.lists(valid_change, min_size=1, max_size=4),
    fmt=st.sampled_from(["json", "jsonc", "yaml"]),
)
def test_valid_mutations_still_plan_and_dry_run(which, changes, fmt):
    work = tempfile.mkdtemp(prefix="palhm-fuzz-")
    try:
        doc = base_configs(work)[which]
        for one in changes:
            change(doc, *one)
        FIGURES.fuzz_cases += 1
        assert_runs(write(work, doc, fmt), doc, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
