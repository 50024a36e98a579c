// A small client for otpd's server API (/v1): the calls the plugin makes,
// create a verification, check a code, cancel a subject's verifications. Nothing here logs; errors carry no
// secret (the API key is only ever in the Authorization header).

export type Purpose = "sign_in" | "sign_up" | "verify_contact" | "change_contact" | "delete_account"

export type Verification = {
  id: string
  status:
    | "pending"
    | "approved"
    | "max_attempts_reached"
    | "expired"
    | "canceled"
    | "not_found"
  to?: string
  channel?: string
  purpose?: string
  subject?: string
  attempts_left?: number
  expires_at?: string
  resend_after?: string
  // Only with delivery "return".
  code?: string
}

export type Client = { ip?: string; user_agent?: string }

export type CreateInput = {
  to: string
  purpose: Purpose
  subject: string
  // false makes a decoy: counted against every limit, answered in the same
  // shape, no code made or sent.
  deliver: boolean
  // "return": otpd sends nothing and answers with the code.
  delivery: "otpd" | "return"
  client?: Client
  locale?: string
  // "sms" or "whatsapp" for a phone; otpd picks by the address when unset.
  channel?: "email" | "sms" | "whatsapp"
}

export type CheckInput = {
  to: string
  purpose: Purpose
  subject: string
  code: string
  client?: Client
}

// OtpdRefused is an answer of otpd's that is not a success and not an outage:
// a limit (429, with retryAfter), or a request otpd would not take (400 with
// the field, 401/403 for a key that is wrong or lacks a permission).
export class OtpdRefused extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly retryAfter?: number
  ) {
    super(message)
    this.name = "OtpdRefused"
  }
}

// OtpdUnavailable: otpd could not be reached, did not answer in time, or
// answered that its database or limiter is down (503), or answered nonsense.
export class OtpdUnavailable extends Error {
  constructor(message: string) {
    super(message)
    this.name = "OtpdUnavailable"
  }
}

export type ClientOptions = {
  url: string
  apiKey: string
  timeoutMs: number
  fetch?: typeof fetch
}

export class OtpdClient {
  private readonly base: string
  private readonly auth: string
  private readonly timeoutMs: number
  private readonly fetch_: typeof fetch

  constructor(opts: ClientOptions) {
    this.base = opts.url.replace(/\/+$/, "")
    this.auth = `Bearer ${opts.apiKey}`
    this.timeoutMs = opts.timeoutMs
    this.fetch_ = opts.fetch ?? fetch
  }

  createVerification(input: CreateInput): Promise<Verification> {
    const body = { ...slotOf(input), deliver: input.deliver, client: clientOf(input.client) } as Record<string, unknown>
    if (input.delivery === "return") body.delivery = "return"
    if (input.locale) body.locale = input.locale
    if (input.channel) body.channel = input.channel
    return this.post("/v1/verifications", body, 201)
  }

  check(input: CheckInput): Promise<Verification> {
    return this.post("/v1/verifications/check", { ...slotOf(input), code: input.code, client: clientOf(input.client) }, 200)
  }

  // cancelSubject cancels every pending verification bound to subject,
  // whatever its address and purpose, and answers how many.
  async cancelSubject(subject: string): Promise<number> {
    const { canceled } = await this.post<{ canceled: number }>(
      "/v1/verifications/cancel",
      { subject },
      200,
      (p) => typeof p?.canceled === "number"
    )
    return canceled
  }

  private async post<T = Verification>(
    path: string,
    body: unknown,
    want: number,
    valid: (payload: any) => boolean = (p) => typeof p?.status === "string"
  ): Promise<T> {
    let res: Response
    try {
      res = await this.fetch_(this.base + path, {
        method: "POST",
        headers: {
          authorization: this.auth,
          "content-type": "application/json",
          accept: "application/json",
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      })
    } catch (err) {
      const e = err as Error
      const why = e.name === "TimeoutError" ? `no answer within ${this.timeoutMs} ms` : causeOf(e)
      throw new OtpdUnavailable(`otpd at ${this.base} is unreachable: ${why}`)
    }
    let payload: any
    try {
      payload = await res.json()
    } catch {
      throw new OtpdUnavailable(`otpd answered ${res.status} without a JSON body`)
    }
    if (res.status === want) {
      if (!payload || !valid(payload)) {
        throw new OtpdUnavailable(`otpd answered ${res.status} without the expected body`)
      }
      return payload as T
    }
    const err = payload?.error ?? {}
    if (res.status === 503 || res.status >= 500) {
      throw new OtpdUnavailable(`otpd answered ${res.status}: ${err.message ?? "unavailable"}`)
    }
    let retryAfter: number | undefined
    if (res.status === 429) {
      const fromHeader = Number(res.headers.get("retry-after"))
      retryAfter = Number.isFinite(fromHeader) && fromHeader > 0 ? Math.ceil(fromHeader) : err.retry_after
      if (!retryAfter || retryAfter < 1) retryAfter = 1
    }
    throw new OtpdRefused(
      res.status,
      String(err.code ?? "error"),
      String(err.message ?? `otpd answered ${res.status}`),
      err.field,
      retryAfter
    )
  }
}

// slotOf is what names a code's slot in otpd: address, purpose, subject.
function slotOf(input: { to: string; purpose: Purpose; subject: string }) {
  return { to: input.to, purpose: input.purpose, subject: input.subject }
}

// clientOf is the end user's address and agent, or nothing (JSON.stringify
// leaves an undefined member out).
function clientOf(c?: Client): Client | undefined {
  return c && (c.ip || c.user_agent) ? c : undefined
}

// causeOf names why fetch failed (ECONNREFUSED, ENOTFOUND...) without the
// request, which would carry the key.
function causeOf(e: Error): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause
  return cause?.code ?? cause?.message ?? e.message
}

const LANGUAGE_TAG = /^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$/

// localeOf is the language a shopper's browser prefers most, from its
// Accept-Language header ("fr-CA,fr;q=0.9,en;q=0.5" gives "fr-CA"), for the
// messages otpd sends; otpd matches it to the languages it has templates
// for. Anything unreadable gives undefined: otpd's default language.
export function localeOf(acceptLanguage: string | undefined): string | undefined {
  if (!acceptLanguage) return undefined
  let best: { tag: string; q: number } | undefined
  for (const part of acceptLanguage.slice(0, 256).split(",")) {
    const [range, ...params] = part.trim().split(";")
    const tag = range.trim()
    if (!LANGUAGE_TAG.test(tag) || tag.length > 35) continue
    let q = 1
    for (const p of params) {
      const m = /^\s*q\s*=\s*([01](\.\d{0,3})?)\s*$/.exec(p)
      if (m) q = Number(m[1])
    }
    if (q > 0 && (!best || q > best.q)) best = { tag, q }
  }
  return best?.tag
}
