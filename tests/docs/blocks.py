"""Run the code blocks of README.md and docs/ as tests (Sybil parsers and evaluators).

The conventions, also described in docs/testing.md ("The documentation is tested"):

* A page is read top to bottom: its Python blocks share one namespace, as if typed into
  one module, with ``SCOPEGATE_ISSUER=https://issuer.example`` and
  ``SCOPEGATE_AUDIENCE=api://items`` set (what the getting-started page asks for).
* ```` ```python ```` runs. ``<!-- fragment -->`` on the line above a block marks an
  excerpt: it is only compiled (so it stays valid Python). A block whose first line is
  ``# NAME.py`` is a file: compiled and written to the page's working folder (on
  ``sys.path``), so later blocks can ``from NAME import ...`` or run it. Functions named
  ``test_*`` that a block defines are called, with pytest fixtures for their arguments.
* ``<!-- invisible-code-block: python ... -->`` is Sybil's hidden block: set-up or checks
  that a reader does not need to see, run in the page's namespace (e.g. serving the
  page's ``app`` on 127.0.0.1 and asserting what a client gets).
* ```` ```toml ```` is parsed; an issuer configuration (one with ``[[clients]]``,
  ``[[users]]`` or ``audience``) is also loaded by the issuer's own config loader (an
  excerpt without ``audience`` gets one). A block whose first line is ``# NAME.toml`` is
  written to the working folder.
* ```` ```json ```` is parsed. ```` ```text ```` (output, diagrams) is not run.
* ```` ```console ````, ```` ```sh ```` and ```` ```bash ````: every command is checked:
  ``scopegate ...`` by the real argument parser, ``pip install 'scopegate[X]'`` against
  the extras in pyproject.toml, ``python examples/serve.py NAME`` against the examples,
  ``make TARGET`` against the Makefile. With ``<!-- run -->`` above it, the block is also
  run, in the page's working folder: ``export``, ``scopegate`` (``issuer serve`` in the
  background until the page ends), ``python examples/serve.py`` and ``uvicorn`` (in the
  background), ``pytest`` (a user's own test session, which must pass), and ``curl``
  (sent with httpx; a trailing ``# 403`` comment is the status expected, else 2xx).
  ``TOKEN=$(curl ... | python -c '...["access_token"]')`` keeps the access token the
  ``curl`` received, as a shell would. Ports written ``127.0.0.1:PORT`` or
  ``--port PORT`` are mapped to free ones, the same way for the whole page.
* Any other language, or none, fails: give the block one of the above.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, RawFencedCodeBlockLexer

from tests.servers import ROOT, free_port, wait_for_port

#: What a page's Python blocks find in the environment.
PAGE_ENV = {"SCOPEGATE_ISSUER": "https://issuer.example", "SCOPEGATE_AUDIENCE": "api://items"}
SHELL = {"console", "sh", "bash", "shell"}
# Not run: plain text, and PromQL (whose metric names are checked against what
# scopegate.prometheus exports).
KNOWN = {"python", "toml", "json", "text", "promql", *SHELL}
#: HTML comments directly above a fence that say how to treat it.
_MARKER = re.compile(r"^<!--\s*([a-z-]+)(?::\s*(.*?))?\s*-->\s*$")
_FILE_LINE = re.compile(r"^#\s*([\w./-]+\.(?:py|toml))\s*$")
_PORT = re.compile(r"(?<=127\.0\.0\.1:)(\d{2,5})|(?<=localhost:)(\d{2,5})|(?<=--port )(\d{2,5})")
_ISSUER_KEYS = {"clients", "users", "audience", "token_format", "signing_key"}
START_TIMEOUT = 20.0

#: Blocks of pages owned by other work in progress that cannot run as written (network
#: to example hosts, names defined elsewhere). Keyed by page and a line of the block;
#: such a block is compiled or parsed only. The pages should mark them
#: ``<!-- fragment -->`` themselves, after which their entry goes.
FRAGMENTS: dict[str, dict[str, str]] = {
    "docs/dpop.md": {
        "replay=RedisReplayStore(": "wraps an `app` the page does not define",
        "key = DPoPKey.generate()": "calls https://api.example",
    },
}


@dataclass
class Block:
    """One fenced block: its language, source, markers and where it starts."""

    language: str
    source: str
    markers: dict[str, str]
    line: int

    @property
    def fragment(self) -> bool:
        return "fragment" in self.markers

    @property
    def file_name(self) -> str | None:
        first = self.source.split("\n", 1)[0]
        match = _FILE_LINE.match(first.strip())
        return match.group(1) if match else None


@dataclass
class Page:
    """What one page's blocks share: a working folder, processes, ports, variables."""

    path: Path
    workdir: Path
    environ: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    shell_env: dict[str, str] = field(default_factory=dict)
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)

    def map_ports(self, text: str) -> str:
        """Replace every documented port with this page's free port for it."""

        def swap(match: re.Match[str]) -> str:
            port = match.group(0)
            if port not in self.ports:
                self.ports[port] = free_port()
            return str(self.ports[port])

        return _PORT.sub(swap, text)


def _markers(document: Document, start: int) -> dict[str, str]:
    """The marker comments on the lines right above the fence at *start*."""
    markers: dict[str, str] = {}
    lines = document.text[:start].rstrip("\n").split("\n")
    for line in reversed(lines):
        match = _MARKER.match(line.strip())
        if not match:
            break
        markers[match.group(1)] = match.group(2) or ""
    return markers


def _line(document: Document, offset: int) -> int:
    return document.text.count("\n", 0, offset) + 1


def parse_fences(document: Document) -> Iterator[Region]:
    """Every fenced block of the page, with an evaluator for its language."""
    lexer = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<info>[^\n]*)$\n", re.MULTILINE))
    overrides = FRAGMENTS.get(Path(document.path).resolve().relative_to(ROOT).as_posix(), {})
    for region in lexer(document):
        info = region.lexemes["info"].strip()
        language = info.split()[0] if info else ""
        source = str(region.lexemes["source"])
        block = Block(
            language, source, _markers(document, region.start), _line(document, region.start) + 1
        )
        for needle, reason in overrides.items():
            if needle in source:
                block.markers["fragment"] = reason
        if language == "text":
            continue
        region.parsed = block
        region.evaluator = evaluate
        yield region


def parse_invisible(document: Document) -> Iterator[Region]:
    """Sybil's ``<!-- invisible-code-block: python -->`` blocks."""
    lexer = DirectiveInHTMLCommentLexer(directive="invisible-code-block", arguments="python")
    for region in lexer(document):
        source = str(region.lexemes["source"])
        region.parsed = Block(
            "python", source, {"invisible": ""}, _line(document, region.start) + 1
        )
        region.evaluator = evaluate
        yield region


# -- page set-up and tear-down -------------------------------------------------------


def setup(namespace: dict[str, Any]) -> None:
    """Before a page's first block: a working folder and the page's environment."""
    path = Path(namespace["__file__"])
    workdir = Path(tempfile.mkdtemp(prefix="scopegate-docs-"))
    page = Page(path=path, workdir=workdir, environ=dict(os.environ))
    os.environ.update(PAGE_ENV)
    sys.path.insert(0, str(workdir))
    namespace["__name__"] = "__docs__"
    namespace["__page__"] = page


def teardown(namespace: dict[str, Any]) -> None:
    """After a page's last block: stop its servers, forget its modules and variables."""
    page: Page = namespace["__page__"]
    for proc, _ in page.processes:
        proc.terminate()
    for proc, _ in page.processes:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for closer in reversed(page.closers):
        with contextlib.suppress(Exception):
            closer()
    for value in [
        *namespace.values(),
        *(vars(sys.modules[m]).values() for m in page.modules if m in sys.modules),
    ]:
        _release(value)
    for name in page.modules:
        sys.modules.pop(name, None)
    with contextlib.suppress(ValueError):
        sys.path.remove(str(page.workdir))
    os.environ.clear()
    os.environ.update(page.environ)
    shutil.rmtree(page.workdir, ignore_errors=True)


def _release(value: Any) -> None:
    """Stop what a page left running: served issuers, verifiers' connections."""
    from scopegate.testing import IssuerServer

    values = value if isinstance(value, type({}.values())) else [value]
    for item in values:
        if isinstance(item, IssuerServer):
            with contextlib.suppress(Exception):
                item.stop()


# -- evaluation -----------------------------------------------------------------------


def _promql(block: Block) -> None:
    """Every ``scopegate_*`` series a query names is one the Prometheus module exports."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    import scopegate.prometheus

    registry = CollectorRegistry()
    instrumentation = scopegate.prometheus.instrument(registry)
    try:
        text = generate_latest(registry).decode()
    finally:
        instrumentation.uninstrument()
    suffixes = ("", "_total", "_bucket", "_sum", "_count", "_created")
    exported = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes
    }
    unknown = sorted(set(re.findall(r"\bscopegate_[a-z0-9_]+", block.source)) - exported)
    assert not unknown, f"line {block.line}: metrics not exported: {', '.join(unknown)}"


def evaluate(example: Example) -> None:
    """Run one block according to its language and markers."""
    block: Block = example.parsed
    page: Page = example.namespace["__page__"]
    if block.language == "python":
        _python(example, block, page)
    elif block.language == "toml":
        _toml(block, page)
    elif block.language == "json":
        json.loads(block.source)
    elif block.language in SHELL:
        _shell(block, page, run="run" in block.markers and not block.fragment)
    elif block.language == "promql":
        _promql(block)
    elif block.language not in KNOWN:
        raise AssertionError(
            f"a code block without a known language ({block.language or 'none'!r}): use "
            f"one of {', '.join(sorted(KNOWN))} (see docs/testing.md)"
        )


def _python(example: Example, block: Block, page: Page) -> None:
    source = page.map_ports(block.source) if page.ports else block.source
    padded = "\n" * (block.line - 1) + source
    code = compile(padded, str(page.path), "exec", dont_inherit=True)
    if block.fragment:
        return
    name = block.file_name
    if name is not None:
        target = page.workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
        page.modules.append(name.removesuffix(".py").replace("/", "."))
        importlib.invalidate_caches()
        return
    namespace = example.namespace
    before = {key: value for key, value in namespace.items() if key.startswith("test_")}
    exec(code, namespace)
    request = namespace.get("request")
    for key, value in list(namespace.items()):
        if key.startswith("test_") and before.get(key) is not value and inspect.isfunction(value):
            arguments = {
                name: request.getfixturevalue(name) for name in inspect.signature(value).parameters
            }
            result = value(**arguments)
            if inspect.iscoroutine(result):
                asyncio.run(result)


def _toml(block: Block, page: Page) -> None:
    source = page.map_ports(block.source)
    data = tomllib.loads(source)
    name = block.file_name
    target = page.workdir / (name or "snippet.toml")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    if block.fragment or not _ISSUER_KEYS & set(data):
        return
    from scopegate.issuer import load_config

    if "audience" not in data:  # an excerpt: a client or user to add to a configuration
        excerpt = page.workdir / "excerpt.toml"
        excerpt.write_text('audience = "api://docs"\n' + source)
        target = excerpt
    load_config(target, default_issuer="http://127.0.0.1:9000")


# -- shell blocks ---------------------------------------------------------------------


def commands(block: Block) -> Iterator[tuple[list[str], str, int]]:
    """(argv, trailing comment, line) for each command of a shell block."""
    lines = block.source.split("\n")
    prompted = block.language == "console" or any(line.startswith("$ ") for line in lines)
    pending = ""
    start = 0
    for number, raw in enumerate(lines):
        line = raw.rstrip()
        if not pending:
            if prompted:
                if not line.startswith("$ "):
                    continue  # output shown after a command
                line = line[2:]
            start = block.line + number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if not text or text.startswith("#"):
            continue
        lexer = shlex.shlex(text, posix=True, punctuation_chars="<>|")
        lexer.whitespace_split = True
        lexer.commenters = ""
        words = list(lexer)
        comment = ""
        for index, word in enumerate(words):
            if word.startswith("#"):
                comment = " ".join(words[index:]).lstrip("#").strip()
                words = words[:index]
                break
        yield words, comment, start


def _program(argv: list[str]) -> tuple[str, list[str]]:
    """The program a command runs, with ``.venv/bin/`` and ``python -m`` folded in."""
    head, rest = Path(argv[0]).name, argv[1:]
    if head in {"python", "python3"} and rest[:1] == ["-m"] and len(rest) > 1:
        return rest[1], rest[2:]
    return head, rest


def _extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["optional-dependencies"])


def _check(argv: list[str], line: int) -> None:
    """Check one command without running it."""
    program, args = _program(argv)
    where = f"line {line}: {shlex.join(argv)}"
    if program == "pip":
        for arg in args:
            match = re.match(r"(?:scopegate|\.)\[([\w,-]+)\]", arg)
            if match:
                unknown = set(match.group(1).split(",")) - _extras()
                assert not unknown, f"{where}: no such extra {sorted(unknown)} in pyproject.toml"
    elif program == "scopegate":
        _parse_cli(args, where)
    elif program in {"python", "python3"} and args and args[0].endswith("examples/serve.py"):
        sys.path.insert(0, str(ROOT / "examples"))
        try:
            from serve import EXAMPLES  # type: ignore[import-not-found]
        finally:
            sys.path.remove(str(ROOT / "examples"))
        names = [a for a in args[1:] if not a.startswith("-") and not a.isdigit()]
        assert all(n in EXAMPLES for n in names), f"{where}: no such example"
    elif (
        program in {"python", "python3"}
        and args
        and args[0].startswith(("examples/", "benchmarks/"))
    ):
        assert (ROOT / args[0]).exists(), f"{where}: no such file in the repository"
    elif program == "make":
        makefile = (ROOT / "Makefile").read_text()
        for target in args:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{where}: no target"


def _plain(args: list[str]) -> list[str]:
    """The arguments before any redirection or pipe."""
    for index, arg in enumerate(args):
        if arg in {"<", ">", "|", ">>"}:
            return args[:index]
    return args


def _parse_cli(args: list[str], where: str) -> None:
    import io

    from scopegate.cli.main import build_parser

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args([a if not a.startswith("$") else "X" for a in _plain(args)])
        except SystemExit as exc:
            code = exc.code
        else:
            code = 0
    problem = stderr.getvalue().strip().rsplit("\n", 1)[-1]  # argparse's "error: ..." line
    assert code == 0, f"{where}: {problem}"


def _shell(block: Block, page: Page, *, run: bool) -> None:
    for argv, comment, line in commands(block):
        _check(argv, line)
        if run:
            _run(argv, comment, line, page)


def _expand(word: str, page: Page) -> str:
    env = {**os.environ, **page.shell_env}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), word)


def _run(argv: list[str], comment: str, line: int, page: Page) -> None:
    """Run one command of a ``<!-- run -->`` block in the page's working folder."""
    argv = [page.map_ports(_expand(word, page)) for word in argv]
    argv = [
        page.map_ports(f"--port {word}").removeprefix("--port ")
        if index and argv[index - 1] == "--port"
        else word
        for index, word in enumerate(argv)
    ]
    where = f"{page.path.name} line {line}: {shlex.join(argv)}"
    captured = re.match(r"^([A-Z_][A-Z0-9_]*)=\$\((.*)$", argv[0])
    if captured:  # NAME=$(curl ... | python -c '... ["access_token"] ...')
        pipe = argv.index("|") if "|" in argv else len(argv)
        assert "access_token" in " ".join(argv[pipe:]), f"{where}: only a token can be captured"
        _curl(argv[1:pipe], "", where, page)
        page.shell_env[captured.group(1)] = page.shell_env["TOKEN"]
        return
    env_prefix = {}
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
        key, _, value = argv.pop(0).partition("=")
        env_prefix[key] = value
    if not argv:
        page.shell_env.update(env_prefix)
        return
    program, args = _program(argv)
    if program == "export":
        for item in args:
            key, _, value = item.partition("=")
            page.shell_env[key] = value
        return
    if program in {"pip", "make"}:
        return  # checked, not run: the suite's environment is already installed
    env = {**os.environ, **page.shell_env, **env_prefix}
    if program == "curl":
        _curl(args, comment, where, page)
    elif program == "scopegate" and args[:2] == ["issuer", "serve"]:
        port = int(args[args.index("--port") + 1])
        cmd = [sys.executable, "-m", "scopegate", *args]
        _background(
            cmd, env, page, f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server"
        )
    elif program == "scopegate":
        _foreground([sys.executable, "-m", "scopegate", *args], env, page, where)
    elif program in {"python", "python3"} and args and args[0].endswith("examples/serve.py"):
        port = int(args[args.index("--port") + 1])
        cmd = [sys.executable, str(ROOT / "examples" / "serve.py"), *args[1:]]
        _background(cmd, env, page, f"http://127.0.0.1:{port}/public")
    elif program == "pytest":
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
        _foreground(cmd, env, page, where)
    elif program == "uvicorn":
        port = int(args[args.index("--port") + 1])
        cmd = [sys.executable, "-m", "uvicorn", *args]
        _background(cmd, env, page, None, port)
    else:
        raise AssertionError(f"{where}: not a command the documentation tests can run")


def _foreground(cmd: list[str], env: dict[str, str], page: Page, where: str) -> None:
    stdin = stdout = None
    if "<" in cmd:
        at = cmd.index("<")
        stdin = (page.workdir / cmd[at + 1]).read_bytes()
        cmd = cmd[:at] + cmd[at + 2 :]
    if ">" in cmd:
        at = cmd.index(">")
        stdout = page.workdir / cmd[at + 1]
        cmd = cmd[:at] + cmd[at + 2 :]
    result = subprocess.run(
        cmd, cwd=page.workdir, env=env, input=stdin, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, (
        f"{where}: exit {result.returncode}\n{result.stdout.decode()}{result.stderr.decode()}"
    )
    if stdout is not None:
        stdout.write_bytes(result.stdout)


def _background(
    cmd: list[str], env: dict[str, str], page: Page, ready: str | None, port: int | None = None
) -> None:
    log = page.workdir / f"process-{len(page.processes)}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=page.workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    page.processes.append((proc, log))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{shlex.join(cmd)} exited early:\n{log.read_text()[-2000:]}")
        if ready is None:
            assert port is not None
            with contextlib.suppress(TimeoutError):
                wait_for_port(port, timeout=0.5)
                return
        else:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready, timeout=1, trust_env=False).status_code == 200:
                    return
            time.sleep(0.1)
    raise AssertionError(f"{shlex.join(cmd)} did not start:\n{log.read_text()[-2000:]}")


def _curl(args: list[str], comment: str, where: str, page: Page) -> None:
    """Send what a ``curl`` command line asks for with httpx; check the status."""
    method = None
    headers: dict[str, str] = {}
    form: list[tuple[str, str]] = []
    auth = None
    url = None
    words = iter(args)
    for word in words:
        if word in {"-d", "--data", "--data-urlencode"}:
            key, _, value = next(words).partition("=")
            form.append((key, value))
        elif word in {"-H", "--header"}:
            key, _, value = next(words).partition(":")
            headers[key.strip()] = value.strip()
        elif word in {"-u", "--user"}:
            user, _, password = next(words).partition(":")
            auth = (user, password)
        elif word in {"-X", "--request"}:
            method = next(words)
        elif word.startswith("-"):
            assert set(word[1:]) <= set("sifSvL"), f"{where}: curl option {word} not supported"
        else:
            url = word
    assert url is not None, f"{where}: no URL"
    method = method or ("POST" if form else "GET")
    response = httpx.request(
        method,
        url,
        data=dict(form) or None,
        headers=headers,
        auth=auth,
        timeout=10,
        trust_env=False,
    )
    expected = re.match(r"(\d{3})\b", comment)
    if expected:
        assert response.status_code == int(expected.group(1)), (
            f"{where}: {response.status_code} {response.text[:300]}"
        )
        rest = comment[3:].strip()
        word = rest.split()[0] if rest else ""
        if word and re.fullmatch(r"[a-z_]+", word):
            assert word in response.text or word in response.headers.get("www-authenticate", ""), (
                f"{where}: {word} not in the answer"
            )
    else:
        assert response.is_success, f"{where}: {response.status_code} {response.text[:300]}"
    with contextlib.suppress(ValueError, AttributeError):
        token = response.json().get("access_token")
        if token:
            page.shell_env["TOKEN"] = token


def make_sybil() -> Sybil:
    """The Sybil that runs README.md and docs/*.md."""
    return Sybil(
        parsers=[parse_fences, parse_invisible],
        setup=setup,
        teardown=teardown,
        fixtures=["request"],
    )
