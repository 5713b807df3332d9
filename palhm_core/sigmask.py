"""The ``sigmask`` builtin: block or unblock signals for PALHM and the
commands it starts afterwards (the reboot routine blocks SIGTERM so that
PALHM can finish when the system starts shutting down)."""

from __future__ import annotations

import signal

from palhm_core.hookspecs import hookimpl


def parse_signal(value, place) -> signal.Signals:
    """``"TERM"``, ``"SIGTERM"``, ``15`` or ``"15"``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            return signal.Signals(int(value))
        name = value.strip().upper()
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (ValueError, KeyError, AttributeError):
        raise place.error(f"unknown signal {value!r}") from None


class Sigmask:
    name = "sigmask"
    description = "Block or unblock signals (pthread_sigmask)."
    schema = {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["action", "sig"],
            "properties": {
                "action": {"enum": ["block", "unblock"], "description": "What to do."},
                "sig": {
                    "type": "array",
                    "items": {"type": ["string", "integer"]},
                    "description": 'Signals by name, with or without "SIG", or number.',
                },
            },
        },
    }

    def __init__(self, param, place):
        self.ops = []
        if not isinstance(param, list):
            raise place.error("expected a list of {action, sig} objects")
        for i, op in enumerate(param):
            if not isinstance(op, dict) or op.get("action") not in ("block", "unblock"):
                raise (place / i / "action").error('expected "block" or "unblock"')
            sigs = op.get("sig")
            if not isinstance(sigs, list):
                raise (place / i / "sig").error("expected a list of signals")
            how = signal.SIG_BLOCK if op["action"] == "block" else signal.SIG_UNBLOCK
            self.ops.append((how, [parse_signal(s, place / i / "sig" / j) for j, s in enumerate(sigs)]))

    def __call__(self) -> None:
        for how, sigs in self.ops:
            signal.pthread_sigmask(how, sigs)


@hookimpl
def palhm_builtins():
    return [Sigmask]
