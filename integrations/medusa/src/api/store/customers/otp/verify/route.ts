import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"
import { generateJwtTokenForAuthIdentity } from "@medusajs/medusa/api/auth/utils/generate-jwt-token"
import { answerOtpdFailure, outcome, shopperOf } from "../../../../../lib/http"
import { pluginOptions } from "../../../../../lib/options"
import { verifyContactCode } from "../../../../../lib/registration"
import type { VerifyContactCodeBody } from "../validators"

// POST /store/customers/otp/verify {token, code}: one guess at the code the
// token names. Right: the address is verified, and a customer with an
// account gets a login token (needs_login false). Wrong, spent, expired or
// exhausted code, or a token that is not one: 400 Invalid OTP.
export const POST = async (req: MedusaRequest<VerifyContactCodeBody>, res: MedusaResponse) => {
  const config = req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE)
  const opts = pluginOptions(config)
  const out = await outcome(
    verifyContactCode({
      container: req.scope,
      opts,
      token: req.validatedBody.token,
      code: req.validatedBody.code,
      client: shopperOf(req),
    })
  )
  if ("err" in out) return answerOtpdFailure(req, res, out.err)
  const { customer, purpose, actor } = out.value
  let token: string | undefined
  if (actor) {
    const { http } = config.projectConfig
    token = await generateJwtTokenForAuthIdentity(
      { authIdentity: actor.authIdentity, actorType: "customer", authProvider: actor.authProvider, container: req.scope },
      { secret: http.jwtSecret as string, expiresIn: http.jwtExpiresIn, options: http.jwtOptions }
    )
  }
  res.status(200).json({
    verified: true,
    [purpose === "email_verification" ? "email_verified" : "phone_verified"]: true,
    customer,
    ...(token ? { token } : {}),
    needs_login: !token,
  })
}
