// Contact change (the customer-registration plugin's me/contact routes): a
// code to the NEW email or phone, bound to the customer and to that value;
// with the right code the change is applied in one database transaction:
// the customer's field, the entity_id of every provider identity of the
// customer's auth identities that signed in with the old value (emailpass,
// otp, phonepass), and the proof of the new value. Medusa offers no
// transaction across its modules (its workflows compensate, they do not
// roll back), so this is plain SQL on Medusa's shared connection.
import type { MedusaContainer } from "@medusajs/framework/types"
import { ContainerRegistrationKeys, generateEntityId, MedusaError, Modules } from "@medusajs/framework/utils"
import type { ResolvedOptions } from "./options"
import type { Client } from "./otpd"
import { jwtSecretOf, sendBoundCode } from "./bound-code"
import { verifyOtpToken } from "./tokens"

export const CONTACT_CHANGE_EVENT = "contact-change.otp.generated"
// Emitted after a change is applied, for the shop to tell the old address
// (the plugin has no message of its own for it).
export const CONTACT_CHANGED_EVENT = "customer.contact_changed"

export const contactChangeSubject = (customerId: string) => `contact-change:customer:${customerId}`

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
const PHONE_RE = /^\+[1-9]\d{7,14}$/

export type Field = "email" | "phone"

// newValue checks a requested email or phone and returns it normalised
// (email lower-cased; phone without spaces, dots, dashes or parentheses).
export function newValue(field: Field, raw: string): string {
  const v = raw.trim()
  if (field === "email") {
    if (!EMAIL_RE.test(v) || v.length > 254) {
      throw new MedusaError(MedusaError.Types.INVALID_DATA, "Invalid request: email must be an email address.")
    }
    return v.toLowerCase()
  }
  const p = v.replace(/[\s().-]/g, "")
  if (!PHONE_RE.test(p)) {
    throw new MedusaError(MedusaError.Types.INVALID_DATA, "Invalid request: phone must be a phone number in international form, such as +33612345678.")
  }
  return p
}

export type RequestChange = {
  container: MedusaContainer
  opts: ResolvedOptions
  customerId: string
  field: Field
  value: string
  client?: Client
  locale?: string
}

// requestContactChange sends a code to the new value and answers the token
// that binds customer, field and value.
export async function requestContactChange(r: RequestChange): Promise<{ token: string; expires_at: string }> {
  const value = newValue(r.field, r.value)
  return sendBoundCode({
    container: r.container,
    opts: r.opts,
    to: value,
    purpose: "change_contact",
    subject: contactChangeSubject(r.customerId),
    client: r.client,
    locale: r.locale,
    event: { name: CONTACT_CHANGE_EVENT, data: { customer_id: r.customerId, field: r.field } },
    claims: (to, verification_id) => ({ customer_id: r.customerId, purpose: "contact_change", verification_id, to, new_value: to }),
  })
}

export type ApplyChange = {
  container: MedusaContainer
  opts: ResolvedOptions
  customerId: string // the signed-in customer (the token must name it)
  token: string
  code: string
  client?: Client
}

export type AppliedChange = { field: Field; oldValue: string | null; newValue: string }

type Knex = any

// applyContactChange checks the code and applies the change. A wrong code,
// or a token of another customer or purpose, is 400 Invalid OTP; a value
// another account took meanwhile is 422 (duplicate_error), and nothing
// changes.
export async function applyContactChange(a: ApplyChange): Promise<AppliedChange> {
  const t = verifyOtpToken(jwtSecretOf(a.container), a.token, ["contact_change"] as const)
  if (!t || !t.new_value || t.customer_id !== a.customerId) {
    throw new MedusaError(MedusaError.Types.INVALID_DATA, "Invalid OTP")
  }
  const checked = await a.opts.client.check({
    to: t.to,
    purpose: "change_contact",
    subject: contactChangeSubject(a.customerId),
    code: a.code,
    client: a.client,
  })
  if (checked.status !== "approved") throw new MedusaError(MedusaError.Types.INVALID_DATA, "Invalid OTP")

  const field: Field = t.new_value.includes("@") ? "email" : "phone"
  const value = t.new_value
  const knex: Knex = a.container.resolve(ContainerRegistrationKeys.PG_CONNECTION)
  let applied: AppliedChange
  try {
    applied = await knex.transaction(async (trx: Knex) => {
      const [customer] = await trx("customer").where({ id: a.customerId }).whereNull("deleted_at").forUpdate().select("id", "email", "phone", "has_account")
      if (!customer) throw new MedusaError(MedusaError.Types.NOT_FOUND, `Customer with id: ${a.customerId} was not found`)
      const old: string | null = customer[field]
      await trx("customer").where({ id: a.customerId }).update({ [field]: value, updated_at: trx.fn.now() })
      if (old && old !== value) {
        // The customer's sign-in identities follow: every provider identity
        // of an auth identity linked to this customer whose entity id is
        // the old value (email for emailpass and otp, phone for phonepass).
        const identities = trx("auth_identity").whereRaw("app_metadata->>'customer_id' = ?", [a.customerId]).select("id")
        await trx("provider_identity")
          .whereIn("auth_identity_id", identities)
          .whereIn("entity_id", [old, ...(field === "email" ? [old.toLowerCase()] : [])])
          .update({ entity_id: value, updated_at: trx.fn.now() })
      }
      // The code went to the new value: it is proved.
      const proof =
        field === "email"
          ? { email_verified: true, email_verified_at: trx.fn.now(), email_verified_value: value, email_verification_id: t.verification_id }
          : { phone_verified: true, phone_verified_at: trx.fn.now(), phone_verified_value: value, phone_verification_id: t.verification_id }
      const updated = await trx("otpd_customer_verification").where({ customer_id: a.customerId }).whereNull("deleted_at").update({ ...proof, updated_at: trx.fn.now() })
      if (updated === 0) {
        await trx("otpd_customer_verification").insert({ id: generateEntityId(undefined, "cver"), customer_id: a.customerId, ...proof })
      }
      return { field, oldValue: old, newValue: value }
    })
  } catch (err) {
    // The unique indexes of customer (email, has_account) and of
    // provider_identity (entity_id, provider): another account has it.
    if ((err as { code?: string }).code === "23505") {
      throw new MedusaError(MedusaError.Types.DUPLICATE_ERROR, `The ${field} is already used by another account.`)
    }
    throw err
  }
  if (applied.oldValue !== applied.newValue) {
    await a.container.resolve(Modules.EVENT_BUS).emit({
      name: CONTACT_CHANGED_EVENT,
      data: { customer_id: a.customerId, field, old_value: applied.oldValue, new_value: applied.newValue },
    })
  }
  return applied
}
