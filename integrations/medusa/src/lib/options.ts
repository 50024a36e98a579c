// The plugin's options, checked once, with auth-otp's defaults where auth-otp
// has the same option.
import { OtpdClient } from "./otpd"

export const PLUGIN_NAME = "@otpd/medusa"

export type ActorAccessors = {
  // The actor's field(s) an identifier is matched against (auth-otp's
  // `accessor`); the first that matches wins.
  accessor: string | string[]
  // The actor's field that names its auth identities (the provider
  // identity's entity_id).
  entityIdAccessor: string
}

export type OtpdMedusaOptions = {
  // otpd's base URL, e.g. http://127.0.0.1:8080.
  url: string
  // An otpd API key (`otpd keys create`); delivery "medusa" needs one made
  // with --return-codes.
  apiKey: string
  accessorsPerActor?: Record<string, ActorAccessors | null>
  // "medusa" (default): otpd returns the code and the plugin emits auth-otp's
  // events, so a shop's subscriber sends it. "otpd": otpd's channels send it
  // and Medusa never sees it.
  delivery?: "medusa" | "otpd"
  // How long a call to otpd may take before the shopper gets a 503.
  timeoutMs?: number
  // No answer about a code (generate, pre-register, verify, the provider's
  // register and sign-in) leaves sooner than this after its request came:
  // the work for a known and an unknown address differs by a few
  // milliseconds in Medusa, and the floor hides it. 0 turns it off.
  minResponseMs?: number
  // The customer-registration routes.
  registration?: RegistrationOptions
  accountDeletion?: AccountDeletionOptions
}

// The customer-registration routes' options (CONTRACTS B.3), camel-cased
// like the rest of this plugin's options.
export type RegistrationOptions = {
  // Which contact a customer registers with: "email" (default), "phone"
  // (customers without email), or "both" (either).
  identifier?: "email" | "phone" | "both"
  // A customer must have proved the contact it registered with before it
  // signs in with a password (default true).
  requireVerification?: boolean
  // Per purpose: send the verification code as soon as the customer is
  // created (POST /store/customers then answers the token too), and, for
  // phones, the channel ("sms", default, or "whatsapp").
  emailVerification?: { autoSendOnRegistration?: boolean }
  phoneVerification?: { autoSendOnRegistration?: boolean; channel?: "sms" | "whatsapp" }
}

export type AccountDeletionOptions = {
  // Days between a confirmed deletion request and the deletion (default 7);
  // 0 deletes at the job's next run.
  scheduledDays?: number
  // The cron schedule of the job that completes due deletions (default
  // every 5 minutes; six fields for seconds).
  jobSchedule?: string
}

export type ResolvedOptions = Required<Omit<OtpdMedusaOptions, "registration" | "accountDeletion">> & {
  client: OtpdClient
  registration: {
    identifier: "email" | "phone" | "both"
    requireVerification: boolean
    emailVerification: { autoSendOnRegistration: boolean }
    phoneVerification: { autoSendOnRegistration: boolean; channel: "sms" | "whatsapp" }
  }
  accountDeletion: Required<AccountDeletionOptions>
}

export const DEFAULT_ACCESSORS: Record<string, ActorAccessors> = {
  customer: { accessor: "email", entityIdAccessor: "email" },
  user: { accessor: "email", entityIdAccessor: "email" },
}

const FIELD_RE = /^[a-z_][a-z0-9_]*$/

// resolveOptions checks the options a shop wrote in medusa-config and fills
// in defaults. A mistake is an Error naming the option, raised when Medusa
// loads the plugin's first route or the provider, never a request-time 500
// with an unclear cause.
export function resolveOptions(raw: unknown, where = PLUGIN_NAME): ResolvedOptions {
  const o = (raw ?? {}) as Partial<OtpdMedusaOptions>
  const fail = (msg: string): never => {
    throw new Error(`${where}: ${msg}`)
  }
  if (typeof o.url !== "string" || o.url === "") fail("option `url` (otpd's base URL) is required")
  let u: URL
  try {
    u = new URL(o.url as string)
  } catch {
    return fail("option `url` is not a URL")
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") fail("option `url` must be http or https")
  if (typeof o.apiKey !== "string" || !o.apiKey.startsWith("otpd_sk_")) {
    fail("option `apiKey` is required: a key made by `otpd keys create` (otpd_sk_...)")
  }
  const delivery = o.delivery ?? "medusa"
  if (delivery !== "medusa" && delivery !== "otpd") fail('option `delivery` must be "medusa" or "otpd"')
  const timeoutMs = o.timeoutMs ?? 5000
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 60000) {
    fail("option `timeoutMs` must be an integer from 100 to 60000")
  }
  // Merged per actor type over the defaults; null turns an actor type off
  // (e.g. `user: null`: admin users never sign in by code).
  const minResponseMs = o.minResponseMs ?? 50
  if (!Number.isInteger(minResponseMs) || minResponseMs < 0 || minResponseMs > 5000) {
    fail("option `minResponseMs` must be an integer from 0 to 5000")
  }
  const accessorsPerActor: Record<string, ActorAccessors> = {}
  for (const [actor, a] of Object.entries({ ...DEFAULT_ACCESSORS, ...(o.accessorsPerActor ?? {}) })) {
    if (a !== null) accessorsPerActor[actor] = a
  }
  for (const [actor, a] of Object.entries(accessorsPerActor)) {
    const fields = Array.isArray(a?.accessor) ? a.accessor : [a?.accessor]
    if (fields.length === 0 || !fields.every((f) => typeof f === "string" && FIELD_RE.test(f))) {
      fail(`accessorsPerActor.${actor}.accessor must be a field name or a list of them`)
    }
    if (typeof a.entityIdAccessor !== "string" || !FIELD_RE.test(a.entityIdAccessor)) {
      fail(`accessorsPerActor.${actor}.entityIdAccessor must be a field name`)
    }
  }
  const reg = o.registration ?? {}
  const identifier = reg.identifier ?? "email"
  if (!["email", "phone", "both"].includes(identifier)) fail('option `registration.identifier` must be "email", "phone" or "both"')
  const requireVerification = reg.requireVerification ?? true
  if (typeof requireVerification !== "boolean") fail("option `registration.requireVerification` must be true or false")
  const emailAuto = reg.emailVerification?.autoSendOnRegistration ?? false
  const phoneAuto = reg.phoneVerification?.autoSendOnRegistration ?? false
  const phoneChannel = reg.phoneVerification?.channel ?? "sms"
  if (typeof emailAuto !== "boolean") fail("option `registration.emailVerification.autoSendOnRegistration` must be true or false")
  if (typeof phoneAuto !== "boolean") fail("option `registration.phoneVerification.autoSendOnRegistration` must be true or false")
  if (phoneChannel !== "sms" && phoneChannel !== "whatsapp") fail('option `registration.phoneVerification.channel` must be "sms" or "whatsapp"')
  const del = o.accountDeletion ?? {}
  const scheduledDays = del.scheduledDays ?? 7
  if (typeof scheduledDays !== "number" || !(scheduledDays >= 0) || scheduledDays > 365) {
    fail("option `accountDeletion.scheduledDays` must be a number of days from 0 to 365")
  }
  const jobSchedule = del.jobSchedule ?? "*/5 * * * *"
  if (typeof jobSchedule !== "string" || !/^(\S+\s+){4,5}\S+$/.test(jobSchedule.trim())) {
    fail("option `accountDeletion.jobSchedule` must be a cron schedule (5 fields, or 6 with seconds)")
  }
  const url = o.url as string
  const apiKey = o.apiKey as string
  return {
    url,
    apiKey,
    accessorsPerActor,
    delivery,
    timeoutMs,
    minResponseMs,
    registration: {
      identifier,
      requireVerification,
      emailVerification: { autoSendOnRegistration: emailAuto },
      phoneVerification: { autoSendOnRegistration: phoneAuto, channel: phoneChannel },
    },
    accountDeletion: { scheduledDays, jobSchedule: jobSchedule.trim() },
    client: new OtpdClient({ url, apiKey, timeoutMs }),
  }
}

type ConfigModule = { plugins?: Array<string | { resolve: string; options?: unknown }> }

const cache = new WeakMap<object, ResolvedOptions>()

// pluginOptions reads this plugin's entry in medusa-config's `plugins`.
export function pluginOptions(configModule: ConfigModule): ResolvedOptions {
  const hit = cache.get(configModule)
  if (hit) return hit
  const entry = (configModule.plugins ?? []).find(
    (p) => typeof p !== "string" && p.resolve === PLUGIN_NAME
  )
  if (!entry || typeof entry === "string") {
    throw new Error(`${PLUGIN_NAME}: add { resolve: "${PLUGIN_NAME}", options: { url, apiKey } } to plugins in medusa-config`)
  }
  const resolved = resolveOptions(entry.options)
  cache.set(configModule, resolved)
  return resolved
}
