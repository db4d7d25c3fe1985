"""Turn ``py-spy record -f raw`` stacks of a server under load into a cost breakdown.

``py-spy record --nonblocking`` samples the server without stopping it; ``-f raw`` writes
one line per distinct stack: the frames from the outermost to the innermost, joined by
``;``, then the number of samples, e.g.::

    Runner.run (asyncio/runners.py:118);...;verify (scopegate/_keys.py:182) 57

Each sample is charged to its **innermost frame** (self time) and that frame is put in
one category: the signature check, one scopegate module, Starlette, uvicorn/httptools,
the event loop, other Python, or "no Python frame". The shares times the server's CPU
µs per request of the same run give µs per request per category.

What py-spy cannot see in ``--nonblocking`` mode (native stacks need the process
stopped): C code is charged to the Python line that called it. That is how the signature
check is found: the innermost frame is the line of scopegate that calls
``cryptography``'s ``verify`` (its C/Rust code runs "inside" that line). CPython's GC is
charged to whichever line allocated when a collection started, so it is measured
separately (``gc.callbacks`` counters in the server, see ``_apps.GCCounters``).
"""

from __future__ import annotations

import linecache
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE = "signature check (OpenSSL via cryptography)"
NO_FRAME = "no Python frame (native code, GC, torn sample)"
STARLETTE = "Starlette"
SERVER = "uvicorn / httptools / h11"
LOOP = "asyncio / uvloop (event loop, C)"
OTHER = "other Python (stdlib, ...)"

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


@dataclass(frozen=True)
class Frame:
    """One frame as py-spy prints it: ``function (short/path.py:line)``."""

    func: str
    file: str
    line: int

    @classmethod
    def parse(cls, text: str) -> Frame:
        m = _FRAME.match(text.strip())
        if not m:
            return cls(text.strip(), "", 0)
        return cls(m.group("func"), m.group("file"), int(m.group("line") or 0))


@dataclass
class Profile:
    """Samples by category, with the files behind "other" for the record."""

    samples: Counter[str] = field(default_factory=Counter)
    others: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    def shares(self) -> dict[str, float]:
        total = self.total or 1
        return {k: v / total for k, v in self.samples.most_common()}


def parse_raw(text: str) -> list[tuple[list[Frame], int]]:
    """Stacks (outermost first) and their sample counts from py-spy's raw output."""
    out: list[tuple[list[Frame], int]] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        m = _LINE.match(raw.rstrip())
        if not m:
            continue
        stack = m.group("stack").strip()
        frames = [Frame.parse(f) for f in stack.split(";") if f.strip()] if stack else []
        out.append((frames, int(m.group("count"))))
    return out


def source_reader(scopegate_root: Path | None) -> Callable[[Frame], str]:
    """A function returning the source line of a scopegate frame ("" when unknown)."""

    def read(frame: Frame) -> str:
        if scopegate_root is None or not frame.file.startswith("scopegate/") or not frame.line:
            return ""
        return linecache.getline(str(scopegate_root / frame.file), frame.line)

    return read


def _module(file: str) -> str:
    """``scopegate/_jwt.py`` -> ``_jwt``; ``scopegate/integrations/x.py`` -> ``integrations/x``."""
    rest = file.split("/", 1)[1] if "/" in file else file
    return rest[:-3] if rest.endswith(".py") else rest


def classify(frames: list[Frame], source: Callable[[Frame], str] = lambda f: "") -> str:
    """The category of one stack, from its innermost frame."""
    if not frames:
        return NO_FRAME
    leaf = frames[-1]
    file = leaf.file
    if file.startswith("<scopegate "):
        # Code generated from the rule table (scopegate._checks): "<scopegate check_claims>".
        return f"scopegate _checks (generated {file})"
    if file.startswith("scopegate/"):
        if ".verify(" in source(leaf):
            return SIGNATURE
        return f"scopegate {_module(file)}"
    if file.startswith("cryptography/"):
        return SIGNATURE
    if file.startswith("starlette/"):
        return STARLETTE
    if file.split("/", 1)[0] in ("uvicorn", "httptools", "h11") or file.startswith("uvicorn:"):
        return SERVER
    if file.startswith(("asyncio/", "uvloop/")):
        return LOOP
    return OTHER


def breakdown(
    stacks: Iterable[tuple[list[Frame], int]], source: Callable[[Frame], str] = lambda f: ""
) -> Profile:
    """Samples per category over *stacks*."""
    prof = Profile()
    for frames, count in stacks:
        category = classify(frames, source)
        prof.samples[category] += count
        if category == OTHER:
            prof.others[frames[-1].file or frames[-1].func] += count
    return prof


def summary_line(stderr: str) -> tuple[int | None, int | None]:
    """(samples, errors) from py-spy's closing message, when it printed one."""
    m = re.search(r"Samples: (\d+)(?: Errors: (\d+))?", stderr)
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2) or 0)
