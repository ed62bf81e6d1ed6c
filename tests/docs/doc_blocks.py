"""Extract the runnable code blocks of the markdown docs and run them as a reader would.

A *block* is a fenced ```python, ```bash, ```sh or ```console block of README.md or
docs/*.md. The blocks of one document run in order in one scratch directory and share state,
like a reader pasting them into one terminal and one Python session:

- python blocks run in one Python process per document (`_python_session.py`); top-level
  ``await`` works (as in Jupyter) and every top-level expression is shown with ``repr``, as the
  REPL would, so a value that cannot even be displayed fails its block;
- shell blocks run with ``bash -e -o pipefail`` with ``aigw-lab`` and ``python`` on PATH; the
  variables a block exports reach the next blocks (a console block's ``$ `` lines are its
  commands, its other lines their output);
- every process has the network tripwire installed (`_sitecustomize/sitecustomize.py`): a
  block that tries to reach a non-loopback address fails.

Annotations are HTML comments on the lines right before a fence (invisible on GitHub,
visible to anyone editing the file)::

    <!-- doc-test: skip: needs OPENAI_API_KEY -->        not run; counted and reported
    <!-- doc-test: file gateway.toml -->                  the block's text is saved as that file
    <!-- doc-test: background port=8788 -->              a shell block started in the
                                                         background (a server), ready once the
                                                         port accepts; stopped at the end of
                                                         the document

A documented port is never used as such: each document's session takes a free loopback port in
its place and writes that number wherever the documented one appears in the document's blocks
(as a whole number), so documents can run at the same time (pytest-xdist workers, or several
test runs on one machine) and a foreign server on the documented port cannot answer in ours.

An unknown ``doc-test:`` directive is an error, so a typo cannot silently skip a block.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Block",
    "BlockFailure",
    "DocSession",
    "RUNNABLE",
    "console_commands",
    "extract_blocks",
]

#: Fence languages the test runs.
RUNNABLE = frozenset({"python", "bash", "sh", "console"})
SHELL = frozenset({"bash", "sh", "console"})

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,})(?P<lang>[\w+-]*)\s*$")
_ANNOTATION = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
_HERE = Path(__file__).resolve().parent
_SESSION_SCRIPT = _HERE / "_python_session.py"
_SITECUSTOMIZE_DIR = _HERE / "_sitecustomize"
#: Environment variable naming the folder where every process of a document writes the
#: network tripwire's violations at exit (read by `_sitecustomize/sitecustomize.py`).
TRIPWIRE_DIR_ENV = "AIGW_DOC_TEST_TRIPWIRE_DIR"


class BlockFailure(AssertionError):
    """A block did not run as written: the message names the block and shows its output."""


@dataclass(frozen=True)
class Block:
    """One fenced block of a markdown file, with its annotations."""

    doc: str  # the document's name, e.g. "README.md" or "docs/caching.md"
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None  # the reason, when annotated skip
    file: str | None = None  # save the block's text as this file
    background_port: int | None = None  # a shell block run in the background

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE or self.file is not None


def extract_blocks(text: str, doc: str) -> list[Block]:
    """Every fenced block of ``text`` (a markdown document called ``doc``), in order, with
    the ``doc-test:`` annotations of the comment lines right before its fence."""
    lines = text.split("\n")
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        note = _ANNOTATION.match(line)
        if note:
            pending.append((i + 1, note.group("body")))
            i += 1
            continue
        fence = _FENCE.match(line)
        if not fence and line.lstrip().startswith("```"):
            raise ValueError(f"{doc}:{i + 1}: text after a fence's backticks: {line[:60]!r}")
        if not fence:
            if pending and line.strip():
                raise ValueError(
                    f"{doc}:{pending[0][0]}: a doc-test annotation must be right before a fence"
                )
            pending = [] if line.strip() else pending
            i += 1
            continue
        ticks, indent = fence.group("ticks"), len(fence.group("indent"))
        end = i + 1
        while end < len(lines) and not re.match(rf"^\s*{ticks}\s*$", lines[end]):
            if re.match(rf"^\s*{ticks}(?!`).*\S", lines[end]):  # a close with prose glued on
                raise ValueError(f"{doc}:{end + 1}: text after a fence's backticks")
            end += 1
        if end == len(lines):
            raise ValueError(f"{doc}:{i + 1}: a fence that is never closed")
        body = "\n".join(
            raw[indent:] if raw[:indent].isspace() else raw for raw in lines[i + 1 : end]
        )
        options = _parse_annotations(pending, doc)
        blocks.append(
            Block(
                doc=doc, line=i + 1, lang=fence.group("lang").lower(), code=body + "\n", **options
            )
        )
        pending = []
        i = end + 1
    if pending:
        raise ValueError(f"{doc}:{pending[0][0]}: a doc-test annotation with no block after it")
    return blocks


def _parse_annotations(notes: list[tuple[int, str]], doc: str) -> dict[str, object]:
    options: dict[str, object] = {}
    for line, body in notes:
        if body.startswith("skip:") and body[5:].strip():
            options["skip"] = body[5:].strip()
        elif m := re.fullmatch(r"file\s+(?P<name>[\w./-]+)", body):
            name = m.group("name")
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(
                    f"{doc}:{line}: doc-test file {name!r} must stay in the scratch dir"
                )
            options["file"] = name
        elif m := re.fullmatch(r"background\s+port=(?P<port>\d{1,5})", body):
            options["background_port"] = int(m.group("port"))
        else:
            raise ValueError(
                f"{doc}:{line}: unknown doc-test annotation {body!r} (use 'skip: REASON', "
                "'file NAME' or 'background port=N')"
            )
    return options


def console_commands(code: str) -> str:
    """The commands of a console block: its ``$ `` lines and their ``\\`` continuations; the
    other lines are output shown to the reader. A block without ``$ `` lines is all commands."""
    lines = code.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        return code
    commands: list[str] = []
    continuing = False
    for line in lines:
        if line.startswith("$ ") or continuing:
            commands.append(line[2:] if line.startswith("$ ") and not continuing else line)
            continuing = line.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


def shell_statements(code: str) -> list[str]:
    """The top-level statements of a shell block: lines joined over ``\\`` continuations and
    open quotes, comment-only and blank lines dropped."""
    statements: list[str] = []
    current = ""
    for line in code.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current}\n{line}" if current else line
        if current.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(current, comments=True)
        except ValueError:  # an open quote: the statement goes on
            continue
        statements.append(current)
        current = ""
    if current:
        statements.append(current)
    return statements


@dataclass
class DocSession:
    """The scratch directory, shell environment and Python process of one document."""

    workdir: Path
    env: dict[str, str]
    # Only stops a hung block: embedding GSM8K takes 100-130 s on a busy 2-core box, and much
    # longer when the suite's xdist workers share the box with other runs (load 15 or more).
    timeout: float = 900.0
    python: subprocess.Popen[bytes] | None = None
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: documented port -> the free port this session uses in its place (see the module doc)
    ports: dict[int, int] = field(default_factory=dict)
    ran: int = 0  # blocks of the document run so far (the next one's index)
    _log: Path | None = None
    _results: int | None = None

    @classmethod
    def create(cls, workdir: Path, *, extra_env: dict[str, str] | None = None) -> DocSession:
        """A session in ``workdir``, with PATH giving ``aigw-lab`` and ``python`` of this
        interpreter and the tripwire installed in every Python process it starts."""
        workdir.mkdir(parents=True, exist_ok=True)
        bindir = workdir / ".doc-test-bin"
        bindir.mkdir(exist_ok=True)
        (bindir / "aigw-lab").write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -m aigw_lab.cli.main "$@"\n'
        )
        (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        for name in ("pip", "pip3"):  # never into this interpreter: such a block says skip
            (bindir / name).write_text(
                "#!/bin/sh\necho 'doc-test: pip is not run here; annotate the block' >&2\nexit 97\n"
            )
        for script in bindir.iterdir():
            script.chmod(0o755)
        tripwire_dir = workdir / ".doc-test-tripwire"
        tripwire_dir.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(_SITECUSTOMIZE_DIR), env.get("PYTHONPATH", "")) if p
                ),
                TRIPWIRE_DIR_ENV: str(tripwire_dir),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "PYTHONUNBUFFERED": "1",
                "AIGW_LAB_DEBUG": "",
            }
        )
        for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CLOUDFLARE_API_TOKEN"):
            env.pop(name, None)  # no keys: a block that needs one must say so
        env.update(extra_env or {})
        return cls(workdir=workdir, env=env)

    # --- running blocks ---------------------------------------------------------------

    def reserve_ports(self, blocks: list[Block]) -> None:
        """Take a free port for every documented port of ``blocks`` (a whole document) before
        its first block runs, so that blocks before the server's (a config file naming the
        port) get the same number as the blocks after it."""
        for block in blocks:
            if block.background_port is not None and block.background_port not in self.ports:
                self.ports[block.background_port] = _free_port()

    def localize(self, code: str) -> str:
        """``code`` with every documented port this session has replaced by its own."""
        for documented, actual in self.ports.items():
            code = re.sub(rf"(?<!\d){documented}(?!\d)", str(actual), code)
        return code

    def run(self, block: Block) -> str:
        """Run one block; returns its output, raises `BlockFailure` naming the block."""
        self.ran += 1
        if block.background_port is not None and block.background_port not in self.ports:
            self.ports[block.background_port] = _free_port()
        if block.file is not None:
            target = self.workdir / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.localize(block.code))
            return ""
        if block.lang == "python":
            output = self._run_python(block)
        elif block.lang in SHELL:
            code = console_commands(block.code) if block.lang == "console" else block.code
            code = self.localize(code)
            if block.background_port is not None:
                output = self._start_background(block, code)
            else:
                output = self._run_shell(block, code)
        else:
            return ""
        self._check_tripwire(block, output)
        return output

    def _run_shell(self, block: Block, code: str) -> str:
        env_out = self.workdir / ".doc-test-env"
        # bash -e does not stop at a failing `a && b`: each statement checks its own status.
        checked = "".join(f"{{ {s}\n}} || exit $?\n" for s in shell_statements(code))
        script = f"{checked}env -0 > {_quote(env_out)}\n"
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout stops what the block started, too
        )
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _stop_group(process)
            stdout, stderr = process.communicate()
            raise BlockFailure(
                f"{block.id}: still running after {self.timeout:.0f} s (a server? annotate "
                f"it background port=N)\n{_text(stdout)}{_text(stderr)}"
            ) from None
        output = _text(stdout) + _text(stderr)
        if process.returncode != 0:
            raise BlockFailure(f"{block.id}: exit status {process.returncode}\n{output}")
        for entry in env_out.read_bytes().split(b"\0"):
            name, sep, value = entry.decode("utf-8", "replace").partition("=")
            if sep and not name.startswith("BASH_FUNC_"):
                self.env[name] = value
        return output

    def _start_background(self, block: Block, code: str) -> str:
        assert block.background_port is not None
        port = self.ports[block.background_port]
        if _accepts(port):  # a foreign server would answer the later blocks in its place
            raise BlockFailure(
                f"{block.id}: port {port} (in place of {block.background_port}) is already in "
                "use by another process; the block cannot run here now (run the test again)"
            )
        log = self.workdir / f".doc-test-background-{block.line}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", code],
                cwd=self.workdir,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stopping it stops its children too
            )
        self.background.append(process)
        # A served learned policy loads its model before it listens: tens of seconds when
        # the box is busy.
        wait = min(self.timeout, 300.0)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BlockFailure(
                    f"{block.id}: the background command ended with status "
                    f"{process.returncode} before port {port} accepted\n{log.read_text()}"
                )
            if _accepts(port):
                return log.read_text()
            time.sleep(0.1)
        raise BlockFailure(
            f"{block.id}: port {port} did not accept within {wait:.0f} s\n{log.read_text()}"
        )

    def _run_python(self, block: Block) -> str:
        if self.python is None:
            self._start_python()
        assert self.python is not None and self.python.stdin is not None and self._log is not None
        start = self._log.stat().st_size
        code = self.localize(block.code)
        message = json.dumps({"code": code, "doc": block.doc, "line": block.line}) + "\n"
        try:
            self.python.stdin.write(message.encode())
            self.python.stdin.flush()
        except BrokenPipeError:
            raise BlockFailure(
                f"{block.id}: the Python session had ended\n{self._tail(0)}"
            ) from None
        result = self._read_result(block)
        output = self._tail(start)
        if result is None:
            raise BlockFailure(f"{block.id}: the Python session ended\n{output}")
        if not result["ok"]:
            raise BlockFailure(f"{block.id}: {result['error']}\n{output}")
        return output

    def _start_python(self) -> None:
        self._log = self.workdir / ".doc-test-python.log"
        read_fd, write_fd = os.pipe()
        with self._log.open("wb") as sink:
            self.python = subprocess.Popen(
                [sys.executable, str(_SESSION_SCRIPT), str(write_fd)],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=sink,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
            )
        os.close(write_fd)
        self._results = read_fd

    def _read_result(self, block: Block) -> dict[str, object] | None:
        assert self._results is not None
        buffer = b""
        deadline = time.monotonic() + self.timeout
        while not buffer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise BlockFailure(f"{block.id}: still running after {self.timeout:.0f} s")
            ready, _, _ = select.select([self._results], [], [], left)
            if ready:
                chunk = os.read(self._results, 65536)
                if not chunk:
                    return None
                buffer += chunk
        return json.loads(buffer)

    def _tail(self, start: int) -> str:
        if self._log is None or not self._log.exists():
            return ""
        with self._log.open("rb") as f:
            f.seek(start)
            return _text(f.read())

    def _check_tripwire(self, block: Block, output: str) -> None:
        folder = Path(self.env[TRIPWIRE_DIR_ENV])
        found = [p.read_text() for p in sorted(folder.glob("*.txt")) if p.read_text().strip()]
        if found:
            for p in folder.glob("*.txt"):
                p.unlink()
            raise BlockFailure(f"{block.id}: network tripwire: {' '.join(found)}\n{output}")

    # --- ending -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the Python process and the background commands (each by its own id)."""
        if self.python is not None:
            if self.python.stdin is not None:
                try:
                    self.python.stdin.close()
                except OSError:
                    pass
            try:
                self.python.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.python.kill()
                self.python.wait()
            self.python = None
        if self._results is not None:
            os.close(self._results)
            self._results = None
        for process in self.background:
            _stop_group(process)
        self.background.clear()

    def copy_in(self, source: Path, name: str) -> None:
        """Copy a folder of the repository (``examples/``) into the scratch directory, where
        a reader running from a checkout would find it."""
        shutil.copytree(source, self.workdir / name, dirs_exist_ok=True)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and what it started (its own process group, by its id): SIGTERM,
    then SIGKILL after 15 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


#: The lowest port a doc block's server may get: below the usual services' ports.
LOWEST_PORT = 10_000


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default when unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free_port() -> int:
    """A loopback port nothing is bound to now, below the kernel's ephemeral range.

    A document's ports are chosen when its first block runs, and its server may start minutes
    later. A port from the ephemeral range (what a port-0 bind gives) can be handed meanwhile to
    another test's port-0 server or to an outgoing connection's local end, and the document's
    server then fails with "Address already in use" (seen once in fresh-clone CI,
    2026-12-07). Ports below that range are given out by neither; a random one, checked free,
    keeps the documents of parallel workers apart. Where the range starts too low to leave
    room, the kernel's choice it is.
    """
    low = _ephemeral_low()
    if low > LOWEST_PORT + 1_000:
        choose = random.SystemRandom()
        for _ in range(100):
            port = choose.randrange(LOWEST_PORT, low)
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _accepts(port: int) -> bool:
    """Whether something on 127.0.0.1 accepts connections on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")
