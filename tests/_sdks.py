"""The official OpenAI and Anthropic SDKs for the tests that drive the gateway with them,
imported when a test first uses one rather than when its module is collected.

Every xdist worker imports every collected test module, so an SDK imported at a module's top
cost each of the fast lane's four workers about 1.5 s of CPU for the two (docs/performance.md,
"The fast lane's start-up, session 11"), although only the SDK tests need them. Their tests
share one worker (tests/conftest.py, `SDK_FILES`), so the SDKs load in that worker only. A
missing SDK still fails the tests that use it, as the dev extra requires them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


class _OnFirstUse:
    """Stands for a module; its first attribute read imports it (Python caches the import)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):
            # pytest's collection probes every name in a test module (``__test__``, fixture
            # markers, ...); the SDKs' public names are what tests use.
            raise AttributeError(attribute)
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<the {self._name} module, imported on first use>"


if TYPE_CHECKING:
    import anthropic
    import openai
else:
    anthropic = _OnFirstUse("anthropic")
    openai = _OnFirstUse("openai")

__all__ = ["anthropic", "openai"]
