"""``scopegate token mint`` and ``scopegate token inspect``.

``inspect`` decodes a token **without trusting it** and walks through the checks a
scopegate resource server makes (RFC 7515 compact form, the JOSE header, the signature
when keys are given, RFC 9068 §4 claims, scopes), saying in words which pass, which fail
and why. It uses the network only with ``--fetch``. The full token is never printed:
it is named by a SHA-256 fingerprint. Header and claim values are printed JSON-escaped,
so a hostile token cannot inject terminal control sequences.

Exit codes: 0 no check failed; 1 the token would be rejected; 2 usage error;
3 the keys could not be fetched or read.

``mint`` signs a development token with a local key (a PEM file such as the issuer's, or
a fresh key it can save with ``--key-out``/``--jwks-out``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from scopegate._errors import ConfigurationError, InvalidTokenError
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._token import DEFAULT_SCOPE_CLAIMS, ScopeMapping

__all__ = ["Check", "Inspection", "inspect_token", "register"]

Status = Literal["pass", "fail", "skip", "info"]

DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
DEFAULT_REQUIRED: tuple[str, ...] = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
MAX_TOKEN_LENGTH = 8192
MAX_FETCH_BYTES = 1 << 20

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_KID = re.compile(r"[\x20-\x7e]{1,256}")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_STRICT_TYP = frozenset({"at+jwt", "application/at+jwt"})
_LENIENT_TYP = frozenset({"jwt", "application/jwt"})
# Header members that change how a JWS must be processed; scopegate supports none of them.
_FORBIDDEN_HEADER = {
    "crit": "declares critical extensions that must be understood; scopegate supports none "
    "(RFC 7515 §4.1.11), so the token is invalid",
    "b64": "asks for an unencoded payload (RFC 7797); access tokens never use it",
    "zip": "asks for compression, which exists only for encrypted JWE (RFC 7516 §4.1.3)",
    "cty": "declares a content type: a nested JWT is not an access token (RFC 7519 §5.2)",
    "enc": "is a JWE encryption header inside a signed token",
}
_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")
_STRICT_JSON_WORDS = {
    "duplicate member name": "repeats a member name; parsers disagree on which copy wins, "
    "so it is refused (RFC 7515 §4, RFC 7519 §4)",
    "non-finite number": "contains NaN, Infinity or a number too large for a float, "
    "which JSON does not allow (RFC 8259 §6)",
    "nesting too deep": "is nested too deeply (a parser-exhaustion attack)",
    "invalid UTF-8": "is not valid UTF-8 (RFC 8725 §3.7)",
    "not a JSON object": "is JSON but not an object (RFC 7519 §7.2)",
    "invalid JSON": "is not valid JSON",
}


@dataclass(frozen=True, slots=True)
class Check:
    """One verification step and its outcome.

    Attributes:
        name: Short name of the check (``format``, ``alg``, ``exp``...).
        status: ``pass``, ``fail``, ``skip`` (could not be checked) or ``info``.
        detail: What was found, in words.
    """

    name: str
    status: Status
    detail: str


@dataclass(slots=True)
class Inspection:
    """Everything :func:`inspect_token` found.

    Attributes:
        checks: The steps in order.
        header: The decoded JOSE header, when it could be decoded.
        claims: The decoded claims, when they could be decoded.
        fingerprint: ``sha256:`` and the first 16 hex digits of the token's hash.
        length: The token length in characters.
    """

    checks: list[Check] = field(default_factory=list)
    header: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    fingerprint: str = ""
    length: int = 0

    @property
    def rejected(self) -> bool:
        """True when at least one check failed."""
        return any(c.status == "fail" for c in self.checks)

    @property
    def signature_verified(self) -> bool:
        """True when the signature was checked against a key and matched."""
        return any(c.name == "signature" and c.status == "pass" for c in self.checks)

    def add(self, name: str, status: Status, detail: str) -> None:
        """Append a check."""
        self.checks.append(Check(name, status, detail))


def _show(value: Any, limit: int = 80) -> str:
    """A value as escaped JSON (no control characters reach the terminal), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    except (TypeError, ValueError):
        text = "<unprintable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(timestamp: float, now: float) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        moment = "a date out of range"
    delta = timestamp - now
    words = _duration(abs(delta))
    return f"{moment} ({'in ' + words if delta > 0 else words + ' ago'})"


def _duration(seconds: float) -> str:
    if seconds >= 86400 * 365 * 100:
        return "more than a century"
    seconds = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def _b64decode(segment: str) -> bytes | None:
    """Strict base64url: None when the text is not the canonical encoding of its bytes."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        return None
    return raw


def _is_numeric_date(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_format(token: str, report: Inspection) -> tuple[list[str], list[bytes]] | None:
    if not token:
        report.add("format", "fail", "the token is empty")
        return None
    if len(token) > MAX_TOKEN_LENGTH:
        report.add(
            "size",
            "fail",
            f"the token is {len(token)} characters long; scopegate refuses tokens over "
            f"{MAX_TOKEN_LENGTH} before any parsing (oversized-token denial of service)",
        )
        return None
    report.add("size", "pass", f"{len(token)} characters (limit {MAX_TOKEN_LENGTH})")
    if token.lstrip().startswith("{"):
        report.add(
            "format",
            "fail",
            "this is the JWS JSON serialization; only the compact form header.payload."
            "signature is accepted (mixing the two forms enabled CVE-2022-39227)",
        )
        return None
    segments = token.split(".")
    if len(segments) == 5:
        report.add(
            "format",
            "fail",
            "five segments: this is an encrypted JWE. scopegate accepts only signed JWS "
            "access tokens and never decrypts (RFC 9068 §4)",
        )
        return None
    if len(segments) != 3:
        report.add(
            "format",
            "fail",
            f"{len(segments)} segment{'s' if len(segments) != 1 else ''}; a compact JWS has "
            "exactly three separated by two dots "
            "(RFC 7515 §7.1)"
            + (
                "; this looks like an opaque token, which needs introspection instead"
                if len(segments) == 1
                else ""
            ),
        )
        return None
    names = ("header", "payload", "signature")
    for name, segment in zip(names, segments, strict=True):
        if not segment:
            extra = " (a stripped signature)" if name == "signature" else ""
            report.add("format", "fail", f"the {name} segment is empty{extra}")
            return None
        if not _SEGMENT.fullmatch(segment):
            if "=" in segment:
                why = "has '=' padding, which base64url in JWS forbids (RFC 7515 §2)"
            elif "+" in segment or "/" in segment:
                why = "uses the standard base64 alphabet ('+' or '/'); JWS needs base64url"
            else:
                why = "contains characters outside the base64url alphabet"
            report.add("format", "fail", f"the {name} segment {why}")
            return None
    decoded: list[bytes] = []
    for name, segment in zip(names, segments, strict=True):
        raw = _b64decode(segment)
        if raw is None:
            report.add(
                "format",
                "fail",
                f"the {name} segment is not canonical base64url (invalid length or unused "
                "bits set): a different string for the same bytes, i.e. a malleated token",
            )
            return None
        decoded.append(raw)
    report.add("format", "pass", "compact JWS: three canonical base64url segments")
    return segments, decoded


def _check_header(
    header: dict[str, Any], report: Inspection, algorithms: Sequence[str], typ_policy: str
) -> str | None:
    alg = header.get("alg")
    result: str | None = None
    if "alg" not in header:
        report.add("alg", "fail", "the header has no alg (RFC 7515 §4.1.1)")
    elif not isinstance(alg, str):
        report.add("alg", "fail", f"alg is not a string but {_show(alg)}")
    elif alg.lower() == "none" or alg == "":
        report.add(
            "alg",
            "fail",
            f"alg is {_show(alg)}: an unsigned token, which is never accepted "
            "(RFC 8725 §2.1, RFC 9068 §4)",
        )
    elif alg.upper().startswith("HS"):
        report.add(
            "alg",
            "fail",
            f"alg is {_show(alg)}, a symmetric HMAC algorithm. Access tokens are verified "
            "only with the issuer's public keys; an HMAC token signed with a public key as "
            "secret is the algorithm-confusion attack (CVE-2022-29217)",
        )
    elif alg not in algorithms:
        report.add(
            "alg",
            "fail",
            f"alg {_show(alg)} is not in the allowed algorithms {', '.join(algorithms)}",
        )
    else:
        report.add("alg", "pass", f"{alg} is an allowed asymmetric algorithm")
        result = alg

    typ = header.get("typ")
    if typ is None and "typ" not in header:
        if typ_policy == "lenient":
            report.add("typ", "pass", "no typ; accepted in lenient mode")
        else:
            report.add(
                "typ",
                "fail",
                "the header has no typ; RFC 9068 §4 access tokens carry typ at+jwt (use "
                "lenient typ for providers that do not send it)",
            )
    elif not isinstance(typ, str):
        report.add("typ", "fail", f"typ is not a string but {_show(typ)}")
    elif typ.lower() in _STRICT_TYP:
        report.add("typ", "pass", f"typ {_show(typ)} marks an RFC 9068 access token")
    elif typ.lower() in _LENIENT_TYP and typ_policy == "lenient":
        report.add("typ", "pass", f"typ {_show(typ)}; accepted in lenient mode")
    else:
        hint = (
            " In strict mode only at+jwt is accepted: this may be an ID token or another "
            "kind of JWT (RFC 8725 §3.11). Providers such as Entra ID send JWT; use lenient "
            "typ for them."
            if typ.lower() in _LENIENT_TYP
            else " This is not an access token type (an ID token, logout token or another JWT)."
        )
        report.add("typ", "fail", f"typ is {_show(typ)}.{hint}")

    for member, why in _FORBIDDEN_HEADER.items():
        if member in header:
            report.add(
                member, "fail", f"the header has {member} {_show(header[member], 40)}: it {why}"
            )
    for member in _KEY_HEADERS:
        if member in header:
            report.add(
                member,
                "info",
                f"the header carries {member}; it is ignored: keys come only from the "
                "configured issuer, never from the token (RFC 8725 §3.10)",
            )

    kid = header.get("kid")
    if "kid" not in header:
        report.add("kid", "info", "no kid: only a key set with a single matching key can verify it")
    elif not isinstance(kid, str):
        report.add("kid", "fail", f"kid is not a string but {_show(kid)} (RFC 7515 §4.1.4)")
    elif not _KID.fullmatch(kid):
        report.add(
            "kid",
            "fail",
            "kid is empty, longer than 256 characters or has non-printable characters; "
            "a hostile kid (path traversal, header injection) is refused outright",
        )
    else:
        report.add("kid", "pass", f"kid {_show(kid)}")
    return result


def _check_signature(
    report: Inspection,
    keys: Any,
    header: dict[str, Any],
    alg: str | None,
    segments: list[str],
    signature: bytes,
    algorithms: Sequence[str],
) -> None:
    from scopegate._keys import KeySet, UnusableKeyError, parse_jwk

    if keys is None:
        report.add(
            "signature",
            "skip",
            "not checked: no keys given (pass --jwks FILE, or --fetch to download the "
            "issuer's keys)",
        )
        return
    if alg is None:
        report.add("signature", "fail", "cannot be checked: the alg is not acceptable")
        return
    allowed = frozenset(algorithms)
    parsed = []
    for jwk in keys:
        try:
            parsed.append(parse_jwk(jwk, allowed))
        except UnusableKeyError as exc:
            report.add("key", "info", f"key {_show(jwk.get('kid'))} is skipped: {exc}")
    kid = header.get("kid")
    kid = kid if isinstance(kid, str) else None
    try:
        key = KeySet(parsed).find(kid, alg, anonymous=True)
    except InvalidTokenError as exc:
        words = {
            "key_alg_mismatch": f"the key with this kid is not bound to {alg}: the header "
            "alg must match the key's alg (RFC 8725 §3.1)",
            "ambiguous_key": "several keys could match; without a unique kid no key is tried",
            "unknown_key": f"the token has no kid and no single key allows {alg}",
        }
        report.add("signature", "fail", words.get(exc.reason, "no usable key"))
        return
    if key is None:
        report.add(
            "signature",
            "fail",
            f"no key with kid {_show(kid)} in the key set: signed by an unknown, rotated-out "
            "or foreign key (or the keys belong to another issuer)",
        )
        return
    message = f"{segments[0]}.{segments[1]}".encode("ascii")
    if key.verify(alg, message, signature):
        report.add("signature", "pass", f"valid {alg} signature by key {_show(key.kid)}")
    else:
        report.add(
            "signature",
            "fail",
            "the signature does not match: the token was altered, or signed by a key other "
            "than the issuer's (an attacker's key, or a malformed/psychic signature)",
        )


def _check_claims(
    claims: dict[str, Any],
    report: Inspection,
    *,
    issuer: str | None,
    audience: str | None,
    leeway: float,
    max_lifetime: float | None,
    required: Sequence[str],
    now: float,
    scope_claims: Sequence[str],
) -> None:
    missing = [name for name in required if name not in claims]
    if missing:
        report.add(
            "required",
            "fail",
            f"missing required claims: {', '.join(missing)} (RFC 9068 §2.2 requires "
            f"{', '.join(DEFAULT_REQUIRED)})",
        )
    else:
        report.add("required", "pass", f"present: {', '.join(required)}")

    iss = claims.get("iss")
    if "iss" in claims and not isinstance(iss, str):
        report.add("iss", "fail", f"iss is not a string but {_show(iss)}")
    elif issuer is None:
        report.add("iss", "info", f"iss is {_show(iss)} (not compared: pass --issuer)")
    elif iss == issuer:
        report.add("iss", "pass", f"iss matches {_show(issuer)}")
    elif isinstance(iss, str):
        near = ""
        if iss.rstrip("/") == issuer.rstrip("/"):
            near = " They differ only by a trailing slash, which still counts: "
        elif iss.lower() == issuer.lower():
            near = " They differ only in letter case, which still counts: "
        elif iss.startswith(issuer) or issuer.startswith(iss):
            near = " One is a prefix of the other (CVE-2024-53861 accepted this): "
        report.add(
            "iss",
            "fail",
            f"iss is {_show(iss)}, expected {_show(issuer)}.{near or ' '}"
            "the issuer must match exactly (RFC 9068 §4)",
        )

    aud = claims.get("aud")
    if "aud" in claims:
        valid_shape = (isinstance(aud, str) and aud) or (
            isinstance(aud, list) and aud and all(isinstance(a, str) and a for a in aud)
        )
        if not valid_shape:
            report.add(
                "aud",
                "fail",
                f"aud must be a non-empty string or list of strings, got {_show(aud)}",
            )
        elif audience is None:
            report.add("aud", "info", f"aud is {_show(aud)} (not compared: pass --audience)")
        elif audience == aud or (isinstance(aud, list) and audience in aud):
            report.add("aud", "pass", f"aud contains {_show(audience)}")
        else:
            report.add(
                "aud",
                "fail",
                f"aud is {_show(aud)}, which does not contain {_show(audience)}: the token was "
                "issued for another API, or it is an ID token whose aud is a client id "
                "(RFC 9068 §4, exact and case-sensitive)",
            )

    _check_times(claims, report, leeway=leeway, max_lifetime=max_lifetime, now=now)

    for name in ("sub", "jti", "client_id"):
        if name in claims:
            value = claims[name]
            if not isinstance(value, str) or not value:
                report.add(name, "fail", f"{name} must be a non-empty string, got {_show(value)}")
            else:
                report.add(name, "pass", f"{name} is {_show(value)}")

    if "cnf" in claims:
        report.add(
            "cnf",
            "fail",
            "the token is sender-constrained (cnf: DPoP or mutual TLS) but was presented as a "
            "plain bearer token; it is refused rather than accepted without its proof "
            "(RFC 9449, RFC 8705)",
        )

    scope = claims.get("scope")
    if "scope" in claims and isinstance(scope, str):
        bad = [s for s in scope.split(" ") if s and not _SCOPE_TOKEN.fullmatch(s)]
        if bad:
            report.add(
                "scope",
                "fail",
                "scope contains characters a scope-token may not have (RFC 6749 §3.3)",
            )
            return
    try:
        scopes = ScopeMapping(scope_claims).scopes(claims)
    except InvalidTokenError:
        report.add(
            "scope",
            "fail",
            f"a scope claim has the wrong type: scope must be one space-delimited string "
            f"(RFC 9068 §2.2.3), got {_show(scope)}; a malformed token is 401, not 403",
        )
        return
    if scopes:
        report.add("scope", "pass", f"granted: {' '.join(sorted(scopes))}")
    else:
        report.add("scope", "info", "no scopes granted: only routes needing no scope accept it")


def _check_times(
    claims: dict[str, Any],
    report: Inspection,
    *,
    leeway: float,
    max_lifetime: float | None,
    now: float,
) -> None:
    typed: dict[str, float] = {}
    for name in ("exp", "nbf", "iat"):
        if name not in claims:
            continue
        value = claims[name]
        if not _is_numeric_date(value):
            kind = (
                "a boolean"
                if isinstance(value, bool)
                else "a string"
                if isinstance(value, str)
                else "not finite"
                if isinstance(value, float)
                else f"of JSON type {type(value).__name__}"
            )
            report.add(
                name,
                "fail",
                f"{name} is {kind} ({_show(value, 40)}); a NumericDate must be a JSON number "
                "of seconds (RFC 7519 §2)",
            )
        else:
            typed[name] = float(value)
    if "exp" in typed:
        exp = typed["exp"]
        if exp <= now - leeway:
            report.add("exp", "fail", f"expired {_when(exp, now)}; leeway is {leeway:g} s")
        else:
            report.add("exp", "pass", f"expires {_when(exp, now)}")
    if "nbf" in typed:
        nbf = typed["nbf"]
        if nbf > now + leeway:
            report.add("nbf", "fail", f"not valid before {_when(nbf, now)}; leeway {leeway:g} s")
        else:
            report.add("nbf", "pass", f"valid since {_when(nbf, now)}")
    if "iat" in typed:
        iat = typed["iat"]
        if iat > now + leeway:
            report.add(
                "iat",
                "fail",
                f"issued in the future, {_when(iat, now)}: a clock is wrong or the token is "
                f"forged; leeway {leeway:g} s",
            )
        else:
            report.add("iat", "pass", f"issued {_when(iat, now)}")
    if max_lifetime is not None and "exp" in typed:
        # Same rule as JWTVerifier: exp - iat, or exp - now (+ leeway) without iat.
        if "iat" in typed:
            lifetime, limit = typed["exp"] - typed["iat"], max_lifetime
        else:
            lifetime, limit = typed["exp"] - now, max_lifetime + leeway
        if lifetime > limit:
            report.add(
                "lifetime",
                "fail",
                f"the token lives {_duration(lifetime)}, more than the maximum "
                f"{_duration(max_lifetime)} (long-lived bearer tokens are refused)",
            )


def inspect_token(
    token: str,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    keys: Sequence[Mapping[str, Any]] | None = None,
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
    typ: Literal["strict", "lenient"] = "strict",
    leeway: float = 60,
    max_lifetime: float | None = 86400,
    required_claims: Sequence[str] = DEFAULT_REQUIRED,
    scope_claims: Sequence[str] = DEFAULT_SCOPE_CLAIMS,
    now: float | None = None,
) -> Inspection:
    """Decode *token* without trusting it and run every check a resource server makes.

    Args:
        token: The raw access token.
        issuer: Expected ``iss``; ``None`` reports it without comparing.
        audience: Expected audience; ``None`` reports ``aud`` without comparing.
        keys: Public JWKs to check the signature with; ``None`` skips the signature.
        algorithms: Allowed ``alg`` values.
        typ: ``strict`` (``at+jwt`` only, RFC 9068 §4) or ``lenient`` (also ``JWT``
            or no ``typ``).
        leeway: Clock-skew tolerance in seconds.
        max_lifetime: Largest accepted ``exp - iat``; ``None`` disables the check.
        required_claims: Claims that must be present.
        scope_claims: Claims scopes are read from.
        now: The current time (Unix seconds); defaults to the clock.

    Returns:
        The :class:`Inspection`; ``rejected`` tells whether any check failed.
    """
    now = time.time() if now is None else now
    report = Inspection(
        fingerprint="sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:16],
        length=len(token),
    )
    parts = _check_format(token, report)
    if parts is None:
        return report
    segments, decoded = parts
    try:
        header = loads_object(decoded[0])
    except StrictJSONError as exc:
        report.add("header", "fail", "the header " + _STRICT_JSON_WORDS.get(str(exc), str(exc)))
        return report
    report.header = header
    report.add("header", "pass", "the header is a strict JSON object")
    alg = _check_header(header, report, algorithms, typ)
    try:
        claims = loads_object(decoded[1])
    except StrictJSONError as exc:
        report.add("payload", "fail", "the payload " + _STRICT_JSON_WORDS.get(str(exc), str(exc)))
        claims = None
    else:
        report.claims = claims
        report.add("payload", "pass", "the claims are a strict JSON object")
    _check_signature(report, keys, header, alg, segments, decoded[2], algorithms)
    if claims is not None:
        _check_claims(
            claims,
            report,
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            max_lifetime=max_lifetime,
            required=required_claims,
            now=now,
            scope_claims=scope_claims,
        )
    if keys is not None and issuer is not None:
        _cross_check(
            report,
            token,
            issuer=issuer,
            audience=audience,
            keys=keys,
            algorithms=algorithms,
            typ=typ,
            leeway=leeway,
            max_lifetime=max_lifetime,
            required=required_claims,
            scope_claims=scope_claims,
            now=now,
        )
    return report


def _cross_check(
    report: Inspection,
    token: str,
    *,
    issuer: str,
    audience: str | None,
    keys: Sequence[Mapping[str, Any]],
    algorithms: Sequence[str],
    typ: Literal["strict", "lenient"],
    leeway: float,
    max_lifetime: float | None,
    required: Sequence[str],
    scope_claims: Sequence[str],
    now: float,
) -> None:
    """Run the real :class:`JWTVerifier` too, so the verdict is the library's own."""
    from scopegate._errors import BearerError
    from scopegate._jwt import JWTVerifier

    try:
        verifier = JWTVerifier(
            issuer=issuer,
            audience=audience,
            keys={"keys": list(keys)},
            algorithms=algorithms,
            typ=typ,
            leeway=leeway,
            max_lifetime=max_lifetime,
            required_claims=required,
            scope_claims=scope_claims,
            cache_verified=False,
            clock=lambda: now,
        )
    except ConfigurationError as exc:
        report.add("verifier", "skip", f"JWTVerifier refuses these settings or keys: {exc}")
        return
    try:
        verifier.verify(token)
    except BearerError as exc:
        report.add(
            "verifier",
            "fail",
            f"scopegate's JWTVerifier rejects it (reason code {exc.reason}: {exc.description})",
        )
    else:
        report.add("verifier", "pass", "scopegate's JWTVerifier accepts it with these settings")


# --------------------------------------------------------------------------- keys


class KeyLoadError(Exception):
    """Keys could not be read or fetched (fixed text)."""


def _jwks_from_document(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, Mapping) and isinstance(document.get("keys"), list):
        return [dict(k) for k in document["keys"] if isinstance(k, Mapping)]
    if isinstance(document, Mapping) and "kty" in document:
        return [dict(document)]
    raise KeyLoadError("the key file is neither a JWK nor a JWK Set")


def _pem_to_jwk(data: bytes) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise KeyLoadError("the PEM file is not a readable public or private key") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(key, as_dict=True))
    if isinstance(key, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(key, as_dict=True))
    if isinstance(key, ed25519.Ed25519PublicKey):
        return dict(OKPAlgorithm.to_jwk(key, as_dict=True))
    raise KeyLoadError("unsupported key type in the PEM file")


def load_key_file(path: str) -> list[dict[str, Any]]:
    """Read public keys from a JWKS/JWK JSON file or a PEM key (the public half is used)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read the key file: {exc.strerror}") from exc
    if b"-----BEGIN" in data:
        return [_pem_to_jwk(data)]
    try:
        document = loads_object(data)
    except StrictJSONError as exc:
        raise KeyLoadError("the key file is not valid JSON or PEM") from exc
    jwks = _jwks_from_document(document)
    # A private JWK file still names the public key; never use the private members.
    private = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
    return [{k: v for k, v in jwk.items() if k not in private} for jwk in jwks]


def _fetch_json(client: Any, url: str) -> dict[str, Any]:
    import httpx

    if not url.startswith(("https://", "http://")):
        raise KeyLoadError("only http(s) URLs can be fetched")
    try:
        with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise KeyLoadError(f"GET {url} answered HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_FETCH_BYTES:
                    raise KeyLoadError(f"GET {url}: the response is larger than 1 MiB")
    except httpx.HTTPError as exc:
        raise KeyLoadError(f"GET {url} failed: {type(exc).__name__}") from exc
    try:
        return loads_object(body)
    except StrictJSONError as exc:
        raise KeyLoadError(f"GET {url} did not return a JSON object") from exc


def _well_known_urls(issuer: str) -> list[str]:
    # RFC 8414 §3.1 inserts the well-known segment between host and path; OIDC appends it.
    from urllib.parse import urlsplit

    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{issuer.rstrip('/')}/.well-known/openid-configuration",
    ]


def fetch_keys(
    issuer: str | None, jwks_uri: str | None, timeout: float = 5
) -> list[dict[str, Any]]:
    """Download the keys: from *jwks_uri*, or from the issuer's discovery document."""
    import httpx

    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        if jwks_uri is None:
            if issuer is None:
                raise KeyLoadError("--fetch needs --issuer or a --jwks URL")
            metadata = None
            for url in _well_known_urls(issuer):
                try:
                    metadata = _fetch_json(client, url)
                    break
                except KeyLoadError:
                    continue
            if metadata is None:
                raise KeyLoadError("no discovery document found for the issuer")
            if metadata.get("issuer") != issuer:
                raise KeyLoadError(
                    "the discovery document names another issuer (RFC 8414 §3.3 requires "
                    "an exact match)"
                )
            found = metadata.get("jwks_uri")
            if not isinstance(found, str):
                raise KeyLoadError("the discovery document has no jwks_uri")
            jwks_uri = found
        return _jwks_from_document(_fetch_json(client, jwks_uri))


# --------------------------------------------------------------------------- output

_LABELS = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP", "info": "INFO"}


def render(report: Inspection, out: TextIO) -> None:
    """Print *report* for a person: header, claims, one line per check, the verdict."""
    out.write(f"token   {report.fingerprint} ({report.length} characters, not shown)\n")
    if report.header is not None:
        out.write(f"header  {_show(report.header, 10_000)}\n")
    if report.claims is not None:
        out.write(f"claims  {_show(report.claims, 10_000)}\n")
    out.write("\n")
    width = max((len(c.name) for c in report.checks), default=4)
    for check in report.checks:
        out.write(f"  {_LABELS[check.status]}  {check.name.ljust(width)}  {check.detail}\n")
    out.write("\n")
    failed = [c.name for c in report.checks if c.status == "fail"]
    if failed:
        out.write(
            f"REJECTED: {len(failed)} check(s) failed ({', '.join(failed)}). A scopegate "
            "resource server answers 401 invalid_token.\n"
        )
    elif report.signature_verified:
        out.write("ACCEPTED: every check passed, including the signature.\n")
    else:
        out.write(
            "NO FAILURE FOUND, but the signature was not verified: this says nothing about "
            "who made the token.\n"
        )


def _report_json(report: Inspection) -> str:
    return json.dumps(
        {
            "fingerprint": report.fingerprint,
            "length": report.length,
            "rejected": report.rejected,
            "signature_verified": report.signature_verified,
            "header": report.header,
            "claims": report.claims,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in report.checks
            ],
        },
        ensure_ascii=True,
        indent=2,
    )


# --------------------------------------------------------------------------- commands


def _read_token(value: str) -> str:
    if value == "-":
        return sys.stdin.read().strip()
    return value.strip()


def _inspect_command(args: argparse.Namespace) -> int:
    token = _read_token(args.token)
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    keys: list[dict[str, Any]] | None = None
    try:
        if args.jwks is not None and args.jwks.startswith(("http://", "https://")):
            if not args.fetch:
                sys.stderr.write("error: --jwks is a URL; add --fetch to allow network access\n")
                return 2
            keys = fetch_keys(None, args.jwks, timeout=args.timeout)
        elif args.jwks is not None:
            keys = load_key_file(args.jwks)
        elif args.fetch:
            keys = fetch_keys(args.issuer, None, timeout=args.timeout)
    except KeyLoadError as exc:
        sys.stderr.write(f"error: keys unavailable: {exc}\n")
        return 3
    report = inspect_token(
        token,
        issuer=args.issuer,
        audience=args.audience,
        keys=keys,
        algorithms=args.algorithms or DEFAULT_ALGORITHMS,
        typ=args.typ,
        leeway=args.leeway,
        max_lifetime=None if args.max_lifetime <= 0 else args.max_lifetime,
        required_claims=(
            DEFAULT_REQUIRED
            if args.require is None
            else tuple(c for c in args.require.split(",") if c)
        ),
        scope_claims=args.scope_claim or DEFAULT_SCOPE_CLAIMS,
    )
    if args.json:
        sys.stdout.write(_report_json(report) + "\n")
    else:
        render(report, sys.stdout)
    return 1 if report.rejected else 0


def _parse_claim(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw  # a bare word is a string
    return name, value


def _mint_command(args: argparse.Namespace) -> int:
    from scopegate._signing import SigningKey
    from scopegate.testing._issuer import LocalIssuer

    try:
        if args.key is not None:
            key = SigningKey.from_pem(Path(args.key).read_bytes(), alg=args.alg, kid=args.kid)
        else:
            # The kid defaults to the RFC 7638 thumbprint: the same that --key gives for
            # the saved PEM later.
            key = SigningKey.generate(args.alg or "RS256", kid=args.kid)
            if args.key_out is None and args.jwks_out is None:
                sys.stderr.write(
                    "note: signed with a fresh throw-away key; add --key-out/--jwks-out to keep "
                    "it, or --key FILE to use yours\n"
                )
    except OSError as exc:
        sys.stderr.write(f"error: cannot read the key: {exc.strerror}\n")
        return 2
    except ConfigurationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.key_out is not None:
        fd = os.open(args.key_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_pem())
    if args.jwks_out is not None:
        Path(args.jwks_out).write_text(json.dumps(key.jwks(), indent=2) + "\n")
    issuer = LocalIssuer(issuer=args.issuer, audience=args.audience, key=key)
    headers: dict[str, Any] = dict(args.header or [])
    if args.typ is not None:
        headers["typ"] = args.typ
    token = issuer.make_token(
        args.scope,
        sub=args.sub,
        client_id=args.client_id,
        expires_in=args.expires_in,
        headers=headers,
        **dict(args.claim or []),
    )
    sys.stdout.write(token + "\n")
    return 0


def register(commands: Any) -> None:
    """Add ``token mint`` and ``token inspect`` to the ``scopegate`` parser."""
    token = commands.add_parser(
        "token",
        help="mint development tokens and explain why a token is accepted or rejected",
        description="Work with access tokens.",
    )
    sub = token.add_subparsers(dest="token_command", metavar="ACTION")
    sub.required = True

    inspect = sub.add_parser(
        "inspect",
        help="decode a token without trusting it and explain every check",
        description=(
            "Decode TOKEN without trusting it and list each check a scopegate resource "
            "server makes, with the reason for every failure. No network access unless "
            "--fetch is given. The token itself is never printed. Exit status: 0 no check "
            "failed, 1 rejected, 2 usage error, 3 keys unavailable."
        ),
        epilog=(
            "examples:\n"
            '  scopegate token inspect "$TOKEN" --issuer https://as.example '
            "--audience api://orders\n"
            "  scopegate token inspect - --jwks jwks.json < token.txt\n"
            '  scopegate token inspect "$TOKEN" --issuer https://as.example --fetch'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    inspect.add_argument("--issuer", help="the issuer the API trusts (iss must match exactly)")
    inspect.add_argument("--audience", help="this API's audience (aud must contain it)")
    inspect.add_argument(
        "--jwks",
        metavar="FILE|URL",
        help="public keys to check the signature: a JWKS/JWK JSON file, a PEM key, or a URL "
        "(with --fetch)",
    )
    inspect.add_argument(
        "--fetch",
        action="store_true",
        help="allow network access: fetch --jwks URL, or discover the keys from --issuer",
    )
    inspect.add_argument(
        "--typ",
        choices=("strict", "lenient"),
        default="strict",
        help="typ policy: strict needs at+jwt (RFC 9068); lenient also accepts JWT or none "
        "(default: strict)",
    )
    inspect.add_argument(
        "--algorithm",
        dest="algorithms",
        action="append",
        metavar="ALG",
        help=f"an allowed algorithm; repeat for several (default: {' '.join(DEFAULT_ALGORITHMS)})",
    )
    inspect.add_argument("--leeway", type=float, default=60, help="clock skew in seconds (60)")
    inspect.add_argument(
        "--max-lifetime",
        type=float,
        default=86400,
        help="largest exp - iat in seconds; 0 disables (86400)",
    )
    inspect.add_argument(
        "--require",
        metavar="CLAIMS",
        help=f"comma-separated required claims (default: {','.join(DEFAULT_REQUIRED)})",
    )
    inspect.add_argument(
        "--scope-claim",
        action="append",
        metavar="CLAIM",
        help="claim or dotted path holding scopes; repeat for several "
        "(default: scope, scp, permissions)",
    )
    inspect.add_argument("--timeout", type=float, default=5, help="network timeout (5 s)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_inspect_command)

    mint = sub.add_parser(
        "mint",
        help="sign a development token with a local key",
        description=(
            "Print a signed RFC 9068 access token for development and tests. Use --key with "
            "the issuer's PEM key (kid = its RFC 7638 thumbprint, as `scopegate issuer serve` "
            "publishes it), or let it generate a key and save it with --key-out/--jwks-out."
        ),
        epilog=(
            "example:\n"
            "  scopegate token mint --key keys/issuer.pem --issuer http://127.0.0.1:9000 \\\n"
            '      --audience api://demo --scope "items:read items:write" --sub alice'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mint.add_argument("--key", metavar="PEM", help="private key file (PEM)")
    mint.add_argument(
        "--alg",
        choices=("RS256", "PS256", "ES256", "EdDSA"),
        help="signing algorithm (default: from the key type; RS256 for a new key)",
    )
    mint.add_argument("--kid", help="key id (default: the key's RFC 7638 thumbprint)")
    mint.add_argument("--issuer", default="https://issuer.example", help="iss claim")
    mint.add_argument("--audience", default="https://api.example", help="aud claim")
    mint.add_argument("--sub", default="dev-user", help="sub claim (dev-user)")
    mint.add_argument("--client-id", default="dev-client", help="client_id claim (dev-client)")
    mint.add_argument("--scope", default=None, help='space-delimited scopes, e.g. "read write"')
    mint.add_argument("--expires-in", type=float, default=600, help="lifetime in seconds (600)")
    mint.add_argument("--typ", help="typ header (default: at+jwt)")
    mint.add_argument(
        "--claim",
        action="append",
        type=_parse_claim,
        metavar="NAME=JSON",
        help="extra claim; the value is parsed as JSON, else taken as a string",
    )
    mint.add_argument(
        "--header",
        action="append",
        type=_parse_claim,
        metavar="NAME=JSON",
        help="extra JOSE header member",
    )
    mint.add_argument("--key-out", metavar="FILE", help="save a generated private key (0600)")
    mint.add_argument("--jwks-out", metavar="FILE", help="write the public JWKS here")
    mint.set_defaults(handler=_mint_command)
