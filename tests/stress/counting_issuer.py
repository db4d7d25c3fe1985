"""``scopegate issuer serve`` with every judged guess counted, for the brute-force stress test.

Usage: ``python -m tests.stress.counting_issuer issuer serve --config FILE --port PORT``
with ``SCOPEGATE_COUNT_FILE`` naming a file. The issuer runs unchanged through
:func:`scopegate.cli.main`; only the hash verification it calls to judge a real client
secret or password is wrapped, and each candidate starting with ``guess-`` appends one
line ``client guess-...`` or ``user guess-...`` to the file (``O_APPEND``: several
processes may share it). Dummy work for unknown or locked accounts does not go through
that function, so it is not counted: a line is exactly one judged guess.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import ModuleType

from scopegate.cli import main
from scopegate.issuer import _clients, _login


def _count(module: ModuleType, label: str, path: str) -> None:
    real: Callable[[str, str], bool] = module.verify_secret

    def verify(stored: str, candidate: str) -> bool:
        if candidate.startswith("guess-"):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{label} {candidate}\n".encode())
            finally:
                os.close(fd)
        return real(stored, candidate)

    module.verify_secret = verify  # type: ignore[attr-defined]


if __name__ == "__main__":
    count_file = os.environ["SCOPEGATE_COUNT_FILE"]
    _count(_clients, "client", count_file)
    _count(_login, "user", count_file)
    sys.exit(main(sys.argv[1:]))
