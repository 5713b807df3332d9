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
    "palhm_core.retention.calendar",
)

#: kind -> registry hook
KINDS = {
    "backend": "palhm_backends",
    "task type": "palhm_task_types",
    "prefix generator": "palhm_prefix_generators",
    "builtin": "palhm_builtins",
    "retention policy": "palhm_retention_policies",
}

#: Names the project's own distributions provide, for "pip install ..." hints.
KNOWN_PROVIDERS = {
    ("backend", "aws-s3"): "palhm-s3",
    ("backend", "localfs"): "palhm-localfs",
    ("backend", "null"): "palhm-null",
}

#: Plugin (entry point) names of the project's own distributions.
KNOWN_DISTRIBUTIONS = {"s3": "palhm-s3", "localfs": "palhm-localfs", "null": "palhm-null"}

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
        #: One line for each plugin that could not be used.
        self.failures: list[str] = []
        self.failed: dict[str, str] = {}
        core = _core_version()
        for modname in BUILTIN_MODULES:
            module = importlib.import_module(modname)
            self._register(module, PluginInfo(modname, "palhm", core, builtin=True))
        self.pm.check_pending()  # the core's own wiring
        if autoload is None:
            autoload = os.environ.get("PALHM_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
        self.autoload = autoload
        wanted = {n.strip() for n in os.environ.get("PALHM_PLUGINS", "").split(",") if n.strip()}
        found = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            found.add(ep.name)
            if autoload or ep.name in wanted:
                self._load_entry_point(ep)
        for name in sorted(wanted - found):
            log.warning("PALHM_PLUGINS names %r, but no installed distribution provides it", name)
        self.registries = self._build_registries()

    @property
    def hook(self):
        return self.pm.hook

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = ep.dist
        info = PluginInfo(ep.name, dist.name if dist else "?", dist.version if dist else "?")
        if ep.name in self.infos or ep.name in self.failed:
            other = self.infos.get(ep.name) or self.failed[ep.name]
            raise PluginError(
                f"plugin name {ep.name!r} is claimed by both "
                f"{getattr(other, 'distribution', other)} and {info.distribution}: uninstall one"
            )
        try:
            module = ep.load()
        except Exception as e:  # a broken plugin must not take PALHM down
            self._fail(info, "failed to load", e)
            return
        try:
            self._register(module, info)
            self.pm.check_pending()  # a misspelt hook name or argument
        except pluggy.PluginValidationError as e:
            self.pm.unregister(name=info.name)
            self.infos.pop(info.name, None)
            self._fail(info, "is not a valid PALHM plugin", e)
        except ValueError as e:  # the same module under two names
            self._fail(info, "cannot be registered", e)

    def _fail(self, info: PluginInfo, what: str, e: BaseException) -> None:
        """Report a plugin that cannot be used, in one line, and go on."""
        text = " ".join(str(e).split())
        msg = (
            f"plugin {info.name!r} ({info.distribution} {info.version}) {what} "
            f"with palhm {_core_version()}: {type(e).__name__}" + (f": {text}" if text else "")
        )
        self.failures.append(msg)
        self.failed[info.name] = info.distribution
        log.warning("%s", msg)

    def _register(self, module: ModuleType, info: PluginInfo) -> None:
        self.pm.register(module, name=info.name)
        self.infos[info.name] = info

    def _build_registries(self) -> dict[str, dict[str, Registered]]:
        """Ask each plugin, in registration order, for its classes; a plugin
        whose registry hook fails or returns something unusable is dropped
        whole; two plugins claiming one name are refused."""
        registries: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        for name, info in list(self.infos.items()):
            plugin = self.pm.get_plugin(name)
            try:
                given = {kind: self._classes(plugin, hook) for kind, hook in KINDS.items()}
            except Exception as e:
                if info.builtin:
                    raise
                self.pm.unregister(plugin)
                del self.infos[name]
                self._fail(info, "failed to register", e)
                continue
            for kind, classes in given.items():
                registry = registries[kind]
                for cls in classes:
                    if cls.name in registry:
                        other = registry[cls.name].plugin
                        raise PluginError(
                            f"{kind} {cls.name!r} is provided by both {other.distribution} "
                            f"(plugin {other.name!r}) and {info.distribution} "
                            f"(plugin {info.name!r}): uninstall one"
                        )
                    registry[cls.name] = Registered(cls, info)
                    info.provides.setdefault(kind, []).append(cls.name)
        return registries

    def _classes(self, plugin, hookname: str) -> list[type]:
        classes: list[type] = []
        for impl in getattr(self.pm.hook, hookname).get_hookimpls():
            if impl.plugin is not plugin:
                continue
            returned = impl.function()
            for cls in returned or ():
                name = getattr(cls, "name", None)
                if not isinstance(name, str) or not name:
                    raise TypeError(f"{hookname} returned {cls!r}, which has no name")
                if not isinstance(getattr(cls, "schema", None), dict):
                    raise TypeError(f"{hookname}: {name!r} has no schema dict")
                classes.append(cls)
        return classes

    def emit(self, hookname: str, **kwargs) -> None:
        """Broadcast an event hook; a plugin that raises is logged and the
        others still hear of the event."""
        for impl in getattr(self.pm.hook, hookname).get_hookimpls():
            try:
                impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception as e:
                name = self.pm.get_name(impl.plugin)
                log.warning("plugin %r failed in %s: %s: %s", name, hookname, type(e).__name__, e)

    def _not_loaded_note(self) -> str:
        if not self.autoload:
            return " (plugin autoloading is off: PALHM_DISABLE_PLUGIN_AUTOLOAD)"
        return ""

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
        raise place.error(f"{problem}; installed: {available}{self._not_loaded_note()}")

    def require_module(self, name: str, place) -> None:
        """``modules`` in a config: the plugin must be loaded."""
        wanted = MODULE_ALIASES.get(name, name)
        if wanted in self.infos:
            return
        shown = repr(wanted) if wanted == name else f"{wanted!r} (for module {name!r})"
        loaded = ", ".join(sorted(n for n, i in self.infos.items() if not i.builtin)) or "none"
        if wanted in self.failed:
            raise place.error(
                f"plugin {shown} of {self.failed[wanted]} failed to load (see the warning "
                f"above); loaded: {loaded}"
            )
        dist = KNOWN_DISTRIBUTIONS.get(wanted)
        how = f"pip install {dist}" if dist else "no known distribution provides it"
        raise place.error(
            f"plugin {shown} is not installed ({how}); loaded: {loaded}{self._not_loaded_note()}"
        )


def _core_version() -> str:
    from palhm_core import __version__

    return __version__
