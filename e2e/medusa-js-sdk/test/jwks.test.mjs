// otpd's session tokens verified by a backend with the JWKS and `jose`:
// runs examples/verify-token.mjs (the program docs/sessions.md shows)
// against a real otpd whose SuperTokens and Medusa sessions are signed by
// its signing keys, before and after `otpd signing-keys rotate`.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { envWithoutOtpd, otpdBinary, PUBLISHABLE_KEY, startOtpd } from "../../lib/otpd.mjs";

const run = promisify(execFile);
const example = join(dirname(fileURLToPath(import.meta.url)), "../examples/verify-token.mjs");
const SECRETS = "jwks-test-server-secret-0123456789abcdef-0123";

let otpd;
let dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "otpd-jwks-"));
  otpd = await startOtpd({
    dir,
    env: { OTPD_SECRETS: SECRETS, OTPD_MEDUSA_TOKEN_SIGNING: "keys", OTPD_SIGNING_KEYS_RELOAD_EVERY: "1s" },
  });
});

after(async () => {
  await otpd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function post(path, body, headers = {}) {
  const res = await fetch(`${otpd.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-publishable-api-key": PUBLISHABLE_KEY, ...headers },
    body: JSON.stringify(body ?? {}),
  });
  return { status: res.status, headers: res.headers, body: await res.json().catch(() => ({})) };
}

async function code(to) {
  const res = await fetch(`${otpd.baseUrl}/dev/outbox?to=${encodeURIComponent(to)}&limit=1`);
  const { messages } = await res.json();
  assert.equal(messages.length, 1, `no code sent to ${to}`);
  return messages[0].code;
}

let n = 0;
const email = () => `jwks-${Date.now()}-${++n}@example.com`;

// A SuperTokens session (header mode): its access and refresh tokens.
async function superTokensSession() {
  const to = email();
  const c = await post("/st/auth/signinup/code", { email: to });
  assert.equal(c.body.status, "OK");
  const r = await post("/st/auth/signinup/code/consume", {
    preAuthSessionId: c.body.preAuthSessionId, deviceId: c.body.deviceId, userInputCode: await code(to),
  });
  assert.equal(r.body.status, "OK");
  return { access: r.headers.get("st-access-token"), refresh: r.headers.get("st-refresh-token") };
}

// A Medusa token: the registration token of a new customer.
async function medusaToken() {
  const to = email();
  assert.equal((await post("/auth/customer/otp/pre-register", { identifier: to })).status, 200);
  const r = await post("/auth/customer/otp/register", { identifier: to, otp: await code(to) });
  assert.equal(r.status, 200);
  return r.body.token;
}

// verify runs the example program on token.
async function verify(token) {
  const { stdout } = await run(process.execPath, [example, `${otpd.baseUrl}/.well-known/jwks.json`, token]);
  return JSON.parse(stdout);
}

function rotate(args) {
  const env = { ...envWithoutOtpd(), OTPD_DATABASE_URL: `sqlite://${join(dir, "otpd.db")}`, OTPD_SECRETS: SECRETS };
  return execFileSync(otpdBinary(), ["signing-keys", "rotate", ...args], { env, stdio: ["ignore", "pipe", "pipe"] }).toString().split("\n")[0].trim();
}

test("a token of each dialect verifies with the JWKS; after a rotation old tokens still verify and new ones carry the new kid", async () => {
  const st = await superTokensSession();
  const md = await medusaToken();
  const a = await verify(st.access);
  const b = await verify(md);
  assert.equal(a.alg, "EdDSA");
  assert.equal(a.kid, b.kid);
  assert.ok(a.payload.sessionHandle && a.payload.sub);
  assert.ok(b.payload.auth_identity_id);
  const oldKid = a.kid;

  const newKid = rotate(["--alg", "RS256", "--activate-in", "0s"]);
  assert.match(newKid, /^sk_/);
  assert.notEqual(newKid, oldKid);

  // The server rereads its keys every second: refresh until the new kid
  // signs (bounded).
  let access;
  let refresh = st.refresh;
  for (let i = 0; i < 50; i++) {
    const r = await post("/st/auth/session/refresh", {}, { authorization: `Bearer ${refresh}` });
    assert.equal(r.status, 200);
    access = r.headers.get("st-access-token");
    refresh = r.headers.get("st-refresh-token");
    if (JSON.parse(Buffer.from(access.split(".")[0], "base64url")).kid === newKid) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  const c = await verify(access);
  assert.equal(c.kid, newKid);
  assert.equal(c.alg, "RS256");
  const d = await verify(await medusaToken());
  assert.equal(d.kid, newKid);
  // The tokens of the old key still verify.
  assert.equal((await verify(st.access)).kid, oldKid);
  assert.equal((await verify(md)).kid, oldKid);
});

test("a forged token is refused by the example", async () => {
  const st = await superTokensSession();
  const [h, p] = st.access.split(".");
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, "base64url")), sub: "someone-else" })).toString("base64url")}.${st.access.split(".")[2]}`;
  const none = `${Buffer.from(JSON.stringify({ alg: "none", kid: JSON.parse(Buffer.from(h, "base64url")).kid })).toString("base64url")}.${p}.`;
  for (const tok of [forged, none]) {
    await assert.rejects(verify(tok), (err) => err.code === 1);
  }
});
