"""Several trusted issuers on one API, through every example as a real process.

Each example (``examples/serve.py NAME``) is started with two issuers in
``SCOPEGATE_ISSUER``: two :class:`~scopegate.testing.IssuerServer` instances on
127.0.0.1 serving discovery and their JWKS. A third one is running too, but not trusted:
a token naming it must be refused without a single request reaching it. The first
trusted issuer starts **down**: its tokens get 503 with ``Retry-After`` while the
other's are accepted; once it is back, its tokens are accepted too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from scopegate.testing import IssuerServer
from tests.conformance._stack import EXAMPLES, run_example
from tests.servers import free_port

#: Seconds before a failed discovery or JWKS fetch is retried (SCOPEGATE_JWKS_COOLDOWN
#: caps that retry interval); short, so the test can wait for the recovery.
RETRY = 1


@dataclass(frozen=True)
class Issuers:
    """The two trusted issuers and the untrusted third."""

    first: IssuerServer
    second: IssuerServer
    third: IssuerServer


@pytest.fixture(scope="module")
def issuers() -> Iterator[Issuers]:
    """Three issuers serving discovery and JWKS over HTTP."""
    with (
        IssuerServer(alg="ES256") as first,
        IssuerServer(alg="ES256") as second,
        IssuerServer(alg="ES256") as third,
    ):
        yield Issuers(first, second, third)


def _get(url: str, token: str) -> httpx.Response:
    return httpx.get(url + "/items", headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.mark.parametrize("name", EXAMPLES)
def test_several_issuers_through_the_example(name: str, issuers: Issuers) -> None:
    """Tokens of both trusted issuers are accepted, each checked with its own keys; a
    third issuer's token is 401 with no request to it; with the first issuer down its
    tokens are 503 and the second's still 200; the RFC 9728 metadata lists both."""
    first, second, third = issuers.first, issuers.second, issuers.third
    port = free_port()
    resource = f"http://127.0.0.1:{port}"
    env = {
        "SCOPEGATE_ISSUER": f"{first.issuer} {second.issuer}",
        "SCOPEGATE_RESOURCE": resource,  # also the audience
        "SCOPEGATE_JWKS_COOLDOWN": str(RETRY),
    }
    third_hits = sum(third.hits.values())
    first.available = False
    try:
        with run_example(name, None, port=port, env=env) as url:
            document = httpx.get(url + "/.well-known/oauth-protected-resource", timeout=10)
            assert document.json()["authorization_servers"] == [first.issuer, second.issuer]

            # The first issuer is down and its keys were never fetched: an outage.
            down = _get(url, first.make_token("items:read", audience=resource))
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"].isdigit()
            assert "invalid_token" not in down.headers["www-authenticate"]
            assert _get(url, second.make_token("items:read", audience=resource)).status_code == 200

            # A trusted issuer's token signed with another issuer's key: refused.
            forged = second.make_token("items:read", audience=resource, key=third.key)
            assert _get(url, forged).status_code == 401

            # An issuer nobody trusts: 401 invalid_token, and not one request to it.
            untrusted = _get(url, third.make_token("items:read", audience=resource))
            assert untrusted.status_code == 401
            assert 'error="invalid_token"' in untrusted.headers["www-authenticate"]
            assert (
                f'resource_metadata="{resource}/.well-known/'
                in (untrusted.headers["www-authenticate"])
            )

            # The first issuer is back: after the retry interval its tokens pass.
            first.available = True
            time.sleep(RETRY + 0.2)
            back = _get(url, first.make_token("items:read", audience=resource))
            assert back.status_code == 200, back.text
            assert _get(url, first.make_token("admin", audience=resource)).status_code == 403
    finally:
        first.available = True
    assert sum(third.hits.values()) == third_hits == 0
