// Contact verification for customers (the customer-registration plugin's
// otp/send and otp/verify): a code to the customer's stored email or phone,
// made, limited, delivered and checked by otpd under the purpose
// verify_contact and bound to the customer; a right code marks that address
// verified in the plugin's module.
import type { MedusaNextFunction, MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import type { MedusaContainer } from "@medusajs/framework/types"
import { ContainerRegistrationKeys, MedusaError } from "@medusajs/framework/utils"
import { OTPD_REGISTRATION } from "../modules/otpd_registration"
import type OtpdRegistrationService from "../modules/otpd_registration/service"
import { actorAccessors, findActor, type Actor } from "./codes"
import { PHONEPASS_PROVIDER, phonepassIdentityFor } from "./phonepass"
import { shopperOf } from "./http"
import { PLUGIN_NAME, pluginOptions, type ResolvedOptions } from "./options"
import { type Client, localeOf } from "./otpd"
import { jwtSecretOf, sendBoundCode } from "./bound-code"
import { type ContactPurpose, verifyOtpToken } from "./tokens"

// CONTACT_EVENT is emitted with delivery "medusa": a shop's subscriber sends
// the code, as for auth-otp's events.
export const CONTACT_EVENT = "contact-verification.otp.generated"

// The otpd subject of a customer's contact codes: no sign-in or sign-up code
// has it, so a code of one kind never passes for another.
export const contactSubject = (customerId: string) => `contact:customer:${customerId}`

type Customer = { id: string; email: string | null; phone: string | null; first_name?: string | null; last_name?: string | null }

const fieldOf = (p: ContactPurpose) => (p === "email_verification" ? "email" : "phone")

// sameAddress compares a stored address with the one a code went to (otpd's
// normalised form): emails without case, phones by their digits.
function sameAddress(p: ContactPurpose, stored: string | null, to: string): boolean {
  if (!stored) return false
  if (p === "email_verification") return stored.trim().toLowerCase() === to.toLowerCase()
  const digits = (s: string) => s.replace(/[^\d+]/g, "")
  return digits(stored) === digits(to)
}

export async function customerOf(container: MedusaContainer, id: string): Promise<Customer | null> {
  const query = container.resolve(ContainerRegistrationKeys.QUERY)
  const { data } = await query.graph({
    entity: "customer",
    fields: ["id", "email", "phone", "first_name", "last_name"],
    filters: { id },
  })
  return (data[0] as Customer | undefined) ?? null
}


export type SendContactCode = {
  container: MedusaContainer
  opts: ResolvedOptions
  customerId: string
  purpose: ContactPurpose
  client?: Client
  locale?: string
}

// sendContactCode sends a code to the customer's stored address of purpose
// and answers the token that binds it. 404 for an unknown customer, 400 for
// one without that address.
export async function sendContactCode(s: SendContactCode): Promise<{ token: string; expires_at: string }> {
  const customer = await customerOf(s.container, s.customerId)
  if (!customer) {
    throw new MedusaError(MedusaError.Types.NOT_FOUND, `Customer with id: ${s.customerId} was not found`)
  }
  const address = customer[fieldOf(s.purpose)]
  if (!address) {
    throw new MedusaError(MedusaError.Types.INVALID_DATA, `The customer has no ${fieldOf(s.purpose)} to verify.`)
  }
  return sendBoundCode({
    container: s.container,
    opts: s.opts,
    to: address,
    purpose: "verify_contact",
    subject: contactSubject(customer.id),
    client: s.client,
    locale: s.locale,
    channel: s.purpose === "phone_verification" ? s.opts.registration.phoneVerification.channel : undefined,
    event: { name: CONTACT_EVENT, data: { customer_id: customer.id, type: s.purpose } },
    claims: (to, verification_id) => ({ customer_id: customer.id, purpose: s.purpose, verification_id, to }),
  })
}

export type VerifyContactCode = {
  container: MedusaContainer
  opts: ResolvedOptions
  token: string
  code: string
  client?: Client
}

export type VerifiedContact = {
  customer: Customer & { email_verified: boolean; phone_verified: boolean }
  purpose: ContactPurpose
  // The customer's auth identity, when the customer has an account that
  // signs in with the verified address: the route makes a login token.
  actor: Actor | null
}

export const INVALID_CODE = "Invalid OTP"

// verifyContactCode counts one guess at the code the token names. Right, the
// address is marked verified (if it is still the customer's); anything else
// is 400 Invalid OTP, as auth-otp answers wrong codes.
export async function verifyContactCode(v: VerifyContactCode): Promise<VerifiedContact> {
  const t = verifyOtpToken(jwtSecretOf(v.container), v.token, ["email_verification", "phone_verification"] as const)
  if (!t) throw new MedusaError(MedusaError.Types.INVALID_DATA, INVALID_CODE)
  const checked = await v.opts.client.check({
    to: t.to,
    purpose: "verify_contact",
    subject: contactSubject(t.customer_id),
    code: v.code,
    client: v.client,
  })
  if (checked.status !== "approved") throw new MedusaError(MedusaError.Types.INVALID_DATA, INVALID_CODE)

  const customer = await customerOf(v.container, t.customer_id)
  if (!customer) throw new MedusaError(MedusaError.Types.NOT_FOUND, `Customer with id: ${t.customer_id} was not found`)
  const field = fieldOf(t.purpose)
  if (!sameAddress(t.purpose, customer[field], t.to)) {
    // The address changed after the code was sent: the code proves the old one.
    throw new MedusaError(MedusaError.Types.NOT_ALLOWED, `The customer's ${field} changed after the code was sent.`)
  }
  await markVerified(v.container, customer.id, t.purpose, t.to, t.verification_id)
  const flags = await verificationOf(v.container, customer)

  let actor: Actor | null = null
  const accessors = v.opts.accessorsPerActor.customer
  if (accessors) {
    try {
      actor = await findActor(v.container, "customer", customer[field] as string, actorAccessors(v.opts, "customer"))
      // A customer who signs in with phone and password (phonepass) has no
      // identity under the accessors' entity id (its email, often none):
      // its phonepass identity for the verified phone signs it in.
      if (!actor && t.purpose === "phone_verification") {
        const identity = await phonepassIdentityFor(v.container, customer.id, customer[field] as string)
        if (identity) actor = { id: customer.id, address: t.to, authIdentity: identity, authProvider: PHONEPASS_PROVIDER }
      }
    } catch {
      actor = null
    }
  }
  return {
    customer: { ...customer, ...flags },
    purpose: t.purpose,
    actor: actor && actor.id === customer.id ? actor : null,
  }
}

// markVerified records the proof on the customer's row, made on first use.
// Two proofs for one customer at once (email and phone) may both find no
// row: the unique index lets one create it, and the other updates it.
async function markVerified(container: MedusaContainer, customerId: string, p: ContactPurpose, to: string, verificationId: string): Promise<void> {
  const svc = container.resolve<OtpdRegistrationService>(OTPD_REGISTRATION)
  const now = new Date()
  const change =
    p === "email_verification"
      ? { email_verified: true, email_verified_at: now, email_verified_value: to, email_verification_id: verificationId }
      : { phone_verified: true, phone_verified_at: now, phone_verified_value: to, phone_verification_id: verificationId }
  for (let i = 0; i < 2; i++) {
    const [existing] = await svc.listOtpdCustomerVerifications({ customer_id: customerId })
    if (existing) {
      await svc.updateOtpdCustomerVerifications({ id: existing.id, ...change })
      return
    }
    try {
      await svc.createOtpdCustomerVerifications({ customer_id: customerId, ...change })
      return
    } catch (err) {
      if (i === 1) throw err
    }
  }
}

// verificationOf is a customer's verified contacts (none verified when the
// plugin has no row for it), as far as they are still the customer's.
export async function verificationOf(container: MedusaContainer, customer: Customer) {
  const svc = container.resolve<OtpdRegistrationService>(OTPD_REGISTRATION)
  const [row] = await svc.listOtpdCustomerVerifications({ customer_id: customer.id })
  return {
    email_verified: !!row?.email_verified && sameAddress("email_verification", customer.email, row.email_verified_value ?? ""),
    phone_verified: !!row?.phone_verified && sameAddress("phone_verification", customer.phone, row.phone_verified_value ?? ""),
  }
}

// withVerificationCodes is a middleware of POST /store/customers: when the
// options ask for codes on registration, the new customer's email and phone
// codes are sent as its answer goes out, and the answer carries their
// tokens: {customer, verification: {email_verification: {token,
// expires_at}, phone_verification: {…}}}. A code that cannot be sent (otpd
// refused or down) leaves the customer created: the storefront asks again
// with otp/send.
export function withVerificationCodes(req: MedusaRequest, res: MedusaResponse, next: MedusaNextFunction) {
  {
    const o = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
    const auto: ContactPurpose[] = []
    if (o.registration.emailVerification.autoSendOnRegistration) auto.push("email_verification")
    if (o.registration.phoneVerification.autoSendOnRegistration) auto.push("phone_verification")
    if (auto.length === 0) return next()
    const json = res.json.bind(res)
    res.json = ((body: { customer?: Customer } & Record<string, unknown>) => {
      const customer = body?.customer
      if (res.statusCode !== 200 || !customer?.id) return json(body)
      void (async () => {
        const verification: Record<string, unknown> = {}
        for (const purpose of auto) {
          if (!customer[fieldOf(purpose)]) continue
          try {
            verification[purpose] = await sendContactCode({
              container: req.scope,
              opts: o,
              customerId: customer.id,
              purpose,
              client: shopperOf(req),
              locale: localeOf(req.get("accept-language")),
            })
          } catch (err) {
            req.scope
              .resolve(ContainerRegistrationKeys.LOGGER)
              .warn(`${PLUGIN_NAME}: ${purpose} code not sent on registration of ${customer.id}: ${(err as Error).message}`)
          }
        }
        json({ ...body, verification })
      })()
      return res
    }) as typeof res.json
    next()
  }
}
