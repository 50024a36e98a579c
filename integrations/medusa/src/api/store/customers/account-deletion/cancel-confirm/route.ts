import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { confirmCancel, serializeRequest } from "../../../../../lib/deletion"
import { answerOtpdFailure, noSoonerThan, outcome, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import type { CodeBody } from "../validators"

// POST /store/customers/account-deletion/cancel-confirm {token, code}: the
// right cancel code cancels the confirmed deletion. A decoy's token, a wrong
// code or a token that is not one: 400 Invalid OTP; a deletion completed
// meanwhile: 400 not_allowed.
export const POST = async (req: MedusaRequest<CodeBody>, res: MedusaResponse) => {
  const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  const out = await noSoonerThan(opts.minResponseMs, () =>
    outcome(
      confirmCancel({ container: req.scope, opts, token: req.validatedBody.token, code: req.validatedBody.code, client: shopperOf(req) })
    )
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  res.status(200).json({ account_deletion_request: serializeRequest(out.value) })
}
