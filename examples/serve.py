"""Start one example API on 127.0.0.1 with a production-grade server.

Usage::

    python examples/serve.py NAME --port PORT    # serve until SIGTERM / SIGINT
    # example NAME (uvicorn) listening on http://127.0.0.1:PORT
    python examples/serve.py --list              # one NAME per line

ASGI examples run under uvicorn, WSGI examples under waitress (multi-threaded). Both
stop cleanly (exit status 0) on SIGTERM or SIGINT, and both answer a request whose head
(request line and headers) exceeds :data:`MAX_REQUEST_HEAD` with 431 instead of
resetting the connection.

Adding an example: write ``examples/<name>_app.py`` exposing either ``create_app()`` (a
factory, preferred: nothing is read from the environment at import) or a module-level
``app``, then add one entry ``"<name>": ("<name>_app", "asgi" | "wsgi")`` to
:data:`EXAMPLES` below. Every example reads the ``SCOPEGATE_*`` environment variables
(see ``scopegate._config``) and implements the routes of the examples contract.

Every example logs one line per refused request at INFO on stderr (the
``scopegate.rejections`` logger: status, error and reason code, never the token), and
with ``SCOPEGATE_METRICS=prometheus`` serves ``GET /metrics`` without authentication
(:func:`_common.with_metrics`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from http import HTTPStatus
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

#: Largest request head either server accepts. A token is at most 8 KiB (the guard's
#: cap); 32 KiB leaves room for the other headers, and an over-long head is refused.
MAX_REQUEST_HEAD = 32 * 1024
#: How long a refused connection keeps draining what the client still sends.
LINGER_SECONDS = 5.0


def load_app(name: str) -> Any:
    """Import example *name* and return its application object."""
    module_name, _ = EXAMPLES[name]
    examples_dir = str(Path(__file__).resolve().parent)
    if examples_dir not in sys.path:
        sys.path.insert(0, examples_dir)
    module = importlib.import_module(module_name)
    factory = getattr(module, "create_app", None)
    app = factory() if callable(factory) else module.app
    from _common import with_metrics

    return with_metrics(app, EXAMPLES[name][1])


def log_to_stderr() -> None:
    """scopegate's log lines (INFO and up) on stderr: one line per refused request, and
    the authorization server's trouble (each incident once)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    library = logging.getLogger("scopegate")
    library.addHandler(handler)
    library.setLevel(logging.INFO)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def announce(name: str, server: str, port: int) -> None:
    """Say where the example listens, once the socket is bound."""
    print(f"example {name} ({server}) listening on http://{HOST}:{port}", flush=True)


def serve_asgi(app: Any, port: int, name: str = "app") -> None:
    """Run *app* under uvicorn until SIGTERM / SIGINT.

    uvicorn shuts down gracefully on those signals, then re-raises the signal to the
    handler that was installed before it started: ours, which exits with status 0.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        lifespan="auto",
        http=head_limited_h11_protocol(),
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
    )
    sock = config.bind_socket()  # bound here, so the line below is true when printed
    announce(name, "uvicorn", int(sock.getsockname()[1]))
    uvicorn.Server(config).run(sockets=[sock])


def head_limited_h11_protocol() -> type[Any]:
    """uvicorn's h11 protocol, made to always answer an over-long request head.

    Why h11, and why not as is. uvicorn has two HTTP/1.1 parsers:

    * httptools (``http="httptools"``, the default when installed) sets no limit on a
      request head at all: a 100 KB, or a 10 MB, header is buffered and accepted. It
      cannot refuse one, so it is not used here.
    * h11 (``http="h11"``, the default without httptools) refuses a head larger than
      ``h11_max_incomplete_event_size`` (16 KiB by default), but (a) it measures only a
      head that is still *incomplete*, so a 100 KB head that arrives in one read is
      accepted while the same head in two reads is refused; and (b) uvicorn writes its
      400 and closes the socket at once: the client's bytes still unread, or still
      arriving, make the kernel reset the connection, and a client that is still sending
      its head gets a reset instead of the answer.

    This subclass keeps h11 and fixes both: while a head is awaited it feeds h11 at most
    a quarter of :data:`MAX_REQUEST_HEAD` at a time, so an over-long head is always seen
    incomplete past the limit; and it answers the refusal itself (431 for a head over
    the limit, as h11 advises, 400 for a malformed one), then half-closes, drains what
    the client still sends, and closes once the client does or after
    :data:`LINGER_SECONDS` (a "lingering close", as Apache and nginx do), so the client
    always reads the answer.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    step = MAX_REQUEST_HEAD // 4

    class HeadLimitedH11Protocol(H11Protocol):  # type: ignore[misc]
        refused = False

        def data_received(self, data: bytes) -> None:
            if self.refused:
                return  # drained: the request was already answered
            if self.conn.their_state is not h11.IDLE or len(data) <= step:
                super().data_received(data)
                return
            for start in range(0, len(data), step):
                super().data_received(data[start : start + step])
                if self.refused:
                    return

        def send_400_response(self, msg: str) -> None:
            if self.conn.our_state is not h11.IDLE:
                # A response is under way: uvicorn's own handling.
                super().send_400_response(msg)
                return
            pending, _ = self.conn.trailing_data
            status = 431 if len(pending) > MAX_REQUEST_HEAD else 400
            body = HTTPStatus(status).phrase.encode("ascii")
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ]
            response = h11.Response(status_code=status, headers=headers, reason=body)
            for event in (response, h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.refused = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)

    return HeadLimitedH11Protocol


def serve_wsgi(app: Any, port: int, name: str = "app") -> None:
    """Run *app* under waitress with several worker threads until SIGTERM / SIGINT."""
    from waitress.server import create_server

    # waitress answers an over-long head with 431 (its default limit, 256 KiB, would
    # accept a 100 KB header). It closes right after the answer, without draining: a
    # client still writing its head may see that write fail, but reads the 431 first.
    server = create_server(
        app, host=HOST, port=port, threads=WSGI_THREADS, max_request_header_size=MAX_REQUEST_HEAD
    )
    announce(name, "waitress", int(server.effective_port))
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
    log_to_stderr()
    from scopegate import ConfigurationError

    try:
        app = load_app(args.name)
    except ConfigurationError as exc:
        print(f"serve.py: {args.name}: configuration error: {exc}", file=sys.stderr)
        return 2
    if EXAMPLES[args.name][1] == "asgi":
        serve_asgi(app, args.port, args.name)
    else:
        serve_wsgi(app, args.port, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
