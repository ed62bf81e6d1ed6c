"""docs/architecture.md's "Layers" section names every module of `.importlinter`'s layers
(the file CI checks), so the two cannot drift apart without a failing test."""

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layer_modules() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read_string((ROOT / ".importlinter").read_text())
    text = parser["importlinter:contract:layers"]["layers"]
    return [name.strip(" ()") for name in re.split(r"[\n:|]", text) if name.strip(" ()")]


def test_the_architecture_doc_names_every_layered_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## Layers\n", 1)[1].split("\n## ", 1)[0]
    modules = layer_modules()
    assert {"types", "providers", "store", "gateway", "cli"} <= set(modules)
    missing = [name for name in modules if f"`{name}`" not in section]
    assert not missing, f"docs/architecture.md's Layers section does not name {missing}"
