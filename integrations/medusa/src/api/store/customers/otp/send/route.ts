import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { answerOtpdFailure, outcome, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import { localeOf } from "../../../../../lib/otpd"
import { sendContactCode } from "../../../../../lib/registration"
import type { SendContactCodeBody } from "../validators"

// POST /store/customers/otp/send {customer_id, type}: a code to the
// customer's stored email (email_verification) or phone
// (phone_verification); the answer's token names it for otp/verify.
export const POST = async (req: MedusaRequest<SendContactCodeBody>, res: MedusaResponse) => {
  const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  const out = await outcome(
    sendContactCode({
      container: req.scope,
      opts,
      customerId: req.validatedBody.customer_id,
      purpose: req.validatedBody.type,
      client: shopperOf(req),
      locale: localeOf(req.get("accept-language")),
    })
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  res.status(200).json(out.value)
}
