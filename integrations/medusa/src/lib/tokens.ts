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

export type OtpToken = {
  customer_id: string
  purpose: ContactPurpose
  verification_id: string
  // The address the code went to: only a code sent there proves it.
  to: string
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

// verifyOtpToken returns the token's claims, or null for a token that is
// forged, expired, of another kind, or malformed.
export function verifyOtpToken(jwtSecret: string, token: string): OtpToken | null {
  try {
    const c = jwt.verify(token, keyOf(jwtSecret), { algorithms: ["HS256"], audience: AUDIENCE }) as Record<string, unknown>
    const purpose = c.purpose
    if (
      typeof c.customer_id !== "string" ||
      typeof c.verification_id !== "string" ||
      typeof c.to !== "string" ||
      (purpose !== "email_verification" && purpose !== "phone_verification")
    ) {
      return null
    }
    return { customer_id: c.customer_id, purpose, verification_id: c.verification_id, to: c.to }
  } catch {
    return null
  }
}
