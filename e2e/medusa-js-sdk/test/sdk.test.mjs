// The real @medusajs/js-sdk, used as a storefront uses it, against a freshly
// started otpd. One otpd for the file; every test uses its own identifiers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import Medusa, { FetchError } from "@medusajs/js-sdk";
import { PUBLISHABLE_KEY, startOtpd } from "../../lib/otpd.mjs";

let otpd;
let baseUrl;

// Every request the SDK sends goes through the global fetch; record them so
// the tests can say which route an SDK method called and with which headers.
const realFetch = globalThis.fetch;
let requests = [];
// Node's fetch keeps no cookies. For requests made with credentials:
// "include" (the SDK's session mode) this jar does what a browser on
// http://localhost does: it stores the cookies the server sets (Secure ones
// too, as browsers do for localhost) and sends them back.
const cookieJar = new Map();
globalThis.fetch = async (input, init = {}) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const headers = new Headers(init.headers);
  const withCookies = init.credentials === "include";
  if (withCookies && cookieJar.size > 0) {
    headers.set("cookie", [...cookieJar].map(([k, v]) => `${k}=${v}`).join("; "));
  }
  requests.push({ method: (init.method ?? "GET").toUpperCase(), path: url.pathname, headers });
  const res = await realFetch(input, { ...init, headers });
  if (withCookies) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(";").map((s) => s.trim());
      const [name, value] = [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)];
      const expired = attrs.some((a) => /^max-age=(0|-\d+)$/i.test(a));
      if (expired || value === "") cookieJar.delete(name);
      else cookieJar.set(name, value);
    }
  }
  return res;
};
const sdkCalls = () => requests.filter((r) => r.path !== "/dev/outbox").map((r) => `${r.method} ${r.path}`);

before(async () => {
  otpd = await startOtpd();
  baseUrl = otpd.baseUrl;
});

after(async () => {
  if (otpd && !otpd.running()) {
    process.stderr.write(`otpd exited during the tests:\n${otpd.logs.join("\n")}\n`);
  }
  await otpd?.stop();
});

let n = 0;
const newIdentifier = () => `sdk-${Date.now()}-${++n}@example.com`;

// A storefront's SDK. In Node there is no localStorage: with only
// {type: "jwt"} the SDK picks the "nostore" method and keeps no token at all
// (see "Node default"), so the SDK-driven flows keep the token in memory.
function storefront(options = {}) {
  return new Medusa({
    baseUrl,
    publishableKey: PUBLISHABLE_KEY,
    auth: { type: "jwt", jwtTokenStorageMethod: "memory" },
    ...options,
  });
}

// outboxCode reads the newest code sent to identifier from the dev outbox.
async function outboxCode(identifier, purpose) {
  const res = await realFetch(`${baseUrl}/dev/outbox?to=${encodeURIComponent(identifier)}&limit=1`);
  assert.equal(res.status, 200);
  const { messages } = await res.json();
  assert.equal(messages.length, 1, `no code was sent to ${identifier}`);
  const [m] = messages;
  assert.equal(m.to, identifier);
  assert.equal(m.channel, "email");
  assert.equal(m.purpose, purpose);
  assert.match(m.code, /^\d{6}$/);
  return m.code;
}

function claims(jwt) {
  const [, payload] = jwt.split(".");
  return JSON.parse(Buffer.from(payload, "base64url").toString());
}

// rejects asserts that promise fails with the SDK's FetchError and these
// status, statusText and message.
async function rejects(promise, status, statusText, message) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof FetchError, `expected a FetchError, got ${err?.constructor?.name}: ${err}`);
    assert.deepEqual(
      { status: err.status, statusText: err.statusText, message: err.message },
      { status, statusText, message },
    );
    return true;
  });
}

// signUp runs the sign-up flow on sdk and leaves it holding a customer token.
async function signUp(sdk, identifier) {
  await sdk.client.fetch("/auth/customer/otp/pre-register", { method: "POST", body: { identifier } });
  const otp = await outboxCode(identifier, "sign_up");
  await sdk.auth.register("customer", "otp", { identifier, otp });
  const { customer } = await sdk.store.customer.create({ email: identifier, first_name: "Ada" });
  await sdk.auth.refresh();
  return customer;
}

describe("sign-up by code", () => {
  test("pre-register, register, create the customer, refresh, retrieve", async () => {
    const sdk = storefront();
    const identifier = newIdentifier();
    requests = [];

    const pre = await sdk.client.fetch("/auth/customer/otp/pre-register", {
      method: "POST",
      body: { identifier },
    });
    assert.deepEqual(pre, { message: "Please validate the OTP to continue with the registration process." });
    const otp = await outboxCode(identifier, "sign_up");

    const regToken = await sdk.auth.register("customer", "otp", { identifier, otp });
    assert.equal(typeof regToken, "string");
    assert.equal(claims(regToken).actor_id, "");
    assert.equal(claims(regToken).actor_type, "customer");
    assert.equal(await sdk.client.getToken(), regToken, "register stores the registration token");

    const { customer } = await sdk.store.customer.create({ email: identifier, first_name: "Ada" });
    assert.match(customer.id, /^cus_/);
    assert.equal(customer.email, identifier);
    assert.equal(customer.first_name, "Ada");
    assert.equal(customer.last_name, null);
    assert.equal(customer.has_account, true);
    assert.deepEqual(customer.addresses, []);
    const create = requests.find((r) => r.path === "/store/customers");
    assert.equal(create.headers.get("authorization"), `Bearer ${regToken}`);
    assert.equal(create.headers.get("x-publishable-api-key"), PUBLISHABLE_KEY);

    const refreshed = await sdk.auth.refresh();
    assert.deepEqual(Object.keys(refreshed), ["token"]);
    assert.notEqual(refreshed.token, regToken);
    assert.equal(claims(refreshed.token).actor_id, customer.id);
    assert.equal(claims(refreshed.token).app_metadata.customer_id, customer.id);
    assert.equal(await sdk.client.getToken(), refreshed.token, "refresh stores the new token");

    const me = await sdk.store.customer.retrieve();
    assert.deepEqual(me.customer, customer);

    assert.deepEqual(sdkCalls(), [
      "POST /auth/customer/otp/pre-register",
      "POST /auth/customer/otp/register",
      "POST /store/customers",
      "POST /auth/token/refresh",
      "GET /store/customers/me",
    ]);
  });

  test("sdk.auth.login with the sign-up code right after sign-up, once", async () => {
    const sdk = storefront();
    const identifier = newIdentifier();
    await sdk.client.fetch("/auth/customer/otp/pre-register", { method: "POST", body: { identifier } });
    const otp = await outboxCode(identifier, "sign_up");
    await sdk.auth.register("customer", "otp", { identifier, otp });
    const { customer } = await sdk.store.customer.create({ first_name: "Ada" });
    assert.equal(customer.email, identifier, "the email is filled in from the sign-up code");

    requests = [];
    const token = await sdk.auth.login("customer", "otp", { identifier, otp });
    assert.equal(typeof token, "string");
    assert.equal(claims(token).actor_id, customer.id);
    assert.equal(await sdk.client.getToken(), token);
    assert.equal((await sdk.store.customer.retrieve()).customer.id, customer.id);
    assert.deepEqual(sdkCalls(), ["POST /auth/customer/otp", "GET /store/customers/me"]);

    // Single use: the same code again is refused, and the stored token stays.
    await rejects(sdk.auth.login("customer", "otp", { identifier, otp }), 401, "Unauthorized", "Invalid OTP");
    assert.equal(await sdk.client.getToken(), token);
  });

  test("Node default: {type: 'jwt'} alone keeps no token; the token is passed in headers", async () => {
    // What a server-rendered storefront does: no storage, the token travels
    // in the Authorization header of each call.
    const sdk = storefront({ auth: { type: "jwt" } });
    const identifier = newIdentifier();
    await sdk.client.fetch("/auth/customer/otp/pre-register", { method: "POST", body: { identifier } });
    const otp = await outboxCode(identifier, "sign_up");
    const regToken = await sdk.auth.register("customer", "otp", { identifier, otp });
    assert.equal(await sdk.client.getToken(), null, "nostore: register stored nothing");

    await rejects(sdk.store.customer.create({ first_name: "Ada" }), 401, "Unauthorized", "Unauthorized");
    const auth = (t) => ({ authorization: `Bearer ${t}` });
    const { customer } = await sdk.store.customer.create({ first_name: "Ada" }, {}, auth(regToken));
    assert.equal(customer.email, identifier);
    const { token } = await sdk.auth.refresh(auth(regToken));
    assert.equal(claims(token).actor_id, customer.id);
    assert.equal((await sdk.store.customer.retrieve({}, auth(token))).customer.id, customer.id);
  });
});

describe("logout and sign-in by code", () => {
  test("logout, generate, verify, retrieve", async () => {
    const sdk = storefront();
    const identifier = newIdentifier();
    const customer = await signUp(sdk, identifier);
    assert.equal((await sdk.store.customer.retrieve()).customer.id, customer.id);

    // JWT mode: logout sends nothing (DELETE /auth/session only in session
    // mode) and forgets the token; otpd cannot revoke it.
    requests = [];
    await sdk.auth.logout();
    assert.deepEqual(sdkCalls(), []);
    assert.equal(await sdk.client.getToken(), "");
    await rejects(sdk.store.customer.retrieve(), 401, "Unauthorized", "Unauthorized");

    const gen = await sdk.client.fetch("/auth/customer/otp/generate", { method: "POST", body: { identifier } });
    assert.deepEqual(gen, { message: "If an account exists with this identifier, an OTP will be sent." });
    const otp = await outboxCode(identifier, "sign_in");

    // sdk.auth.login posts to POST /auth/customer/otp, which takes only the
    // sign-up code right after sign-up: a sign-in code is refused there
    // (docs/medusa.md), and the refusal does not spend it.
    requests = [];
    await rejects(sdk.auth.login("customer", "otp", { identifier, otp }), 401, "Unauthorized", "Invalid OTP");
    assert.deepEqual(sdkCalls(), ["POST /auth/customer/otp"]);
    assert.equal(await sdk.client.getToken(), "");

    // Sign-in by code is the plugin's verify route; the storefront hands the
    // token to the SDK's storage.
    const { token } = await sdk.client.fetch("/auth/customer/otp/verify", {
      method: "POST",
      body: { identifier, otp },
    });
    assert.equal(claims(token).actor_id, customer.id);
    await sdk.client.setToken(token);
    assert.deepEqual((await sdk.store.customer.retrieve()).customer, customer);
  });

  test("generate answers the same for an identifier without an account, and sends nothing", async () => {
    const sdk = storefront();
    const identifier = newIdentifier();
    const gen = await sdk.client.fetch("/auth/customer/otp/generate", { method: "POST", body: { identifier } });
    assert.deepEqual(gen, { message: "If an account exists with this identifier, an OTP will be sent." });
    const res = await realFetch(`${baseUrl}/dev/outbox?to=${encodeURIComponent(identifier)}`);
    assert.deepEqual((await res.json()).messages, []);
  });
});

describe("emailpass", () => {
  test("register, create the customer, refresh, retrieve, logout, login; wrong password and duplicate refused", async () => {
    const sdk = storefront();
    const email = newIdentifier();
    const password = "correct horse battery staple";

    const regToken = await sdk.auth.register("customer", "emailpass", { email, password });
    assert.equal(claims(regToken).actor_id, "");
    const { customer } = await sdk.store.customer.create({ email, first_name: "Grace" });
    assert.match(customer.id, /^cus_/);
    assert.equal(customer.email, email);
    const { token } = await sdk.auth.refresh();
    assert.equal(claims(token).actor_id, customer.id);
    assert.equal((await sdk.store.customer.retrieve()).customer.id, customer.id);

    await sdk.auth.logout();
    await rejects(sdk.store.customer.retrieve(), 401, "Unauthorized", "Unauthorized");
    const loginToken = await sdk.auth.login("customer", "emailpass", { email, password });
    assert.equal(claims(loginToken).actor_id, customer.id);
    assert.equal((await sdk.store.customer.retrieve()).customer.id, customer.id);

    await rejects(sdk.auth.login("customer", "emailpass", { email, password: password + "!" }), 401, "Unauthorized", "Invalid email or password");
    await rejects(sdk.auth.register("customer", "emailpass", { email, password }), 401, "Unauthorized", "Identity with email already exists");
    await rejects(
      sdk.auth.register("customer", "emailpass", { email: newIdentifier(), password: "short" }),
      400,
      "Bad Request",
      "Invalid request: Password must be at least 8 characters long",
    );
  });
});

// outboxMessage reads the newest message sent to identifier.
async function outboxMessage(identifier) {
  const res = await realFetch(`${baseUrl}/dev/outbox?to=${encodeURIComponent(identifier)}&limit=1`);
  assert.equal(res.status, 200);
  return (await res.json()).messages[0];
}

describe("password reset", () => {
  test("resetPassword, the token from the outbox, updateProvider once; the new password works, the old one and older tokens do not", async () => {
    const sdk = storefront();
    const email = newIdentifier();
    const oldPassword = "first password 1";
    const newPassword = "second password 2";
    await sdk.auth.register("customer", "emailpass", { email, password: oldPassword });
    const { customer } = await sdk.store.customer.create({ email });
    const { token: before } = await sdk.auth.refresh();

    requests = [];
    assert.equal(await sdk.auth.resetPassword("customer", "emailpass", { identifier: email }), undefined);
    assert.deepEqual(sdkCalls(), ["POST /auth/customer/emailpass/reset-password"]);
    const m = await outboxMessage(email);
    assert.equal(m.event, "auth.password_reset");
    assert.equal(m.purpose, "reset_password");
    assert.equal(m.code, "");
    const resetClaims = claims(m.token);
    assert.equal(resetClaims.entity_id, email);
    assert.equal(resetClaims.provider, "emailpass");
    assert.equal(resetClaims.actor_type, "customer");
    assert.equal(resetClaims.exp - resetClaims.iat, 900);

    // Unknown identifiers get the same answer, and nothing is sent.
    const nobody = newIdentifier();
    assert.equal(await sdk.auth.resetPassword("customer", "emailpass", { identifier: nobody }), undefined);
    assert.equal(await outboxMessage(nobody), undefined);
    await rejects(sdk.auth.resetPassword("customer", "emailpass", {}), 400, "Bad Request", "Invalid request: Field 'identifier' is required");

    // A weak password is refused without spending the token.
    await rejects(
      sdk.auth.updateProvider("customer", "emailpass", { password: "short" }, m.token),
      400,
      "Bad Request",
      "Invalid request: Password must be at least 8 characters long",
    );
    assert.equal(await sdk.auth.updateProvider("customer", "emailpass", { password: newPassword }, m.token), undefined);
    await rejects(sdk.auth.updateProvider("customer", "emailpass", { password: "third password 3" }, m.token), 401, "Unauthorized", "Invalid token");
    await rejects(sdk.auth.updateProvider("customer", "emailpass", { password: "third password 3" }, "not-a-token"), 401, "Unauthorized", "Invalid token");

    // The token from before the reset is revoked.
    await rejects(sdk.store.customer.retrieve(), 401, "Unauthorized", "Unauthorized");
    await rejects(sdk.auth.refresh({ Authorization: `Bearer ${before}` }), 401, "Unauthorized", "Unauthorized");

    await rejects(sdk.auth.login("customer", "emailpass", { email, password: oldPassword }), 401, "Unauthorized", "Invalid email or password");
    const token = await sdk.auth.login("customer", "emailpass", { email, password: newPassword });
    assert.equal(claims(token).actor_id, customer.id);
    assert.equal((await sdk.store.customer.retrieve()).customer.id, customer.id);
  });
});

describe("phonepass", () => {
  test("register with a phone number, login with it written another way", async () => {
    const sdk = storefront();
    const phone = "+12025550142"; // the server is fresh for this file, and only this test uses a phone
    const password = "phone password 1";
    const reg = await sdk.auth.register("customer", "phonepass", { phone, password });
    assert.equal(claims(reg).actor_id, "");
    const spaced = `${phone.slice(0, 2)} ${phone.slice(2, 5)} ${phone.slice(5, 8)} ${phone.slice(8)}`;
    const token = await sdk.auth.login("customer", "phonepass", { phone: spaced, password });
    assert.equal(claims(token).auth_identity_id, claims(reg).auth_identity_id);
    await rejects(sdk.auth.login("customer", "phonepass", { phone, password: "wrong password" }), 401, "Unauthorized", "Invalid phone or password");
    await rejects(sdk.auth.register("customer", "phonepass", { phone, password }), 401, "Unauthorized", "Identity with phone already exists");
  });
});

describe("session mode", () => {
  test("login starts a cookie session the store routes accept; logout ends it and revokes the identity's tokens", async () => {
    const email = newIdentifier();
    const password = "session password 1";
    const setup = storefront();
    await setup.auth.register("customer", "emailpass", { email, password });
    const { customer } = await setup.store.customer.create({ email });
    const { token: bearerToken } = await setup.auth.refresh(); // another device's token

    cookieJar.clear();
    const sdk = storefront({ auth: { type: "session" } });
    requests = [];
    await sdk.auth.login("customer", "emailpass", { email, password });
    assert.deepEqual(sdkCalls(), ["POST /auth/customer/emailpass", "POST /auth/session"]);
    assert.ok(cookieJar.has("otpd_session"), "no session cookie was set");

    requests = [];
    assert.equal((await sdk.store.customer.retrieve()).customer.id, customer.id);
    const [retrieve] = requests;
    assert.equal(retrieve.headers.get("authorization"), null, "session mode sent a bearer token");
    assert.match(retrieve.headers.get("cookie"), /otpd_session=/);

    requests = [];
    await sdk.auth.logout();
    assert.deepEqual(sdkCalls(), ["DELETE /auth/session"]);
    assert.equal(cookieJar.has("otpd_session"), false, "logout left the session cookie");
    await rejects(sdk.store.customer.retrieve(), 401, "Unauthorized", "Unauthorized");
    await rejects(setup.auth.refresh({ Authorization: `Bearer ${bearerToken}` }), 401, "Unauthorized", "Unauthorized");
    await rejects(sdk.auth.logout(), 401, "Unauthorized", "Unauthorized");

    // Signing in again works at once.
    await sdk.auth.login("customer", "emailpass", { email, password });
    assert.equal((await sdk.store.customer.retrieve()).customer.id, customer.id);
  });
});

describe("errors as the SDK surfaces them", () => {
  test("wrong code on /auth/customer/otp/verify: 400 Invalid OTP; the right code still works", async () => {
    const sdk = storefront();
    const identifier = newIdentifier();
    await signUp(sdk, identifier);
    await sdk.auth.logout();
    await sdk.client.fetch("/auth/customer/otp/generate", { method: "POST", body: { identifier } });
    const otp = await outboxCode(identifier, "sign_in");
    const wrong = otp === "000000" ? "000001" : "000000";

    await rejects(
      sdk.client.fetch("/auth/customer/otp/verify", { method: "POST", body: { identifier, otp: wrong } }),
      400,
      "Bad Request",
      "Invalid OTP",
    );
    const { token } = await sdk.client.fetch("/auth/customer/otp/verify", {
      method: "POST",
      body: { identifier, otp },
    });
    assert.equal(typeof token, "string");
  });

  test("sdk.auth.login with a wrong code: 401 Invalid OTP, nothing stored", async () => {
    const sdk = storefront();
    const identifier = newIdentifier();
    await sdk.client.fetch("/auth/customer/otp/pre-register", { method: "POST", body: { identifier } });
    const otp = await outboxCode(identifier, "sign_up");
    const regToken = await sdk.auth.register("customer", "otp", { identifier, otp });
    await sdk.store.customer.create({ first_name: "Ada" });
    const wrong = otp === "000000" ? "000001" : "000000";

    await rejects(sdk.auth.login("customer", "otp", { identifier, otp: wrong }), 401, "Unauthorized", "Invalid OTP");
    assert.equal(await sdk.client.getToken(), regToken);
    await rejects(sdk.auth.login("customer", "otp", { identifier, otp: "" }), 401, "Unauthorized", "OTP is required for authentication");
    await rejects(
      sdk.auth.login("customer", "emailpass", { email: identifier, password: "supersecret" }),
      401,
      "Unauthorized",
      "Invalid email or password",
    );
  });

  test("sdk.auth.register with a wrong code: 401 Invalid OTP", async () => {
    const sdk = storefront();
    const identifier = newIdentifier();
    await sdk.client.fetch("/auth/customer/otp/pre-register", { method: "POST", body: { identifier } });
    const otp = await outboxCode(identifier, "sign_up");
    const wrong = otp === "000000" ? "000001" : "000000";
    await rejects(sdk.auth.register("customer", "otp", { identifier, otp: wrong }), 401, "Unauthorized", "Invalid OTP");
    assert.equal(await sdk.client.getToken(), "");
  });

  test("sdk.store.customer.retrieve() without a token: 401 Unauthorized", async () => {
    const sdk = storefront();
    requests = [];
    await rejects(sdk.store.customer.retrieve(), 401, "Unauthorized", "Unauthorized");
    assert.equal(requests[0].headers.get("authorization"), null);
  });

  test("sdk.store.customer.create without or with a wrong publishable key: 400", async () => {
    const identifier = newIdentifier();
    const withKey = storefront();
    await withKey.client.fetch("/auth/customer/otp/pre-register", { method: "POST", body: { identifier } });
    const otp = await outboxCode(identifier, "sign_up");
    const regToken = await withKey.auth.register("customer", "otp", { identifier, otp });

    const noKey = storefront({ publishableKey: undefined });
    await noKey.client.setToken(regToken);
    requests = [];
    await rejects(
      noKey.store.customer.create({ first_name: "Ada" }),
      400,
      "Bad Request",
      "Publishable API key required in the request header: x-publishable-api-key. You can manage your keys in settings in the dashboard.",
    );
    assert.equal(requests[0].headers.get("x-publishable-api-key"), null);

    const wrongKey = storefront({ publishableKey: "pk_not_a_key" });
    await wrongKey.client.setToken(regToken);
    await rejects(
      wrongKey.store.customer.create({ first_name: "Ada" }),
      400,
      "Bad Request",
      "A valid publishable key is required to proceed with the request",
    );

    // Neither refusal used the registration token up.
    const { customer } = await withKey.store.customer.create({ first_name: "Ada" });
    assert.equal(customer.email, identifier);
  });

  test("malformed pre-register bodies: 400 naming the field", async () => {
    const sdk = storefront();
    const pre = (body) => sdk.client.fetch("/auth/customer/otp/pre-register", { method: "POST", body });
    await rejects(pre({ identifier: "a@b" }), 400, "Bad Request",
      "Invalid request: Field 'identifier' must be a valid email address");
    await rejects(pre({ identifier: "not-a-phone" }), 400, "Bad Request",
      "Invalid request: Field 'identifier' must be an email address or a phone number in international format (+...)");
    await rejects(pre({ identifier: "   " }), 400, "Bad Request", "Invalid request: Field 'identifier' is required");
    await rejects(pre({ identifier: 42 }), 400, "Bad Request",
      "Invalid request: Expected type: 'string' for field 'identifier', got: 'number'");
    await rejects(pre({ identifier: newIdentifier(), extra: 1 }), 400, "Bad Request",
      "Invalid request: Unrecognized fields: 'extra'");
  });

  test("unknown actor type: 400", async () => {
    const sdk = storefront();
    await rejects(
      sdk.client.fetch("/auth/vendor/otp/generate", { method: "POST", body: { identifier: newIdentifier() } }),
      400,
      "Bad Request",
      "Invalid request: The actor type 'vendor' is not configured.",
    );
  });
});
