"""The registry of provider kinds, and `build_provider`: a `ProviderSpec` -> its kind -> a
`Provider`.

A `KindRegistry` maps kind names to `ProviderKind` objects: the HTTP kinds of
`aigw_lab.providers.kinds`, the in-process ones of `aigw_lab.sim.kinds` (named here by
module path and imported on first lookup, since that package sits in a higher layer), and
kinds that installed packages declare in the ``aigw_lab.provider_kinds`` entry-point group,
the way simonw/llm plugins add models::

    # the plugin's pyproject.toml
    [project.entry-points."aigw_lab.provider_kinds"]
    echo = "aigw_echo:KIND"          # a ProviderKind named "echo"

Entry points are read once, on the first lookup of a name the registry does not hold (never
at import time, never for a built-in kind): a config naming only built-in kinds never scans
the installed packages.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from types import MappingProxyType
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.providers.base import HttpClients, Provider, ProviderSpec
from aigw_lab.providers.kinds import HTTP_KINDS, ProviderKind

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_KINDS",
    "KindRegistry",
    "PluginKindWarning",
    "default_registry",
    "build_provider",
]

#: The entry-point group third-party packages declare provider kinds in.
ENTRY_POINT_GROUP = "aigw_lab.provider_kinds"

#: The kinds shipped with aigw_lab, in the order they are listed: objects, or
#: ``"module:attribute"`` references imported on first lookup.
BUILTIN_KINDS: tuple[ProviderKind | str, ...] = (
    *HTTP_KINDS,
    "aigw_lab.sim.kinds:SIMULATED",
    "aigw_lab.sim.kinds:REPLAY",
)


class PluginKindWarning(UserWarning):
    """An installed package declares a provider kind that cannot be used (it does not load,
    is not a `ProviderKind`, or reuses a name already taken); the kind is skipped."""


class KindRegistry:
    """Provider kinds by name.

    ``kinds`` are registered in order (objects, or ``"module:attribute"`` references loaded
    on first lookup); default: `BUILTIN_KINDS`. ``entry_points`` (default True) also loads
    the kinds that installed packages declare in ``group``, once, the first time a name is
    not found. The registry is thread-safe.
    """

    def __init__(
        self,
        kinds: Iterable[ProviderKind | str] | None = None,
        *,
        entry_points: bool = True,
        group: str = ENTRY_POINT_GROUP,
    ) -> None:
        self._entries: dict[str, ProviderKind | str] = {}
        self._lock = threading.RLock()
        self._group = group
        self._plugins_loaded = not entry_points
        # config_keys() of the kinds registered so far; None after a change.
        self._owners: Mapping[str, ProviderKind] | None = None
        for kind in BUILTIN_KINDS if kinds is None else kinds:
            self.register(kind)

    def register(self, kind: ProviderKind | str) -> None:
        """Add ``kind`` (a `ProviderKind`, or a ``"module:attribute"`` reference whose
        attribute name is not the kind's name until it loads: the reference's attribute is
        read now only for its name). A name already taken is a `ConfigError`."""
        name = _reference_name(kind) if isinstance(kind, str) else kind.name
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(
                f"provider kind name {name!r} is not usable",
                hint="name a kind with a non-empty string without '/'",
            )
        with self._lock:
            if name in self._entries:
                raise ConfigError(
                    f"provider kind {name!r} is already registered",
                    hint="give the new kind another name",
                )
            self._entries[name] = kind
            self._owners = None

    def known_models(self, spec: ProviderSpec) -> tuple[str, ...] | None:
        """The models the provider of ``spec`` serves, known from the spec alone (its kind
        says how), or None when it takes any model name: what fallback targets are checked
        against, in a config and in a gateway built in Python."""
        kind = self.find(spec.kind)
        return kind.known_models(spec) if kind is not None else (spec.models or None)

    def find(self, name: Any) -> ProviderKind | None:
        """The kind called ``name``, or None; reads the entry points first if ``name`` is
        not registered yet."""
        if not isinstance(name, str):
            return None
        entry = self._entries.get(name)
        if entry is None and not self._plugins_loaded:
            self.load_plugins()
            entry = self._entries.get(name)
        if entry is None:
            return None
        if isinstance(entry, str):
            with self._lock:
                entry = self._entries[name]
                if isinstance(entry, str):
                    entry = _load_reference(entry, name)
                    self._entries[name] = entry
        return entry

    def get(self, name: Any, *, where: str = "") -> ProviderKind:
        """The kind called ``name``; a `ConfigError` naming the known kinds when there is
        none (``where`` prefixes the message: ``"provider 'x': "``)."""
        kind = self.find(name)
        if kind is None:
            raise ConfigError(
                f"{where}kind {name!r} is not a provider kind",
                hint=f"use one of {list(self.names())}",
            )
        return kind

    def names(self) -> tuple[str, ...]:
        """Every kind's name, built-in ones first (installed packages' kinds included: their
        entry points are read now if they were not)."""
        if not self._plugins_loaded:
            self.load_plugins()
        return tuple(self._entries)

    def loaded(self) -> Iterator[ProviderKind]:
        """The kinds registered so far (built-ins and plugins already read), as objects;
        entry points that were not read yet are not read."""
        for name in list(self._entries):
            kind = self.find(name)
            if kind is not None:
                yield kind

    def config_keys(self) -> Mapping[str, ProviderKind]:
        """Each kind-specific config key of the kinds registered so far -> its kind."""
        owners = self._owners
        if owners is None:
            owners = MappingProxyType(
                {key: kind for kind in self.loaded() for key in kind.key_names()}
            )
            self._owners = owners
        return owners

    def load_plugins(self) -> None:
        """Read the entry points of ``group`` (once). A plugin that fails to load, is not a
        `ProviderKind`, or reuses a taken name is skipped with a `PluginKindWarning` naming
        its package: one broken plugin must not stop every config from loading."""
        with self._lock:
            if self._plugins_loaded:
                return
            self._plugins_loaded = True
            for point in metadata.entry_points(group=self._group):
                source = _source(point)
                try:
                    kind = point.load()
                    if isinstance(kind, type) and issubclass(kind, ProviderKind):
                        kind = kind()  # a class with defaults for every field
                except Exception as exc:  # a plugin's own bug: named, then skipped
                    _warn(f"{source} failed to load: {type(exc).__name__}: {exc}")
                    continue
                if not isinstance(kind, ProviderKind):
                    _warn(f"{source} is a {type(kind).__name__}, not a ProviderKind")
                elif kind.name != point.name:
                    _warn(f"{source} is a kind named {kind.name!r}, not {point.name!r}")
                elif kind.name in self._entries:
                    _warn(f"{source} reuses the name of the kind {kind.name!r}")
                else:
                    self._entries[kind.name] = kind
                    self._owners = None


def _reference_name(reference: str) -> str:
    """The kind name a ``"module:ATTRIBUTE"`` reference registers under: the attribute's
    name, lower case, ``_`` as ``-`` (``SIMULATED`` -> ``simulated``); checked on load."""
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise ConfigError(
            f"provider kind reference {reference!r} is not 'module:attribute'",
            hint='write it as "package.module:KIND"',
        )
    return attribute.lower().replace("_", "-")


def _load_reference(reference: str, name: str) -> ProviderKind:
    module, _, attribute = reference.partition(":")
    kind = getattr(importlib.import_module(module), attribute)
    if not isinstance(kind, ProviderKind) or kind.name != name:
        raise ConfigError(
            f"provider kind reference {reference!r} is not the ProviderKind {name!r}",
            hint="point the reference at a ProviderKind of that name",
        )
    return kind


def _source(point: metadata.EntryPoint) -> str:
    dist = point.dist.name if point.dist is not None else "an installed package"
    return f"provider kind {point.name!r} of {dist} ({point.value})"


def _warn(message: str) -> None:
    warnings.warn(
        f"{message}; it is skipped (fix or uninstall that package)",
        PluginKindWarning,
        stacklevel=4,
    )


_DEFAULT: list[KindRegistry] = []
_DEFAULT_LOCK = threading.Lock()


def default_registry() -> KindRegistry:
    """The registry configs and gateways use: the built-in kinds and the installed
    packages' (created on first use, once per process)."""
    if not _DEFAULT:
        with _DEFAULT_LOCK:
            if not _DEFAULT:
                _DEFAULT.append(KindRegistry())
    return _DEFAULT[0]


def build_provider(
    spec: ProviderSpec,
    clients: HttpClients,
    *,
    env: Mapping[str, str] | None = None,
    kinds: KindRegistry | None = None,
) -> Provider:
    """The provider ``spec`` describes, sharing ``clients``' connection pools, built by its
    kind (looked up in ``kinds``, default `default_registry`).

    API keys are read from ``env`` (default: ``os.environ``) under ``spec.api_key_env``;
    a missing key is a `MissingAPIKeyError` now, not a 401 at the first call.
    """
    registry = default_registry() if kinds is None else kinds
    kind = registry.get(spec.kind, where=f"provider {spec.name!r}: ")
    return kind.build(spec, clients, env)
