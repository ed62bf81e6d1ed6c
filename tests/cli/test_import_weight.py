"""What starting ``aigw-lab`` and reading a config import: no heavy dependency until a command
needs it (each costs 0.1 to 1 s of CPU per process, paid by every command and by every
subprocess of the tests), and no other verb's module.

One fresh interpreter walks through the steps and reports what each one loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: Imported only where used: none of them is needed to parse a command line or a config.
HEAVY = (
    "httpx",
    "pandas",
    "duckdb",
    "numpy",
    "plotly",
    "ipywidgets",
    "pydantic",
    "uvicorn",
    "hypothesis",
    "pyarrow",
    "torch",
)

STEPS = textwrap.dedent(
    """
    import contextlib, io, json, sys
    HEAVY = {heavy!r}
    report = {{}}

    def step(name, action):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                action()
            except SystemExit:
                pass
        report[name] = {{
            "heavy": sorted(m for m in HEAVY if m in sys.modules),
            "verbs": sorted(m for m in sys.modules if m.startswith("aigw_lab.cli.")),
            "servers": sorted(
                m for m in sys.modules if m.startswith(("aigw_lab.server", "aigw_lab.sim_server"))
            ),
        }}

    from aigw_lab.cli.main import main
    step("help", lambda: main(["--help"]))
    step("run --help", lambda: main(["run", "--help"]))
    step("report --help", lambda: main(["report", "--help"]))

    def read_config():
        from aigw_lab.config import load_config
        load_config(sys.argv[1])

    step("load_config", read_config)
    step("import gateway", lambda: __import__("aigw_lab.gateway"))

    def in_process_fleet():
        from aigw_lab.sim.fleet import fleet_specs
        fleet_specs()

    step("in-process fleet", in_process_fleet)
    print(json.dumps(report))
    """
).format(heavy=HEAVY)


def test_the_cli_config_and_in_process_fleet_load_only_what_they_use(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('[providers.sim]\nkind = "simulated"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", STEPS, str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    # The in-process fleet answers through an httpx transport: httpx is its to load.
    light = [name for name in report if name != "in-process fleet"]
    assert {name: report[name]["heavy"] for name in light} == dict.fromkeys(light, [])
    # aigw_lab.server_limits is the [server] settings, read with every config: not a server.
    servers = {
        name: set(step["servers"]) - {"aigw_lab.server_limits"} for name, step in report.items()
    }
    assert servers == dict.fromkeys(report, set())
    cli = {"aigw_lab.cli._args", "aigw_lab.cli._verbs", "aigw_lab.cli.main"}
    assert set(report["help"]["verbs"]) <= cli
    assert set(report["run --help"]["verbs"]) <= cli | {"aigw_lab.cli.run"}
    assert set(report["report --help"]["verbs"]) <= cli | {
        "aigw_lab.cli.run",
        "aigw_lab.cli.report",
    }
