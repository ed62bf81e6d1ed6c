"""A third-party package adds a provider kind through the ``aigw_lab.provider_kinds``
entry-point group: discovered lazily (on the first lookup of a name the registry does not
hold), usable from a TOML config, and skipped with a warning when broken. The package is a
dist-info folder on ``sys.path`` (see `plugin_kind`), found by importlib.metadata as if it
were installed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from aigw_lab import Gateway
from aigw_lab.config import parse_config
from aigw_lab.errors import ConfigError
from aigw_lab.providers import registry as registry_module
from aigw_lab.providers.registry import KindRegistry, PluginKindWarning

from .plugin_kind import MODULE, write_plugin


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = write_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop(MODULE, None)


def test_an_installed_kind_is_found_by_name(plugin_path: Path) -> None:
    kinds = KindRegistry()
    echo = kinds.get("echo")
    assert echo.name == "echo" and echo.summary.startswith("repeats")
    assert kinds.names()[-2:] == ("echo", "groqish")


def test_entry_points_are_read_only_when_a_name_is_not_known(
    plugin_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = registry_module.metadata.entry_points

    def counting(**kwargs: Any) -> Any:
        reads.append(kwargs["group"])
        return real(**kwargs)

    monkeypatch.setattr(registry_module.metadata, "entry_points", counting)
    kinds = KindRegistry()
    assert reads == []  # not at construction
    kinds.get("openai")
    kinds.get("simulated")
    assert reads == [] and MODULE not in sys.modules  # not for built-in kinds
    assert kinds.find("echo") is not None
    assert kinds.find("still-unknown") is None
    assert kinds.get("echo") is kinds.find("echo")
    assert reads == ["aigw_lab.provider_kinds"]  # once


def test_without_entry_points_an_installed_kind_stays_unknown(plugin_path: Path) -> None:
    kinds = KindRegistry(entry_points=False)
    with pytest.raises(ConfigError, match="kind 'echo' is not a provider kind"):
        kinds.get("echo")


def test_the_unknown_kind_error_lists_installed_kinds_too(plugin_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        KindRegistry().get("ecko")
    assert caught.value.hint.endswith("'simulated', 'replay', 'echo', 'groqish']")


@pytest.mark.parametrize(
    ("declared", "complaint"),
    [
        ("echo = aigw_echo_kind:MISSING\n", "failed to load: AttributeError"),
        ("echo = no_such_module_xyz:KIND\n", "failed to load: ModuleNotFoundError"),
        ("echo = aigw_echo_kind:EchoProvider\n", "is a type, not a ProviderKind"),
        ("other = aigw_echo_kind:KIND\n", "is a kind named 'echo', not 'other'"),
    ],
)
def test_a_broken_plugin_is_skipped_with_a_warning_naming_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, declared: str, complaint: str
) -> None:
    folder = write_plugin(tmp_path / "site", entry_points=declared)
    monkeypatch.syspath_prepend(str(folder))
    try:
        kinds = KindRegistry()
        with pytest.warns(PluginKindWarning, match=complaint) as warned:
            assert kinds.find("echo") is None
        assert "aigw-echo-kind" in str(warned[0].message)
        assert kinds.get("openai").name == "openai"  # the others still work
    finally:
        sys.modules.pop(MODULE, None)


def test_a_plugin_cannot_replace_a_built_in_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (Path(__file__).parent / "plugin_kind.py").read_text()
    assert 'name="echo"' in source
    folder = write_plugin(tmp_path / "site", entry_points="openai = aigw_echo_kind:OPENAI\n")
    (folder / f"{MODULE}.py").write_text(
        "from aigw_lab.providers.kinds import ProviderKind\nOPENAI = ProviderKind(name='openai')\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    try:
        kinds = KindRegistry()
        with pytest.warns(PluginKindWarning, match="reuses the name of the kind 'openai'"):
            kinds.load_plugins()
        assert kinds.get("openai").default_base_url == "https://api.openai.com/v1"
    finally:
        sys.modules.pop(MODULE, None)


_CONFIG = {
    "providers": {
        "shout": {"kind": "echo", "prefix": ">> ", "models": ["m1"]},
        "sim": {"kind": "simulated"},
    }
}


def test_a_config_names_an_installed_kind_and_its_own_keys(plugin_path: Path) -> None:
    config = parse_config(_CONFIG, kinds=KindRegistry())
    spec = {s.name: s for s in config.providers}["shout"]
    assert spec.kind == "echo" and spec.options["prefix"] == ">> "


def test_an_installed_kinds_keys_are_checked_like_the_built_in_ones(plugin_path: Path) -> None:
    kinds = KindRegistry()
    wrong_type = {"providers": {"shout": {"kind": "echo", "prefix": 3}}}
    with pytest.raises(ConfigError, match=r"prefix = 3 must be a string$"):
        parse_config(wrong_type, kinds=kinds)
    misplaced = {"providers": {"o": {"kind": "openai", "prefix": ">> "}}}
    with pytest.raises(ConfigError, match='prefix only apply to kind = "echo"') as caught:
        parse_config(misplaced, kinds=kinds)
    assert caught.value.hint == 'remove them, or set kind = "echo"'
    typo = {"providers": {"shout": {"kind": "echo", "prefx": ">> "}}}
    with pytest.raises(ConfigError, match="unknown key 'prefx'") as caught:
        parse_config(typo, kinds=kinds)
    assert caught.value.hint.startswith("did you mean 'prefix'?")


def test_without_the_package_its_kind_and_keys_are_config_errors() -> None:
    kinds = KindRegistry(entry_points=False)
    with pytest.raises(ConfigError, match="unknown key 'prefix'"):
        parse_config(_CONFIG, kinds=kinds)


def test_a_gateway_serves_an_installed_kind_in_every_mode(
    plugin_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The gateway and config.load_config use the process's default registry: a fresh one
    # here, so that this test's package is discovered and no other test sees it.
    monkeypatch.setattr(registry_module, "_DEFAULT", [KindRegistry()])
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[gateway]\ndb = "calls.duckdb"\n'
        '[providers.shout]\nkind = "echo"\nprefix = ">> "\nmodels = ["m1"]\n'
        '[prices."shout/m1"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n'
    )
    import asyncio

    with Gateway.from_config(path) as gw:
        assert gw.chat("shout/m1", "hello").text == ">> hello"
        assert "".join(gw.stream("shout/m1", "a b")) == ">> a b"

        async def both() -> None:
            assert (await gw.achat("shout/m1", "x")).text == ">> x"
            assert "".join([piece async for piece in gw.astream("shout/m1", "y")]) == ">> y"

        asyncio.run(both())
        assert gw.list_models()["shout"] == ("m1",)
        logged = gw.query("SELECT provider_name, status FROM calls")
        assert list(logged["provider_name"]) == ["shout"] * 4
        assert set(logged["status"]) == {"ok"}
