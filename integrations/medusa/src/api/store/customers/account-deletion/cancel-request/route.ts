import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { requestCancel } from "../../../../../lib/deletion"
import { answerOtpdFailure, noSoonerThan, outcome, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import { localeOf } from "../../../../../lib/otpd"
import type { CancelRequestBody } from "../validators"

// POST /store/customers/account-deletion/cancel-request {email} | {phone}
// (no sign-in: the account may be unusable by then): a cancel code when the
// address has a confirmed deletion, a decoy otherwise; the same answer
// either way, no sooner than minResponseMs.
export const POST = async (req: MedusaRequest<CancelRequestBody>, res: MedusaResponse) => {
  const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  const { email, phone } = req.validatedBody
  const out = await noSoonerThan(opts.minResponseMs, () =>
    outcome(
      requestCancel({
        container: req.scope,
        opts,
        kind: email !== undefined ? "email" : "phone",
        address: (email ?? phone) as string,
        client: shopperOf(req),
        locale: localeOf(req.get("accept-language")),
      })
    )
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  res.status(200).json(out.value)
}
