import { defineMiddlewares, validateAndTransformBody } from "@medusajs/framework/http"
import { otpAllowedForActor, requireJson, withShopper } from "../lib/http"
import { phoneCustomers } from "../lib/phone-customers"
import { PhonepassBody, phonepassRequest, resetPasswordIdentifier } from "../lib/phonepass"
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
    // Medusa's routes for the provider phonepass (sign-in, sign-up): a 400
    // naming the field for a bad body, the phone in E.164, and the request's
    // container for the provider's check of verified phones.
    {
      matcher: "/auth/:actor_type/phonepass",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(PhonepassBody), phonepassRequest],
    },
    {
      matcher: "/auth/:actor_type/phonepass/register",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(PhonepassBody), phonepassRequest],
    },
    { matcher: "/auth/:actor_type/phonepass/reset-password", method: "POST", middlewares: [resetPasswordIdentifier] },
    // Customers with a phone and no email (registration.identifier "phone"
    // or "both"); after core's authenticate and validation.
    { matcher: "/store/customers", method: "POST", middlewares: [phoneCustomers] },
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
