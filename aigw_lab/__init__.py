"""aigw_lab: AI gateway primitives and a Jupyter toolkit."""
