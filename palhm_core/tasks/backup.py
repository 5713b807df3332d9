"""The ``backup`` task type: one run makes one copy on the backend.

open the backend, clean what crashed runs left, pick a PREFIX that is not
taken, build every object (groups and workers), write SHA256SUMS and the
manifest, commit, rotate. Any failure or stop signal before the commit rolls
the copy back; older copies are never touched by a failed run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial

from palhm_core.backend import Backend, CopyInfo, CopyWriter, PrefixExists, StorageFull
from palhm_core.config.values import parse_limit
from palhm_core.copies import judge_copies, warnings
from palhm_core.errors import BackendError, PalhmError, TaskError
from palhm_core.hookspecs import hookimpl
from palhm_core.manifest import MANIFEST_NAME, SUMS_NAME, make_manifest, manifest_bytes, sums_bytes
from palhm_core.pipeline import Progress, run_pipeline
from palhm_core.plugin_bugs import raised_in
from palhm_core.prefix import check_order
from palhm_core.retention import load_policy
from palhm_core.rotation import Rotation, decide
from palhm_core.scheduler import build_all
from palhm_core.signals import FINISH_WAIT
from palhm_core.task import FailedWithReport, PlanStep, RunContext, Task
from palhm_core.tasks.objects import (
    DEFAULT_GROUP,
    BackupObject,
    build_groups,
    build_order,
    check_path,
    check_paths_distinct,
)

PREFIX_ATTEMPTS = 3


class BackupTask(Task):
    name = "backup"
    description = "Stream the output of command pipelines to a backend as one copy, then rotate."
    schema = {
        "properties": {
            "backend": {
                "type": "string",
                "description": "Where copies go: localfs, aws-s3, null or a plugin's backend.",
            },
            "backend-param": {
                "type": "object",
                "description": "The backend's parameters (see the backend).",
            },
            "object-groups": {
                "type": "array",
                "description": "Groups of objects built one after another: a group starts when "
                "every group it depends on has finished.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string", "description": "The group's name."},
                        "depends": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Groups that must finish first.",
                        },
                    },
                },
            },
            "objects": {
                "type": "array",
                "description": "The files of a copy, each the output of a pipeline.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["path", "pipeline"],
                    "properties": {
                        "path": {
                            "type": "string",
                            "description": "Where the output goes under ROOT/PREFIX; may "
                            "contain '/'.",
                        },
                        "group": {
                            "type": "string",
                            "description": 'The object group. Default "default".',
                        },
                        "alloc-size": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": 2**63 - 1,
                            "description": "Expected size in bytes: localfs preallocates it, "
                            "aws-s3 picks its first part size from it.",
                        },
                        "pipeline": {"$ref": "#/$defs/pipeline"},
                        "restore": {
                            "$ref": "#/$defs/pipeline",
                            "description": "Commands that read the object on stdin and restore "
                            "it (zstd -d | pg_restore -d DB), run by palhm restore.",
                        },
                        "check": {
                            "$ref": "#/$defs/pipeline",
                            "description": "Commands that read the object on stdin and exit 0 "
                            "only if it can be restored (zstd -t, gzip -t, tar -t, pg_restore "
                            "--list), run by palhm backups verify --deep.",
                        },
                    },
                },
            },
        },
        "required": ["backend"],
    }

    def __init__(self, conf, place, ctx):
        super().__init__(conf, place, ctx)
        self.plugins = ctx.plugins
        self.backend_name = conf["backend"]
        backend_cls = ctx.plugins.lookup("backend", self.backend_name, place / "backend")
        params = conf.get("backend-param", {})
        pplace = place / "backend-param"
        # Each part through ctx.collect: every mistake of the task is
        # reported in one go, and the task is dropped if there was one.
        self.backend: Backend = ctx.collect(backend_cls, params, pplace)
        self.nb_copy_limit = ctx.collect(
            parse_limit, params.get("nb-copy-limit"), pplace / "nb-copy-limit"
        )
        self.root_size_limit = ctx.collect(
            parse_limit, params.get("root-size-limit"), pplace / "root-size-limit"
        )
        prefix_conf = dict(params.get("prefix", {}))
        gen_cls = ctx.collect(
            ctx.plugins.lookup,
            "prefix generator",
            prefix_conf.pop("type", "iso8601"),
            pplace / "prefix" / "type",
        )
        self.prefix_gen = gen_cls and ctx.collect(gen_cls, prefix_conf, pplace / "prefix")
        self.policy = ctx.collect(load_policy, params.get("keep"), pplace / "keep", ctx.plugins)
        self.groups = ctx.collect(
            build_groups, conf.get("object-groups", []), place / "object-groups"
        )
        reserved = self.backend.reserved_names if self.backend is not None else frozenset()
        self.objects: list[BackupObject] = []
        for i, oc in enumerate(conf.get("objects", [])):
            obj = self._object(oc, place / "objects" / i, reserved, ctx)
            if obj is not None:
                self.objects.append(obj)
        ctx.collect(check_paths_distinct, self.objects)

    def _object(self, oc, oplace, reserved, ctx) -> BackupObject | None:
        """One object, or None when it has mistakes (each collected)."""
        group = oc.get("group", DEFAULT_GROUP)
        ok = True
        if self.groups is not None and group not in self.groups:
            ctx.collect(
                _raise,
                (oplace / "group").error(
                    f"unknown group {group!r}; groups: {', '.join(self.groups)}"
                ),
            )
            ok = False
        execs, restore, check = (
            [ctx.collect(ctx.step_exec, step, oplace / key / j) for j, step in enumerate(steps)]
            for key, steps in (
                ("pipeline", oc["pipeline"]),
                ("restore", oc.get("restore", ())),
                ("check", oc.get("check", ())),
            )
        )
        path = ctx.collect(check_path, oc["path"], oplace / "path", reserved)
        if not ok or path is None or None in execs + restore + check:
            return None
        return BackupObject(
            path, group, execs, oc.get("alloc-size"), oplace, restore=restore, check=check
        )

    def plan(self):
        steps = []
        for gid in build_order(self.groups):
            objs = [o for o in self.objects if o.group == gid]
            if not objs:
                continue
            deps = self.groups[gid]
            text = f"group {gid}" + (f" (after {', '.join(deps)})" if deps else "")
            steps.append(PlanStep("group", text, steps=[_object_step(o) for o in objs]))
        return steps

    def storage(self):
        return self.backend

    def run(self, ctx: RunContext):
        backend = self._dry_run_backend(ctx) if ctx.dry_run else self.backend
        try:
            return self._run(backend, ctx)
        except Exception as e:
            if isinstance(e, PalhmError) or not raised_in(e, type(backend)):
                raise
            raise BackendError(
                f"{self.id}: backend {backend.name!r} failed (a bug in its plugin, module "
                f"{type(backend).__module__}): {type(e).__name__}: {e}"
            ) from e

    def _run(self, backend: Backend, ctx: RunContext):
        ctx.signals.check()
        # Every call that may wait on the storage goes through signals.call,
        # so that a stop is not held up by a server that stopped answering.
        ctx.signals.call(backend.open, "opening the backend")
        try:
            for what in ctx.signals.call(backend.clean_leftovers, "the leftover scan"):
                ctx.log.info("%s: removed %s", self.id, what)
            made = self._make_copy(backend, ctx)
            ctx.plugins.emit(
                "palhm_copy_committed",
                task=self,
                backend=backend,
                prefix=made.prefix,
                manifest=made.manifest,
            )
            ctx.log.info("%s: copy %s complete", self.id, made.prefix)
            copies = ctx.signals.call(lambda: judge_copies(backend, self.id), "listing the copies")
            for line in warnings(copies):
                ctx.log.warning("%s: %s", self.id, line)
            rotated, error = self._rotation(backend, copies, made.prefix, ctx)
            report = self._report(backend, made, copies, rotated, error)
        finally:
            backend.close()
        if error is not None:
            raise RotationFailed(f"{self.id}: copy {made.prefix} is kept, but {error}", report)
        return report

    def _dry_run_backend(self, ctx: RunContext) -> Backend:
        """A backend that stores nothing, in place of the task's own."""
        registry = ctx.plugins.registries["backend"]
        for name in sorted(registry):
            if registry[name].cls.stores_nothing:
                return registry[name].cls({}, self.place / "backend-param")
        raise TaskError(
            f"{self.id}: a dry run needs a backend that stores nothing; none is installed"
        )

    def _make_copy(self, backend: Backend, ctx: RunContext) -> _Made:
        """Build every object into a new copy, write SHA256SUMS and the
        manifest, and commit; roll the copy back on any failure or stop."""
        started = datetime.now(timezone.utc)
        prefix, copy = self._begin(backend, started, ctx)
        ctx.log.info("%s: making copy %s on %s", self.id, prefix, backend.describe())
        progress = {o.path: Progress(o.path) for o in self.objects}
        ctx.plugins.emit("palhm_objects_started", task=self, progress=list(progress.values()))
        try:
            results = build_all(
                self.objects,
                lambda o: o.group,
                self.groups,
                lambda o: self._build(o, copy, ctx, progress[o.path]),
                nb_workers=ctx.nb_workers,
                children=ctx.children,
                signals=ctx.signals,
            )
            ctx.signals.check()
            made = _Made(prefix, started, datetime.now(timezone.utc), results)
            made.manifest = self._write_manifest(copy, made, ctx)
            ctx.signals.check()
            ctx.signals.call(copy.commit, "the commit")
        except BaseException:
            self._roll_back(copy, prefix, ctx)
            raise
        return made

    def _write_manifest(self, copy: CopyWriter, made: _Made, ctx: RunContext) -> dict:
        entries = [
            {"path": o.path, "size": r.size, "sha256": r.sha256}
            for o, r in zip(self.objects, made.results, strict=True)
        ]
        manifest = make_manifest(
            task=self.id,
            prefix=made.prefix,
            version=_version(),
            started=made.started.isoformat(),
            finished=made.finished.isoformat(),
            objects=entries,
        )
        ctx.signals.call(
            lambda: self._write(copy, SUMS_NAME, sums_bytes(entries)), "writing SHA256SUMS"
        )
        ctx.signals.call(
            lambda: self._write(copy, MANIFEST_NAME, manifest_bytes(manifest)),
            "writing the manifest",
        )
        return manifest

    def _rotation(self, backend: Backend, copies, keep: str, ctx: RunContext):
        """Rotate after the copy ``keep`` was made: ``(rotated, None)``, or
        ``(rotated so far, error)`` when a deletion failed (the
        ``palhm_rotation_failed`` event). A stop still raises."""
        rotated: list[CopyInfo] = []

        def gone(copy: CopyInfo) -> None:
            rotated.append(copy)
            self._rotated(backend, copy, ctx)

        try:
            ctx.signals.call(lambda: self._rotate(backend, copies, keep, gone), "the rotation")
        except (BackendError, TaskError) as e:  # TaskError: check_order
            ctx.log.error("%s: rotation failed, copy %s is kept: %s", self.id, keep, e)
            ctx.plugins.emit("palhm_rotation_failed", task=self, backend=backend, error=e)
            return rotated, e
        ctx.signals.check()  # the copy stays: it is complete
        return rotated, None

    def _rotate(self, backend: Backend, copies: list[CopyInfo], keep: str, gone) -> None:
        """Delete the copies rotation selects among ``copies`` (as
        :func:`palhm_core.copies.judge_copies` gives them), never ``keep`` nor
        a newer one; ``gone(copy)`` as each one is deleted."""
        check_order(keep, copies)
        doomed = self._decide(copies, keep).deleted
        by_prefix = {copy.prefix: copy for copy in doomed}
        if doomed:
            backend.delete_copies(list(by_prefix), lambda prefix: gone(by_prefix[prefix]))

    def _decide(self, copies: list[CopyInfo], keep: str) -> Rotation:
        """What rotation deletes and keeps among the task's own complete
        copies (the retention policy, then the caps), never ``keep`` nor a
        newer one."""
        return decide(
            copies,
            keep=keep,
            nb_copy_limit=self.nb_copy_limit,
            root_size_limit=self.root_size_limit,
            policy=self.policy,
        )

    def _report(self, backend: Backend, made: _Made, copies, rotated, error) -> dict:
        report = {
            "task": self.id,
            "backend": backend.describe(),
            "prefix": made.prefix,
            "started": made.started.isoformat(),
            "finished": made.finished.isoformat(),
            "seconds": round((made.finished - made.started).total_seconds(), 3),
            "objects": [
                {
                    "path": o.path,
                    "bytes": r.size,
                    "sha256": r.sha256,
                    "seconds": round(r.seconds, 3),
                    "exit-codes": r.exit_codes,
                }
                for o, r in zip(self.objects, made.results, strict=True)
            ],
            "total-bytes": made.manifest["size"],
            "rotated": [c.prefix for c in rotated],
            "kept-by": self._decide(copies, made.prefix).kept,
            "future-copies": [c.prefix for c in copies if c.future],
            "damaged-copies": [c.prefix for c in copies if c.state == "damaged"],
            "foreign-copies": [c.prefix for c in copies if c.state == "foreign"],
        }
        if error is not None:
            report["rotation-error"] = str(error)
        return report

    def _roll_back(self, copy: CopyWriter, prefix: str, ctx: RunContext) -> None:
        """Remove the copy being made. What cannot be removed (the server is
        gone, or the run is stopping and it takes too long) is left for the
        next run's leftover scan, with a warning."""
        if ctx.signals.abandoned:
            # A write or the commit left behind may still land: rolling back
            # now could race it, so the copy is left as it is.
            ctx.log.warning(
                "%s: copy %s is left as it is, the next run removes it unless it is complete: "
                "%s did not finish within %g s of the stop",
                self.id,
                prefix,
                ", ".join(ctx.signals.abandoned),
                FINISH_WAIT,
            )
            return
        ctx.log.info("%s: rolling back copy %s", self.id, prefix)
        try:
            ctx.signals.call(copy.rollback, "the rollback")
        except Exception as e:
            # Secondary to the error being raised (and often the same cause,
            # such as an unreachable server).
            ctx.log.warning(
                "%s: copy %s is left incomplete, the next run removes it: %s", self.id, prefix, e
            )

    def _rotated(self, backend, copy, ctx):
        ctx.log.info("%s: rotated away copy %s", self.id, copy.prefix)
        ctx.plugins.emit("palhm_copy_rotated", task=self, backend=backend, copy=copy)
        # Stopping: the copies not yet deleted stay (a deletion cut short is
        # finished by the next run).
        ctx.signals.check()

    def _begin(
        self, backend: Backend, started: datetime, ctx: RunContext
    ) -> tuple[str, CopyWriter]:
        now = started
        for attempt in range(PREFIX_ATTEMPTS):
            prefix = self.prefix_gen(now)
            if not prefix or "/" in prefix or prefix in (".", ".."):
                raise TaskError(f"{self.id}: prefix generator gave an unusable name {prefix!r}")
            try:
                return prefix, ctx.signals.call(
                    partial(backend.begin, prefix), "beginning the copy"
                )
            except PrefixExists:
                if attempt == PREFIX_ATTEMPTS - 1:
                    raise BackendError(
                        f"{self.id}: copy {prefix!r} already exists on {backend.describe()} "
                        "and the prefix generator keeps giving that name"
                    ) from None
                ctx.signals.wait(1.0)
                ctx.signals.check()
                now = datetime.now(timezone.utc)
        raise AssertionError("unreachable")

    def _build(self, obj: BackupObject, copy: CopyWriter, ctx: RunContext, progress: Progress):
        sink = copy.sink(obj.path, obj.alloc_size)
        try:
            result = run_pipeline(
                obj.execs,
                sink,
                ctx.children,
                vl=ctx.vl,
                block_size=self.backend.block_size,
                progress=progress,
            )
            sink.close()
        except BaseException as e:
            sink.abort()
            # PALHM writes every byte itself, so a full disk is its own write
            # error ("No space left on device"), named here with the object.
            if type(e) in (TaskError, BackendError, StorageFull):
                raise type(e)(f"task {self.id!r}: object {obj.path!r}: {e}") from None
            raise
        ctx.log.debug("%s: %s: %d bytes, sha256 %s", self.id, obj.path, result.size, result.sha256)
        return result

    @staticmethod
    def _write(copy: CopyWriter, path: str, data: bytes) -> None:
        sink = copy.sink(path, len(data))
        try:
            sink.write(memoryview(data))
            sink.close()
        except BaseException:
            sink.abort()
            raise


def _object_step(obj: BackupObject) -> PlanStep:
    pipeline = " | ".join(ex.shell_line() for ex in obj.execs)
    return PlanStep("object", f"{obj.path}: {pipeline}", commands=[ex.argv for ex in obj.execs])


class RotationFailed(FailedWithReport, BackendError):
    """The copy was made and is kept, but deleting old copies failed: the run
    fails all the same. ``report`` is the task's report."""


@dataclass
class _Made:
    """A copy made by a run."""

    prefix: str
    started: datetime
    finished: datetime
    results: list
    manifest: dict = field(default_factory=dict)


def _raise(error: BaseException):
    raise error


def _version() -> str:
    from palhm_core import __version__

    return __version__


@hookimpl
def palhm_task_types():
    return [BackupTask]
