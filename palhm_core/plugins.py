"""Plugin discovery and the registries built from what plugins return.

Plugins are modules registered on one ``pluggy.PluginManager("palhm")``: the
core's own built-ins first, then every entry point of the group ``palhm``, one
at a time so a plugin that fails to import is named instead of crashing PALHM.
Setting ``PALHM_DISABLE_PLUGIN_AUTOLOAD=1`` skips the entry points (tests,
debugging); ``PALHM_PLUGINS=name,name`` then loads just those.

What a plugin registers is checked before use (:mod:`palhm_core.plugin_checks`):
a plugin that gives anything unusable is disabled whole, with one warning,
and a config naming what it meant to provide is told why. Hooks are called
through pluggy one plugin at a time (:meth:`Plugins._call_one`), so that one
plugin's exception never keeps another from a hook.

A plugin already summed up in PALHM's cache that implements only registry
hooks is not imported at start (:mod:`palhm_core.plugin_summary`): its
classes are known by name, description and schema, and its module is
imported the first time one of them is used (:attr:`Registered.cls`).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import pluggy

from palhm_core import cache, entrypoints, hookspecs, plugin_checks, plugin_summary
from palhm_core.errors import PluginError

log = logging.getLogger("palhm")

ENTRY_POINT_GROUP = "palhm"

BUILTIN_MODULES = (
    "palhm_core.tasks.backup",
    "palhm_core.tasks.routine",
    "palhm_core.prefix",
    "palhm_core.sigmask",
    "palhm_core.notify.mail",
    "palhm_core.notify.webhook",
    "palhm_core.notify.stdout",
    "palhm_core.retention.calendar",
)

#: kind -> registry hook
KINDS = {
    "backend": "palhm_backends",
    "task type": "palhm_task_types",
    "prefix generator": "palhm_prefix_generators",
    "builtin": "palhm_builtins",
    "notifier": "palhm_notifiers",
    "retention policy": "palhm_retention_policies",
}

#: The project's own distributions, for "pip install ..." hints (a data file).
DISTRIBUTIONS_FILE = os.path.join(os.path.dirname(__file__), "data", "distributions.json")


def known_distribution(kind: str, name: str) -> str | None:
    """The project's distribution that provides the ``kind`` (``"plugins"``
    for an entry point name, or a registry kind) called ``name``, if any."""
    import json

    with open(DISTRIBUTIONS_FILE, encoding="utf-8") as f:
        known = json.load(f)
    table = known["plugins"] if kind == "plugins" else known["provides"].get(kind, {})
    return table.get(name)


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
    module: str = ""


@dataclass
class Registered:
    """A class a plugin registered. Its name, description and schema are
    known at once; the class itself, of a plugin not imported yet, is
    imported on first use of :attr:`cls`."""

    name: str
    description: str
    schema: dict
    plugin: PluginInfo
    loaded: type | None = None
    load: Callable[[], None] | None = None  # imports the plugin, setting loaded

    @classmethod
    def of(cls, klass: type, plugin: PluginInfo) -> Registered:
        return cls(klass.name, klass.description, klass.schema, plugin, klass)

    @property
    def cls(self) -> type:
        if self.loaded is None:
            self.load()
        return self.loaded


class Plugins:
    """The plugin manager and the name -> class registries."""

    def __init__(self, autoload: bool | None = None):
        self.pm = pluggy.PluginManager("palhm")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        #: One line for each plugin that could not be used.
        self.failures: list[str] = []
        #: Plugin name -> its distribution, for plugins that failed.
        self.failed: dict[str, str] = {}
        #: (kind, name) -> why the plugin providing it was disabled.
        self.disabled: dict[tuple[str, str], str] = {}
        #: Plugin name -> the JSON Schema of its ``plugins.NAME`` settings.
        self.settings_schemas: dict[str, dict] = {}
        #: Passed to every event hook as ``dry_run`` (set by ``palhm run``).
        self.dry_run = False
        #: Plugin name -> (entry point, summary) of the plugins not imported.
        self.deferred: dict[str, tuple[entrypoints.EntryPoint, dict]] = {}
        #: Plugin name -> fingerprint, of the plugins imported (to sum up).
        self._fingerprints: dict[str, str] = {}
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
        for ep in sorted(entrypoints.entry_points(ENTRY_POINT_GROUP), key=lambda e: e.name):
            found.add(ep.name)
            if autoload or ep.name in wanted:
                self._add_entry_point(ep)
        for name in sorted(wanted - found):
            log.warning("PALHM_PLUGINS names %r, but no installed distribution provides it", name)
        self.registries = self._build_registries()

    @property
    def hook(self):
        return self.pm.hook

    def _add_entry_point(self, ep: entrypoints.EntryPoint) -> None:
        """Import a plugin, or take it from the cache's summary if it may
        stay unimported."""
        info = PluginInfo(ep.name, ep.distribution, ep.version, module=ep.value)
        if ep.name in self.infos or ep.name in self.failed:
            other = self.infos.get(ep.name) or self.failed[ep.name]
            raise PluginError(
                f"plugin name {ep.name!r} is claimed by both "
                f"{getattr(other, 'distribution', other)} and {info.distribution}: uninstall one"
            )
        fingerprint = plugin_summary.fingerprint(ep)
        known = cache.summary(fingerprint) if fingerprint else None
        if known is not None and plugin_summary.deferrable(known):
            self.infos[ep.name] = info
            self.deferred[ep.name] = (ep, known)
            return
        self._load_entry_point(ep, info)
        if fingerprint and ep.name in self.infos:
            self._fingerprints[ep.name] = fingerprint

    def _load_entry_point(self, ep: entrypoints.EntryPoint, info: PluginInfo) -> None:
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
            return
        except ValueError as e:  # the same module under two names
            self._fail(info, "cannot be registered", e)
            return
        if not self.pm.get_hookcallers(module):
            unmarked = plugin_checks.unmarked_hooks(module)
            why = f"{', '.join(unmarked)} not marked with @hookimpl" if unmarked else "none found"
            log.warning("%s: implements no hook (%s)", _label(info), why)

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

    def _disable(self, info: PluginInfo, problem: str, names: list[tuple[str, str]]) -> None:
        """Take a plugin that gave something unusable out of the manager (its
        event hooks too), with one warning; ``names`` are the (kind, name)
        it meant to provide, so a config naming one is told why it cannot."""
        if info.builtin:
            raise PluginError(f"PALHM's own {info.name}: {problem}")  # a bug in PALHM
        self.pm.unregister(name=info.name)
        del self.infos[info.name]
        msg = f"{_label(info)}: {problem}; plugin disabled"
        self.failures.append(msg)
        self.failed[info.name] = info.distribution
        for key in names:
            self.disabled[key] = msg
        log.warning("%s", msg)

    def _register(self, module: ModuleType, info: PluginInfo) -> None:
        self.pm.register(module, name=info.name)
        self.infos[info.name] = info

    def _build_registries(self) -> dict[str, dict[str, Registered]]:
        """Ask each plugin, in registration order, for its classes and check
        them (:mod:`palhm_core.plugin_checks`); a plugin that gives one
        unusable thing is disabled whole; two plugins claiming one name are
        refused."""
        registries: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        for info in list(self.infos.values()):
            if info.name in self.deferred:
                given = self._summed_up(info)
            else:
                given = self._checked_classes(info)
            for kind, entries in given.items():
                registry = registries[kind]
                for entry in entries:
                    if entry.name in registry:
                        other = registry[entry.name].plugin
                        raise PluginError(
                            f"{kind} {entry.name!r} is provided by both {other.distribution} "
                            f"(plugin {other.name!r}) and {info.distribution} "
                            f"(plugin {info.name!r}): uninstall one"
                        )
                    registry[entry.name] = entry
                    info.provides.setdefault(kind, []).append(entry.name)
        return registries

    def _checked_classes(self, info: PluginInfo) -> dict[str, list[Registered]]:
        """The classes of an imported plugin, by kind, once checked (none if
        the plugin is disabled); a plugin that passed is summed up in the
        cache, so that the next run need not import it."""
        given, names, problem = self._plugin_classes(info)
        if problem is None:
            problem = self._settings_schema(info)
        if problem is not None:
            self._disable(info, problem, names)
            return {}
        hooks = self._hooks_of(info.name)
        if info.name in self._fingerprints and hooks:  # none: warned about each time
            summary = plugin_summary.summarize(given, hooks)
            if summary is not None:
                cache.keep_summary(self._fingerprints[info.name], summary)
        return {kind: [Registered.of(c, info) for c in classes] for kind, classes in given.items()}

    def _hooks_of(self, name: str) -> list[str]:
        """The names of the hooks plugin ``name`` implements."""
        callers = self.pm.get_hookcallers(self.pm.get_plugin(name)) or ()
        return [caller.name for caller in callers]

    def _summed_up(self, info: PluginInfo) -> dict[str, list[Registered]]:
        """The classes of a plugin not imported, from its summary."""
        _, summary = self.deferred[info.name]
        load = lambda: self._import_deferred(info.name)  # noqa: E731
        return {
            kind: [
                Registered(c["name"], c["description"], c["schema"], info, load=load)
                for c in classes
            ]
            for kind, classes in summary["classes"].items()
        }

    def _import_deferred(self, name: str) -> None:
        """Import a plugin known from its summary, and give its classes to
        the registries; its classes must be those summed up."""
        ep, summary = self.deferred.pop(name)
        info = self.infos.pop(name)
        self._load_entry_point(ep, info)
        given, _, problem = self._plugin_classes(info) if name in self.infos else ({}, [], None)
        if name not in self.infos or problem:
            raise PluginError(problem or self.failures[-1])
        if plugin_summary.summarize(given, self._hooks_of(name)) != summary:
            raise PluginError(
                f"{_label(info)} changed while PALHM was starting (installed or edited): run again"
            )
        for kind, classes in given.items():
            for c in classes:
                self.registries[kind][c.name].loaded = c

    def _plugin_classes(self, info: PluginInfo):
        """The classes one plugin gives, by kind, the (kind, name) pairs it
        claims, and the first problem with them (None when all are usable)."""
        plugin = self.pm.get_plugin(info.name)
        given: dict[str, list[type]] = {}
        names: list[tuple[str, str]] = []
        for kind, hookname in KINDS.items():
            if not self._implements(plugin, hookname):
                continue
            try:
                returned = self._call_one(hookname, plugin, {})
            except Exception as e:
                return given, names, f"{hookname} raised {_error_line(e)}"
            if not isinstance(returned, (list, tuple)):
                return (
                    given,
                    names,
                    f"{hookname} returned {plugin_checks.what(returned)}, not a list of classes",
                )
            try:
                own = [c.name for c in returned if isinstance(getattr(c, "name", 0), str)]
                problem = next(
                    filter(None, (plugin_checks.check_class(kind, c) for c in returned)), None
                )
            except Exception as e:  # a class whose name or checks raise
                return given, names, f"checking its {kind} classes raised {_error_line(e)}"
            names += [(kind, n) for n in own]
            if problem:
                return given, names, problem
            twice = sorted({n for n in own if own.count(n) > 1})
            if twice:
                return given, names, f"gives two {kind} classes named {twice[0]!r}"
            given[kind] = list(returned)
        return given, names, None

    def _settings_schema(self, info: PluginInfo) -> str | None:
        """Record the schema of the plugin's settings, or say what is wrong."""
        plugin = self.pm.get_plugin(info.name)
        if not self._implements(plugin, "palhm_settings_schema"):
            return None
        try:
            schema = self._call_one("palhm_settings_schema", plugin, {})
        except Exception as e:
            return f"palhm_settings_schema raised {_error_line(e)}"
        problem = plugin_checks.check_settings_schema(schema)
        if problem:
            return f"settings schema: {problem}"
        self.settings_schemas[info.name] = schema
        info.provides["settings"] = [f"plugins.{info.name}"]  # for palhm plugins
        return None

    def _implements(self, plugin, hookname: str) -> bool:
        return any(i.plugin is plugin for i in getattr(self.pm.hook, hookname).get_hookimpls())

    def _call_one(self, hookname: str, plugin, kwargs: dict):
        """Call one plugin's implementation of a hook, through pluggy.

        ``subset_hook_caller`` makes a hook caller without the other plugins'
        implementations; the wrappers (``wrapper=True`` or ``hookwrapper``)
        of every plugin are kept, and the call goes through the manager like
        any hook call, so ``add_hookcall_monitoring`` and ``enable_tracing``
        see it. Calling plugins one by one is what isolates them: pluggy
        stops a whole-hook call at the first exception. Returns what the
        implementation returned (None for nothing).
        """
        others = [
            impl.plugin
            for impl in getattr(self.pm.hook, hookname).get_hookimpls()
            if impl.plugin is not plugin and not (impl.hookwrapper or impl.wrapper)
        ]
        results = self.pm.subset_hook_caller(hookname, remove_plugins=others)(**kwargs)
        return results[0] if results else None

    def emit(self, hookname: str, **kwargs) -> None:
        """Broadcast an event hook, with ``dry_run``; a plugin that raises is
        logged and the others still hear of the event."""
        kwargs.setdefault("dry_run", self.dry_run)
        for impl in getattr(self.pm.hook, hookname).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue
            try:
                self._call_one(hookname, impl.plugin, kwargs)
            except Exception as e:
                name = self.pm.get_name(impl.plugin)
                log.warning("plugin %r failed in %s: %s: %s", name, hookname, type(e).__name__, e)

    def configurable(self) -> list[str]:
        """The names of the plugins that take settings (``palhm_configure``)."""
        return [self.pm.get_name(i.plugin) for i in self.hook.palhm_configure.get_hookimpls()]

    def configure(self, name: str, settings: dict | None, place) -> None:
        """Hand plugin ``name`` its ``plugins.NAME`` settings (valid against
        its settings schema), read at ``place``; ``None`` when the config has
        none, and the plugin gets ``{}``. A plugin that refuses its settings,
        or fails on them, is a config error there; one that fails without
        any is disabled with a warning, as at load, so that configs that do
        not use it keep working."""
        from palhm_core.errors import ConfigError

        kwargs = {"settings": settings or {}, "place": place}
        try:
            self._call_one("palhm_configure", self.pm.get_plugin(name), kwargs)
        except ConfigError:
            raise
        except Exception as e:
            if settings is not None:
                raise place.error(
                    f"plugin {name!r} failed to take its settings: {_error_line(e)}"
                ) from None
            info = self.infos[name]
            provided = [(k, n) for k, names in info.provides.items() for n in names]
            for kind, provided_name in provided:
                self.registries.get(kind, {}).pop(provided_name, None)
            self._disable(info, f"palhm_configure raised {_error_line(e)}", provided)

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
        if (kind, name) in self.disabled:
            raise place.error(f"{kind} {name!r} is not available: {self.disabled[kind, name]}")
        available = ", ".join(sorted(self.registries[kind])) or "none"
        hint = known_distribution(kind, name)
        problem = f"unknown {kind} {name!r}"
        if hint:
            problem += f" (pip install {hint})"
        failed = ""
        if self.failed:
            failed = f"; plugins not loaded: {', '.join(sorted(self.failed))} (see the warnings)"
        raise place.error(f"{problem}; installed: {available}{failed}{self._not_loaded_note()}")

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
        dist = known_distribution("plugins", wanted)
        how = f"pip install {dist}" if dist else "no known distribution provides it"
        raise place.error(
            f"plugin {shown} is not installed ({how}); loaded: {loaded}{self._not_loaded_note()}"
        )


def _label(info: PluginInfo) -> str:
    """``plugin 'x' (palhm-x 1.0, module palhm_x)``: whom a warning is about."""
    module = f", module {info.module}" if info.module else ""
    return f"plugin {info.name!r} ({info.distribution} {info.version}{module})"


def _error_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _core_version() -> str:
    from palhm_core import __version__

    return __version__
