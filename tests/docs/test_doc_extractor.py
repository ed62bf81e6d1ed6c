"""The doc-block extractor and runner themselves: annotations are honoured, a broken block
fails naming its line, state is shared the way a reader's session shares it, and a block
cannot pass by swallowing a failure or reaching the network."""

from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path

import pytest

from . import doc_blocks
from .doc_blocks import BlockFailure, DocSession, console_commands, extract_blocks

DOC = textwrap.dedent(
    """\
    # A doc

    ```python
    x = 1
    ```

    <!-- doc-test: skip: needs OPENAI_API_KEY -->
    ```bash
    aigw-lab demo --providers openai
    ```

    Save it as `g.toml`:

    <!-- doc-test: file conf/g.toml -->
    ```toml
    [gateway]
    ```

    <!-- doc-test: background port=8788 -->
    ```bash
    aigw-lab serve --port 8788
    ```

    ```sql
    SELECT 1
    ```

    ```console
    $ aigw-lab run a.toml \\
          --no-progress
    experiment 'a' ...
    $ aigw-lab report --db x.duckdb
    wrote report.html
    ```
    """
)


def test_blocks_carry_their_line_language_and_annotations():
    blocks = extract_blocks(DOC, "docs/a.md")
    assert [(b.id, b.lang) for b in blocks] == [
        ("docs/a.md:3", "python"),
        ("docs/a.md:8", "bash"),
        ("docs/a.md:15", "toml"),
        ("docs/a.md:20", "bash"),
        ("docs/a.md:24", "sql"),
        ("docs/a.md:28", "console"),
    ]
    python, skipped, toml, server, sql, console = blocks
    assert python.code == "x = 1\n" and python.skip is None and python.runnable
    assert skipped.skip == "needs OPENAI_API_KEY"
    assert toml.file == "conf/g.toml" and toml.runnable
    assert server.background_port == 8788
    assert not sql.runnable
    assert console_commands(console.code) == (
        "aigw-lab run a.toml \\\n      --no-progress\naigw-lab report --db x.duckdb\n"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- doc-test: skp: typo -->\n```bash\nls\n```\n", "unknown doc-test annotation"),
        ("<!-- doc-test: skip: why -->\nsome prose\n```bash\nls\n```\n", "right before a fence"),
        ("```bash\nls\n", "never closed"),
        ("```bash\nls\n``` and prose glued to the fence\n", "text after a fence"),
        ("<!-- doc-test: file ../../etc/x -->\n```toml\n```\n", "stay in the scratch dir"),
        ("text\n<!-- doc-test: skip: nothing after -->\n", "no block after it"),
    ],
)
def test_a_malformed_annotation_or_fence_is_an_error(text, message):
    with pytest.raises(ValueError, match=message):
        extract_blocks(text, "x.md")


@pytest.fixture
def session(tmp_path):
    s = DocSession.create(tmp_path / "work", extra_env={"DOC_TEST_MARK": "m"})
    yield s
    s.close()


def _blocks(text: str):
    return extract_blocks(textwrap.dedent(text), "t.md")


def test_python_blocks_share_one_session_with_top_level_await(session):
    first, second, broken = _blocks(
        """\
        ```python
        import asyncio
        total = 40
        async def add(n):
            await asyncio.sleep(0)
            return n + 2
        ```
        ```python
        total = await add(total)
        total
        ```
        ```python
        print("before the mistake")
        undefined_name + 1
        ```
        """
    )
    session.run(first)
    assert session.run(second).strip() == "42"  # the expression is shown, as in the REPL
    with pytest.raises(BlockFailure) as failure:
        session.run(broken)
    text = str(failure.value)
    assert text.startswith("t.md:12: NameError") and "before the mistake" in text
    assert 'File "t.md", line 14' in text  # the traceback points into the document


def test_a_value_that_cannot_be_shown_fails_its_block(session):
    (block,) = _blocks(
        """\
        ```python
        class Bad:
            def __repr__(self):
                raise RuntimeError("no repr")
        Bad()
        ```
        """
    )
    with pytest.raises(BlockFailure, match="no repr"):
        session.run(block)


def test_shell_failures_inside_and_lists_fail_and_exports_carry_over(session):
    chain, export, use, python = _blocks(
        """\
        ```bash
        false && echo "never"
        echo "not reached"
        ```
        ```bash
        export GREETING="hello $DOC_TEST_MARK"
        ```
        ```console
        $ test "$GREETING" = "hello m" && echo "$GREETING" > greeting.txt
        hello m
        ```
        ```python
        import os
        print(os.environ["GREETING"], open("greeting.txt").read().strip())
        ```
        """
    )
    with pytest.raises(BlockFailure, match="t.md:1: exit status 1") as failure:
        session.run(chain)
    assert "not reached" not in str(failure.value)
    session.run(export)
    session.run(use)
    assert session.run(python).strip() == "hello m hello m"


def test_pip_is_never_run_and_aigw_lab_is_this_tree(session):
    pip, version = _blocks(
        """\
        ```bash
        pip install -e .
        ```
        ```bash
        aigw-lab --version
        python -c "import aigw_lab, sys; print(aigw_lab.__file__)"
        ```
        """
    )
    with pytest.raises(BlockFailure, match="pip is not run here"):
        session.run(pip)
    import aigw_lab

    assert aigw_lab.__file__ in session.run(version)


def test_a_file_block_is_saved_for_later_blocks(session):
    toml, read = _blocks(
        """\
        <!-- doc-test: file conf/g.toml -->
        ```toml
        [gateway]
        db = "x.duckdb"
        ```
        ```python
        import tomllib
        print(tomllib.load(open("conf/g.toml", "rb")))
        ```
        """
    )
    session.run(toml)
    assert "{'gateway': {'db': 'x.duckdb'}}" in session.run(read)


def test_the_network_tripwire_fails_a_block_that_swallows_the_error(session):
    python, shell = _blocks(
        """\
        ```python
        import socket
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=0.5)
        except OSError:
            pass  # swallowed: the block must fail all the same
        ```
        ```bash
        python -c "import socket
        try: socket.getaddrinfo('example.com', 443)
        except OSError: pass"
        ```
        """
    )
    with pytest.raises(BlockFailure, match="network tripwire"):
        session.run(python)
    with pytest.raises(BlockFailure, match="network tripwire"):
        session.run(shell)


def test_a_background_block_serves_later_blocks_and_stops_at_close(session):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server, client = _blocks(
        f"""\
        <!-- doc-test: background port={port} -->
        ```bash
        python -m http.server {port} --bind 127.0.0.1
        ```
        ```python
        import urllib.request
        print(urllib.request.urlopen("http://127.0.0.1:{port}/").status)
        ```
        """
    )
    session.run(server)
    assert session.run(client).strip() == "200"
    (process,) = session.background
    actual = session.ports[port]  # the server ran on a free port in place of the documented one
    session.close()
    assert process.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", actual), timeout=1).close()


def test_a_documented_port_another_process_holds_does_not_stop_or_answer_the_blocks(session):
    # Failed before: the block was refused ("port N is already in use"), so two documents naming
    # the same port (README.md and docs/serving.md both serve on 8788) could not run at the same
    # time on two xdist workers, nor two test runs on one machine.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()  # accepts connections and never answers
        port = busy.getsockname()[1]
        toml, server, client = _blocks(
            f"""\
            <!-- doc-test: file server.toml -->
            ```toml
            port = {port}
            ```
            <!-- doc-test: background port={port} -->
            ```bash
            python -m http.server {port} --bind 127.0.0.1
            ```
            ```python
            import urllib.request
            print(urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=10).status)
            ```
            """
        )
        session.reserve_ports([toml, server, client])
        actual = session.ports[port]
        assert actual != port
        session.run(toml)
        session.run(server)
        assert session.run(client).strip() == "200"
    assert (session.workdir / "server.toml").read_text() == f"port = {actual}\n"


def test_only_whole_numbers_equal_to_a_documented_port_are_replaced(session):
    session.ports[8788] = 40001
    assert session.localize("--port 8788 x18788 87880 8788/v1 :8788\n") == (
        "--port 40001 x18788 87880 40001/v1 :40001\n"
    )


def test_a_documents_ports_are_free_and_outside_the_kernels_ephemeral_range():
    # Failed before: ports came from a port-0 bind, inside the range that other tests' servers
    # and outgoing connections draw from meanwhile.
    low = doc_blocks._ephemeral_low()
    if low <= doc_blocks.LOWEST_PORT + 1_000:
        pytest.skip(f"the ephemeral range starts at {low}: no room below it")
    for _ in range(20):
        port = doc_blocks._free_port()
        assert doc_blocks.LOWEST_PORT <= port < low
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # free: binds


def test_a_background_block_refuses_a_free_port_that_was_taken_meanwhile(session):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (server,) = _blocks(
            """\
            <!-- doc-test: background port=8788 -->
            ```bash
            python -m http.server 8788 --bind 127.0.0.1
            ```
            """
        )
        session.ports[8788] = port  # as if another process took it after it was chosen
        with pytest.raises(BlockFailure, match=f"port {port} .in place of 8788. is already in"):
            session.run(server)
    assert session.background == []


def test_a_shell_block_that_runs_too_long_is_stopped_with_its_children(tmp_path):
    # Failed before: the timeout killed bash only, and a server it had started (a forgotten
    # `background` annotation) lived on, holding its port for the next runs.
    session = DocSession.create(tmp_path / "work")
    session.timeout = 3.0
    pid_file = tmp_path / "work" / "child.pid"
    (block,) = _blocks(
        f"""\
        ```bash
        python -c "import os, time; open('{pid_file}', 'w').write(str(os.getpid())); time.sleep(60)"
        ```
        """
    )
    try:
        with pytest.raises(BlockFailure, match="still running after 3 s"):
            session.run(block)
    finally:
        session.close()
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGTERM is delivered asynchronously
    assert not _running(child)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an orphan's exit status may wait
    for the container's init to collect it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
