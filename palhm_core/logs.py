"""PALHM's log on stderr: plain lines for cron mail and terminals, syslog
priority prefixes (``<3>``) and no timestamps under systemd's journal.

Every line goes through :func:`palhm_core.redact.redact`, so passwords in
URLs and secret options never reach the log. While the progress display owns
the terminal's last line (:func:`set_status_line`), a log line first erases
it and the display redraws it after.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from palhm_core.redact import redact

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
        text = redact(record.getMessage())
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
        if self.journal:
            prio = PRIORITIES.get(record.levelno, 7 if record.levelno < logging.INFO else 6)
            return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])
        if record.levelno >= logging.WARNING:
            return f"palhm: {record.levelname.lower()}: {text}"
        return f"palhm: {text}"


#: Serialises writes to the terminal between log lines and the progress display.
TERMINAL = threading.RLock()
_status = None


def set_status_line(status) -> None:
    """Register (or, with None, drop) the progress display: an object with
    ``erase()`` and ``draw()``, called with :data:`TERMINAL` held."""
    global _status
    with TERMINAL:
        _status = status


class _Handler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        with TERMINAL:
            status = _status
            if status is not None:
                status.erase()
            super().emit(record)
            if status is not None:
                status.draw()


def write_lines(data: bytes) -> None:
    """Write whole lines (``data`` ends with a newline) that are not PALHM's
    own, such as a command's stderr, to stderr between PALHM's log lines:
    under :data:`TERMINAL`, so neither is ever cut into the other."""
    with TERMINAL:
        status = _status
        if status is not None:
            status.erase()
        try:
            sys.stderr.flush()
            sys.stderr.buffer.write(data)
            sys.stderr.buffer.flush()
        except (OSError, ValueError):  # stderr closed: nobody reads it
            pass
        if status is not None:
            status.draw()


def setup(vl: int) -> logging.Logger:
    log = logging.getLogger("palhm")
    for h in list(log.handlers):
        log.removeHandler(h)
    handler = _Handler(sys.stderr)
    handler.setFormatter(_Formatter(under_journal()))
    log.addHandler(handler)
    log.setLevel(level_for(vl))
    log.propagate = False
    return log


def error_line(text: str) -> str:
    """A line PALHM prints outside the logger (the final error), with its
    prefix and secrets hidden."""
    return journal_prefix(logging.ERROR) + redact(text)


def journal_prefix(level: int) -> str:
    """The priority prefix for a line printed outside the logger."""
    return f"<{PRIORITIES[level]}>" if under_journal() else "palhm: "
