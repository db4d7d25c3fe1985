"""Start one example API on 127.0.0.1 with a production-grade server.

Usage::

    python examples/serve.py NAME --port PORT    # serve until SIGTERM / SIGINT
    python examples/serve.py --list              # one NAME per line

ASGI examples run under uvicorn, WSGI examples under waitress (multi-threaded). Both
stop cleanly (exit status 0) on SIGTERM or SIGINT.

Adding an example: write ``examples/<name>_app.py`` exposing either ``create_app()`` (a
factory, preferred: nothing is read from the environment at import) or a module-level
``app``, then add one entry ``"<name>": ("<name>_app", "asgi" | "wsgi")`` to
:data:`EXAMPLES` below. Every example reads the ``SCOPEGATE_*`` environment variables
(see ``scopegate._config``) and implements the routes of the examples contract.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, Literal

#: NAME -> (module in examples/, server kind).
EXAMPLES: dict[str, tuple[str, Literal["asgi", "wsgi"]]] = {
    "asgi": ("asgi_app", "asgi"),
    "wsgi": ("wsgi_app", "wsgi"),
    "starlette": ("starlette_app", "asgi"),
    "fastapi": ("fastapi_app", "asgi"),
    "flask": ("flask_app", "wsgi"),
    "django": ("django_app", "wsgi"),
    "mcp": ("mcp_app", "asgi"),
    "fastmcp": ("fastmcp_app", "asgi"),
}

HOST = "127.0.0.1"
WSGI_THREADS = 8


def load_app(name: str) -> Any:
    """Import example *name* and return its application object."""
    module_name, _ = EXAMPLES[name]
    examples_dir = str(Path(__file__).resolve().parent)
    if examples_dir not in sys.path:
        sys.path.insert(0, examples_dir)
    module = importlib.import_module(module_name)
    factory = getattr(module, "create_app", None)
    return factory() if callable(factory) else module.app


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve_asgi(app: Any, port: int) -> None:
    """Run *app* under uvicorn until SIGTERM / SIGINT.

    uvicorn shuts down gracefully on those signals, then re-raises the signal to the
    handler that was installed before it started: ours, which exits with status 0.
    """
    import uvicorn

    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="auto")
    uvicorn.Server(config).run()


def serve_wsgi(app: Any, port: int) -> None:
    """Run *app* under waitress with several worker threads until SIGTERM / SIGINT."""
    from waitress.server import create_server

    server = create_server(app, host=HOST, port=port, threads=WSGI_THREADS)
    # waitress's run() loop treats SystemExit as "shut down the task dispatcher".
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve the chosen example."""
    parser = argparse.ArgumentParser(description="Serve a scopegate example API.")
    parser.add_argument("name", nargs="?", choices=sorted(EXAMPLES), help="example to serve")
    parser.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1")
    parser.add_argument("--list", action="store_true", help="print the example names")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(EXAMPLES))
        return 0
    if args.name is None:
        parser.error("NAME is required (or --list)")
    # Installed first so a signal during start-up also ends the process cleanly.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    app = load_app(args.name)
    if EXAMPLES[args.name][1] == "asgi":
        serve_asgi(app, args.port)
    else:
        serve_wsgi(app, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
