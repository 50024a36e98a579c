import type { AuthenticatedMedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys, Modules } from "@medusajs/framework/utils"
import { generateJwtTokenForAuthIdentity } from "@medusajs/medusa/api/auth/utils/generate-jwt-token"
import { applyContactChange } from "../../../../../../lib/contact-change"
import { answerOtpdFailure, outcome, shopperOf } from "../../../../../../lib/http"
import { pluginOptions } from "../../../../../../lib/options"
import type { ApplyContactChangeBody } from "../../validators"

// POST /store/customers/me/contact/verify {token, code}: the change the
// token names, applied when the code is right and the token is this
// customer's; the answer carries the customer and a fresh token.
export const POST = async (req: AuthenticatedMedusaRequest<ApplyContactChangeBody>, res: MedusaResponse) => {
  const config = req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE)
  const opts = pluginOptions(config)
  const customerId = req.auth_context.actor_id
  const out = await outcome(
    applyContactChange({
      container: req.scope,
      opts,
      customerId,
      token: req.validatedBody.token,
      code: req.validatedBody.code,
      client: shopperOf(req),
    })
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  const customer = await req.scope.resolve(Modules.CUSTOMER).retrieveCustomer(customerId)
  const auth = req.scope.resolve(Modules.AUTH)
  const authIdentity = await auth.retrieveAuthIdentity(req.auth_context.auth_identity_id, { relations: ["provider_identities"] })
  const providers = (authIdentity.provider_identities ?? []).map((p) => p.provider)
  const authProvider = providers.find((p) => (authIdentity.provider_identities ?? []).some((pi) => pi.provider === p && pi.entity_id === out.value.newValue)) ?? providers[0] ?? "emailpass"
  const { http } = config.projectConfig
  const token = await generateJwtTokenForAuthIdentity(
    { authIdentity, actorType: "customer", authProvider, container: req.scope },
    { secret: http.jwtSecret as string, expiresIn: http.jwtExpiresIn, options: http.jwtOptions }
  )
  res.status(200).json({ customer, token })
}
