// What the plugin's routes share: the shopper's address, and the answers
// for otpd's limits and outages.
import { AsyncLocalStorage } from "node:async_hooks"
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import type { MedusaNextFunction, MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { ContainerRegistrationKeys, MedusaError } from "@medusajs/framework/utils"
import { isAuthProviderAllowedForActor } from "@medusajs/medusa/api/auth/utils/auth-methods-per-actor"
import { OTP_PROVIDER, type Send } from "./codes"
import { PLUGIN_NAME, pluginOptions } from "./options"
import { type Client, localeOf, OtpdRefused, OtpdUnavailable } from "./otpd"

const MAX_USER_AGENT = 512

// shopperOf is the shopper's address as Medusa sees it (req.ip honours
// Medusa's trust-proxy setting) and user agent: otpd's per-address limits
// count shoppers, not the backend.
export function shopperOf(req: MedusaRequest): Client {
  const ua = req.get("user-agent")
  return {
    ip: req.ip || undefined,
    user_agent: ua ? ua.slice(0, MAX_USER_AGENT) : undefined,
  }
}

// requireJson refuses a body that is not JSON. Medusa also parses forms, which
// any page on another site can make a visitor's browser send without a CORS
// preflight: a cross-site form could then make shoppers' browsers request
// codes. A JSON body needs the preflight that Medusa's authCors answers.
export function requireJson(req: MedusaRequest, res: MedusaResponse, next: MedusaNextFunction) {
  const hasBody = Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"] !== undefined
  if (hasBody && !req.is("application/json")) {
    res.status(400).json({ type: "invalid_data", message: "Content-Type must be 'application/json'" })
    return
  }
  next()
}

// otpAllowedForActor applies Medusa's http.authMethodsPerActor to the
// plugin's routes as Medusa applies it to its own: by default Medusa 2.21
// lets admin users (actor type user) sign in with emailpass only, and
// /auth/user/otp/verify must not be a way around that.
export function otpAllowedForActor(req: MedusaRequest, _res: MedusaResponse, next: MedusaNextFunction) {
  const actorType = req.params.actor_type
  const config = req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE)
  if (!isAuthProviderAllowedForActor(config, actorType, OTP_PROVIDER)) {
    throw new MedusaError(
      MedusaError.Types.NOT_ALLOWED,
      `The actor type ${actorType} is not allowed to use the auth provider ${OTP_PROVIDER}`
    )
  }
  next()
}

// The auth provider is called by Medusa's own routes (POST
// /auth/{actor_type}/otp and /otp/register) with neither the request nor,
// for register, the actor type, and any error it raises becomes a 401. A
// middleware on those routes keeps what the provider needs here, and the
// provider leaves here an otpd failure, which the middleware then answers as
// the plugin's routes do (429, 503) instead of Medusa's 401.
export type ProviderCall = {
  client: Client
  actorType: string
  failure?: unknown
}

const providerCalls = new AsyncLocalStorage<ProviderCall>()

export function providerCall(): ProviderCall | undefined {
  return providerCalls.getStore()
}

export function withShopper(req: MedusaRequest, res: MedusaResponse, next: MedusaNextFunction) {
  const call: ProviderCall = { client: shopperOf(req), actorType: req.params.actor_type }
  const json = res.json.bind(res)
  res.json = (body?: unknown) => {
    if (call.failure !== undefined && res.statusCode === 401) {
      const failure = call.failure
      call.failure = undefined
      const a = failureAnswer(req, failure)
      if (a) {
        res.setHeader("Retry-After", String(a.retryAfter))
        res.status(a.status)
        return json(a.body)
      }
    }
    return json(body)
  }
  providerCalls.run(call, next)
}

// auth-otp's answers, word for word.
export const GENERATE_MESSAGE = "If an account exists with this identifier, an OTP will be sent."
export const PRE_REGISTER_MESSAGE = "Please validate the OTP to continue with the registration process."

export const UNAVAILABLE_MESSAGE = "The service is temporarily unavailable. Try again shortly."

type FailureAnswer = { status: number; retryAfter: number; body: Record<string, string> }

// failureAnswer words a call to otpd that did not succeed: its 429 as
// Medusa's 429 with Retry-After; an outage, or a key otpd refused, as 503
// (logged for the operator, without the key). Anything else is not otpd's
// failure: null.
function failureAnswer(req: MedusaRequest, err: unknown): FailureAnswer | null {
  if (err instanceof OtpdRefused && err.status === 429) {
    return { status: 429, retryAfter: err.retryAfter ?? 1, body: { type: "not_allowed", message: err.message } }
  }
  if (err instanceof OtpdUnavailable || err instanceof OtpdRefused) {
    const logger = req.scope.resolve(ContainerRegistrationKeys.LOGGER)
    const why =
      err instanceof OtpdRefused
        ? `otpd refused the request (${err.status} ${err.code}: ${err.message}); check the plugin's apiKey and its permissions`
        : err.message
    logger.error(`${PLUGIN_NAME}: ${why}`)
    return {
      status: 503,
      retryAfter: 1,
      body: { code: "service_unavailable", type: "unexpected_state", message: UNAVAILABLE_MESSAGE },
    }
  }
  return null
}

// answerOtpdFailure answers for a failed call to otpd, or rethrows an error
// that is not otpd's to Medusa's error handler.
export function answerOtpdFailure(req: MedusaRequest, res: MedusaResponse, err: unknown): void {
  const a = failureAnswer(req, err)
  if (!a) throw err
  res.setHeader("Retry-After", String(a.retryAfter))
  res.status(a.status).json(a.body)
}

// noSoonerThan runs work and hands its outcome (result or error) over no
// sooner than floorMs after start: the option minResponseMs.
export async function noSoonerThan<T>(floorMs: number, work: () => Promise<T>): Promise<T> {
  const start = performance.now()
  try {
    return await work()
  } finally {
    const wait = start + floorMs - performance.now()
    if (wait > 0) await sleep(wait)
  }
}

// outcome settles p into its value or its error, for a route that answers
// either only after the floor.
export function outcome<T>(p: Promise<T>): Promise<{ value: T } | { err: unknown }> {
  return p.then(
    (value) => ({ value }),
    (err) => ({ err })
  )
}

// sendCodeRoute is a route that asks otpd for a code (generate, pre-register)
// and answers auth-otp's message whether or not one was made.
export function sendCodeRoute(send: (s: Send) => Promise<void>, message: string) {
  return async (req: MedusaRequest<{ identifier: string }>, res: MedusaResponse) => {
    const opts = pluginOptions(req.scope.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
    const out = await noSoonerThan(opts.minResponseMs, () =>
      outcome(
        send({
          container: req.scope,
          opts,
          actorType: req.params.actor_type,
          identifier: req.validatedBody.identifier,
          client: shopperOf(req),
          locale: localeOf(req.get("accept-language")),
        })
      )
    )
    if ("err" in out) return answerOtpdFailure(req, res, out.err)
    res.status(200).json({ message })
  }
}

// refuseContactFields refuses a change of email or phone outside the
// contact change routes (CONTRACTS B.3): they must be proved by a code to
// the new value.
export function refuseContactFields(body: Record<string, unknown> | undefined): void {
  for (const [field, name] of [["phone", "Phone"], ["email", "Email"]] as const) {
    if (body && body[field] !== undefined) {
      throw new MedusaError(
        MedusaError.Types.NOT_ALLOWED,
        `${name} changes require OTP verification. Use POST /store/customers/me/contact to request a change.`
      )
    }
  }
}

// refuseContactChange is refuseContactFields as a middleware, for Medusa's
// own POST /store/customers/me (which would change the phone otherwise).
export function refuseContactChange(req: MedusaRequest, _res: MedusaResponse, next: MedusaNextFunction) {
  refuseContactFields(req.body as Record<string, unknown> | undefined)
  next()
}
