"""What :meth:`~scopegate.JWTVerifier.explain` found, in words: ``token inspect``'s output.

Each :class:`~scopegate._jwt.Check` becomes one :class:`Line`: PASS, FAIL or SKIP, the
check's name, and prose. For a rule of :data:`scopegate._checks.RULES` the prose is the
rule's ``summary`` when it passed and the meaning of its reason code
(:data:`scopegate._checks.REASONS`) when it failed; the pipeline steps around the rules
(``format``, ``key``, ``signature``...) have a sentence each here. Then come the facts
the check was about, read from the decoded token: its ``exp`` as a date, its ``iss``
next to the expected one, its ``kid`` next to the keys at hand. Nothing here judges a
token: which check passed is explain()'s answer, and the verdict is its first failure.

The header and claims are decoded for display with the library's own readers
(:mod:`scopegate._jose`, :mod:`scopegate._jsonstrict`). Every value from the token is
attacker-controlled: it is shown JSON-escaped, so no control character reaches the
terminal, and shortened. The token itself is only named by a SHA-256 fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from scopegate._checks import FORBIDDEN_HEADERS, REASONS, RULES
from scopegate._jose import (
    MAX_HEADER_LENGTH,
    JOSEError,
    b64url_decode,
    is_numeric_date,
    split_compact,
)
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._jwt import Check, JWTVerifier

__all__ = ["Line", "Report", "build_report", "render_json", "render_text"]

Status = Literal["pass", "fail", "skip"]

#: What passing means for the steps of explain() that are not rules of the table.
_STEPS: Mapping[str, str] = {
    "format": "a compact JWS: three strict base64url segments (RFC 7515 §7.1)",
    "format_header": "the header is a strict JSON object",
    "format_signature": "the signature segment is strict base64url",
    "key": "a configured key fits the token's kid and alg (RFC 8725 §3.1)",
    "signature": "the signature verifies with that key",
    "payload": "the claims are a strict JSON object",
    "scope": "the scope claims hold RFC 6749 §3.3 scope-tokens",
    "claims_validator": "the claims_validator hook accepted the claims",
    **{rule.name: rule.summary for rule in RULES},
}
_NOT_CHECKED = "not checked: a value it reads failed an earlier check"
_HEADER_REFUSED = "not checked: no key is looked up for a header that failed a check"
_NO_KEYS = "not checked: no keys at hand (give --jwks FILE, or --fetch for the issuer's keys)"
# Header members naming a key source; never used (keys come only from the configuration).
_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")
# Settings a user may leave out, with the claim each compares: when one is left out its
# check is shown as not compared.
_OPTIONS = {"issuer": ("--issuer", "iss"), "audience": ("--audience", "aud")}
_ABSENT: Any = object()
_VALUE_LIMIT = 80
_DOCUMENT_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Line:
    """One check of the report.

    Attributes:
        name: The check's name in explain() (a rule name, or a pipeline step).
        status: ``pass``, ``fail``, or ``skip`` (not checked, or not compared).
        reason: The reason code of a failure.
        detail: Prose and facts, escaped and bounded.
    """

    name: str
    status: Status
    reason: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Report:
    """Everything ``token inspect`` shows.

    Attributes:
        fingerprint: ``sha256:`` and the first 16 hex digits of the token's hash.
        length: The token's length in characters.
        header: The decoded JOSE header, when it decodes.
        claims: The decoded claims (unverified unless the signature passed).
        lines: One :class:`Line` per check, in pipeline order.
        not_compared: Settings that were not given, so their checks did not count.
    """

    fingerprint: str
    length: int
    header: dict[str, Any] | None
    claims: dict[str, Any] | None
    lines: tuple[Line, ...]
    not_compared: tuple[str, ...]

    @property
    def failures(self) -> list[Line]:
        """The failed checks, the first one first (it is the verifier's reason)."""
        return [line for line in self.lines if line.status == "fail"]

    @property
    def rejected(self) -> bool:
        """True when a check failed: a resource server answers 401."""
        return bool(self.failures)

    @property
    def signature_verified(self) -> bool:
        """True when the signature was checked with a key and verified."""
        return any(line.name == "signature" and line.status == "pass" for line in self.lines)


# -- showing untrusted values ------------------------------------------------------------


def show(value: Any, limit: int = _VALUE_LIMIT) -> str:
    """*value* as ASCII-only JSON (control characters escaped), cut to *limit* characters."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _duration(seconds: float) -> str:
    if seconds >= 86400 * 365 * 100:
        return "more than a century"
    left = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size} {unit}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def _when(value: Any, now: float) -> str:
    """A NumericDate as a UTC date and a distance from now; anything else as it is."""
    if not is_numeric_date(value):
        return f"{show(value)} (not a NumericDate)"
    moment = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")
    delta = value - now
    distance = _duration(abs(delta))
    return f"{moment} ({'in ' + distance if delta > 0 else distance + ' ago'})"


# -- the decoded token -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Seen:
    """The token as decoded for display, and the verifier it was explained with."""

    token: str
    verifier: JWTVerifier
    now: float
    header: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    header_error: str | None = None
    claims_error: str | None = None
    signature_bytes: int | None = None

    def member(self, name: str) -> Any:
        return (self.header or {}).get(name, _ABSENT)

    def claim(self, name: str) -> Any:
        return (self.claims or {}).get(name, _ABSENT)


def _document(segment: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return loads_object(b64url_decode(segment)), None
    except (JOSEError, StrictJSONError) as exc:
        return None, str(exc)  # fixed library text, never input


def _decode(token: str, verifier: JWTVerifier, now: float) -> _Seen:
    try:
        raw, first, second = split_compact(token, verifier.max_token_length)
    except JOSEError:
        return _Seen(token, verifier, now)
    header, header_error = _document(raw[:first])
    claims, claims_error = _document(raw[first + 1 : second])
    try:
        signature_bytes: int | None = len(b64url_decode(raw[second + 1 :]))
    except JOSEError:
        signature_bytes = None
    return _Seen(token, verifier, now, header, claims, header_error, claims_error, signature_bytes)


# -- facts per check -----------------------------------------------------------------------


def _named(seen: _Seen, name: str, *, header: bool = False, absent: str = "") -> str:
    value = seen.member(name) if header else seen.claim(name)
    return absent if value is _ABSENT else f"{name} {show(value)}"


def _date(seen: _Seen, name: str) -> str:
    value = seen.claim(name)
    return f"no {name}" if value is _ABSENT else f"{name} {_when(value, seen.now)}"


def _length(seen: _Seen) -> str:
    return f"{len(seen.token)} characters (limit {seen.verifier.max_token_length})"


def _bad_format(seen: _Seen) -> str:
    parts = seen.token.count(".") + 1
    facts = f"{_length(seen)}, {parts} dot-separated segment{'s' if parts != 1 else ''}"
    if parts > 1:
        header = seen.token.index(".")
        facts += f", a header segment of {header} characters (limit {MAX_HEADER_LENGTH})"
    return facts


def _alg(seen: _Seen) -> str:
    allowed = ", ".join(sorted(seen.verifier.algorithms))
    return f"{_named(seen, 'alg', header=True, absent='no alg')} (allowed: {allowed})"


def _header_members(seen: _Seen) -> str:
    present = sorted(FORBIDDEN_HEADERS.intersection(seen.header or {}))
    return ", ".join(_named(seen, name, header=True) for name in present)


def _typ(seen: _Seen) -> str:
    policy = seen.verifier.policy
    accepted = ", ".join(sorted(policy.typ_allowed)) + ("" if policy.typ_required else " or none")
    typ = _named(seen, "typ", header=True, absent="no typ")
    return f"{typ} (the {seen.verifier.typ} typ policy accepts {accepted})"


def _key(seen: _Seen) -> str:
    current = seen.verifier.key_source.current()
    keys = current.keys if current is not None else ()
    kids = [show(key.kid, 40) if key.kid is not None else "one without kid" for key in keys]
    facts = [_named(seen, "kid", header=True, absent="no kid")]
    if kids:
        more = f" and {len(kids) - 5} more" if len(kids) > 5 else ""
        facts.append(f"keys at hand: {', '.join(kids[:5])}{more}")
    ignored = [name for name in _KEY_HEADERS if seen.member(name) is not _ABSENT]
    if ignored:
        facts.append(
            f"the header's {', '.join(ignored)} is ignored: keys come only from the "
            "configuration (RFC 8725 §3.10)"
        )
    return "; ".join(facts)


def _signature(seen: _Seen) -> str:
    alg = _named(seen, "alg", header=True)
    return f"{alg}, {_named(seen, 'kid', header=True, absent='no kid')}"


def _required(seen: _Seen) -> str:
    required = sorted(seen.verifier.required_claims)
    absent = [name for name in required if seen.claim(name) is _ABSENT]
    return ", ".join(absent or required)


def _claim_types(seen: _Seen) -> str:
    names = ("exp", "iat", "nbf", *seen.verifier.policy.string_claims, "aud")
    facts = [
        _date(seen, name) if name in ("exp", "iat", "nbf") else _named(seen, name)
        for name in names
        if seen.claim(name) is not _ABSENT
    ]
    return ", ".join(facts)


def _wrong_issuer(seen: _Seen) -> str:
    iss, expected = seen.claim("iss"), seen.verifier.issuer
    facts = f"{_named(seen, 'iss')}, expected {show(expected)}"
    if isinstance(iss, str):
        if iss.rstrip("/") == expected.rstrip("/"):
            facts += "; they differ only by a trailing slash, which counts"
        elif iss.lower() == expected.lower():
            facts += "; they differ only in letter case, which counts"
        elif iss.startswith(expected) or expected.startswith(iss):
            facts += "; one is a prefix of the other, which is no match"
    return facts


def _wrong_audience(seen: _Seen) -> str:
    expected = " or ".join(show(aud) for aud in sorted(seen.verifier.audiences or ()))
    return f"{_named(seen, 'aud')}, expected {expected}"


def _expiry(seen: _Seen) -> str:
    return f"{_date(seen, 'exp')}, leeway {seen.verifier.leeway:g} s"


def _lifetime(seen: _Seen) -> str:
    exp, iat = seen.claim("exp"), seen.claim("iat")
    limit = f"at most {_duration(seen.verifier.max_lifetime or 0)}"
    if not is_numeric_date(exp):
        return limit
    if is_numeric_date(iat):
        return f"lives {_duration(max(0, exp - iat))} from iat, {limit}"
    return f"lives {_duration(max(0.0, exp - seen.now))} from now (no iat), {limit}"


def _scope(seen: _Seen) -> str:
    granted = sorted(seen.verifier.scope_mapping.scopes(seen.claims or {}))
    return f"granted: {show(' '.join(granted), 200)}" if granted else "no scope granted"


def _scope_claims(seen: _Seen) -> str:
    names = seen.verifier.scope_mapping.claims
    return ", ".join(_named(seen, name) for name in names if seen.claim(name) is not _ABSENT)


_FACTS: Mapping[str, Callable[[_Seen], str]] = {
    "format": _length,
    "format_header": lambda seen: seen.header_error or "",
    "alg": _alg,
    "crit": lambda seen: _named(seen, "crit", header=True),
    "header_members": _header_members,
    "typ": _typ,
    "kid": lambda seen: _named(seen, "kid", header=True, absent="no kid"),
    "format_signature": lambda seen: (
        "" if seen.signature_bytes is None else f"{seen.signature_bytes} bytes"
    ),
    "key": _key,
    "signature": _signature,
    "payload": lambda seen: seen.claims_error or "",
    "required_claims": _required,
    "issuer": lambda seen: _named(seen, "iss", absent="no iss"),
    "audience": lambda seen: _named(seen, "aud", absent="no aud"),
    "expiry": _expiry,
    "not_before": lambda seen: _date(seen, "nbf"),
    "issued_at": lambda seen: _date(seen, "iat"),
    "lifetime": _lifetime,
    "confirmation": lambda seen: _named(seen, "cnf", absent="no cnf"),
    "scope": _scope,
}
# Facts shown instead when the check failed (the others would repeat the claims line, or
# could not be computed from a refused value).
_FAILURE_FACTS: Mapping[str, Callable[[_Seen], str]] = {
    "format": _bad_format,
    "claim_types": _claim_types,
    "issuer": _wrong_issuer,
    "audience": _wrong_audience,
    "scope": _scope_claims,
}


# -- the report -----------------------------------------------------------------------------


def _not_compared(name: str, seen: _Seen) -> Line:
    option, claim = _OPTIONS[name]
    facts = _named(seen, claim, absent=f"no {claim}")
    return Line(name, "skip", None, f"not compared (give {option}): {facts}")


def _line(check: Check, seen: _Seen) -> Line:
    if check.passed is None:
        status: Status = "skip"
        prose = _NO_KEYS if check.check in ("key", "signature") else _NOT_CHECKED
    elif check.passed:
        status, prose = "pass", _STEPS.get(check.check, "passed")
    else:
        reason = check.reason or "malformed"
        status, prose = "fail", f"{REASONS.get(reason, 'the keys are unavailable')} [{reason}]"
    facts_of = _FAILURE_FACTS if status == "fail" and check.check in _FAILURE_FACTS else _FACTS
    facts = facts_of[check.check](seen) if check.check in facts_of else ""
    detail = f"{prose}: {facts}" if facts else prose
    return Line(check.check, status, check.reason if status == "fail" else None, detail)


def build_report(
    token: str,
    verifier: JWTVerifier,
    checks: Sequence[Check],
    *,
    now: float,
    issuer_compared: bool = True,
) -> Report:
    """Put what ``verifier.explain(token)`` returned into words.

    Args:
        token: The token that was explained.
        verifier: The verifier that explained it (its settings are shown as facts).
        checks: What :meth:`~scopegate.JWTVerifier.explain` returned.
        now: The time the checks were judged at (Unix seconds).
        issuer_compared: ``False`` when the verifier's issuer stands in for one the user
            did not give: the issuer check is then shown as not compared and does not
            count. The audience is not compared when the verifier has none (the rule is
            then not part of its policy).

    Returns:
        The :class:`Report`.
    """
    seen = _decode(token, verifier, now)
    not_compared: list[str] = []
    lines: list[Line] = []
    for check in checks:
        if check.check == "issuer" and not issuer_compared:
            not_compared.append("issuer")
            lines.append(_not_compared("issuer", seen))
        else:
            lines.append(_line(check, seen))
        if check.check == "payload" and all(line.name != "format_signature" for line in lines):
            # The verifier looks up no key for a refused header: say so where it would stand.
            lines.insert(-1, Line("signature", "skip", None, _HEADER_REFUSED))
        if check.check == "issuer" and verifier.audiences is None:
            # Without an audience the rule is not part of the policy: say so in its place.
            not_compared.append("audience")
            lines.append(_not_compared("audience", seen))
    return Report(
        fingerprint="sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:16],
        length=len(token),
        header=seen.header,
        claims=seen.claims,
        lines=tuple(lines),
        not_compared=tuple(not_compared),
    )


def _verdict(report: Report) -> str:
    failures = report.failures
    if failures:
        first = failures[0]
        names = ", ".join(line.name for line in failures)
        return (
            f"REJECTED by {first.name} [{first.reason}]; {len(failures)} check(s) failed "
            f"({names}). A scopegate resource server answers 401 invalid_token."
        )
    unset = ", ".join(f"{name} (give {_OPTIONS[name][0]})" for name in report.not_compared)
    caveat = f" Not compared: {unset}." if unset else ""
    if not report.signature_verified:
        return (
            "NO FAILURE FOUND, but the signature was not verified: this says nothing about "
            f"who made the token.{caveat}"
        )
    if caveat:
        return f"ACCEPTED with these settings.{caveat}"
    return "ACCEPTED: every check passed, the signature included."


def render_text(report: Report) -> str:
    """The report for a person: the token's fingerprint, header, claims, checks, verdict."""
    out = [f"token   {report.fingerprint} ({report.length} characters, not shown)"]
    if report.header is not None:
        out.append(f"header  {show(report.header, _DOCUMENT_LIMIT)}")
    if report.claims is not None:
        out.append(f"claims  {show(report.claims, _DOCUMENT_LIMIT)}")
    out.append("")
    width = max((len(line.name) for line in report.lines), default=0)
    for line in report.lines:
        out.append(f"  {line.status.upper()}  {line.name.ljust(width)}  {line.detail}")
    out += ["", _verdict(report)]
    return "\n".join(out) + "\n"


def render_json(report: Report) -> str:
    """The report as JSON (ASCII-only): verdict, first reason, header, claims, checks."""
    failures = report.failures
    document = {
        "fingerprint": report.fingerprint,
        "length": report.length,
        "rejected": report.rejected,
        "reason": failures[0].reason if failures else None,
        "signature_verified": report.signature_verified,
        "not_compared": list(report.not_compared),
        "header": report.header,
        "claims": report.claims,
        "checks": [
            {"name": line.name, "status": line.status, "reason": line.reason, "detail": line.detail}
            for line in report.lines
        ],
    }
    return json.dumps(document, ensure_ascii=True, indent=2) + "\n"
