// One step every registration route shares: ask otpd for a code bound to a
// subject, hand it to the shop's subscribers when the plugin delivers
// through Medusa's events, and sign the token that names it until the code
// expires.
import type { MedusaContainer } from "@medusajs/framework/types"
import { ContainerRegistrationKeys, Modules } from "@medusajs/framework/utils"
import type { ResolvedOptions } from "./options"
import type { Client, Purpose } from "./otpd"
import { type OtpToken, signOtpToken } from "./tokens"

// jwtSecretOf is Medusa's jwtSecret, from which the tokens' key is derived.
export function jwtSecretOf(container: MedusaContainer): string {
  return container.resolve(ContainerRegistrationKeys.CONFIG_MODULE).projectConfig.http.jwtSecret as string
}

export type BoundCode = {
  container: MedusaContainer
  opts: ResolvedOptions
  to: string
  purpose: Purpose
  subject: string
  // false makes a decoy: otpd counts it and sends nothing; no event.
  deliver?: boolean
  client?: Client
  locale?: string
  channel?: "sms" | "whatsapp"
  // With delivery "medusa", the event emitted with the code: its data gets
  // `identifier` (where the code went) and `otp`.
  event: { name: string; data: Record<string, unknown> }
  // The token's claims, given where the code went and otpd's verification.
  claims: (sentTo: string, verificationId: string) => OtpToken
}

export async function sendBoundCode(b: BoundCode): Promise<{ token: string; expires_at: string }> {
  const deliver = b.deliver ?? true
  const v = await b.opts.client.createVerification({
    to: b.to,
    purpose: b.purpose,
    subject: b.subject,
    deliver,
    delivery: b.opts.delivery === "medusa" ? "return" : "otpd",
    client: b.client,
    locale: b.locale,
    channel: b.channel,
  })
  const to = v.to ?? b.to
  if (deliver && b.opts.delivery === "medusa") {
    if (!v.code) throw new Error(`otpd returned no code for delivery "return"`)
    await b.container.resolve(Modules.EVENT_BUS).emit({ name: b.event.name, data: { ...b.event.data, identifier: to, otp: v.code } })
  }
  const expiresAt = v.expires_at ? new Date(v.expires_at) : new Date(Date.now() + 10 * 60_000)
  return { token: signOtpToken(jwtSecretOf(b.container), b.claims(to, v.id), expiresAt), expires_at: expiresAt.toISOString() }
}
