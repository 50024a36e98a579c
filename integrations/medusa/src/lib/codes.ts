// The plugin's flows: find the Medusa actor behind an identifier, ask otpd for
// a code (or a decoy), check a code. Routes and the auth provider are thin
// wrappers around these.
import type { AuthIdentityDTO, MedusaContainer } from "@medusajs/framework/types"
import { ContainerRegistrationKeys, MedusaError, Modules } from "@medusajs/framework/utils"
import { type ActorAccessors, PLUGIN_NAME, type ResolvedOptions } from "./options"
import { type Client, OtpdRefused, type Purpose } from "./otpd"

// auth-otp's event names and payload ({identifier, otp}), so a shop's
// existing subscriber keeps sending the codes.
export const SIGN_IN_EVENT = "otp.generated"
export const SIGN_UP_EVENT = "pre-register.otp.generated"

// The provider under which codes register auth identities; also the id a
// shop gives the provider in medusa-config.
export const OTP_PROVIDER = "otp"

// normalizeIdentifier trims, and lower-cases an email address (auth-otp
// test H2: generate with upper case, verify with lower case). Phone numbers
// are left to otpd, which normalises them to E.164.
export function normalizeIdentifier(raw: string): string {
  const t = raw.trim()
  return t.includes("@") ? t.toLowerCase() : t
}

// candidates are the values an identifier may be stored as: as typed
// (trimmed) and normalised. Matching is exact: no pattern, no wildcard.
function candidates(raw: string): string[] {
  const t = raw.trim()
  const n = normalizeIdentifier(raw)
  return t === n ? [t] : [t, n]
}

// actorAccessors answers 400 for an actor type the plugin has no accessors
// for (auth-otp answered 200 or 400 after a TypeError).
export function actorAccessors(opts: ResolvedOptions, actorType: string): ActorAccessors {
  const a = Object.prototype.hasOwnProperty.call(opts.accessorsPerActor, actorType)
    ? opts.accessorsPerActor[actorType]
    : undefined
  if (!a) {
    throw new MedusaError(
      MedusaError.Types.INVALID_DATA,
      `Invalid request: The actor type '${actorType}' is not configured.`
    )
  }
  return a
}

// actorFilter is Query's filter for the actors whose accessor field(s) hold
// the identifier exactly (as typed, trimmed, or normalised).
function actorFilter(identifier: string, accessors: ActorAccessors) {
  const fields = Array.isArray(accessors.accessor) ? accessors.accessor : [accessors.accessor]
  const values = candidates(identifier)
  const filters = fields.length === 1 ? { [fields[0]]: values } : { $or: fields.map((f) => ({ [f]: values })) }
  return { fields, values, filters }
}

export type Actor = {
  id: string
  // The stored value the identifier matched: where codes go.
  address: string
  authIdentity: AuthIdentityDTO
  // The provider of the identity's entry for this actor (emailpass, otp...),
  // the token's auth_provider claim.
  authProvider: string
}

// findActor finds the actor of actorType whose accessor field equals the
// identifier, and its auth identity: one whose app_metadata links it to
// that very actor, through a provider identity whose entity_id is the
// actor's entityIdAccessor field. Any provider counts, so a customer who
// registered with email and password signs in by code. An actor without such
// an identity, or without an entity id, is not found (auth-otp matched every
// identity then: the account takeover of its issue D.2.1).
export async function findActor(
  container: MedusaContainer,
  actorType: string,
  identifier: string,
  accessors: ActorAccessors
): Promise<Actor | null> {
  const { fields, values, filters } = actorFilter(identifier, accessors)
  if (values[0] === "") return null
  const query = container.resolve(ContainerRegistrationKeys.QUERY)
  const { data } = await query.graph({
    entity: actorType,
    fields: ["id", ...new Set([...fields, accessors.entityIdAccessor])],
    filters,
  })
  const actors = (data as Record<string, unknown>[]).slice().sort((a, b) => String(a.id).localeCompare(String(b.id)))
  const auth = container.resolve(Modules.AUTH)
  const identitiesOf = (entityId: string) =>
    auth.listAuthIdentities({ provider_identities: { entity_id: entityId } }, { relations: ["provider_identities"] })
  for (const actor of actors) {
    const field = fields.find((f) => values.includes(actor[f] as string))
    const entityId = actor[accessors.entityIdAccessor]
    if (!field || typeof entityId !== "string" || entityId === "") continue
    const identities = await identitiesOf(entityId)
    const key = `${actorType}_id`
    const linked = identities
      .filter((i) => i.app_metadata?.[key] === actor.id)
      .sort((a, b) => a.id.localeCompare(b.id))
    // An identity that signs in through this provider first, so the
    // provider's own sign-in route and /otp/verify bind codes to one subject.
    const providerOf = (i: AuthIdentityDTO) =>
      (i.provider_identities ?? []).filter((p) => p.entity_id === entityId).map((p) => p.provider)
    const chosen = linked.find((i) => providerOf(i).includes(OTP_PROVIDER)) ?? linked[0]
    if (!chosen) continue
    const providers = providerOf(chosen)
    return {
      id: String(actor.id),
      address: actor[field] as string,
      authIdentity: chosen,
      authProvider: providers.includes(OTP_PROVIDER) ? OTP_PROVIDER : providers[0] ?? OTP_PROVIDER,
    }
  }
  // No actor: the identity lookup a known address costs is made anyway (its
  // answer unused), so that the time of the answer does not tell.
  if (actors.length === 0) await identitiesOf(values[values.length - 1])
  return null
}

// actorExists: does any actor of actorType have this identifier (sign-up
// codes are only made for identifiers that have none)?
export async function actorExists(
  container: MedusaContainer,
  actorType: string,
  identifier: string,
  accessors: ActorAccessors
): Promise<boolean> {
  const { filters } = actorFilter(identifier, accessors)
  const query = container.resolve(ContainerRegistrationKeys.QUERY)
  const { data } = await query.graph({ entity: actorType, fields: ["id"], filters })
  return data.length > 0
}

// Subjects bind each code in otpd: a sign-in code to the actor type and the
// auth identity it signs into (one identity may serve several actor types:
// a customer's code must not make a user's token), a sign-up code to the
// actor type it registers. Decoys get a subject no real code has.
export const signInSubject = (actorType: string, authIdentityId: string) => `${actorType}:${authIdentityId}`
export const signUpSubject = (actorType: string) => `register:${actorType}`
export const decoySubject = (actorType: string) => `unknown:${actorType}`

export type Send = {
  container: MedusaContainer
  opts: ResolvedOptions
  actorType: string
  identifier: string
  client?: Client
  locale?: string // the shopper's language, for the messages otpd sends
}

// sendSignInCode makes a sign-in code for the actor behind identifier, or a
// decoy when there is none: the same call to otpd, the same limits, the same
// answer to the shopper, no code and no event.
export async function sendSignInCode(s: Send): Promise<void> {
  const actor = await findActor(s.container, s.actorType, s.identifier, actorAccessors(s.opts, s.actorType))
  const target = actor && { to: actor.address, subject: signInSubject(s.actorType, actor.authIdentity.id) }
  await send(s, "sign_in", target, SIGN_IN_EVENT)
}

// sendSignUpCode makes a sign-up code for an identifier no actor has, or a
// decoy when one has it.
export async function sendSignUpCode(s: Send): Promise<void> {
  const exists = await actorExists(s.container, s.actorType, s.identifier, actorAccessors(s.opts, s.actorType))
  const target = exists ? null : { to: normalizeIdentifier(s.identifier), subject: signUpSubject(s.actorType) }
  await send(s, "sign_up", target, SIGN_UP_EVENT)
}

// send asks otpd for a code for target, or, with no target, for a decoy of
// the identifier; with delivery "medusa" a real code goes out as event.
async function send(s: Send, purpose: Purpose, target: { to: string; subject: string } | null, event: string) {
  const create = (locale: string | undefined) =>
    s.opts.client.createVerification({
      to: target ? target.to : normalizeIdentifier(s.identifier),
      purpose,
      subject: target ? target.subject : decoySubject(s.actorType),
      deliver: target !== null,
      delivery: s.opts.delivery === "medusa" ? "return" : "otpd",
      client: s.client,
      locale,
    })
  let v
  try {
    try {
      v = await create(s.locale)
    } catch (err) {
      // A language tag otpd does not know ("qq"): nothing was made, so ask
      // again in otpd's default language, for real addresses and decoys alike.
      if (!(s.locale && err instanceof OtpdRefused && err.status === 400 && err.field === "locale")) throw err
      v = await create(undefined)
    }
  } catch (err) {
    // An identifier otpd cannot send to (not an email address or a phone
    // number) gets the answer every identifier gets; nothing was sent.
    if (err instanceof OtpdRefused && err.status === 400 && err.field === "to") {
      if (target) {
        s.container
          .resolve(ContainerRegistrationKeys.LOGGER)
          .warn(`${PLUGIN_NAME}: ${s.actorType} ${purpose} code not sent: otpd refused the address (${err.message})`)
      }
      return
    }
    throw err
  }
  if (target && s.opts.delivery === "medusa") {
    if (!v.code) {
      throw new Error(`${PLUGIN_NAME}: otpd returned no code for delivery "return"`)
    }
    const bus = s.container.resolve(Modules.EVENT_BUS)
    await bus.emit({ name: event, data: { identifier: target.to, otp: v.code } })
  }
}

export type Check = Send & { otp: string }

// checkSignInCode counts one guess at the sign-in code of the actor behind
// identifier and answers the actor when it was right, otherwise null. An
// unknown identifier is checked against its decoy, so it costs the same.
export async function checkSignInCode(c: Check): Promise<Actor | null> {
  const actor = await findActor(c.container, c.actorType, c.identifier, actorAccessors(c.opts, c.actorType))
  const ok = await checkCode(
    c,
    "sign_in",
    actor ? actor.address : normalizeIdentifier(c.identifier),
    actor ? signInSubject(c.actorType, actor.authIdentity.id) : decoySubject(c.actorType)
  )
  return ok && actor ? actor : null
}

// checkSignUpCode counts one guess at the sign-up code of identifier.
export function checkSignUpCode(c: Check): Promise<boolean> {
  return checkCode(c, "sign_up", normalizeIdentifier(c.identifier), signUpSubject(c.actorType))
}

// otpd takes codes of at most 64 characters; a longer guess is wrong.
const MAX_CODE = 64

// checkCode counts one guess at the code of (purpose, to, subject) and
// answers whether it was right.
export async function checkCode(c: Check, purpose: Purpose, to: string, subject: string): Promise<boolean> {
  if (c.otp.length === 0 || c.otp.length > MAX_CODE || to === "") return false
  try {
    const v = await c.opts.client.check({ to, purpose, subject, code: c.otp, client: c.client })
    return v.status === "approved"
  } catch (err) {
    // otpd refusing the address or the code as malformed is a wrong code.
    if (err instanceof OtpdRefused && err.status === 400) return false
    throw err
  }
}
