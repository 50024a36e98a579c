import { randomBytes } from "node:crypto"
import type {
  AuthenticationInput,
  AuthenticationResponse,
  AuthIdentityDTO,
  AuthIdentityProviderService,
} from "@medusajs/framework/types"
import { AbstractAuthModuleProvider, isPresent, isString, MedusaError } from "@medusajs/framework/utils"
import { kdf, verify, type ScryptParams } from "scrypt-kdf"
import { pluginOptions } from "../../lib/options"
import { normalizePhone, PHONE_FORMAT } from "../../lib/phone"
import { MAX_PASSWORD, PHONEPASS_PROVIDER, requestScope } from "../../lib/phonepass"
import { customerOf, verificationOf } from "../../lib/registration"

const INVALID = "Invalid phone or password"
export const NOT_VERIFIED = "Verify your phone number before signing in."

export type PhonepassOptions = {
  // scrypt's parameters, as emailpass's option of the same name (default
  // {logN: 15, r: 8, p: 1}, emailpass's).
  hashConfig?: ScryptParams
}

type Cradle = { configModule: Parameters<typeof pluginOptions>[0] }

// PhonepassAuthProvider is emailpass with a phone number for the email: the
// same scrypt hashes in provider_metadata.password, the same rules for an
// identity that exists, and the identity's entity_id is the phone in E.164.
// Two differences: an unknown phone costs a hash too (emailpass answers it
// at once, which tells which phones have accounts), and with the plugin's
// registration.requireVerification a customer signs in only once its phone
// is verified.
export class PhonepassAuthProvider extends AbstractAuthModuleProvider {
  static identifier = PHONEPASS_PROVIDER
  static DISPLAY_NAME = "Phone/Password Authentication"

  protected readonly cradle: Cradle
  protected readonly hashConfig: ScryptParams
  private dummy?: Promise<string>

  constructor(cradle: Cradle, options: PhonepassOptions = {}) {
    // @ts-ignore: the base constructor takes the container and options.
    super(...arguments)
    this.cradle = cradle
    this.hashConfig = options?.hashConfig ?? { logN: 15, r: 8, p: 1 }
  }

  async hashPassword(password: string): Promise<string> {
    return (await kdf(password, this.hashConfig)).toString("base64")
  }

  async register(data: AuthenticationInput, identities: AuthIdentityProviderService): Promise<AuthenticationResponse> {
    const body = (data.body ?? {}) as Record<string, unknown>
    const bad = checkBody(body)
    if (bad) return { success: false, error: bad }
    const phone = normalizePhone(body.phone)
    if (!phone) return { success: false, error: `Phone should be ${PHONE_FORMAT}` }
    const password = body.password as string
    let identity: AuthIdentityDTO
    try {
      identity = await identities.retrieve({ entity_id: phone })
    } catch (err) {
      if ((err as MedusaError).type !== MedusaError.Types.NOT_FOUND) return { success: false, error: "Authentication failed" }
      const created = await identities.create({
        entity_id: phone,
        provider_metadata: { password: await this.hashPassword(password) },
      })
      return { success: true, authIdentity: this.sanitize(created) }
    }
    // emailpass's rule: registering again is a new registration token only
    // while no actor uses the identity and with its password.
    if (!isPresent(identity.app_metadata) && (await this.passwordMatches(password, identity))) {
      return { success: true, authIdentity: this.sanitize(identity) }
    }
    return { success: false, error: "Identity with phone already exists" }
  }

  async authenticate(data: AuthenticationInput, identities: AuthIdentityProviderService): Promise<AuthenticationResponse> {
    const body = (data.body ?? {}) as Record<string, unknown>
    const bad = checkBody(body)
    if (bad) return { success: false, error: bad }
    const phone = normalizePhone(body.phone)
    const password = body.password as string
    let identity: AuthIdentityDTO | null = null
    if (phone) {
      try {
        identity = await identities.retrieve({ entity_id: phone })
      } catch (err) {
        if ((err as MedusaError).type !== MedusaError.Types.NOT_FOUND) return { success: false, error: "Authentication failed" }
      }
    }
    if (!identity || !phone) {
      // The same scrypt work as a wrong password, so the time of the answer
      // does not tell which phones have accounts.
      await verify(Buffer.from(await this.dummyHash(), "base64"), password)
      return { success: false, error: INVALID }
    }
    if (!(await this.passwordMatches(password, identity))) return { success: false, error: INVALID }
    // Only after the password: the refusal tells nothing to who lacks it.
    if (!(await this.verifiedEnough(identity, phone))) return { success: false, error: NOT_VERIFIED }
    return { success: true, authIdentity: this.sanitize(identity) }
  }

  // update: POST /auth/{actor_type}/phonepass/update with a reset token, as
  // emailpass's (entity_id comes from the token).
  async update(data: Record<string, unknown>, identities: AuthIdentityProviderService): Promise<AuthenticationResponse> {
    const { password, entity_id } = data ?? {}
    if (!entity_id || !isString(entity_id)) {
      return { success: false, error: `Cannot update ${PHONEPASS_PROVIDER} provider identity without entity_id` }
    }
    if (!password || !isString(password)) return { success: true }
    if (password.length > MAX_PASSWORD) return { success: false, error: `Password should be at most ${MAX_PASSWORD} characters` }
    try {
      const identity = await identities.retrieve({ entity_id })
      const meta = { ...(this.providerIdentity(identity)?.provider_metadata ?? {}) }
      const updated = await identities.update(entity_id, {
        provider_metadata: { ...meta, password: await this.hashPassword(password) },
      })
      return { success: true, authIdentity: this.sanitize(updated) }
    } catch (err) {
      return { success: false, error: (err as Error).message }
    }
  }

  // verifiedEnough applies registration.requireVerification: once a customer
  // exists for the identity (before, the registration token is the way to
  // create it), its phone must be this identity's phone and verified.
  // Without the request's container (the provider called outside Medusa's
  // routes for it) the check cannot be made: refused.
  private async verifiedEnough(identity: AuthIdentityDTO, phone: string): Promise<boolean> {
    const customerId = identity.app_metadata?.customer_id
    if (typeof customerId !== "string" || customerId === "") return true
    if (!pluginOptions(this.cradle.configModule).registration.requireVerification) return true
    const scope = requestScope()
    if (!scope) return false
    const customer = await customerOf(scope, customerId)
    if (!customer) return true // deleted since: nothing to verify, Medusa decides
    if (normalizePhone(customer.phone) !== phone) return false
    return (await verificationOf(scope, customer)).phone_verified
  }

  private dummyHash(): Promise<string> {
    if (!this.dummy) {
      this.dummy = this.hashPassword(randomBytes(16).toString("hex"))
      this.dummy.catch(() => (this.dummy = undefined))
    }
    return this.dummy
  }

  private async passwordMatches(password: string, identity: AuthIdentityDTO): Promise<boolean> {
    const hash = this.providerIdentity(identity)?.provider_metadata?.password
    if (!isString(hash)) return false
    return verify(Buffer.from(hash, "base64"), password)
  }

  private providerIdentity(identity: AuthIdentityDTO) {
    return identity.provider_identities?.find((p) => p.provider === this.provider)
  }

  // sanitize drops the hash from what Medusa is handed back.
  private sanitize(identity: AuthIdentityDTO): AuthIdentityDTO {
    const copy = JSON.parse(JSON.stringify(identity)) as AuthIdentityDTO
    const p = this.providerIdentity(copy)
    if (p?.provider_metadata) delete p.provider_metadata.password
    return copy
  }
}

// checkBody words emailpass's refusals of a body without a password or a
// phone (the plugin's middleware answers them as 400s before this runs).
function checkBody(body: Record<string, unknown>): string | null {
  if (!body.password || !isString(body.password)) return "Password should be a string"
  if (body.password.length > MAX_PASSWORD) return `Password should be at most ${MAX_PASSWORD} characters`
  if (!body.phone || !isString(body.phone)) return "Phone should be a string"
  return null
}
