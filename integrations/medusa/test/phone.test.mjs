// Phone numbers as phonepass keys identities: E.164, separators dropped,
// nothing guessed.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { normalizePhone } = require("../.medusa/server/src/lib/phone.js");

test("spaces, dots, dashes and parentheses are dropped", () => {
  for (const typed of ["+33612345678", "+33 6 12 34 56 78", "+33.6.12.34.56.78", "+33-6-12-34-56-78", "+33 (6) 12 34 56 78", " +33612345678 "]) {
    assert.equal(normalizePhone(typed), "+33612345678", typed);
  }
  assert.equal(normalizePhone("+1 (415) 555-0100"), "+14155550100");
});

test("anything but an international number is refused, not guessed", () => {
  for (const bad of ["0612345678", "0033612345678", "+0612345678", "+3361234", "+1234567890123456", "+33 6 12 AB 56 78", "a@example.com", "", "+", 33612345678, null, undefined, {}, "+33\u00a0612345678x", "+" + "1".repeat(100)]) {
    assert.equal(normalizePhone(bad), null, String(bad));
  }
  assert.equal(normalizePhone("+12345678"), "+12345678", "8 digits is the shortest");
  assert.equal(normalizePhone("+123456789012345"), "+123456789012345", "15 digits the longest");
});
