import { defineMiddlewares, validateAndTransformBody } from "@medusajs/framework/http"
import { otpAllowedForActor, requireJson, withShopper } from "../lib/http"
import { IdentifierBody, VerifyBody } from "./auth/[actor_type]/otp/validators"
import { SendContactCodeBody, VerifyContactCodeBody } from "./store/customers/otp/validators"

export default defineMiddlewares({
  routes: [
    {
      matcher: "/auth/:actor_type/otp/generate",
      method: "POST",
      middlewares: [requireJson, otpAllowedForActor, validateAndTransformBody(IdentifierBody)],
    },
    {
      matcher: "/auth/:actor_type/otp/pre-register",
      method: "POST",
      middlewares: [requireJson, otpAllowedForActor, validateAndTransformBody(IdentifierBody)],
    },
    {
      matcher: "/auth/:actor_type/otp/verify",
      method: "POST",
      middlewares: [requireJson, otpAllowedForActor, validateAndTransformBody(VerifyBody)],
    },
    // Medusa's own sign-in and sign-up routes for the provider: keep the
    // shopper's address for the provider's calls to otpd.
    { matcher: "/auth/:actor_type/otp", method: "POST", middlewares: [requireJson, withShopper] },
    { matcher: "/auth/:actor_type/otp/register", method: "POST", middlewares: [requireJson, withShopper] },
    // The customer-registration plugin's contact verification.
    {
      matcher: "/store/customers/otp/send",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(SendContactCodeBody)],
    },
    {
      matcher: "/store/customers/otp/verify",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(VerifyContactCodeBody)],
    },
  ],
})
