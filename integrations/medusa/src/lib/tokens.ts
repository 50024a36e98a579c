// The tokens the registration routes hand out between sending a code and
// checking it: a JWT (HS256) that binds the code to one customer, one
// purpose, one otpd verification and, for a contact change, the new value.
// They are signed with a key derived from Medusa's jwtSecret, never with
// jwtSecret itself: Medusa's authenticate() accepts any HS256 token signed
// with jwtSecret, so a key of their own keeps these tokens from ever passing
// as a login, and a login token from passing as one of these.
import { createHmac } from "node:crypto"
import jwt from "jsonwebtoken"

export type ContactPurpose = "email_verification" | "phone_verification"

// What a token's code is for: a contact's verification, a contact change
// (to new_value), a deletion request's confirmation or its cancellation.
export type TokenPurpose = ContactPurpose | "contact_change" | "account_deletion" | "account_deletion_cancel"

const PURPOSES: readonly string[] = ["email_verification", "phone_verification", "contact_change", "account_deletion", "account_deletion_cancel"]

export type OtpToken<P extends TokenPurpose = TokenPurpose> = {
  customer_id: string
  purpose: P
  verification_id: string
  // The address the code went to: only a code sent there proves it.
  to: string
  // A contact change's new email or phone (the address the code went to).
  new_value?: string
  // A deletion request's id.
  request_id?: string
}

const AUDIENCE = "otpd-medusa:otp"
const KEY_INFO = "otpd-medusa/otp-token/v1"

function keyOf(jwtSecret: string): Buffer {
  return createHmac("sha256", jwtSecret).update(KEY_INFO).digest()
}

// signOtpToken signs t until expiresAt.
export function signOtpToken(jwtSecret: string, t: OtpToken, expiresAt: Date): string {
  const exp = Math.floor(expiresAt.getTime() / 1000)
  return jwt.sign({ ...t, exp }, keyOf(jwtSecret), { algorithm: "HS256", audience: AUDIENCE, noTimestamp: false })
}

// verifyOtpToken returns the token's claims when it is of one of the
// purposes wanted, or null for a token that is forged, expired, of another
// kind or purpose, or malformed.
export function verifyOtpToken<P extends TokenPurpose>(jwtSecret: string, token: string, purposes: readonly P[]): OtpToken<P> | null {
  try {
    const c = jwt.verify(token, keyOf(jwtSecret), { algorithms: ["HS256"], audience: AUDIENCE }) as Record<string, unknown>
    const purpose = c.purpose as P
    if (
      typeof c.customer_id !== "string" ||
      typeof c.verification_id !== "string" ||
      typeof c.to !== "string" ||
      !PURPOSES.includes(purpose) ||
      !purposes.includes(purpose) ||
      (c.new_value !== undefined && typeof c.new_value !== "string") ||
      (c.request_id !== undefined && typeof c.request_id !== "string")
    ) {
      return null
    }
    const out: OtpToken<P> = { customer_id: c.customer_id, purpose, verification_id: c.verification_id, to: c.to }
    if (typeof c.new_value === "string") out.new_value = c.new_value
    if (typeof c.request_id === "string") out.request_id = c.request_id
    return out
  } catch {
    return null
  }
}
