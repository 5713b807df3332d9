"""The boot report: a message saying that the host started, sent by
``palhm boot-report`` (from ``conf/systemd/palhm-boot-report.service``) as the
original PALHM did, configured by its ``boot-report`` key.

``mua`` picks the notifier: ``mailx`` (the ``mail`` notifier through
``mailx -s``; ``mua-param``: ``exec``, the program, and ``int-opts``, each
passed as ``-S OPTION``), ``sendmail`` (``sendmail -t``), ``aws-sns``
(palhm-s3; ``mua-param``: ``profile``, ``region``, ``endpoint-url``; the
recipients are topic ARNs) or ``stdout``. ``mail-to`` lists the recipients.

The body is a YAML document under ``boot-report:`` (``hostname``, ``tz``,
``uptime-since``, ``uptime``, ``boot-id``), after the ``header`` as ``#``
comment lines. ``boot-wait: "systemd"`` first waits (at most
``boot-wait-timeout`` seconds) for ``systemctl is-system-running --wait`` and
reports the state it answers; ``delay`` waits that many seconds more.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from palhm_core.config.place import Place
from palhm_core.notify import Message, NotifyError, send_bounded
from palhm_core.notify.message import one_line

DEFAULT_SUBJECT = "Boot Report from {hostname}"
DEFAULT_HEADER = "This host has booted; what follows is what PALHM knows of it.\nHost: {hostname}"
#: Seconds ``boot-wait: "systemd"`` waits for the system to finish starting.
DEFAULT_BOOT_WAIT = 600
#: Seconds one delivery may take.
DEFAULT_TIMEOUT = 30
BOOT_ID = "/proc/sys/kernel/random/boot_id"
UPTIME = "/proc/uptime"

MUAS = ("mailx", "sendmail", "aws-sns", "stdout")

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["mail-to"],
    "description": "The boot report `palhm boot-report` sends (as the original PALHM).",
    "properties": {
        "mua": {
            "enum": list(MUAS),
            "description": "How it is sent: mailx (mailx -s), sendmail (sendmail -t), aws-sns "
            "(palhm-s3: an SNS message) or stdout (printed). Required in one file of an "
            "include tree (the others' mail-to join its).",
        },
        "mua-param": {
            "type": "object",
            "additionalProperties": False,
            "description": "Parameters of the mua.",
            "properties": {
                "exec": {
                    "type": "string",
                    "minLength": 1,
                    "description": "mailx, sendmail: the program. Default: found on PATH.",
                },
                "int-opts": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "mailx: settings, each passed as -S OPTION.",
                },
                "profile": {"type": "string", "description": "aws-sns: the AWS profile."},
                "region": {"type": "string", "description": "aws-sns: the AWS region."},
                "endpoint-url": {
                    "type": "string",
                    "description": "aws-sns: an SNS endpoint other than AWS's.",
                },
            },
        },
        "mail-to": {
            "type": "array",
            "items": {
                "type": "string",
                "pattern": "^[^-\\s][^\\x00-\\x1f\\x7f]*$",
                "description": "A recipient, not starting with - or a blank, on one line.",
            },
            "minItems": 1,
            "description": "Recipients: addresses or users (mailx, sendmail), topic ARNs "
            "(aws-sns).",
        },
        "subject": {
            "type": "string",
            "description": f"The subject; {{hostname}} is the host's name. Default "
            f'"{DEFAULT_SUBJECT}".',
        },
        "header": {
            "type": "string",
            "description": "Text shown before the report as # comment lines; {hostname} is "
            "the host's name. Default: two lines naming the host.",
        },
        "uptime-since": {
            "type": "boolean",
            "description": "Include when the host booted (uptime --since). Default true.",
        },
        "uptime": {
            "type": "boolean",
            "description": "Include how long it has been up (uptime -p). Default true.",
        },
        "boot-id": {
            "type": "boolean",
            "description": "Include the kernel's boot id. Default true.",
        },
        "bootid": {"type": "boolean", "description": "The same as boot-id."},
        "boot-wait": {
            "enum": ["systemd"],
            "description": 'systemd: first wait for "systemctl is-system-running --wait" (at '
            "most boot-wait-timeout seconds). Default: no wait.",
        },
        "boot-wait-timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 86400,
            "description": f"Seconds boot-wait waits at most. Default {DEFAULT_BOOT_WAIT}.",
        },
        "delay": {
            "type": "number",
            "minimum": 0,
            "maximum": 86400,
            "description": "Seconds to wait before sending. Default 0.",
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 300,
            "description": f"Seconds the sending may take. Default {DEFAULT_TIMEOUT}.",
        },
    },
}


class BootReport:
    """The ``boot-report`` key, built when the config loads."""

    def __init__(self, conf: dict[str, Any], place: Place, plugins) -> None:
        self.subject = conf.get("subject", DEFAULT_SUBJECT)
        self.header = conf.get("header", DEFAULT_HEADER)
        self.uptime_since = conf.get("uptime-since", True)
        self.uptime = conf.get("uptime", True)
        self.boot_id = conf.get("boot-id", conf.get("bootid", True))
        self.boot_wait = conf.get("boot-wait")
        self.boot_wait_timeout = conf.get("boot-wait-timeout", DEFAULT_BOOT_WAIT)
        self.delay = conf.get("delay", 0)
        #: What ``systemctl is-system-running`` answered, once boot-wait ran.
        self.system_state: str | None = None
        for key in ("subject", "header"):
            _check_template(getattr(self, key), place / key)
        self.notifier = _notifier(conf, place, plugins)

    def message(self) -> Message:
        """The report as it stands now."""
        host = os.uname().nodename
        doc: dict[str, Any] = {"hostname": host, "tz": _tz()}
        uptime = _uptime_seconds()
        now = datetime.now(timezone.utc)
        if self.uptime_since and uptime is not None:
            since = (now - timedelta(seconds=uptime)).astimezone()
            doc["uptime-since"] = since.isoformat(timespec="seconds")
        if self.uptime and uptime is not None:
            doc["uptime"] = _pretty(uptime)
        if self.boot_id:
            doc["boot-id"] = _boot_id()
        if self.system_state:
            doc["system-state"] = self.system_state
        import yaml

        header = "".join(
            f"# {line}".rstrip() + "\n" for line in _fill(self.header, host).split("\n")
        )
        body = header + yaml.safe_dump({"boot-report": doc}, sort_keys=False, width=1000)
        return Message("boot", one_line(_fill(self.subject, host)), body, {"boot-report": doc})

    def wait_for_boot(self) -> None:
        """``boot-wait`` and ``delay``: each bounded."""
        if self.boot_wait == "systemd":
            self.system_state = _systemd_state(self.boot_wait_timeout)
        if self.delay:
            time.sleep(self.delay)

    def send(self) -> None:
        """Wait as configured and send the report; :class:`NotifyError` when
        it cannot be sent."""
        self.wait_for_boot()
        send_bounded(self.notifier, self.message())


def _notifier(conf: dict[str, Any], place: Place, plugins):
    """The notifier ``mua`` names, built from ``mua-param`` and ``mail-to``."""
    if "mua" not in conf:
        raise (place / "mua").error("required (in one file of the include tree)")
    mua = conf["mua"]
    param = conf.get("mua-param", {})
    timeout = conf.get("timeout", DEFAULT_TIMEOUT)
    allowed = {
        "mailx": ("exec", "int-opts"),
        "sendmail": ("exec",),
        "aws-sns": ("profile", "region", "endpoint-url"),
        "stdout": (),
    }[mua]
    for key in param:
        if key not in allowed:
            raise (place / "mua-param" / key).error(f"is not a parameter of mua {mua}")
    if mua == "aws-sns":
        params = {"topics": conf["mail-to"], **param}
        cls = plugins.lookup("notifier", "aws-sns", place / "mua")
    elif mua == "stdout":
        params = {"to": conf["mail-to"]}
        cls = plugins.lookup("notifier", "stdout", place / "mua")
    else:
        params = {"to": conf["mail-to"], "via": mua}
        if "exec" in param:
            params["program"] = param["exec"]
        if "int-opts" in param:
            params["mailx-options"] = param["int-opts"]
        cls = plugins.lookup("notifier", "mail", place / "mua")
    return cls({**params, "timeout": timeout}, place)


def _check_template(text: str, place: Place) -> None:
    try:
        _fill(text, "host")
    except (KeyError, IndexError, ValueError) as e:
        raise place.error(
            f"only {{hostname}} can be substituted ({type(e).__name__}: {e})"
        ) from None


def _fill(text: str, host: str) -> str:
    return text.format(hostname=host)


def _tz() -> list[str]:
    """The local time zone's names and its offset now (``+0900``)."""
    names = list(dict.fromkeys(time.tzname))
    return [*names, datetime.now().astimezone().strftime("%z")]


def _uptime_seconds() -> float | None:
    try:
        with open(UPTIME, encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _pretty(seconds: float) -> str:
    """``up 2 days, 3 hours, 4 minutes``, as ``uptime -p`` words it."""
    minutes = int(seconds // 60)
    parts = []
    for unit, size in (("week", 7 * 1440), ("day", 1440), ("hour", 60), ("minute", 1)):
        n, minutes = divmod(minutes, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n > 1 else ''}")
    return "up " + (", ".join(parts) or "0 minutes")


def _boot_id() -> str | None:
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _systemd_state(timeout: float) -> str:
    """What ``systemctl is-system-running --wait`` answers, waiting at most
    ``timeout`` seconds (then the report goes anyway, saying so)."""
    try:
        done = subprocess.run(
            ["systemctl", "is-system-running", "--wait"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"still starting after {timeout:g} s"
    except OSError as e:
        raise NotifyError(f"boot-wait: cannot run systemctl: {e.strerror or e}") from None
    return done.stdout.strip() or f"unknown (systemctl exited with {done.returncode})"
