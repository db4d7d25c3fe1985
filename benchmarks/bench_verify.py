"""Per-token validation cost: the crypto floor, PyJWT, Authlib/joserfc and scopegate.

For RS256, ES256 and EdDSA, measured side by side in one run (interleaved rounds):

* ``raw verify``: one ``cryptography`` signature check of an already-decoded token, the
  floor no validator can go below;
* ``jwt.decode``: PyJWT with a pre-built key object, all claim checks on;
* ``authlib rfc9068``: Authlib's ``JWTBearerTokenValidator`` (joserfc underneath) with a
  pre-imported ``KeySet``: ``authenticate_token`` + ``validate_token``;
* ``joserfc``: ``jwt.decode`` + ``JWTClaimsRegistry.validate``;
* ``scopegate uncached``: ``JWTVerifier(cache_verified=False).verify`` (every check);
* ``scopegate cached``: the same token again, served by the verified-token cache;
* ``scopegate cache miss`` (RS256): the default verifier fed a new token every call.

Every ratio is taken inside a round and then summarised (min / median / max).

Usage::

    .venv/bin/python benchmarks/bench_verify.py [--rounds 31] [--target 0.03] [--json OUT]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import _fixtures
import _harness
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

TITLE = "Per-token validation cost (µs/token)"
#: Goals: uncached validation ÷ raw verify (RS256: issue 18; ES256/EdDSA: still tracked
#: from issue 6).
TARGETS = {"RS256": 1.3, "ES256": 1.3, "EdDSA": 1.3}
GROUPS = {"RS256": "issue 18", "ES256": "issue 6", "EdDSA": "issue 6"}
REQUIRED = ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def raw_verifier(alg: str, public_key: Any, token: str) -> Callable[[], None]:
    """The floor: verify the signature of a token decoded beforehand."""
    head, _, sig_b64 = token.rpartition(".")
    signing_input = head.encode()
    sig = _b64(sig_b64)
    if alg == "RS256":
        pkcs, sha = padding.PKCS1v15(), hashes.SHA256()
        return lambda: public_key.verify(sig, signing_input, pkcs, sha)
    if alg == "ES256":
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda: public_key.verify(der, signing_input, ecdsa)
    return lambda: public_key.verify(sig, signing_input)


def pyjwt_decoder(alg: str, public_key: Any, token: str) -> Callable[[], object]:
    """PyJWT ``jwt.decode`` with a key object and every claim check on."""
    opts = {"require": REQUIRED}

    def run() -> object:
        return jwt.decode(
            token,
            public_key,
            algorithms=[alg],
            audience=_fixtures.AUDIENCE,
            issuer=_fixtures.ISSUER,
            options=opts,  # type: ignore[arg-type]
        )

    return run


def authlib_validator(material: _fixtures.Material, token: str) -> Callable[[], object]:
    """Authlib's RFC 9068 validator with the KeySet imported once, as a fair setup."""
    from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
    from joserfc.jwk import KeySet

    keyset = KeySet.import_key_set(material.jwks)  # type: ignore[arg-type]

    class Validator(JWTBearerTokenValidator):  # type: ignore[misc]
        def get_jwks(self) -> Any:
            return keyset

    validator = Validator(issuer=_fixtures.ISSUER, resource_server=_fixtures.AUDIENCE)
    scopes = ["items:read"]

    def run() -> object:
        claims = validator.authenticate_token(token)
        validator.validate_token(claims, scopes, None)
        return claims

    return run


def joserfc_decoder(material: _fixtures.Material, alg: str, token: str) -> Callable[[], object]:
    """joserfc ``jwt.decode`` (KeySet) + ``JWTClaimsRegistry.validate``."""
    from joserfc import jwt as jjwt
    from joserfc.jwk import KeySet

    keyset = KeySet.import_key_set(material.jwks)  # type: ignore[arg-type]
    registry = jjwt.JWTClaimsRegistry(
        iss={"essential": True, "value": _fixtures.ISSUER},
        aud={"essential": True, "value": _fixtures.AUDIENCE},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    algs = [alg]

    def run() -> object:
        tok = jjwt.decode(token, keyset, algorithms=algs)
        registry.validate(tok.claims)
        return tok

    return run


def scopegate_verifier(material: _fixtures.Material, *, cached: bool, **extra: Any) -> Any:
    """A scopegate ``JWTVerifier`` on the static JWKS (``None`` if not importable yet)."""
    try:
        from scopegate._jwt import JWTVerifier
    except ImportError:
        return None
    return JWTVerifier(
        issuer=_fixtures.ISSUER,
        audience=_fixtures.AUDIENCE,
        keys=material.jwks,
        algorithms=_fixtures.ALGORITHMS,
        cache_verified=cached,
        **extra,
    )


def build_cases(
    material: _fixtures.Material, algs: tuple[str, ...], *, unique: int
) -> list[_harness.Case]:
    """Every case for every algorithm; each case is checked once before timing."""
    cases: list[_harness.Case] = []
    uncached = scopegate_verifier(material, cached=False)
    for alg in algs:
        token = material.tokens[alg]
        pub = material.public_key(alg)
        # The floor first and scopegate right after it: neighbours in the round-robin
        # order see the same interference, which keeps their per-round ratio clean.
        fns: dict[str, Callable[[], object]] = {"raw verify": raw_verifier(alg, pub, token)}
        if uncached is not None:
            fns["scopegate uncached"] = _checked_verify(uncached, token)
            cached = scopegate_verifier(material, cached=True)
            fns["scopegate cached (same token)"] = _checked_verify(cached, token)
            if alg == "RS256" and unique:
                fns["scopegate cache miss (new token each call)"] = _miss_verify(
                    scopegate_verifier(material, cached=True), material.unique_tokens(unique)
                )
        fns["jwt.decode (PyJWT)"] = pyjwt_decoder(alg, pub, token)
        fns["joserfc decode+claims"] = joserfc_decoder(material, alg, token)
        if alg != "EdDSA":  # Authlib's validator refuses EdDSA (not "recommended" in joserfc)
            fns["authlib rfc9068 validator"] = authlib_validator(material, token)
        for name, fn in fns.items():
            fn()  # fail loudly before timing if a case does not validate
            cases.append(_harness.call_case(f"{alg} · {name}", fn, group=alg))
    return cases


def _miss_verify(verifier: Any, tokens: list[str]) -> Callable[[], object]:
    """The default (caching) verifier fed a token it has not seen: every call a miss."""
    cycle = itertools.cycle(tokens)
    verify = verifier.verify
    return lambda: verify(next(cycle))


def _checked_verify(verifier: Any, token: str) -> Callable[[], object]:
    result = verifier.verify(token)
    if result.subject != "user-1234" or "items:read" not in result.scopes:
        raise AssertionError("scopegate returned an unexpected token")
    return lambda: verifier.verify(token)


def report(stats: dict[str, _harness.Stat], algs: tuple[str, ...]) -> dict[str, Any]:
    """Markdown table, rows and target checks from the measured stats."""
    rows: list[list[str]] = []
    targets: list[dict[str, Any]] = []
    for alg in algs:
        raw = f"{alg} · raw verify"
        dec = f"{alg} · jwt.decode (PyJWT)"
        for name, stat in stats.items():
            if stat.group != alg:
                continue
            rows.append(
                [
                    name,
                    _harness.fmt_us(stat),
                    _harness.fmt_summary(_harness.ratio(stats, name, raw)),
                    _harness.fmt_summary(_harness.ratio(stats, name, dec)),
                ]
            )
        unc = f"{alg} · scopegate uncached"
        if unc in stats:
            value = _harness.ratio(stats, unc, raw)
            targets.append(
                {
                    "key": f"{alg.lower()} uncached",
                    "group": GROUPS[alg],
                    "figure": f"{alg} uncached validation ÷ raw verify, in-process",
                    "value": value,
                    "shown": _harness.fmt_summary(value),
                    "target": f"≤ {TARGETS[alg]}",
                    "met": value["median"] <= TARGETS[alg],
                }
            )
            vs = _harness.ratio(stats, unc, dec)
            targets.append(
                {
                    "key": f"{alg.lower()} vs pyjwt",
                    "group": "info",
                    "figure": f"{alg} uncached validation ÷ jwt.decode (info)",
                    "value": vs,
                    "shown": _harness.fmt_summary(vs),
                    "target": "-",
                    "met": None,
                }
            )
    table = _harness.markdown_table(
        ["case", "µs/token median (min-max)", "x raw verify", "x jwt.decode"], rows
    )
    return {"rows": [s.row() for s in stats.values()], "markdown": table, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--target", type=float, default=0.03, help="seconds per sample")
    parser.add_argument("--algs", default=",".join(_fixtures.ALGORITHMS))
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    args = parser.parse_args(argv)
    algs = tuple(a for a in args.algs.split(",") if a)
    warnings.simplefilter("ignore")  # joserfc/authlib deprecation chatter
    material = _fixtures.load(unique=64 if args.quick else _fixtures.UNIQUE_TOKENS)
    start, load_before = time.monotonic(), _harness.loadavg()
    cases = build_cases(material, algs, unique=64 if args.quick else _fixtures.UNIQUE_TOKENS)
    stats = _harness.run_cases(cases, rounds=args.rounds, target=args.target, quick=args.quick)
    out = report(stats, algs)
    out["title"] = TITLE
    out["notes"] = (
        f"{args.rounds if not args.quick else 2} interleaved rounds, ~{args.target}s/sample, "
        f"GC off (timeit); loadavg {load_before} → {_harness.loadavg()}; "
        f"elapsed {time.monotonic() - start:.0f}s"
    )
    out["versions"] = _harness.versions("PyJWT", "cryptography", "joserfc", "Authlib", "scopegate")
    print(f"## {TITLE}\n\n{out['markdown']}\n\n{out['notes']}")
    for t in out["targets"]:
        print(f"- {t['figure']}: {t['shown']} (target {t['target']})")
    if args.json:
        _harness.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
