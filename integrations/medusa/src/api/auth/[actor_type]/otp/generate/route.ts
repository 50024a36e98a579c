import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { sendSignInCode } from "../../../../../lib/codes"
import { GENERATE_MESSAGE, answerOtpdFailure, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import type { IdentifierBody } from "../validators"

// POST /auth/{actor_type}/otp/generate: a sign-in code for the actor with
// this identifier, sent by otpd or by the shop's subscriber of otp.generated.
// An unknown identifier gets the same answer, and a decoy in otpd: no code,
// no event, the same limits.
export const POST = async (req: MedusaRequest<IdentifierBody>, res: MedusaResponse) => {
  const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  try {
    await sendSignInCode({
      container: req.scope,
      opts,
      actorType: req.params.actor_type,
      identifier: req.validatedBody.identifier,
      client: shopperOf(req),
    })
  } catch (err) {
    return answerOtpdFailure(req, res, err)
  }
  res.status(200).json({ message: GENERATE_MESSAGE })
}
