// The registration routes' tokens: bound to their purpose and their key.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { signOtpToken, verifyOtpToken } = require("../.medusa/server/src/lib/tokens.js");
const jwt = require("jsonwebtoken");

const secret = "medusa-jwt-secret-for-tests-0123456789";
const claims = { customer_id: "cus_1", purpose: "email_verification", verification_id: "ver_1", to: "a@example.com" };
const soon = () => new Date(Date.now() + 60_000);

test("a token verifies for its purpose only, and carries its claims", () => {
  const t = signOtpToken(secret, claims, soon());
  assert.deepEqual(verifyOtpToken(secret, t, ["email_verification", "phone_verification"]), claims);
  assert.equal(verifyOtpToken(secret, t, ["contact_change"]), null);
  const change = signOtpToken(secret, { ...claims, purpose: "contact_change", new_value: "b@example.com" }, soon());
  assert.equal(verifyOtpToken(secret, change, ["contact_change"]).new_value, "b@example.com");
});

test("forged, expired, re-signed with jwtSecret itself, or malformed: null", () => {
  const t = signOtpToken(secret, claims, soon());
  const [h, , s] = t.split(".");
  const forged = [h, Buffer.from(JSON.stringify({ ...claims, customer_id: "cus_2" })).toString("base64url"), s].join(".");
  const expired = signOtpToken(secret, claims, new Date(Date.now() - 1000));
  // What a Medusa login token is: HS256 under jwtSecret. It must not pass.
  const underJwtSecret = jwt.sign({ ...claims, aud: "otpd-medusa:otp" }, secret, { algorithm: "HS256" });
  const none = jwt.sign({ ...claims, aud: "otpd-medusa:otp" }, "", { algorithm: "none" });
  for (const bad of [forged, expired, underJwtSecret, none, "garbage", "", t + "x"]) {
    assert.equal(verifyOtpToken(secret, bad, ["email_verification"]), null, bad);
  }
  assert.equal(verifyOtpToken("another-secret-0123456789-0123456789", t, ["email_verification"]), null);
});
