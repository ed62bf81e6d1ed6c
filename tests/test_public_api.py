"""The public namespace is complete, lazy and cheap to import."""

import subprocess
import sys

import aigw_lab
import aigw_lab.errors
import aigw_lab.types


def test_every_exported_name_resolves():
    for name in aigw_lab.__all__:
        assert getattr(aigw_lab, name) is not None, name


def test_all_public_errors_and_types_are_exported_at_top_level():
    for module in (aigw_lab.errors, aigw_lab.types):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                assert name in aigw_lab.__all__, f"{module.__name__}.{name} missing from aigw_lab"


def test_every_error_class_is_in_errors_all():
    classes = {
        name
        for name, obj in vars(aigw_lab.errors).items()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__ == "aigw_lab.errors"
    }
    assert classes == set(aigw_lab.errors.__all__)


def test_unknown_attribute_raises_attribute_error():
    try:
        aigw_lab.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_import_does_no_heavy_work():
    code = (
        "import sys, aigw_lab; "
        "heavy = [m for m in ('duckdb', 'pandas', 'torch', 'sentence_transformers', 'pyarrow') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


SUBPACKAGES = (
    "aigw_lab.datasets",
    "aigw_lab.store",
    "aigw_lab.scorers",
    "aigw_lab.experiments",
    "aigw_lab.analysis",
    "aigw_lab.notebook",
    "aigw_lab.gateway",
)


def test_every_subpackage_export_resolves_and_all_is_complete():
    import importlib

    for name in SUBPACKAGES:
        package = importlib.import_module(name)
        for export in package.__all__:
            assert getattr(package, export) is not None, f"{name}.{export}"
        lazy = getattr(package, "_EXPORTS", None)
        if lazy is not None:  # every lazily exported name is also public
            assert set(lazy) <= set(package.__all__), f"{name}: {set(lazy) - set(package.__all__)}"


def test_cache_warming_is_public_at_top_level_and_in_experiments():
    from aigw_lab.experiments import warming

    for name in ("plan_warming", "warm", "WarmingPlan", "WarmingReport"):
        assert getattr(aigw_lab, name) is getattr(warming, name), name
        assert name in aigw_lab.__all__ and name in aigw_lab.experiments.__all__
