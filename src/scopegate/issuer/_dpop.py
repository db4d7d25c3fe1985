"""DPoP at the token endpoint (RFC 9449 §5, §8): proofs that bind issued tokens to a key.

A token request (any grant) may carry one ``DPoP`` header. Its proof is checked by the
resource server's own :class:`~scopegate._dpop.ProofVerifier`, so every rule has one
definition: ``typ`` ``dpop+jwt``, an asymmetric ``alg`` from ``dpop_algorithms``, a
public ``jwk``, the signature, ``htm`` ``POST``, ``htu`` the token endpoint URL exactly
as the metadata publishes it (compared after RFC 3986 normalisation), ``iat`` within
the window, and the server's nonce when ``dpop_nonce`` is on. A token request presents
no access token, so there is no ``ath`` to check.

A proof that passes is a :class:`TokenRequestProof`; the grant binds what it issues to
its key (:meth:`~scopegate.issuer._grants.GrantRequest.bind`): the access token gets
``cnf.jkt``, the response ``token_type`` ``DPoP``, and a public client's refresh token
is bound too. The proof's single use is recorded in the replay store only then, once
the grant has validated the request: a caller that cannot get a token (a public
client's id is no secret) cannot fill the store. The store is a
:class:`~scopegate.MemoryReplayStore` for one process, or, when the issuer keeps its
state in Redis, a :class:`~scopegate.RedisReplayStore` under the same prefix, so a
proof used at one issuer process is refused by every other.

Errors are the authorization server's form (RFC 9449 §5): 400 ``invalid_dpop_proof``,
or 400 ``use_dpop_nonce`` with a ``DPoP-Nonce`` header, in the JSON body and never as a
``WWW-Authenticate`` challenge. A replay store that cannot answer fails closed (503).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from scopegate._dpop import DPoPPolicy, NonceSource, Proof, ProofVerifier, ReplayStore
from scopegate._errors import InvalidDPoPProofError as ProofRefused
from scopegate._errors import ServiceUnavailableError
from scopegate._errors import UseDPoPNonceError as NonceRequired
from scopegate._flow import run
from scopegate._signing import SigningKey
from scopegate.issuer._config import IssuerConfig
from scopegate.issuer._errors import (
    InvalidDPoPProofError,
    TemporarilyUnavailableError,
    UseDPoPNonceError,
)

__all__ = ["TokenEndpointDPoP", "TokenRequestProof", "nonce_secret"]

logger = logging.getLogger("scopegate.issuer")


def nonce_secret(key: SigningKey) -> bytes:
    """The HMAC key of the DPoP nonces, derived from the issuer's signing key.

    Issuer processes that share their key file (as they must, to sign for one issuer)
    hand out and accept the same nonces without sharing anything else.
    """
    return hmac.new(key.private_pem(), b"scopegate DPoP nonce", hashlib.sha256).digest()


class TokenRequestProof:
    """A token request's DPoP proof that passed every stateless check.

    Attributes:
        jkt: The RFC 7638 thumbprint of the proof's key.
    """

    __slots__ = ("_checker", "_claimed", "_now", "_proof")

    def __init__(self, checker: TokenEndpointDPoP, proof: Proof, now: float) -> None:
        self._checker = checker
        self._proof = proof
        self._now = now
        self._claimed = False

    def __repr__(self) -> str:
        return f"TokenRequestProof(jkt={self.jkt!r})"

    @property
    def jkt(self) -> str:
        """The thumbprint of the proof's key."""
        return self._proof.jkt

    def claim(self) -> str:
        """Record the proof's single use (once per request) and return its thumbprint.

        Raises:
            InvalidDPoPProofError: ``dpop_replayed``: the proof was used before.
            TemporarilyUnavailableError: The replay store cannot answer (fail closed).
        """
        if not self._claimed:
            self._checker.record(self._proof, self._now)
            self._claimed = True
        return self._proof.jkt


class TokenEndpointDPoP:
    """Checks the DPoP proofs of one issuer's token requests.

    Args:
        config: The issuer settings (``dpop_algorithms``).
        token_url: The token endpoint URL as the metadata publishes it (``htu``).
        replay: Where used proofs are remembered.
        nonce: Hands out and checks server nonces (``dpop_nonce``), or ``None``.
    """

    def __init__(
        self,
        config: IssuerConfig,
        token_url: str,
        replay: ReplayStore,
        nonce: NonceSource | None = None,
    ) -> None:
        self.policy = DPoPPolicy(algorithms=config.dpop_algorithms, replay=replay, nonce=nonce)
        self._verifier = ProofVerifier(self.policy)
        self._url = token_url

    @property
    def algorithms(self) -> list[str]:
        """``dpop_signing_alg_values_supported`` (RFC 9449 §5.1)."""
        return list(self.policy.algorithms)

    def check(self, value: str | None, now: float) -> TokenRequestProof | None:
        """Check the ``DPoP`` header of a token request; ``None`` when there is none.

        Args:
            value: The header's value; a field sent twice arrives joined with ``", "``
                (RFC 9110 §5.3), and a compact JWS has no comma.

        Raises:
            InvalidDPoPProofError: Several proofs, or a proof that fails a check.
            UseDPoPNonceError: Nonces are on and the proof lacks the current one.
        """
        if value is None:
            return None
        try:
            if "," in value:
                raise ProofRefused(reason="dpop_multiple")
            proof = self._verifier.check(value, method="POST", url=self._url, token=None, now=now)
        except NonceRequired as exc:
            raise UseDPoPNonceError(nonce=exc.nonce) from None
        except ProofRefused as exc:
            logger.info("DPoP proof refused at the token endpoint (%s)", exc.reason)
            raise InvalidDPoPProofError(reason=exc.reason) from None
        return TokenRequestProof(self, proof, now)

    def record(self, proof: Proof, now: float) -> None:
        """Record *proof*'s single use (see :meth:`TokenRequestProof.claim`)."""
        try:
            run(self._verifier.record_flow(proof, now))
        except ProofRefused as exc:
            logger.info("DPoP proof refused at the token endpoint (%s)", exc.reason)
            raise InvalidDPoPProofError(reason=exc.reason) from None
        except ServiceUnavailableError as exc:
            logger.error("DPoP replay store unavailable, answered 503 (%s)", exc.reason)
            raise TemporarilyUnavailableError(retry_after=exc.retry_after) from None

    def response_headers(self) -> tuple[tuple[str, str], ...]:
        """``DPoP-Nonce`` for a successful DPoP token response when nonces are on, so
        the client holds a fresh nonce for its next request (RFC 9449 §8.2)."""
        nonce = self.policy.nonce
        return () if nonce is None else (("dpop-nonce", nonce.current()),)
