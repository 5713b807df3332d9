"""Plugin discovery and the registries built from what plugins return.

Plugins are modules registered on one ``pluggy.PluginManager("palhm")``: the
core's own built-ins first, then every entry point of the group ``palhm``, one
at a time so a plugin that fails to import is named instead of crashing PALHM.
Setting ``PALHM_DISABLE_PLUGIN_AUTOLOAD=1`` skips the entry points (tests,
debugging); ``PALHM_PLUGINS=name,name`` then loads just those.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType

import pluggy

from palhm_core import hookspecs
from palhm_core.errors import PluginError

log = logging.getLogger("palhm")

ENTRY_POINT_GROUP = "palhm"

BUILTIN_MODULES = (
    "palhm_core.tasks.backup",
    "palhm_core.tasks.routine",
    "palhm_core.prefix",
    "palhm_core.sigmask",
)

#: kind -> registry hook
KINDS = {
    "backend": "palhm_backends",
    "task type": "palhm_task_types",
    "prefix generator": "palhm_prefix_generators",
    "builtin": "palhm_builtins",
}

#: Names the project's own distributions provide, for "pip install ..." hints.
KNOWN_PROVIDERS = {
    ("backend", "aws-s3"): "palhm-s3",
    ("backend", "localfs"): "palhm-localfs",
    ("backend", "null"): "palhm-null",
}

#: ``modules`` names of the original PALHM that are spelt differently now.
MODULE_ALIASES = {"aws": "s3"}


@dataclass
class PluginInfo:
    """One loaded plugin: entry point name, distribution and what it gives."""

    name: str
    distribution: str
    version: str
    builtin: bool = False
    provides: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Registered:
    cls: type
    plugin: PluginInfo


class Plugins:
    """The plugin manager and the name -> class registries."""

    def __init__(self, autoload: bool | None = None):
        self.pm = pluggy.PluginManager("palhm")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.failures: list[str] = []
        core = _core_version()
        for modname in BUILTIN_MODULES:
            module = importlib.import_module(modname)
            self._register(module, PluginInfo(modname, "palhm", core, builtin=True))
        if autoload is None:
            autoload = os.environ.get("PALHM_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
        wanted = {n.strip() for n in os.environ.get("PALHM_PLUGINS", "").split(",") if n.strip()}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if autoload or ep.name in wanted:
                self._load_entry_point(ep)
        self.pm.check_pending()
        self.registries = {kind: self._collect(kind, hook) for kind, hook in KINDS.items()}

    @property
    def hook(self):
        return self.pm.hook

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = ep.dist
        info = PluginInfo(ep.name, dist.name if dist else "?", dist.version if dist else "?")
        if ep.name in self.infos:
            other = self.infos[ep.name]
            raise PluginError(
                f"plugin name {ep.name!r} is claimed by both {other.distribution} "
                f"and {info.distribution}: uninstall one"
            )
        try:
            module = ep.load()
        except Exception as e:  # a broken plugin must not take PALHM down
            msg = (
                f"plugin {ep.name!r} ({info.distribution} {info.version}) failed to load "
                f"with palhm {_core_version()}: {type(e).__name__}: {e}"
            )
            self.failures.append(msg)
            log.warning("%s", msg)
            return
        self._register(module, info)

    def _register(self, module: ModuleType, info: PluginInfo) -> None:
        self.pm.register(module, name=info.name)
        self.infos[info.name] = info

    def _collect(self, kind: str, hookname: str) -> dict[str, Registered]:
        registry: dict[str, Registered] = {}
        caller = getattr(self.pm.hook, hookname)
        for impl in caller.get_hookimpls():  # registration order
            info = self.infos[self.pm.get_name(impl.plugin)]
            for cls in impl.function() or ():
                name = cls.name
                if name in registry:
                    other = registry[name].plugin
                    raise PluginError(
                        f"{kind} {name!r} is provided by both {other.distribution} "
                        f"(plugin {other.name!r}) and {info.distribution} (plugin {info.name!r})"
                    )
                registry[name] = Registered(cls, info)
                info.provides.setdefault(kind, []).append(name)
        return registry

    def emit(self, hookname: str, **kwargs) -> None:
        """Broadcast an event hook; a plugin that raises is logged and the
        others still hear of the event."""
        for impl in getattr(self.pm.hook, hookname).get_hookimpls():
            try:
                impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception as e:
                name = self.pm.get_name(impl.plugin)
                log.warning("plugin %r failed in %s: %s: %s", name, hookname, type(e).__name__, e)

    def lookup(self, kind: str, name: str, place) -> type:
        """The class registered as ``name``, or a config error telling what
        to install and what is installed."""
        registered = self.registries[kind].get(name)
        if registered is not None:
            return registered.cls
        available = ", ".join(sorted(self.registries[kind])) or "none"
        hint = KNOWN_PROVIDERS.get((kind, name))
        problem = f"unknown {kind} {name!r}"
        if hint:
            problem += f" (pip install {hint})"
        raise place.error(f"{problem}; installed: {available}")

    def require_module(self, name: str, place) -> None:
        """``modules`` in a config: the plugin must be loaded."""
        name = MODULE_ALIASES.get(name, name)
        if name in self.infos:
            return
        loaded = ", ".join(sorted(n for n, i in self.infos.items() if not i.builtin)) or "none"
        raise place.error(
            f"plugin {name!r} is not installed (pip install palhm-{name}); loaded: {loaded}"
        )


def _core_version() -> str:
    from palhm_core import __version__

    return __version__
