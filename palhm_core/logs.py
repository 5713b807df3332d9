"""PALHM's log on stderr: plain lines for cron mail and terminals, syslog
priority prefixes (``<3>``) and no timestamps under systemd's journal."""

from __future__ import annotations

import logging
import os
import sys

LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def level_for(vl: int) -> int:
    """PALHM's verbosity (higher says more) as a logging level."""
    if vl <= 0:
        return logging.CRITICAL
    return LEVELS.get(vl, logging.DEBUG - (vl - 4))


def under_journal(stream=None) -> bool:
    """True when ``stream`` (stderr) is connected to systemd's journal."""
    stream = stream or sys.stderr
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return bool(dev) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool):
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if self.journal:
            prio = PRIORITIES.get(record.levelno, 7 if record.levelno < logging.INFO else 6)
            return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])
        if record.levelno >= logging.WARNING:
            return f"palhm: {record.levelname.lower()}: {text}"
        return f"palhm: {text}"


def setup(vl: int) -> logging.Logger:
    log = logging.getLogger("palhm")
    for h in list(log.handlers):
        log.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(under_journal()))
    log.addHandler(handler)
    log.setLevel(level_for(vl))
    log.propagate = False
    return log


def journal_prefix(level: int) -> str:
    """The priority prefix for a line printed outside the logger."""
    return f"<{PRIORITIES[level]}>" if under_journal() else "palhm: "
