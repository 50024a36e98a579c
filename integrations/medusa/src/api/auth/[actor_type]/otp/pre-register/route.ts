import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { sendSignUpCode } from "../../../../../lib/codes"
import { PRE_REGISTER_MESSAGE, answerOtpdFailure, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import type { IdentifierBody } from "../validators"

// POST /auth/{actor_type}/otp/pre-register: a sign-up code for an identifier
// no actor has yet, for POST /auth/{actor_type}/otp/register. An identifier
// that already has an actor gets the same answer and a decoy.
export const POST = async (req: MedusaRequest<IdentifierBody>, res: MedusaResponse) => {
  const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  try {
    await sendSignUpCode({
      container: req.scope,
      opts,
      actorType: req.params.actor_type,
      identifier: req.validatedBody.identifier,
      client: shopperOf(req),
    })
  } catch (err) {
    return answerOtpdFailure(req, res, err)
  }
  res.status(200).json({ message: PRE_REGISTER_MESSAGE })
}
