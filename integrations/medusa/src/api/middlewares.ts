import {
  allowFields,
  authenticate,
  defineMiddlewares,
  type MiddlewareFunction,
  type MiddlewareRoute,
  validateAndTransformBody,
  validateAndTransformQuery,
} from "@medusajs/framework/http"
import { retrieveTransformQueryConfig } from "@medusajs/medusa/api/store/customers/query-config"
import { StoreGetCustomerParams } from "@medusajs/medusa/api/store/customers/validators"
import { otpAllowedForActor, refuseContactChange, requireJson, withShopper } from "../lib/http"
import { LIST_FIELDS, ListDeletionRequestsQuery } from "./admin/account-deletion-requests/validators"
import { phoneCustomers } from "../lib/phone-customers"
import { withVerificationCodes } from "../lib/registration"
import { PhonepassBody, phonepassRequest, resetPasswordIdentifier } from "../lib/phonepass"
import { IdentifierBody, VerifyBody } from "./auth/[actor_type]/otp/validators"
import { CancelRequestBody, CodeBody, RequestDeletionBody } from "./store/customers/account-deletion/validators"
import { ApplyContactChangeBody, PatchMeBody, RequestContactChangeBody } from "./store/customers/me/validators"
import { SendContactCodeBody, VerifyContactCodeBody } from "./store/customers/otp/validators"

// jsonBody is the middlewares of a route that takes a strict JSON body:
// auth first (when the route needs its own), then the refusal of non-JSON
// bodies, checks that need no body, the body's validation, and what needs
// the valid body.
function jsonBody(
  matcher: string,
  schema: Parameters<typeof validateAndTransformBody>[0],
  o: { method?: "POST" | "PATCH"; auth?: MiddlewareFunction; before?: MiddlewareFunction[]; after?: MiddlewareFunction[] } = {}
): MiddlewareRoute {
  return {
    matcher,
    method: o.method ?? "POST",
    middlewares: [
      ...(o.auth ? [o.auth] : []),
      requireJson,
      ...(o.before ?? []),
      validateAndTransformBody(schema),
      ...(o.after ?? []),
    ] as MiddlewareFunction[],
  }
}

export default defineMiddlewares({
  routes: [
    jsonBody("/auth/:actor_type/otp/generate", IdentifierBody, { before: [otpAllowedForActor] }),
    jsonBody("/auth/:actor_type/otp/pre-register", IdentifierBody, { before: [otpAllowedForActor] }),
    jsonBody("/auth/:actor_type/otp/verify", VerifyBody, { before: [otpAllowedForActor] }),
    // Medusa's own sign-in and sign-up routes for the provider: keep the
    // shopper's address for the provider's calls to otpd.
    { matcher: "/auth/:actor_type/otp", method: "POST", middlewares: [requireJson, withShopper] },
    { matcher: "/auth/:actor_type/otp/register", method: "POST", middlewares: [requireJson, withShopper] },
    // Medusa's routes for the provider phonepass (sign-in, sign-up): a 400
    // naming the field for a bad body, the phone in E.164, and the request's
    // container for the provider's check of verified phones.
    jsonBody("/auth/:actor_type/phonepass", PhonepassBody, { after: [phonepassRequest] }),
    jsonBody("/auth/:actor_type/phonepass/register", PhonepassBody, { after: [phonepassRequest] }),
    { matcher: "/auth/:actor_type/phonepass/reset-password", method: "POST", middlewares: [resetPasswordIdentifier] },
    // Customers with a phone and no email (registration.identifier "phone"
    // or "both"); after core's authenticate and validation.
    { matcher: "/store/customers", method: "POST", middlewares: [withVerificationCodes, phoneCustomers] },
    // The customer's verified contacts through the module link
    // (src/links/customer-verification.ts). Medusa runs its own query
    // validation for this route before a plugin's middlewares and silently
    // drops fields it does not allow: the field is allowed, then the query
    // validated again with Medusa's own schema and configuration.
    {
      matcher: "/store/customers/me",
      method: "GET",
      middlewares: [
        allowFields("otpd_customer_verification", "otpd_customer_verification.*"),
        validateAndTransformQuery(StoreGetCustomerParams, retrieveTransformQueryConfig),
      ],
    },
    // The customer-registration plugin's contact verification.
    jsonBody("/store/customers/otp/send", SendContactCodeBody),
    jsonBody("/store/customers/otp/verify", VerifyContactCodeBody),
    // Contact change: a code to the new value (Medusa's own me* middleware
    // makes these routes need the customer's login).
    jsonBody("/store/customers/me/contact", RequestContactChangeBody),
    jsonBody("/store/customers/me/contact/verify", ApplyContactChangeBody),
    jsonBody("/store/customers/me", PatchMeBody, { method: "PATCH" }),
    // Medusa's own update of the customer must not change the phone either.
    { matcher: "/store/customers/me", method: "POST", middlewares: [refuseContactChange] },
    // The customer-registration plugin's account deletion. Only /request
    // needs the signed-in customer; the others carry a token and a code,
    // and cancelling works for an account one can no longer sign in to.
    jsonBody("/store/customers/account-deletion/request", RequestDeletionBody, {
      auth: authenticate("customer", ["session", "bearer"]),
    }),
    jsonBody("/store/customers/account-deletion/confirm", CodeBody),
    jsonBody("/store/customers/account-deletion/cancel-request", CancelRequestBody),
    jsonBody("/store/customers/account-deletion/cancel-confirm", CodeBody),
    // Medusa authenticates /admin/* as a user itself.
    {
      matcher: "/admin/account-deletion-requests",
      method: "GET",
      middlewares: [validateAndTransformQuery(ListDeletionRequestsQuery, { defaults: LIST_FIELDS, isList: true })],
    },
  ],
})
