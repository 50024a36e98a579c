// The plugin's options: defaults as auth-otp's, and a mistake named at load.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { resolveOptions, pluginOptions, DEFAULT_ACCESSORS } = require("../.medusa/server/src/lib/options.js");

const good = { url: "http://127.0.0.1:8080", apiKey: "otpd_sk_abc" };

test("defaults: delivery by Medusa's events, auth-otp's accessors, a 5 s timeout", () => {
  const o = resolveOptions(good);
  assert.equal(o.delivery, "medusa");
  assert.equal(o.timeoutMs, 5000);
  assert.equal(o.minResponseMs, 50);
  assert.equal(resolveOptions({ ...good, minResponseMs: 0 }).minResponseMs, 0);
  assert.deepEqual(o.accessorsPerActor, DEFAULT_ACCESSORS);
  assert.deepEqual(o.accessorsPerActor.customer, { accessor: "email", entityIdAccessor: "email" });
  const phone = resolveOptions({ ...good, accessorsPerActor: { customer: { accessor: ["email", "phone"], entityIdAccessor: "email" } } });
  assert.deepEqual(phone.accessorsPerActor.customer.accessor, ["email", "phone"]);
  assert.deepEqual(phone.accessorsPerActor.user, DEFAULT_ACCESSORS.user, "merged per actor, as auth-otp");
  const noAdmins = resolveOptions({ ...good, accessorsPerActor: { user: null } });
  assert.deepEqual(Object.keys(noAdmins.accessorsPerActor), ["customer"], "null turns an actor type off");
});

test("each mistake is an error naming the option, and never echoes the key", () => {
  const cases = [
    [{}, /option `url`/],
    [{ ...good, url: "not a url" }, /option `url` is not a URL/],
    [{ ...good, url: "ftp://x" }, /http or https/],
    [{ ...good, apiKey: undefined }, /option `apiKey` is required/],
    [{ ...good, apiKey: "sk_live_secret" }, /option `apiKey`/],
    [{ ...good, delivery: "sms" }, /option `delivery`/],
    [{ ...good, timeoutMs: 0 }, /option `timeoutMs`/],
    [{ ...good, minResponseMs: -1 }, /option `minResponseMs`/],
    [{ ...good, minResponseMs: 2.5 }, /option `minResponseMs`/],
    [{ ...good, accessorsPerActor: { seller: { accessor: "e mail", entityIdAccessor: "email" } } }, /accessorsPerActor\.seller\.accessor/],
    [{ ...good, accessorsPerActor: { seller: { accessor: "email" } } }, /accessorsPerActor\.seller\.entityIdAccessor/],
  ];
  for (const [opts, re] of cases) {
    assert.throws(() => resolveOptions(opts), (err) => {
      assert.match(err.message, /^@otpd\/medusa: /);
      assert.match(err.message, re);
      assert.ok(!err.message.includes("sk_live_secret"));
      return true;
    });
  }
});

test("pluginOptions reads the plugin's entry in medusa-config, and says how to add it", () => {
  const config = { plugins: ["other-plugin", { resolve: "@otpd/medusa", options: good }] };
  assert.equal(pluginOptions(config).url, good.url);
  assert.equal(pluginOptions(config), pluginOptions(config), "resolved once");
  assert.throws(() => pluginOptions({ plugins: [] }), /add \{ resolve: "@otpd\/medusa"/);
});
