"""The client side of DPoP (RFC 9449): a key, its proofs, and an ``httpx.Auth``.

So a test (or a small client) never hand-rolls a proof::

    key = DPoPKey.generate()                     # ES256 by default
    token = issuer.make_token(["items:read"], cnf={"jkt": key.jkt})
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
    """``httpx.Auth`` sending a DPoP-bound token with a fresh proof on every request.

    On a 401 ``use_dpop_nonce`` it retries once with the nonce the server sent, and it
    keeps the latest ``DPoP-Nonce`` it saw for the next requests (RFC 9449 §8-9).

    Args:
        token: The DPoP-bound access token.
        key: The :class:`DPoPKey` it is bound to.
    """

    def __init__(self, token: str, key: DPoPKey) -> None:
        self.token = token
        self.key = key
        self.nonce: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the token and a proof; retry once on ``use_dpop_nonce``."""
        self._sign(request)
        response = yield request
        nonce = response.headers.get("dpop-nonce")
        if nonce:
            retry = response.status_code == 401 and "use_dpop_nonce" in response.headers.get(
                "www-authenticate", ""
            )
            self.nonce = nonce
            if retry:
                self._sign(request)
                yield request

    def _sign(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = self.key.proof(
            request.method, str(request.url), token=self.token, nonce=self.nonce
        )
