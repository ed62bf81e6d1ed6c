"""Installs the network tripwire in every Python process a doc-test block starts (this
folder is put first on PYTHONPATH by tests/docs/doc_blocks.py). Blocked attempts raise at
once, and are also written at exit to $AIGW_DOC_TEST_TRIPWIRE_DIR/<pid>.txt, so a block whose
code swallowed the error still fails."""

import atexit
import os

_folder = os.environ.get("AIGW_DOC_TEST_TRIPWIRE_DIR")
if _folder:
    from aigw_lab.testing import tripwire

    tripwire.install()

    def _write_violations() -> None:
        found = tripwire.violations()
        if found:
            with open(os.path.join(_folder, f"{os.getpid()}.txt"), "w") as f:
                f.write("; ".join(found))

    atexit.register(_write_violations)
