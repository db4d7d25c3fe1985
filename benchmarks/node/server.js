// The Node anchor of benchmarks/bench_http.py (issue 18): express 5 +
// express-oauth2-jwt-bearer 1.10 serving the same routes and checks as the Python apps.
//
//   node server.js PORT [bare]
//
// GET /bare answers "ok" with no authentication. GET /protected requires a bearer token
// verified with the static RS256 public key of the bench material (the library's
// "static public key (no discovery)" mode: publicKey + tokenSigningAlg), the issuer, the
// audience and the scope items:read, and answers with the token's sub. With "bare",
// /protected is open too (same route and handler), like the Python bare apps.
//
// The key comes from $SCOPEGATE_BENCH_DIR/jwks.json; the server listens on 127.0.0.1 only.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const express = require("express");
const { auth, requiredScopes } = require("express-oauth2-jwt-bearer");

const ISSUER = "https://issuer.bench.example";
const AUDIENCE = "api://bench";
const SCOPE = "items:read";

const port = Number(process.argv[2] || 0);
const bare = process.argv[3] === "bare";
const dir = process.env.SCOPEGATE_BENCH_DIR;
if (!dir || !port) {
  console.error("usage: SCOPEGATE_BENCH_DIR=... node server.js PORT [bare]");
  process.exit(2);
}
const jwks = JSON.parse(fs.readFileSync(path.join(dir, "jwks.json"), "utf8"));
const jwk = jwks.keys.find((k) => k.alg === "RS256");
const publicKey = crypto
  .createPublicKey({ key: jwk, format: "jwk" })
  .export({ type: "spki", format: "pem" });

const app = express();
app.disable("x-powered-by");
app.disable("etag");

app.get("/bare", (req, res) => {
  res.type("text/plain").send("ok");
});

if (bare) {
  app.get("/protected", (req, res) => {
    res.type("text/plain").send("anonymous");
  });
} else {
  const checkJwt = auth({
    issuer: ISSUER,
    audience: AUDIENCE,
    publicKey,
    tokenSigningAlg: "RS256",
  });
  app.get("/protected", checkJwt, requiredScopes(SCOPE), (req, res) => {
    res.type("text/plain").send(String(req.auth.payload.sub));
  });
}

// Refusals keep the library's status and WWW-Authenticate header, without express's
// default stack-trace logging (the Python servers do not log refusals either).
app.use((err, req, res, next) => {
  if (err.headers) res.set(err.headers);
  res.status(err.status || 500).end();
});

app.listen(port, "127.0.0.1");
