import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys, MedusaError } from "@medusajs/framework/utils"
import { generateJwtTokenForAuthIdentity } from "@medusajs/medusa/api/auth/utils/generate-jwt-token"
import { checkSignInCode } from "../../../../../lib/codes"
import { answerOtpdFailure, noSoonerThan, outcome, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import type { VerifyBody } from "../validators"

// POST /auth/{actor_type}/otp/verify: one guess at the sign-in code; right,
// Medusa's own token for the actor's auth identity, as its login gives.
// Wrong, spent, expired, exhausted or unknown: 400 Invalid OTP.
export const POST = async (req: MedusaRequest<VerifyBody>, res: MedusaResponse) => {
  const config = req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE)
  const opts = pluginOptions(config)
  const actorType = req.params.actor_type
  const out = await noSoonerThan(opts.minResponseMs, () =>
    outcome(
      checkSignInCode({
        container: req.scope,
        opts,
        actorType,
        identifier: req.validatedBody.identifier,
        otp: req.validatedBody.otp,
        client: shopperOf(req),
      })
    )
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  const actor = out.value
  if (!actor) {
    throw new MedusaError(MedusaError.Types.INVALID_DATA, "Invalid OTP")
  }
  const { http } = config.projectConfig
  const token = await generateJwtTokenForAuthIdentity(
    { authIdentity: actor.authIdentity, actorType, authProvider: actor.authProvider, container: req.scope },
    { secret: http.jwtSecret as string, expiresIn: http.jwtExpiresIn, options: http.jwtOptions }
  )
  res.status(200).json({ token })
}
