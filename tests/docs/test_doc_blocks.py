"""Every shell and Python block of README.md and docs/*.md runs as written.

Each block is one test (``README.md:46``), run in a scratch directory per document with the
simulated fleet, the recorded data of the shared folder and no API keys; the blocks of one
document run in order and share their state (see `tests/docs/doc_blocks.py` for how, and for
the ``<!-- doc-test: ... -->`` annotations a block may carry). A block annotated ``skip`` is
reported as skipped with its reason; `test_skips_stay_rare` keeps their number in check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from aigw_lab.datasets.shared import SHARED_DATA_ENV_VAR, shared_data_dir_or_none

from .doc_blocks import Block, DocSession, extract_blocks

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The most blocks allowed to carry a skip annotation (raise it only for a good reason).
#: 8: docs/deployment.md's team set-up needs a running PostgreSQL, Redis or server in four of
#: its blocks; each names the test that runs it against a real one.
MAX_SKIPS = 9


def _all_blocks() -> list[Block]:
    blocks: list[Block] = []
    for path in DOCS:
        doc = path.relative_to(ROOT).as_posix()
        blocks += [b for b in extract_blocks(path.read_text(encoding="utf-8"), doc) if b.runnable]
    return blocks


BLOCKS = _all_blocks()
#: The xdist group of the tests that embed GSM8K's prompts with the real model (tens of CPU
#: seconds on an empty cache): on one worker, the first fills the run's embedding cache and the
#: others read it, instead of two workers embedding the same prompts at the same time.
GSM8K_GROUP = "gsm8k-embeddings"
_EMBEDS_GSM8K = frozenset({"README.md", "docs/routing.md"})


def _group(doc: str) -> str:
    return GSM8K_GROUP if doc in _EMBEDS_GSM8K else f"doc:{doc}"


class Sessions:
    """One `DocSession` per document, created on its first block; the previous document's
    session is closed then, so at most one document's processes are alive."""

    def __init__(self, factory: pytest.TempPathFactory, data: Path) -> None:
        self.factory = factory
        self.data = data
        self.doc: str | None = None
        self.session: DocSession | None = None

    def get(self, doc: str) -> DocSession:
        if doc != self.doc:
            self.close()
            workdir = self.factory.mktemp(re.sub(r"\W", "_", doc))
            self.session = DocSession.create(
                workdir, extra_env={SHARED_DATA_ENV_VAR: str(self.data)}
            )
            self.session.copy_in(ROOT / "examples", "examples")
            self.session.reserve_ports([b for b in BLOCKS if b.doc == doc])
            self.doc = doc
        assert self.session is not None
        return self.session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session, self.doc = None, None


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sessions]:
    data = shared_data_dir_or_none()
    if data is None:
        pytest.skip(f"the shared data folder is absent (set {SHARED_DATA_ENV_VAR})")
    registry = Sessions(tmp_path_factory, data)
    yield registry
    registry.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "block",
    # The blocks of one document share a session and run in order: one xdist worker runs them
    # all (conftest.py runs xdist with --dist loadgroup). Documents run in parallel.
    [pytest.param(b, id=b.id, marks=pytest.mark.xdist_group(_group(b.doc))) for b in BLOCKS],
)
def test_doc_block_runs(block: Block, sessions: Sessions) -> None:
    session = sessions.get(block.doc)
    same_doc = [b for b in BLOCKS if b.doc == block.doc]
    index = same_doc.index(block)
    # Run with -k on one block, the blocks before it in its document run first (their state
    # is what a reader has when reaching this one); in a full run they already have.
    for earlier in same_doc[session.ran : index]:
        if earlier.skip is None:
            session.run(earlier)  # counts itself as run, even when it fails
        else:
            session.ran += 1
    if block.skip is not None:
        session.ran = index + 1
        pytest.skip(f"doc-test: skip: {block.skip}")
    session.run(block)


def test_skips_stay_rare() -> None:
    skipped = [b for b in BLOCKS if b.skip is not None]
    assert len(skipped) <= MAX_SKIPS, "\n".join(f"{b.id}: {b.skip}" for b in skipped)
    assert all(len(b.skip or "") >= 10 for b in skipped), "say why a block cannot run"
