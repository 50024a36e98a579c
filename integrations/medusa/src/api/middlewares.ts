import { authenticate, defineMiddlewares, validateAndTransformBody, validateAndTransformQuery } from "@medusajs/framework/http"
import { otpAllowedForActor, refuseContactChange, requireJson, withShopper } from "../lib/http"
import { LIST_FIELDS, ListDeletionRequestsQuery } from "./admin/account-deletion-requests/validators"
import { phoneCustomers } from "../lib/phone-customers"
import { withVerificationCodes } from "../lib/registration"
import { PhonepassBody, phonepassRequest, resetPasswordIdentifier } from "../lib/phonepass"
import { IdentifierBody, VerifyBody } from "./auth/[actor_type]/otp/validators"
import { CancelRequestBody, CodeBody, RequestDeletionBody } from "./store/customers/account-deletion/validators"
import { ApplyContactChangeBody, PatchMeBody, RequestContactChangeBody } from "./store/customers/me/validators"
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
    { matcher: "/store/customers", method: "POST", middlewares: [withVerificationCodes, phoneCustomers] },
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
    // Contact change: a code to the new value (Medusa's own me* middleware
    // makes these routes need the customer's login).
    {
      matcher: "/store/customers/me/contact",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(RequestContactChangeBody)],
    },
    {
      matcher: "/store/customers/me/contact/verify",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(ApplyContactChangeBody)],
    },
    { matcher: "/store/customers/me", method: "PATCH", middlewares: [requireJson, validateAndTransformBody(PatchMeBody)] },
    // Medusa's own update of the customer must not change the phone either.
    { matcher: "/store/customers/me", method: "POST", middlewares: [refuseContactChange] },
    // The customer-registration plugin's account deletion. Only /request
    // needs the signed-in customer; the others carry a token and a code,
    // and cancelling works for an account one can no longer sign in to.
    {
      matcher: "/store/customers/account-deletion/request",
      method: "POST",
      middlewares: [
        authenticate("customer", ["session", "bearer"]),
        requireJson,
        validateAndTransformBody(RequestDeletionBody),
      ],
    },
    {
      matcher: "/store/customers/account-deletion/confirm",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(CodeBody)],
    },
    {
      matcher: "/store/customers/account-deletion/cancel-request",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(CancelRequestBody)],
    },
    {
      matcher: "/store/customers/account-deletion/cancel-confirm",
      method: "POST",
      middlewares: [requireJson, validateAndTransformBody(CodeBody)],
    },
    // Medusa authenticates /admin/* as a user itself.
    {
      matcher: "/admin/account-deletion-requests",
      method: "GET",
      middlewares: [validateAndTransformQuery(ListDeletionRequestsQuery, { defaults: LIST_FIELDS, isList: true })],
    },
  ],
})
