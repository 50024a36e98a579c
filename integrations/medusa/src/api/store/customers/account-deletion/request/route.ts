import type { AuthenticatedMedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { requestDeletion } from "../../../../../lib/deletion"
import { answerOtpdFailure, outcome, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import { localeOf } from "../../../../../lib/otpd"
import type { RequestDeletionBody } from "../validators"

// POST /store/customers/account-deletion/request {reason?} (signed-in
// customer): a pending deletion request and a code to the customer's email
// (phone without one); the answer's token names both for /confirm.
export const POST = async (req: AuthenticatedMedusaRequest<RequestDeletionBody>, res: MedusaResponse) => {
  const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  const out = await outcome(
    requestDeletion({
      container: req.scope,
      opts,
      customerId: req.auth_context.actor_id,
      reason: req.validatedBody.reason,
      client: shopperOf(req),
      locale: localeOf(req.get("accept-language")),
    })
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  res.status(200).json(out.value)
}
