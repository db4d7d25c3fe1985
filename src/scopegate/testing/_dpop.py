"""The client side of DPoP (RFC 9449): a key, its proofs, and an ``httpx.Auth``.

So a test (or a small client) never hand-rolls a proof::

    key = DPoPKey.generate()                     # ES256 by default
    # a bound token from an authorization server (RFC 9449 §5): the proof, no ath
    token = httpx.post(token_url, data={"grant_type": "client_credentials"},
                       auth=DPoPAuth(None, key, client=("svc", "secret"))).json()["access_token"]
    # or, without a server: issuer.make_token(["items:read"], cnf={"jkt": key.jkt})
    httpx.get(url, auth=DPoPAuth(token, key))    # Authorization: DPoP ... + DPoP: <proof>
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from scopegate._dpop import access_token_hash
from scopegate._introspection import basic_authorization
from scopegate._jose import compact_json, encode_compact
from scopegate._signing import SigningAlgorithm, SigningKey

__all__ = ["DPoPAuth", "DPoPKey"]


class DPoPKey:
    """A client's DPoP key pair: makes proofs, and knows its thumbprint (``jkt``).

    Args:
        key: The :class:`~scopegate.testing.SigningKey` that signs the proofs.
        clock: Unix seconds for ``iat``.
    """

    __slots__ = ("_clock", "_header", "key")

    def __init__(self, key: SigningKey, *, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self._clock = clock
        jwk = {k: v for k, v in key.public_jwk().items() if k not in ("kid", "use", "alg")}
        # RFC 9449 §4.2: typ dpop+jwt, the proof's alg, and the public JWK.
        self._header = compact_json({"typ": "dpop+jwt", "alg": key.alg, "jwk": jwk})

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.key.alg!r}, jkt={self.jkt!r})"

    @classmethod
    def generate(cls, alg: SigningAlgorithm = "ES256") -> DPoPKey:
        """A fresh key (ES256 by default: the algorithm DPoP clients use most)."""
        return cls(SigningKey.generate(alg))

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint a bound token carries in ``cnf.jkt``."""
        return self.key.thumbprint()

    def proof(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        nonce: str | None = None,
        jti: str | None = None,
        iat: float | None = None,
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A proof for *method* on *url* (query and fragment are dropped from ``htu``).

        Args:
            token: The access token it accompanies (adds ``ath``).
            nonce: The server's ``DPoP-Nonce``.
            jti: Overrides the fresh random ``jti``.
            iat: Overrides the current time as ``iat``.
            claims: Extra or replacing payload members (tests of hostile proofs).
            headers: Extra or replacing header members (tests of hostile proofs).
        """
        parts = urlsplit(url)
        payload: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": method.upper(),
            "htu": urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
            "iat": int(self._clock()) if iat is None else iat,
        }
        if token is not None:
            payload["ath"] = access_token_hash(token)
        if nonce is not None:
            payload["nonce"] = nonce
        payload.update(claims or {})
        header: dict[str, Any] | bytes = self._header
        if headers:
            header = {**json.loads(self._header), **headers}
        return encode_compact(header, payload, self.key.signature)


class DPoPAuth(httpx.Auth):
    """``httpx.Auth`` adding a fresh DPoP proof to every request (RFC 9449).

    With a *token*: sends ``Authorization: DPoP <token>`` and a proof with its ``ath``
    (a resource request, RFC 9449 §7). With ``None``: a token request (§5): only the
    proof, whose key the authorization server binds the tokens it issues to; the client
    authenticates with *client* (``client_secret_basic``) or with credentials in the
    form.

    On ``use_dpop_nonce`` (a resource server's 401 challenge, §9, or an authorization
    server's 400 error, §8) it retries once with the nonce the server sent, and it keeps
    the latest ``DPoP-Nonce`` it saw for the next requests.

    Args:
        token: The DPoP-bound access token, or ``None`` for token requests.
        key: The :class:`DPoPKey` the token is (to be) bound to.
        client: ``(client_id, client_secret)`` for HTTP Basic client authentication
            (RFC 6749 §2.3.1) on token requests.
    """

    def __init__(
        self, token: str | None, key: DPoPKey, *, client: tuple[str, str] | None = None
    ) -> None:
        self.token = token
        self.key = key
        self.nonce: str | None = None
        self._basic = basic_authorization(*client) if client is not None else None
        # An authorization server's use_dpop_nonce is in the JSON body (RFC 9449 §8).
        self.requires_response_body = token is None

    def __repr__(self) -> str:
        return f"DPoPAuth(key={self.key!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the token (if any) and a proof; retry once on ``use_dpop_nonce``."""
        self._sign(request)
        response = yield request
        nonce = response.headers.get("dpop-nonce")
        if nonce:
            self.nonce = nonce
            if _asks_for_nonce(response):
                self._sign(request)
                yield request

    def _sign(self, request: httpx.Request) -> None:
        if self.token is not None:
            request.headers["Authorization"] = f"DPoP {self.token}"
        elif self._basic is not None:
            request.headers["Authorization"] = self._basic
        request.headers["DPoP"] = self.key.proof(
            request.method, str(request.url), token=self.token, nonce=self.nonce
        )


def _asks_for_nonce(response: httpx.Response) -> bool:
    if response.status_code == 401:
        return "use_dpop_nonce" in response.headers.get("www-authenticate", "")
    if response.status_code == 400:
        try:
            return bool(response.json().get("error") == "use_dpop_nonce")
        except (ValueError, AttributeError):
            return False
    return False
