import type { AuthenticatedMedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { requestContactChange } from "../../../../../lib/contact-change"
import { answerOtpdFailure, outcome, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import { localeOf } from "../../../../../lib/otpd"
import type { RequestContactChangeBody } from "../validators"

// POST /store/customers/me/contact {email} or {phone}: a code to the new
// value; the answer's token binds it to this customer and that value.
export const POST = async (req: AuthenticatedMedusaRequest<RequestContactChangeBody>, res: MedusaResponse) => {
  const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  const b = req.validatedBody
  const out = await outcome(
    requestContactChange({
      container: req.scope,
      opts,
      customerId: req.auth_context.actor_id,
      field: b.email !== undefined ? "email" : "phone",
      value: (b.email ?? b.phone) as string,
      client: shopperOf(req),
      locale: localeOf(req.get("accept-language")),
    })
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  res.status(200).json(out.value)
}
