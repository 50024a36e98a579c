// Verifies an otpd session token (SuperTokens access token or Medusa
// token) the way a backend does: with otpd's published JWKS and the `jose`
// library, no shared secret. docs/sessions.md shows this file.
//
//   node verify-token.mjs https://auth.example.com/.well-known/jwks.json TOKEN
//
// Prints {"kid", "alg", "payload"} as JSON; exits 1 if the token does not
// verify.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, token] = process.argv.slice(2);
if (!jwksUrl || !token) {
  console.error("usage: node verify-token.mjs JWKS_URL TOKEN");
  process.exit(2);
}

// createRemoteJWKSet caches the key set and fetches it again when a token
// names a kid it does not hold (a rotation), at most every 30 seconds.
const jwks = createRemoteJWKSet(new URL(jwksUrl));

try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    algorithms: ["EdDSA", "RS256"], // never "none" nor HS256
  });
  console.log(JSON.stringify({ kid: protectedHeader.kid, alg: protectedHeader.alg, payload }));
} catch (err) {
  console.error(`token refused: ${err.code ?? err.message}`);
  process.exit(1);
}
