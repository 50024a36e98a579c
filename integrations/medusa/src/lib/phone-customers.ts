// POST /store/customers under the plugin's registration.identifier: core
// requires an email; with "phone" or "both" a customer may have a phone
// instead, and the plugin creates it. Runs after core's authenticate and
// body validation, before core's handler.
import type { AuthenticatedMedusaRequest, MedusaNextFunction, MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys, MedusaError, Modules } from "@medusajs/framework/utils"
import { refetchCustomer } from "@medusajs/medusa/api/store/customers/helpers"
import { createPhoneCustomerAccountWorkflow } from "../workflows/create-phone-customer-account"
import { pluginOptions } from "./options"
import { normalizePhone } from "./phone"
import { badPhone, phonepassIdentityOf } from "./phonepass"

type CreateCustomerBody = {
  email?: string | null
  phone?: string | null
  first_name?: string | null
  last_name?: string | null
  company_name?: string | null
  metadata?: Record<string, unknown> | null
}

const invalid = (message: string) => new MedusaError(MedusaError.Types.INVALID_DATA, `Invalid request: ${message}`)

export async function phoneCustomers(request: MedusaRequest, res: MedusaResponse, next: MedusaNextFunction) {
  const req = request as AuthenticatedMedusaRequest // core's authenticate ran
  // A token of a customer already: core's 400.
  if (!req.auth_context?.auth_identity_id || req.auth_context.actor_id) return next()
  const mode = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE)).registration.identifier
  const body = req.validatedBody as CreateCustomerBody
  const hasEmail = typeof body.email === "string" && body.email !== ""
  const hasPhone = typeof body.phone === "string" && body.phone.trim() !== ""
  if (mode === "phone" && !hasPhone) throw invalid("Field 'phone' is required")
  // "email": a customer needs one; core says so.
  if (mode === "email" && !hasEmail) return next()
  if (!hasEmail && !hasPhone) throw invalid("Field 'email' or 'phone' is required")
  if (hasPhone && mode !== "email") {
    // Stored in E.164, as phonepass identities and otpd's codes have it.
    const phone = normalizePhone(body.phone)
    if (!phone) throw badPhone()
    body.phone = phone
  }

  // A phonepass account's customer carries the phone it signs in with:
  // otherwise it could never verify it (registration.requireVerification),
  // or would verify another number than the one it signs in with.
  const auth = req.scope.resolve(Modules.AUTH)
  const identity = await auth
    .retrieveAuthIdentity(req.auth_context.auth_identity_id, { relations: ["provider_identities"] })
    .catch(() => null)
  const signsInWith = identity ? phonepassIdentityOf(identity) : null
  if (signsInWith) {
    if (!hasPhone) throw invalid("Field 'phone' is required: the account signs in with its phone number")
    if (normalizePhone(body.phone) !== signsInWith) {
      throw invalid("Field 'phone' must be the phone number the account signs in with")
    }
    body.phone = signsInWith
  }

  if (hasEmail) return next()

  const { email: _none, ...customerData } = body
  let created: { id: string }
  try {
    const { result } = await createPhoneCustomerAccountWorkflow(req.scope).run({
      input: {
        authIdentityId: req.auth_context.auth_identity_id,
        customerData: { ...customerData, phone: body.phone as string },
      },
    })
    created = result
  } catch (err) {
    // Two requests with one registration token: the second loses at the
    // identity's app_metadata, with core's plain Error.
    if (!(err instanceof MedusaError) && /already exists in app metadata/.test(String((err as Error)?.message))) {
      throw new MedusaError(MedusaError.Types.INVALID_DATA, "Request already authenticated as a customer.")
    }
    throw err
  }
  const customer = await refetchCustomer(created.id, req.scope, req.queryConfig.fields)
  res.status(200).json({ customer })
}
