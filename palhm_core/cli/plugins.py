"""``palhm plugins``: what is installed and what each plugin provides."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list plugins, their distributions and what they provide")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument("--all", action="store_true", help="include the core's built-ins")
    p.set_defaults(func=cmd_plugins)


def cmd_plugins(args) -> int:
    from palhm_core.plugins import Plugins

    plugins = Plugins()
    infos = [i for i in plugins.infos.values() if args.all or not i.builtin]
    if args.json:
        json.dump(
            {
                "plugins": [
                    {
                        "name": i.name,
                        "distribution": i.distribution,
                        "version": i.version,
                        "builtin": i.builtin,
                        "provides": i.provides,
                    }
                    for i in infos
                ],
                "failed": plugins.failures,
            },
            sys.stdout,
            indent=2,
        )
        print()
        return 0
    rows = [("PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES")]
    for i in infos:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in i.provides.items()) or "-"
        rows.append((i.name, i.distribution, i.version, provides))
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(3)) + "  " + r[3])
    return 0
