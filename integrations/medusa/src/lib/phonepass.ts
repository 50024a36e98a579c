// What the phonepass provider shares with the plugin's routes: its id, the
// bodies of Medusa's routes for it, and the request's container, which a
// provider is not given.
import { AsyncLocalStorage } from "node:async_hooks"
import type { MedusaNextFunction, MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import type { AuthIdentityDTO, MedusaContainer } from "@medusajs/framework/types"
import { MedusaError, Modules } from "@medusajs/framework/utils"
import { z } from "@medusajs/framework/zod"
import { normalizePhone, PHONE_FORMAT } from "./phone"

// The provider's identifier, and the id a shop must give it in medusa-config
// (Medusa shows a provider only the identities recorded under its id).
export const PHONEPASS_PROVIDER = "phonepass"

// scrypt of a megabyte-long password is a cheap way to make the server
// work: passwords are capped.
export const MAX_PASSWORD = 1024

// PhonepassBody is the body of POST /auth/{actor_type}/phonepass and
// /phonepass/register (strict: an unknown member is a 400 naming it).
export const PhonepassBody = z.object({
  phone: z.string(),
  password: z.string().min(1).max(MAX_PASSWORD),
})

export function badPhone(field = "phone"): MedusaError {
  return new MedusaError(MedusaError.Types.INVALID_DATA, `Invalid request: Field '${field}' must be ${PHONE_FORMAT}`)
}

// The provider is called by Medusa's routes with the body only; its check of
// the customer's verified phone needs the request's container (Query and
// the plugin's module are not in the auth module's container).
const scopes = new AsyncLocalStorage<MedusaContainer>()

export function requestScope(): MedusaContainer | undefined {
  return scopes.getStore()
}

// phonepassRequest runs after PhonepassBody: the phone becomes E.164 (a bad
// one is a 400 naming it, not the provider's 401), and the provider gets the
// request's container.
export function phonepassRequest(req: MedusaRequest, _res: MedusaResponse, next: MedusaNextFunction) {
  const body = req.body as { phone: string }
  const phone = normalizePhone(body.phone)
  if (!phone) throw badPhone()
  body.phone = phone
  scopes.run(req.scope, next)
}

// resetPasswordIdentifier lets POST /auth/{actor_type}/phonepass/reset-password
// take the phone as typed: the reset token names the identity by its E.164
// entity_id. Anything else is left to Medusa, which answers 201 for unknown
// identifiers too.
// (Medusa sorts this matcher before core's /auth/:actor_type/:auth_provider/
// reset-password, whose validation then reads the body: the body is changed,
// and the validated body too should the order ever be the other way.)
export function resetPasswordIdentifier(req: MedusaRequest, _res: MedusaResponse, next: MedusaNextFunction) {
  for (const body of [req.body, req.validatedBody] as Array<{ identifier?: unknown } | undefined>) {
    const phone = body && typeof body === "object" ? normalizePhone(body.identifier) : null
    if (phone) body!.identifier = phone
  }
  next()
}

// phonepassIdentityOf is the phonepass entity id (the E.164 phone) of an
// auth identity, or null when it does not sign in with phonepass.
export function phonepassIdentityOf(identity: AuthIdentityDTO): string | null {
  const p = (identity.provider_identities ?? []).find((i) => i.provider === PHONEPASS_PROVIDER)
  return p?.entity_id ?? null
}

// phonepassIdentityFor finds the phonepass identity of phone linked to the
// customer, for the login token contact verification gives.
export async function phonepassIdentityFor(
  container: MedusaContainer,
  customerId: string,
  phone: string
): Promise<AuthIdentityDTO | null> {
  const e164 = normalizePhone(phone)
  if (!e164) return null
  const auth = container.resolve(Modules.AUTH)
  const found = await auth.listAuthIdentities(
    { provider_identities: { entity_id: e164, provider: PHONEPASS_PROVIDER } },
    { relations: ["provider_identities"] }
  )
  return found.find((i) => i.app_metadata?.customer_id === customerId) ?? null
}
