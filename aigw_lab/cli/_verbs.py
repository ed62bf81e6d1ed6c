"""The ``aigw-lab`` verbs: their names, in the order ``aigw-lab --help`` lists them, and
their one-line help.

`aigw_lab.cli.main` lists the verbs from this table without importing their modules, so a
command builds the parser of its own verb only (building every verb's parser cost more than
many commands' own work). Each verb module passes its line here as ``help=``, so the list and
the verbs' parsers cannot drift apart.
"""

from __future__ import annotations

__all__ = ["VERBS"]

#: Verb name -> its one-line help, in ``--help`` order. The verb's parser lives in the module
#: ``aigw_lab.cli.<name>``, whose ``register(subparsers)`` adds it.
VERBS: dict[str, str] = {
    "demo": "run calls through the gateway and report from the call log (offline by default)",
    "simulate": "serve the simulated provider fleet (OpenAI, Anthropic, Workers AI formats)",
    "health": "send a tiny request to each configured target; print status and latency",
    "loadtest": "drive the gateway at a fixed arrival rate; report rate, errors, latency, cache",
    "run": "run or resume an experiment described in a TOML file",
    "report": "write an experiment's HTML report (what was run, every pair, categories, "
    "items, charts)",
    "serve": "run the gateway as an HTTP server (OpenAI- and Anthropic-compatible)",
    "keys": "create, list, rotate and revoke gateway keys (the key file)",
    "policy": "train, evaluate and export learned routing policies",
    "matrix": "a call log as prompts x targets: empty cells, their batch-price estimate, --fill",
    "warm": "fill the persistent exact cache from a dataset or a call log's top prompts",
    "shadow": "score logged shadow traffic: candidate vs live, win/tie/loss with intervals",
    "cache": "tune the semantic cache: the setting that meets a false-hit budget on your pairs",
    "alerts": "compare the call log's latest window with its baseline; exit 1 when a rule fires",
    "log": "the team log: sync a local DuckDB mirror of the PostgreSQL call log",
}
