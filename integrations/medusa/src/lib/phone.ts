// Phone numbers as the plugin stores them: E.164 ("+33612345678"). The
// phonepass provider keys identities by it and the plugin's phone-only
// customers carry it, so "+33 6 12 34 56 78" and "+33.6.12.34.56.78" are one
// account.

// What people type between digits; anything else (letters, a leading 00 or
// a national 0) is not guessed at: the shop's storefront knows the country,
// the backend does not.
const SEPARATORS = /[\s.\-()]/g
const E164 = /^\+[1-9]\d{7,14}$/

// normalizePhone answers the E.164 form of raw, or null when it is not a
// phone number in international format.
export function normalizePhone(raw: unknown): string | null {
  if (typeof raw !== "string" || raw.length > 64) return null
  const p = raw.replace(SEPARATORS, "")
  return E164.test(p) ? p : null
}

// PHONE_FORMAT is the rule named in every answer that refuses a phone.
export const PHONE_FORMAT = "a phone number in international format, e.g. +33612345678"
