import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { confirmDeletion, serializeRequest } from "../../../../../lib/deletion"
import { answerOtpdFailure, outcome, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import type { CodeBody } from "../validators"

// POST /store/customers/account-deletion/confirm {token, code}: the right
// code confirms the request, due accountDeletion.scheduledDays from now.
// Wrong, spent or expired code, or a token that is not one: 400 Invalid OTP.
export const POST = async (req: MedusaRequest<CodeBody>, res: MedusaResponse) => {
  const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  const out = await outcome(
    confirmDeletion({ container: req.scope, opts, token: req.validatedBody.token, code: req.validatedBody.code, client: shopperOf(req) })
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  res.status(200).json({ account_deletion_request: serializeRequest(out.value) })
}
