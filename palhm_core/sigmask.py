"""The ``sigmask`` builtin: block or unblock signals for PALHM and the
commands it starts afterwards (the reboot routine blocks SIGTERM so that
PALHM can finish when the system starts shutting down)."""

from __future__ import annotations

import signal

from palhm_core.hookspecs import hookimpl

#: Signals no process can block: the kernel ignores them in a mask.
UNBLOCKABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})


def parse_signal(value, place) -> int:
    """``"TERM"``, ``"SIGTERM"``, ``"term"``, ``15`` or ``"15"``; real-time
    signals by number."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            number = int(text)
        else:
            name = text.upper()
            name = name if name.startswith("SIG") else "SIG" + name
            member = signal.Signals.__members__.get(name)
            number = int(member) if member is not None else None
    if number is None or number not in signal.valid_signals():
        raise place.error(f"unknown signal {value!r}")
    if number in UNBLOCKABLE:
        raise place.error(f"{signal.Signals(number).name} cannot be blocked or unblocked")
    return number


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
                "action": {
                    "type": "string",
                    "pattern": "^(?i:block|unblock)$",
                    "description": 'What to do: "block" or "unblock" (in any case).',
                },
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
            action = op.get("action") if isinstance(op, dict) else None
            action = action.lower() if isinstance(action, str) else None
            if action not in ("block", "unblock"):
                raise (place / i / "action").error('expected "block" or "unblock"')
            sigs = op.get("sig")
            if not isinstance(sigs, list):
                raise (place / i / "sig").error("expected a list of signals")
            how = signal.SIG_BLOCK if action == "block" else signal.SIG_UNBLOCK
            where = place / i / "sig"
            self.ops.append((how, [parse_signal(s, where / j) for j, s in enumerate(sigs)]))

    def __call__(self) -> None:
        for how, sigs in self.ops:
            signal.pthread_sigmask(how, sigs)


@hookimpl
def palhm_builtins():
    return [Sigmask]
