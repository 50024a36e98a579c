// The plugin's otpd client against a real otpd; a fake server only for what
// a real otpd does not do (never answer, answer a proxy's HTML error page).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createApiKey, startOtpd } from "../../../e2e/lib/otpd.mjs";

const require = createRequire(import.meta.url);
const { OtpdClient, OtpdRefused, OtpdUnavailable } = require("../.medusa/server/src/lib/otpd.js");

let otpd;
let dir;
let key;
let plainKey;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "otpd-medusa-client-"));
  key = createApiKey(dir, ["--name", "with-codes", "--return-codes"]);
  plainKey = createApiKey(dir, ["--name", "plain"]);
  otpd = await startOtpd({ dir });
});

after(async () => {
  await otpd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const client = (k = key, url = otpd.baseUrl, timeoutMs = 2000) => new OtpdClient({ url, apiKey: k, timeoutMs });
let n = 0;
const email = () => `client-${process.pid}-${++n}@example.com`;

describe("against otpd", () => {
  test("a returned code is approved once, for its subject only", async () => {
    const to = email();
    const v = await client().createVerification({ to, purpose: "sign_in", subject: "authid_1", deliver: true, delivery: "return", client: { ip: "198.51.100.7" } });
    assert.equal(v.status, "pending");
    assert.match(v.code, /^\d{6}$/);
    const wrong = v.code === "000000" ? "111111" : "000000";
    assert.equal((await client().check({ to, purpose: "sign_in", subject: "authid_1", code: wrong })).status, "pending");
    assert.equal((await client().check({ to, purpose: "sign_in", subject: "authid_2", code: v.code })).status, "not_found");
    assert.equal((await client().check({ to, purpose: "sign_up", subject: "authid_1", code: v.code })).status, "not_found");
    assert.equal((await client().check({ to, purpose: "sign_in", subject: "authid_1", code: v.code })).status, "approved");
    assert.equal((await client().check({ to, purpose: "sign_in", subject: "authid_1", code: v.code })).status, "not_found");
  });

  test("cancelSubject cancels a subject's pending codes, of any address and purpose, once", async () => {
    const [a, b, other] = [email(), email(), email()];
    const subject = `contact:customer:cus_${process.pid}_${n}`;
    const va = await client().createVerification({ to: a, purpose: "verify_contact", subject, deliver: true, delivery: "return" });
    await client().createVerification({ to: b, purpose: "delete_account", subject, deliver: true, delivery: "return" });
    const vo = await client().createVerification({ to: other, purpose: "verify_contact", subject: `${subject}_other`, deliver: true, delivery: "return" });
    assert.equal(await client().cancelSubject(subject), 2);
    assert.equal(await client().cancelSubject(subject), 0);
    assert.equal((await client().check({ to: a, purpose: "verify_contact", subject, code: va.code })).status, "canceled");
    assert.equal((await client().check({ to: other, purpose: "verify_contact", subject: `${subject}_other`, code: vo.code })).status, "approved");
    await assert.rejects(client().cancelSubject(""), (e) => e instanceof OtpdRefused && e.status === 400 && e.field === "subject");
    await assert.rejects(client("otpd_sk_nope").cancelSubject(subject), (e) => e instanceof OtpdRefused && e.status === 401);
  });

  test("a decoy has no code and is never approved", async () => {
    const to = email();
    const v = await client().createVerification({ to, purpose: "sign_in", subject: "unknown:customer", deliver: false, delivery: "return" });
    assert.equal(v.status, "pending");
    assert.equal(v.code, undefined);
    for (const code of ["000000", "123456"]) {
      const c = await client().check({ to, purpose: "sign_in", subject: "unknown:customer", code });
      assert.notEqual(c.status, "approved");
    }
  });

  test("otpd's refusals: the cooldown's 429 with its wait, a bad key, a missing permission, a bad address", async () => {
    const to = email();
    await client().createVerification({ to, purpose: "sign_in", subject: "s", deliver: true, delivery: "return" });
    const cooled = await client()
      .createVerification({ to, purpose: "sign_in", subject: "s", deliver: true, delivery: "return" })
      .catch((e) => e);
    assert.ok(cooled instanceof OtpdRefused);
    assert.equal(cooled.status, 429);
    assert.equal(cooled.code, "rate_limited");
    assert.ok(cooled.retryAfter >= 1 && cooled.retryAfter <= 30, String(cooled.retryAfter));

    const badKey = await client("otpd_sk_not-a-key").createVerification({ to: email(), purpose: "sign_in", subject: "s", deliver: true, delivery: "return" }).catch((e) => e);
    assert.ok(badKey instanceof OtpdRefused);
    assert.equal(badKey.status, 401);

    const noPermission = await client(plainKey).createVerification({ to: email(), purpose: "sign_in", subject: "s", deliver: true, delivery: "return" }).catch((e) => e);
    assert.ok(noPermission instanceof OtpdRefused);
    assert.equal(noPermission.status, 403);

    const badTo = await client().createVerification({ to: "not an address", purpose: "sign_in", subject: "s", deliver: false, delivery: "return" }).catch((e) => e);
    assert.ok(badTo instanceof OtpdRefused);
    assert.equal(badTo.status, 400);
    assert.equal(badTo.field, "to");
  });
});

describe("when otpd is not there", () => {
  // A server that accepts connections and never answers, and one that
  // answers as a proxy in front of a dead otpd would.
  let silent;
  let proxy;
  const sockets = new Set();
  before(async () => {
    silent = createServer(() => {});
    silent.on("connection", (s) => sockets.add(s));
    proxy = createServer((req, res) => {
      res.writeHead(502, { "content-type": "text/html" });
      res.end("<html><body>502 Bad Gateway</body></html>");
    });
    await Promise.all([silent, proxy].map((s) => new Promise((r) => s.listen(0, "127.0.0.1", r))));
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all([silent, proxy].map((s) => new Promise((r) => s.close(r))));
  });
  const url = (s) => `http://127.0.0.1:${s.address().port}`;
  const body = { to: "a@example.com", purpose: "sign_in", subject: "s", deliver: true, delivery: "return" };

  test("no answer within the timeout", async () => {
    const t0 = Date.now();
    const err = await client(key, url(silent), 300).createVerification(body).catch((e) => e);
    assert.ok(err instanceof OtpdUnavailable);
    assert.match(err.message, /no answer within 300 ms/);
    assert.ok(Date.now() - t0 < 2000);
    assert.ok(!err.message.includes(key), "the key in an error");
  });

  test("a refused connection, and a proxy's HTML 502", async () => {
    const closed = createServer();
    await new Promise((r) => closed.listen(0, "127.0.0.1", r));
    const deadUrl = url(closed);
    await new Promise((r) => closed.close(r));
    const refused = await client(key, deadUrl).check({ ...body, code: "123456" }).catch((e) => e);
    assert.ok(refused instanceof OtpdUnavailable);
    assert.match(refused.message, /ECONNREFUSED/);

    const bad = await client(key, url(proxy)).check({ ...body, code: "123456" }).catch((e) => e);
    assert.ok(bad instanceof OtpdUnavailable);
    assert.match(bad.message, /502/);
    for (const e of [refused, bad]) assert.ok(!e.message.includes(key), "the key in an error");
  });
});

test("localeOf: the shopper's most preferred language, or nothing", () => {
  const { localeOf } = require("../.medusa/server/src/lib/otpd.js");
  assert.equal(localeOf("fr-CA,fr;q=0.9,en;q=0.5"), "fr-CA");
  assert.equal(localeOf("en;q=0.2, de;q=0.8"), "de");
  assert.equal(localeOf("*"), undefined);
  assert.equal(localeOf("en;q=0"), undefined);
  assert.equal(localeOf(undefined), undefined);
  assert.equal(localeOf("<script>, fr"), "fr");
  assert.equal(localeOf("x".repeat(5000)), undefined);
});
