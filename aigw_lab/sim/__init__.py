"""Simulation and replay: providers that answer without a real model.

- `aigw_lab.sim.fleet`: the seeded simulated fleet (catalog.py: its models; wire.py: their
  wire formats; judge.py: the fleet answering LLM-judge prompts);
- `aigw_lab.sim.replay`: recorded real outputs, or an earlier call log, as a provider;
- `aigw_lab.sim.kinds`: the ``simulated`` and ``replay`` provider kinds.

They sit above `aigw_lab.datasets` and `aigw_lab.scorers` (the fleet recognises the bundled
dataset's prompts and answers judge prompts; a replay reads recorded datasets) and below
experiments and policies. Nothing is imported here: ``import aigw_lab.sim`` stays free.
"""
