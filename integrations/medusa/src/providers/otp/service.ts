import { createHash, timingSafeEqual } from "node:crypto"
import type {
  AuthenticationInput,
  AuthenticationResponse,
  AuthIdentityDTO,
  AuthIdentityProviderService,
} from "@medusajs/framework/types"
import { AbstractAuthModuleProvider } from "@medusajs/framework/utils"
import {
  type Check,
  checkCode,
  checkSignUpCode,
  decoySubject,
  normalizeIdentifier,
  OTP_PROVIDER,
  signInSubject,
} from "../../lib/codes"
import { noSoonerThan, providerCall } from "../../lib/http"
import { type OtpdMedusaOptions, PLUGIN_NAME, type ResolvedOptions, resolveOptions } from "../../lib/options"

const INVALID = "Invalid OTP"

// After POST /otp/register, auth-otp lets the new shopper sign in once more
// with the same code on POST /auth/{actor_type}/otp (to get a token carrying
// the customer made in between). otpd spent that code at registration, so
// the provider keeps a hash of it on the new identity for this long, and
// forgets it at the first sign-in. (POST /auth/token/refresh does the same
// without any code.)
export const REGISTRATION_GRACE_MS = 60_000
const MARK = "otpd_registration"

type Mark = { code_sha256: string; until: number }

// digest binds the follow-up to the actor type registered, the identity and
// the code.
function digest(actorType: string, entityId: string, otp: string): string {
  return createHash("sha256").update(`${actorType}\n${entityId}\n${otp}`).digest("hex")
}

// OtpdAuthProvider is the auth provider `otp`: sign-up (register) with a code
// from /otp/pre-register, sign-in (authenticate) with a code from
// /otp/generate, each checked by otpd. Identities it makes have the
// normalised identifier as entity_id, as auth-otp's did.
export class OtpdAuthProvider extends AbstractAuthModuleProvider {
  static identifier = OTP_PROVIDER
  static DISPLAY_NAME = "One-time code (otpd)"

  protected readonly opts: ResolvedOptions
  protected readonly container: Record<string, unknown>

  static validateOptions(options: Record<string, unknown>) {
    resolveOptions(options, `${PLUGIN_NAME}/providers/otp`)
  }

  constructor(container: Record<string, unknown>, options: OtpdMedusaOptions) {
    // @ts-ignore: the base constructor takes the container and options.
    super(...arguments)
    this.container = container
    this.opts = resolveOptions(options, `${PLUGIN_NAME}/providers/otp`)
  }

  // register: POST /auth/{actor_type}/otp/register {identifier, otp}.
  register(data: AuthenticationInput, identities: AuthIdentityProviderService): Promise<AuthenticationResponse> {
    return noSoonerThan(this.opts.minResponseMs, () => this.register_(data, identities))
  }

  // authenticate: POST /auth/{actor_type}/otp {identifier, otp}, with a code
  // from /otp/generate, or once, within REGISTRATION_GRACE_MS, the code just
  // used to register.
  authenticate(data: AuthenticationInput, identities: AuthIdentityProviderService): Promise<AuthenticationResponse> {
    return noSoonerThan(this.opts.minResponseMs, () => this.authenticate_(data, identities))
  }

  private async register_(data: AuthenticationInput, identities: AuthIdentityProviderService): Promise<AuthenticationResponse> {
    const body = data.body ?? {}
    const identifier = typeof body.identifier === "string" ? normalizeIdentifier(body.identifier) : ""
    if (!identifier) return { success: false, error: "Identifier is required" }
    if (typeof body.otp !== "string" || body.otp === "") return { success: false, error: "OTP is required" }
    // Medusa does not tell register the actor type; the plugin's middleware
    // on /auth/:actor_type/otp/register does. Without it (the provider
    // registered under an id other than "otp"), no guess: refused.
    const actorType = providerCall()?.actorType
    if (!actorType) return { success: false, error: "Authentication failed" }
    let ok: boolean
    try {
      ok = await checkSignUpCode(this.check(actorType, identifier, body.otp))
    } catch (err) {
      return this.failed(err)
    }
    if (!ok) return { success: false, error: INVALID }
    const mark: Mark = { code_sha256: digest(actorType, identifier, body.otp), until: Date.now() + REGISTRATION_GRACE_MS }
    let identity = await this.retrieve(identities, identifier)
    if (!identity) {
      identity = await identities.create({ entity_id: identifier, provider_metadata: { [MARK]: mark } })
    } else {
      identity = await identities.update(identifier, {
        provider_metadata: { ...this.metadata(identity, identifier), [MARK]: mark },
      })
    }
    return { success: true, authIdentity: identity }
  }

  private async authenticate_(
    data: AuthenticationInput,
    identities: AuthIdentityProviderService
  ): Promise<AuthenticationResponse> {
    const body = data.body ?? {}
    const identifier = typeof body.identifier === "string" ? normalizeIdentifier(body.identifier) : ""
    if (!identifier) return { success: false, error: "Identifier is required" }
    if (typeof body.otp !== "string" || body.otp === "") {
      return { success: false, error: "OTP is required for authentication" }
    }
    const otp = body.otp
    const actorType = (data as { actor_type?: string }).actor_type ?? providerCall()?.actorType
    if (!actorType) return { success: false, error: "Authentication failed" }
    const identity = await this.retrieve(identities, identifier)
    const meta = identity ? this.metadata(identity, identifier) : {}
    const mark = meta[MARK] as Mark | null | undefined
    if (identity && mark) {
      // Whatever the guess, the grace ends here: one try. (Medusa merges
      // provider_metadata on update: the mark is overwritten, not dropped.)
      await identities.update(identifier, { provider_metadata: { ...meta, [MARK]: null } })
      const want = Buffer.from(mark.code_sha256, "hex")
      const got = Buffer.from(digest(actorType, identifier, otp), "hex")
      if (mark.until > Date.now() && want.length === got.length && timingSafeEqual(want, got)) {
        return { success: true, authIdentity: identity }
      }
    }
    let ok: boolean
    try {
      // An unknown identifier is checked too (against a subject no code has),
      // so it costs what a known one costs.
      ok = await checkCode(
        this.check(actorType, identifier, otp),
        "sign_in",
        identifier,
        identity ? signInSubject(actorType, identity.id) : decoySubject(actorType)
      )
    } catch (err) {
      return this.failed(err)
    }
    if (!ok || !identity) return { success: false, error: INVALID }
    return { success: true, authIdentity: identity }
  }

  private check(actorType: string, identifier: string, otp: string): Check {
    return {
      container: this.container as never,
      opts: this.opts,
      actorType,
      identifier,
      otp,
      client: providerCall()?.client,
    }
  }

  // failed hands a failed call to otpd to the route's middleware, which
  // answers 429 or 503 for it; Medusa would answer 401. The message Medusa
  // would show names nothing of otpd.
  private failed(err: unknown): AuthenticationResponse {
    const call = providerCall()
    if (call) call.failure = err
    return { success: false, error: "Authentication failed" }
  }

  private async retrieve(identities: AuthIdentityProviderService, entityId: string): Promise<AuthIdentityDTO | null> {
    try {
      return await identities.retrieve({ entity_id: entityId })
    } catch {
      return null
    }
  }

  private metadata(identity: AuthIdentityDTO, entityId: string): Record<string, unknown> {
    const p = (identity.provider_identities ?? []).find((i) => i.provider === OTP_PROVIDER && i.entity_id === entityId)
    return { ...(p?.provider_metadata ?? {}) }
  }
}
