// The real supertokens-web-js, loaded from its own browser bundles in
// headless Chromium, against freshly started otpd instances speaking the
// SuperTokens passwordless dialect (FDI). Every scenario runs once with
// tokenTransferMethod "header" and once with "cookie".
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";
import { startOtpd } from "../../lib/otpd.mjs";
import { API_BASE_PATH, startPageServer } from "../support/page.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const MODES = ["header", "cookie"];
const ACCESS_TOKEN_TTL_MS = 3000;
const CODE_TTL_MS = 2000;
const MAX_ATTEMPTS = 5;
const TEST_TIMEOUT = 60_000;

let browser;
let site; // the page server
const servers = new Map(); // name -> Promise<otpd>

// The otpd instances, started on first use so that one that fails to start
// fails only the scenarios that need it.
//   main: access tokens live 3 s (the refresh scenario); scenarios a-f.
//   shortCodes: codes live 2 s (the expired-code scenario).
//   magicLink: USER_INPUT_CODE_AND_MAGIC_LINK, links to the page server.
function otpdFor(name) {
  if (!servers.has(name)) {
    const env = {
      OTPD_SUPERTOKENS_CORS: site.origin,
      OTPD_SUPERTOKENS_COOKIE_SECURE: "false",
      OTPD_SUPERTOKENS_WEBSITE_DOMAIN: site.origin,
      OTPD_RESEND_COOLDOWN: "0s",
      OTPD_LIMIT_IP_SEND: "100000/5m",
      OTPD_LIMIT_IP_VERIFY: "100000/5m",
    };
    if (name === "main") env.OTPD_SUPERTOKENS_ACCESS_TOKEN_TTL = `${ACCESS_TOKEN_TTL_MS / 1000}s`;
    if (name === "shortCodes") env.OTPD_SUPERTOKENS_CODE_TTL = `${CODE_TTL_MS / 1000}s`;
    if (name === "magicLink") env.OTPD_SUPERTOKENS_FLOW_TYPE = "USER_INPUT_CODE_AND_MAGIC_LINK";
    const p = startOtpd({ env });
    p.catch(() => {}); // reported by the test that awaits it
    servers.set(name, p);
  }
  return servers.get(name);
}

before(async () => {
  site = await startPageServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  for (const [name, p] of servers) {
    const otpd = await p.catch(() => null);
    if (!otpd) continue;
    if (!otpd.running()) process.stderr.write(`otpd (${name}) exited during the tests:\n${otpd.logs.join("\n")}\n`);
    await otpd.stop();
  }
  await site?.stop();
});

let n = 0;
const newEmail = (tag) => `st-${tag}-${Date.now()}-${++n}@example.com`;

// A browser "user": its own context (cookies, localStorage) with the page
// loaded and the SDK initialised for otpd in the given mode. requests
// records every request the browser sends (method and path).
async function openBrowser(otpd, mode) {
  const context = await browser.newContext();
  await context.addInitScript((cfg) => {
    window.__otpdE2E = cfg;
  }, { apiDomain: otpd.baseUrl, mode });
  const requests = [];
  context.on("request", (r) => {
    const u = new URL(r.url());
    requests.push({ method: r.method(), origin: u.origin, path: u.pathname, headers: r.headers() });
  });
  const consoleLines = [];
  context.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  const page = await context.newPage();
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(`${site.origin}/`);
  await page.waitForFunction(() => window.e2e !== undefined, null, { timeout: 10_000 });
  // On an exception, say what the browser logged (CORS refusals, network
  // errors) since the call began.
  const call = async (method, ...args) => {
    const mark = consoleLines.length;
    const r = await page.evaluate(([m, a]) => window.e2e[m](...a), [method, args]);
    if (r && typeof r === "object" && "thrown" in r) {
      r.console = consoleLines.slice(mark);
    }
    return r;
  };
  return {
    context,
    page,
    requests,
    consoleLines,
    call,
    apiCalls: () =>
      requests.filter((r) => r.origin === otpd.baseUrl && r.path !== "/dev/outbox").map((r) => `${r.method} ${r.path}`),
    close: () => context.close(),
  };
}

// The newest message the dev outbox holds for email.
async function outboxMessage(otpd, email) {
  const res = await fetch(`${otpd.baseUrl}/dev/outbox?to=${encodeURIComponent(email)}&limit=1`);
  assert.equal(res.status, 200, `GET /dev/outbox: ${res.status}`);
  const { messages } = await res.json();
  assert.equal(messages.length, 1, `no message was sent to ${email}`);
  const [m] = messages;
  assert.equal(m.to, email);
  assert.equal(m.channel, "email");
  assert.ok(m.code, `outbox message has no code: ${JSON.stringify(m)}`);
  return m;
}
async function outboxCount(otpd, email) {
  const res = await fetch(`${otpd.baseUrl}/dev/outbox?to=${encodeURIComponent(email)}&limit=100`);
  return (await res.json()).messages.length;
}

// The magic link of an outbox message: its link field, or else the link in
// its text.
function magicLinkOf(m) {
  if (m.link) return m.link;
  const found = /https?:\/\/\S+\/verify\?\S+/.exec(m.text ?? "");
  assert.ok(found, `outbox message has no link field and no link in its text: ${JSON.stringify(m)}`);
  return found[0];
}

const show = (v) => JSON.stringify(v);

// signIn: createCode for email, read the code, consumeCode; returns the
// consumeCode result after asserting it is OK.
async function signIn(b, otpd, email) {
  const created = await b.call("createCode", email);
  assert.equal(created.status, "OK", `createCode: ${show(created)}`);
  const { code } = await outboxMessage(otpd, email);
  const consumed = await b.call("consumeCode", code);
  assert.equal(consumed.status, "OK", `consumeCode: ${show(consumed)}`);
  return consumed;
}

// The scenarios are independent (own browser context, own email). The two
// modes run side by side, which mostly overlaps the waits for tokens and
// codes to expire; within a mode the tests run one at a time.
describe("supertokens-web-js", { concurrency: 2 }, () => {
  for (const mode of MODES) {
    describe(`${mode} mode`, { concurrency: 1 }, () => {
      // a-d: one user's life in one browser, in order.
      describe("sign-up, refresh, sign-out, sign-in", () => {
        let otpd;
        let b;
        let email;
        let userId;
        before(async () => {
          otpd = await otpdFor("main");
          b = await openBrowser(otpd, mode);
          email = newEmail(`life-${mode}`);
        });
        after(async () => {
          await b?.close();
        });

        test("(a) createCode + consumeCode with the emailed code signs up and starts a session", { timeout: TEST_TIMEOUT }, async () => {
          assert.equal(await b.call("doesSessionExist"), false);
          const created = await b.call("createCode", email);
          assert.equal(created.status, "OK", `createCode: ${show(created)}`);
          assert.equal(created.flowType, "USER_INPUT_CODE");
          assert.ok(created.deviceId && created.preAuthSessionId, show(created));
          // The SDK keeps the attempt for consumeCode and resendCode.
          const info = await b.call("getLoginAttemptInfo");
          assert.equal(info?.deviceId, created.deviceId);
          assert.equal(info?.preAuthSessionId, created.preAuthSessionId);

          const { code } = await outboxMessage(otpd, email);
          const consumed = await b.call("consumeCode", code);
          assert.equal(consumed.status, "OK", `consumeCode: ${show(consumed)}`);
          assert.equal(consumed.createdNewRecipeUser, true);
          const { user } = consumed;
          assert.ok(user?.id, show(consumed));
          userId = user.id;
          assert.ok(user.emails.includes(email), `user.emails: ${show(user.emails)}`);
          assert.equal(user.loginMethods[0].recipeId, "passwordless");
          assert.equal(user.loginMethods[0].email, email);

          assert.equal(await b.call("doesSessionExist"), true);
          assert.equal(await b.call("getUserId"), userId);
          const s = await b.call("getSession");
          assert.equal(s.status, 200, `GET ${API_BASE_PATH}/session: ${show(s)}`);
          assert.equal(s.body.userId, userId);
          assert.equal(s.body.tenantId, "public");
          assert.ok(s.body.sessionHandle, show(s.body));

          // The route the SDK called, with the header that names the mode.
          const consume = b.requests.find((r) => r.method === "POST" && r.path === `${API_BASE_PATH}/signinup/code/consume`);
          assert.ok(consume, `no POST ${API_BASE_PATH}/signinup/code/consume in ${show(b.apiCalls())}`);
          assert.equal(consume.headers["st-auth-mode"], mode);
          assert.equal(consume.headers.rid, "passwordless");
          const sessionGet = b.requests.findLast((r) => r.method === "GET" && r.path === `${API_BASE_PATH}/session`);
          assert.ok(sessionGet, show(b.apiCalls()));
          if (mode === "header") {
            assert.match(sessionGet.headers.authorization ?? "", /^Bearer \S+/, "header mode sends the access token");
          } else {
            assert.equal(sessionGet.headers.authorization, undefined, "cookie mode sends no Authorization header");
          }
        });

        test("(b) after the access token expires, the SDK refreshes and the protected route answers 200", { timeout: TEST_TIMEOUT }, async () => {
          assert.ok(userId, "needs (a)");
          const refreshesBefore = b.requests.filter((r) => r.method === "POST" && r.path === `${API_BASE_PATH}/session/refresh`).length;
          await sleep(ACCESS_TOKEN_TTL_MS + 1500);
          const s = await b.call("getSession");
          assert.equal(s.status, 200, `GET ${API_BASE_PATH}/session after expiry: ${show(s)}; requests: ${show(b.apiCalls())}`);
          assert.equal(s.body.userId, userId);
          const refreshes = b.requests.filter((r) => r.method === "POST" && r.path === `${API_BASE_PATH}/session/refresh`).length;
          assert.ok(refreshes > refreshesBefore, `no POST ${API_BASE_PATH}/session/refresh was sent: ${show(b.apiCalls())}`);
          assert.equal(await b.call("doesSessionExist"), true);
        });

        test("(c) signOut ends the session: doesSessionExist false, protected route 401", { timeout: TEST_TIMEOUT }, async () => {
          assert.ok(userId, "needs (a)");
          const out = await b.call("signOut");
          assert.equal(out?.thrown, undefined, `signOut: ${show(out)}`);
          assert.ok(b.apiCalls().includes(`POST ${API_BASE_PATH}/signout`), show(b.apiCalls()));
          assert.equal(await b.call("doesSessionExist"), false);
          const s = await b.call("getSession");
          assert.equal(s.status, 401, `GET ${API_BASE_PATH}/session after signOut: ${show(s)}`);
          assert.deepEqual(s.body, { message: "unauthorised" });
        });

        test("(d) signing in again with the same email finds the same user", { timeout: TEST_TIMEOUT }, async () => {
          assert.ok(userId, "needs (a)");
          const consumed = await signIn(b, otpd, email);
          assert.equal(consumed.createdNewRecipeUser, false);
          assert.equal(consumed.user.id, userId);
          assert.equal(await b.call("doesSessionExist"), true);
          const s = await b.call("getSession");
          assert.equal(s.status, 200, show(s));
          assert.equal(s.body.userId, userId);
        });
      });

      test("(e) wrong codes count attempts; the 5th wrong code restarts the flow", { timeout: TEST_TIMEOUT }, async () => {
        const otpd = await otpdFor("main");
        const b = await openBrowser(otpd, mode);
        try {
          const email = newEmail(`wrong-${mode}`);
          const created = await b.call("createCode", email);
          assert.equal(created.status, "OK", `createCode: ${show(created)}`);
          const { code } = await outboxMessage(otpd, email);
          const wrong = code === "000000" ? "111111" : "000000";
          // As SuperTokens core: attempts 1..4 answer INCORRECT with the count;
          // the attempt that reaches the maximum deletes the device and
          // answers RESTART_FLOW_ERROR.
          for (let i = 1; i < MAX_ATTEMPTS; i++) {
            const r = await b.call("consumeCode", wrong);
            assert.deepEqual(
              { status: r.status, failedCodeInputAttemptCount: r.failedCodeInputAttemptCount, maximumCodeInputAttempts: r.maximumCodeInputAttempts },
              { status: "INCORRECT_USER_INPUT_CODE_ERROR", failedCodeInputAttemptCount: i, maximumCodeInputAttempts: MAX_ATTEMPTS },
              `wrong code #${i}: ${show(r)}`,
            );
          }
          const last = await b.call("consumeCode", wrong);
          assert.equal(last.status, "RESTART_FLOW_ERROR", `wrong code #${MAX_ATTEMPTS}: ${show(last)}`);
          // The flow is over: even the right code no longer signs in.
          const right = await b.call("consumeCode", code);
          assert.equal(right.status, "RESTART_FLOW_ERROR", `right code after the flow restarted: ${show(right)}`);
          assert.equal(await b.call("doesSessionExist"), false);
        } finally {
          await b.close();
        }
      });

      test("(f) resendCode sends a new code; the old one fails, the new one signs in", { timeout: TEST_TIMEOUT }, async () => {
        const otpd = await otpdFor("main");
        const b = await openBrowser(otpd, mode);
        try {
          const email = newEmail(`resend-${mode}`);
          const created = await b.call("createCode", email);
          assert.equal(created.status, "OK", `createCode: ${show(created)}`);
          const first = await outboxMessage(otpd, email);
          const resent = await b.call("resendCode");
          assert.equal(resent.status, "OK", `resendCode: ${show(resent)}`);
          assert.ok(b.apiCalls().includes(`POST ${API_BASE_PATH}/signinup/code/resend`), show(b.apiCalls()));
          assert.equal(await outboxCount(otpd, email), 2, "resendCode sent a second message");
          const second = await outboxMessage(otpd, email);
          assert.notEqual(second.id, first.id);
          assert.notEqual(second.code, first.code, "the resent code is a new code");
          // The login attempt is the same device.
          const info = await b.call("getLoginAttemptInfo");
          assert.equal(info?.deviceId, created.deviceId);

          const old = await b.call("consumeCode", first.code);
          assert.equal(old.status, "INCORRECT_USER_INPUT_CODE_ERROR", `old code after resend: ${show(old)}`);
          assert.equal(old.failedCodeInputAttemptCount, 1);
          const ok = await b.call("consumeCode", second.code);
          assert.equal(ok.status, "OK", `new code after resend: ${show(ok)}`);
          assert.equal(ok.createdNewRecipeUser, true);
          assert.equal(await b.call("doesSessionExist"), true);
        } finally {
          await b.close();
        }
      });

      test("(g) an expired code answers EXPIRED_USER_INPUT_CODE_ERROR", { timeout: TEST_TIMEOUT }, async () => {
        const otpd = await otpdFor("shortCodes");
        const b = await openBrowser(otpd, mode);
        try {
          const email = newEmail(`expired-${mode}`);
          const created = await b.call("createCode", email);
          assert.equal(created.status, "OK", `createCode: ${show(created)}`);
          const { code } = await outboxMessage(otpd, email);
          await sleep(CODE_TTL_MS + 1000);
          const r = await b.call("consumeCode", code);
          assert.equal(r.status, "EXPIRED_USER_INPUT_CODE_ERROR", `expired code: ${show(r)}`);
          assert.equal(r.maximumCodeInputAttempts, MAX_ATTEMPTS, show(r));
          assert.equal(typeof r.failedCodeInputAttemptCount, "number", show(r));
          assert.equal(await b.call("doesSessionExist"), false);
        } finally {
          await b.close();
        }
      });

      test("(g3) an expired code reports the attempts so far and is not counted as one (docs/supertokens.md, difference 5)", { timeout: TEST_TIMEOUT }, async () => {
        // SuperTokens core counts an expired code as a failed attempt; otpd
        // does not: an expired code can sign in no one, so typing it is no
        // guess, and the user must resend either way.
        const otpd = await otpdFor("shortCodes");
        const b = await openBrowser(otpd, mode);
        try {
          const email = newEmail(`expired-count-${mode}`);
          const created = await b.call("createCode", email);
          assert.equal(created.status, "OK", `createCode: ${show(created)}`);
          const { code } = await outboxMessage(otpd, email);
          const wrong = code === "000000" ? "111111" : "000000";
          const first = await b.call("consumeCode", wrong);
          assert.equal(first.failedCodeInputAttemptCount, 1, `wrong code: ${show(first)}`);
          await sleep(CODE_TTL_MS + 1000);
          const r = await b.call("consumeCode", code);
          assert.deepEqual(
            { status: r.status, failedCodeInputAttemptCount: r.failedCodeInputAttemptCount, maximumCodeInputAttempts: r.maximumCodeInputAttempts },
            { status: "EXPIRED_USER_INPUT_CODE_ERROR", failedCodeInputAttemptCount: 1, maximumCodeInputAttempts: MAX_ATTEMPTS },
            `expired code after one wrong code: ${show(r)}`,
          );
        } finally {
          await b.close();
        }
      });

      test("(g2) after an expired code, resendCode (the UI's \"resend\") gives a code that works", { timeout: TEST_TIMEOUT }, async () => {
        const otpd = await otpdFor("shortCodes");
        const b = await openBrowser(otpd, mode);
        try {
          const email = newEmail(`expired-resend-${mode}`);
          const created = await b.call("createCode", email);
          assert.equal(created.status, "OK", `createCode: ${show(created)}`);
          const { code } = await outboxMessage(otpd, email);
          await sleep(CODE_TTL_MS + 1000);
          const expired = await b.call("consumeCode", code);
          assert.equal(expired.status, "EXPIRED_USER_INPUT_CODE_ERROR", show(expired));
          const resent = await b.call("resendCode");
          assert.equal(resent.status, "OK", `resendCode after an expired code: ${show(resent)}`);
          const fresh = await outboxMessage(otpd, email);
          assert.notEqual(fresh.code, code);
          const ok = await b.call("consumeCode", fresh.code);
          assert.equal(ok.status, "OK", `the resent code: ${show(ok)}`);
          assert.equal(await b.call("doesSessionExist"), true);
        } finally {
          await b.close();
        }
      });

      test("(h) magic link: only the browser that asked for it can use it", { timeout: TEST_TIMEOUT }, async () => {
        const otpd = await otpdFor("magicLink");
        const a = await openBrowser(otpd, mode);
        let other;
        try {
          const email = newEmail(`link-${mode}`);
          const created = await a.call("createCode", email);
          assert.equal(created.status, "OK", `createCode: ${show(created)}`);
          assert.equal(created.flowType, "USER_INPUT_CODE_AND_MAGIC_LINK");
          const m = await outboxMessage(otpd, email);
          const link = magicLinkOf(m);
          const u = new URL(link);
          assert.equal(u.origin, site.origin, `link ${link} points at the website`);
          assert.equal(u.pathname, "/auth/verify");
          assert.equal(u.searchParams.get("preAuthSessionId"), created.preAuthSessionId);
          assert.equal(u.searchParams.get("tenantId"), "public");
          assert.ok(u.hash.length > 1, `link ${link} carries the link code in its fragment`);
          if (m.text) assert.ok(m.text.includes(link), "the message text carries the link");

          // A mail scanner's GET and HEAD of the link fetch the page only.
          for (const method of ["GET", "HEAD"]) {
            const res = await fetch(link, { method });
            assert.equal(res.status, 200, `${method} ${link}`);
            await res.arrayBuffer();
          }

          // Another browser (no cookies from createCode) may not use the link.
          other = await browser.newContext();
          await other.addInitScript((cfg) => {
            window.__otpdE2E = cfg;
          }, { apiDomain: otpd.baseUrl, mode });
          const otherPage = await other.newPage();
          await otherPage.goto(link);
          await otherPage.waitForFunction(() => window.verifyResult !== undefined, null, { timeout: 10_000 });
          const foreign = await otherPage.evaluate(() => window.verifyResult);
          assert.equal(foreign.status, "SIGN_IN_UP_NOT_ALLOWED", `link opened in another browser: ${show(foreign)}`);
          assert.equal(typeof foreign.reason, "string");
          assert.equal(await otherPage.evaluate(() => window.e2e.doesSessionExist()), false);

          // The browser that asked for it: the same page navigates to the link.
          await a.page.goto(link);
          await a.page.waitForFunction(() => window.verifyResult !== undefined, null, { timeout: 10_000 });
          const own = await a.page.evaluate(() => window.verifyResult);
          assert.equal(own.status, "OK", `link opened in the requesting browser: ${show(own)}`);
          assert.equal(own.createdNewRecipeUser, true);
          assert.ok(own.user.emails.includes(email), show(own.user));
          const consume = a.requests.findLast((r) => r.method === "POST" && r.path === `${API_BASE_PATH}/signinup/code/consume`);
          assert.ok(consume, show(a.apiCalls()));
          assert.equal(await a.call("doesSessionExist"), true);
          const s = await a.call("getSession");
          assert.equal(s.status, 200, show(s));
          assert.equal(s.body.userId, own.user.id);

          // The link is single use. (goto to the same URL with its fragment
          // would be a same-document navigation: reload.)
          const sessions = await a.call("getSession");
          await a.page.reload();
          await a.page.waitForFunction(() => window.verifyResult !== undefined, null, { timeout: 10_000 });
          const again = await a.page.evaluate(() => window.verifyResult);
          assert.notEqual(again.status, "OK", `link used twice: ${show(again)}`);
          const after = await a.call("getSession");
          assert.equal(after.body.sessionHandle, sessions.body.sessionHandle, "the second use started no session");
        } finally {
          await other?.close();
          await a.close();
        }
      });

      test("(h2) a used magic link answers RESTART_FLOW_ERROR in the browser that used it, as in SuperTokens core", { timeout: TEST_TIMEOUT }, async () => {
        // Core answers RESTART_FLOW_ERROR for a link code that no longer
        // exists; SIGN_IN_UP_NOT_ALLOWED would tell this very browser to
        // "open the link in the browser where you asked for it".
        const otpd = await otpdFor("magicLink");
        const a = await openBrowser(otpd, mode);
        try {
          const email = newEmail(`link-twice-${mode}`);
          const created = await a.call("createCode", email);
          assert.equal(created.status, "OK", `createCode: ${show(created)}`);
          const link = magicLinkOf(await outboxMessage(otpd, email));
          await a.page.goto(link);
          await a.page.waitForFunction(() => window.verifyResult !== undefined, null, { timeout: 10_000 });
          const own = await a.page.evaluate(() => window.verifyResult);
          assert.equal(own.status, "OK", `first use: ${show(own)}`);
          await a.page.reload();
          await a.page.waitForFunction(() => window.verifyResult !== undefined, null, { timeout: 10_000 });
          const again = await a.page.evaluate(() => window.verifyResult);
          assert.equal(again.status, "RESTART_FLOW_ERROR", `link used twice in the same browser: ${show(again)}`);
        } finally {
          await a.close();
        }
      });
    });
  }
});
