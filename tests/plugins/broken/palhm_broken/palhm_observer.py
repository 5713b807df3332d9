"""A plugin with settings that records what it hears: its settings, and each
event as one JSON line in the file its ``log`` setting names."""

import json

from palhm_core.api import hookimpl

settings_seen = {}


@hookimpl
def palhm_settings_schema():
    return {
        "properties": {
            "log": {"type": "string", "description": "The file events are appended to."},
            "api-token": {"type": "string", "description": "A secret, never shown."},
            "level": {"type": "integer", "minimum": 0, "description": "Any number."},
        },
        "required": ["log"],
    }


@hookimpl
def palhm_configure(settings, place):
    if settings.get("level") == 13:
        raise (place / "level").error("13 is unlucky")
    settings_seen.update(settings)


def _record(**event):
    if "log" in settings_seen:
        with open(settings_seen["log"], "a") as f:
            f.write(json.dumps(event, default=str) + "\n")


@hookimpl
def palhm_task_started(task, dry_run):
    _record(event="task_started", task=task.id, dry_run=dry_run)


@hookimpl
def palhm_copy_committed(task, prefix, dry_run):
    _record(event="copy_committed", task=task.id, prefix=prefix, dry_run=dry_run)


@hookimpl
def palhm_run_finished(exit_status, report, dry_run):
    _record(event="run_finished", exit_status=exit_status, report=report, dry_run=dry_run)
