// Account deletion for customers (the customer-registration plugin's
// account-deletion routes): a signed-in customer asks, proves it with a code
// (otpd's purpose delete_account) and the request is confirmed, due
// accountDeletion.scheduledDays later; until the job completes it
// (src/lib/deletion-job.ts), a code to the account's address cancels it.
//
// Status changes are conditional UPDATEs in SQL (WHERE status = ...): the
// job holds a confirmed request's row locked while it deletes, so a cancel
// and a completion can never both happen.
import type { MedusaContainer } from "@medusajs/framework/types"
import type { Knex } from "@medusajs/framework/mikro-orm/knex"
import { ContainerRegistrationKeys, MedusaError } from "@medusajs/framework/utils"
import { OTPD_REGISTRATION } from "../modules/otpd_registration"
import type OtpdRegistrationService from "../modules/otpd_registration/service"
import type { ResolvedOptions } from "./options"
import type { Client } from "./otpd"
import { INVALID_CODE } from "./registration"
import { jwtSecretOf, sendBoundCode } from "./bound-code"
import { verifyOtpToken } from "./tokens"

// Emitted with delivery "medusa": a shop's subscriber sends the code.
export const DELETION_EVENT = "account-deletion.otp.generated"
export const CANCEL_EVENT = "account-deletion-cancel.otp.generated"

// otpd subjects: a deletion code and a cancel code are bound to the customer
// and to their own kind, so neither passes for the other or for any sign-in
// or contact code (other subjects, or other purposes).
export const deletionSubject = (customerId: string) => `account-deletion:customer:${customerId}`
export const cancelSubject = (customerId: string) => `account-deletion-cancel:customer:${customerId}`
// A decoy's subject: no customer's, so a decoy never retires a real code.
const DECOY_SUBJECT = "account-deletion-cancel:none"

export const REQUEST_TABLE = "otpd_account_deletion_request"
export const AUDIT_TABLE = "otpd_account_deletion_audit"

export type DeletionStatus = "pending" | "confirmed" | "completed" | "cancelled"

export type DeletionRequest = {
  id: string
  customer_id: string
  status: DeletionStatus
  reason: string | null
  scheduled_for: Date | string | null
  confirmed_at: Date | string | null
  completed_at: Date | string | null
  cancelled_at: Date | string | null
  created_at: Date | string
  updated_at: Date | string
}

const iso = (d: Date | string | null | undefined) => (d == null ? null : new Date(d).toISOString())

// serializeRequest is a request as the routes answer it.
export function serializeRequest(r: DeletionRequest) {
  return {
    id: r.id,
    customer_id: r.customer_id,
    status: r.status,
    reason: r.reason ?? null,
    scheduled_for: iso(r.scheduled_for),
    confirmed_at: iso(r.confirmed_at),
    completed_at: iso(r.completed_at),
    cancelled_at: iso(r.cancelled_at),
    created_at: iso(r.created_at),
    updated_at: iso(r.updated_at),
  }
}

function knexOf(container: MedusaContainer): Knex {
  return container.resolve(ContainerRegistrationKeys.PG_CONNECTION) as unknown as Knex
}


const invalidCode = () => new MedusaError(MedusaError.Types.INVALID_DATA, INVALID_CODE)

// isUniqueViolation: PostgreSQL's 23505, however the driver wraps it.
function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string }
  return e?.code === "23505" || /duplicate key|unique constraint/i.test(e?.message ?? "")
}

// liveRequest is the customer's pending or confirmed request (at most one:
// a unique index).
async function liveRequest(svc: OtpdRegistrationService, customerId: string) {
  const [r] = await svc.listOtpdAccountDeletionRequests({ customer_id: customerId, status: ["pending", "confirmed"] })
  return r as unknown as DeletionRequest | undefined
}

// pendingRequestOf reuses the customer's pending request (its reason
// replaced when a new one is given) or makes one. A confirmed request is
// not made pending again: the customer cancels it first.
async function pendingRequestOf(container: MedusaContainer, customerId: string, reason?: string): Promise<DeletionRequest> {
  const svc = container.resolve<OtpdRegistrationService>(OTPD_REGISTRATION)
  for (let i = 0; i < 2; i++) {
    const live = await liveRequest(svc, customerId)
    if (live?.status === "confirmed") {
      throw new MedusaError(
        MedusaError.Types.NOT_ALLOWED,
        `The account's deletion is already confirmed for ${iso(live.scheduled_for)}; cancel it first.`
      )
    }
    if (live) {
      if (reason === undefined) return live
      return (await svc.updateOtpdAccountDeletionRequests({ id: live.id, reason })) as unknown as DeletionRequest
    }
    try {
      return (await svc.createOtpdAccountDeletionRequests({
        customer_id: customerId,
        status: "pending",
        reason: reason ?? null,
      })) as unknown as DeletionRequest
    } catch (err) {
      // Another request of this customer's made it first: reuse that one.
      if (i === 1 || !isUniqueViolation(err)) throw err
    }
  }
  throw new Error("unreachable")
}

type Customer = { id: string; email: string | null; phone: string | null }

export type RequestDeletion = {
  container: MedusaContainer
  opts: ResolvedOptions
  customerId: string
  reason?: string
  client?: Client
  locale?: string
}

// requestDeletion makes (or reuses) the customer's pending request and sends
// a delete_account code to its email (its phone when it has no email).
export async function requestDeletion(s: RequestDeletion): Promise<{ token: string; expires_at: string }> {
  const query = s.container.resolve(ContainerRegistrationKeys.QUERY)
  const { data } = await query.graph({ entity: "customer", fields: ["id", "email", "phone"], filters: { id: s.customerId } })
  const customer = data[0] as Customer | undefined
  if (!customer) throw new MedusaError(MedusaError.Types.NOT_FOUND, `Customer with id: ${s.customerId} was not found`)
  const address = customer.email || customer.phone
  if (!address) {
    throw new MedusaError(MedusaError.Types.INVALID_DATA, "The customer has no email or phone to send a code to.")
  }
  const request = await pendingRequestOf(s.container, customer.id, s.reason)
  return sendBoundCode({
    container: s.container,
    opts: s.opts,
    to: address,
    purpose: "delete_account",
    subject: deletionSubject(customer.id),
    client: s.client,
    locale: s.locale,
    event: { name: DELETION_EVENT, data: { customer_id: customer.id } },
    claims: (to, verification_id) => ({ customer_id: customer.id, purpose: "account_deletion", verification_id, to, request_id: request.id }),
  })
}

export type CheckCode = {
  container: MedusaContainer
  opts: ResolvedOptions
  token: string
  code: string
  client?: Client
}

// confirmDeletion counts one guess at the code the token names. Right: the
// request is confirmed and due scheduledDays later (by the database's
// clock, which the job reads too). Anything wrong is 400 Invalid OTP.
export async function confirmDeletion(c: CheckCode): Promise<DeletionRequest> {
  const t = verifyOtpToken(jwtSecretOf(c.container), c.token, ["account_deletion"] as const)
  if (!t || !t.request_id) throw invalidCode()
  const checked = await c.opts.client.check({
    to: t.to,
    purpose: "delete_account",
    subject: deletionSubject(t.customer_id),
    code: c.code,
    client: c.client,
  })
  if (checked.status !== "approved") throw invalidCode()
  const knex = knexOf(c.container)
  const seconds = Math.round(c.opts.accountDeletion.scheduledDays * 86400)
  const [row] = await knex(REQUEST_TABLE)
    .where({ id: t.request_id, customer_id: t.customer_id, status: "pending" })
    .whereNull("deleted_at")
    .update({
      status: "confirmed",
      confirmed_at: knex.fn.now(),
      scheduled_for: knex.raw("now() + make_interval(secs => ?)", [seconds]),
      updated_at: knex.fn.now(),
    })
    .returning("*")
  if (row) return row as DeletionRequest
  const now = await knex(REQUEST_TABLE).where({ id: t.request_id }).whereNull("deleted_at").first()
  if (!now) throw new MedusaError(MedusaError.Types.NOT_FOUND, `Account deletion request with id: ${t.request_id} was not found`)
  throw new MedusaError(MedusaError.Types.NOT_ALLOWED, `The account deletion request is ${now.status}, not pending.`)
}

// normalizeAddress is an address as compared with a customer's: an email
// trimmed and lower-cased, a phone as its digits and leading +.
export function normalizeAddress(kind: "email" | "phone", raw: string): string {
  return kind === "email" ? raw.trim().toLowerCase() : raw.replace(/[^\d+]/g, "")
}

// confirmedRequestFor is the confirmed (so not completed) request of the
// live customer whose email or phone is the address, compared as
// normalizeAddress compares. Phones stored in a national format are not
// found by their international form, or the reverse.
async function confirmedRequestFor(
  container: MedusaContainer,
  kind: "email" | "phone",
  address: string
): Promise<{ request_id: string; customer_id: string } | undefined> {
  const knex = knexOf(container)
  const column = kind === "email" ? "lower(trim(c.email))" : "regexp_replace(c.phone, '[^0-9+]', '', 'g')"
  const row = await knex(`${REQUEST_TABLE} as r`)
    .join("customer as c", "c.id", "r.customer_id")
    .where("r.status", "confirmed")
    .whereNull("r.deleted_at")
    .whereNull("c.deleted_at")
    .whereRaw(`${column} = ?`, [normalizeAddress(kind, address)])
    .orderBy([{ column: "r.confirmed_at" }, { column: "r.id" }])
    .first("r.id as request_id", "r.customer_id as customer_id")
  return row
}

export type RequestCancel = {
  container: MedusaContainer
  opts: ResolvedOptions
  kind: "email" | "phone"
  address: string
  client?: Client
  locale?: string
}

// requestCancel sends an account_deletion_cancel code when the address is a
// customer's with a confirmed deletion, and makes a decoy otherwise (the
// same call to otpd, deliver false): the answer, a token in the same shape
// (no customer or request id in it), does not tell whether a deletion is
// pending. The decoy's token never verifies: otpd made no code for it.
export async function requestCancel(s: RequestCancel): Promise<{ token: string; expires_at: string }> {
  const to = normalizeAddress(s.kind, s.address)
  const hit = await confirmedRequestFor(s.container, s.kind, to)
  return sendBoundCode({
    container: s.container,
    opts: s.opts,
    to,
    purpose: "delete_account",
    subject: hit ? cancelSubject(hit.customer_id) : DECOY_SUBJECT,
    deliver: !!hit,
    client: s.client,
    locale: s.locale,
    event: { name: CANCEL_EVENT, data: { customer_id: hit?.customer_id } },
    // No customer id in the token: anyone can read it, and a decoy must look
    // like a real one.
    claims: (sentTo, verification_id) => ({ customer_id: "", purpose: "account_deletion_cancel", verification_id, to: sentTo }),
  })
}

// confirmCancel counts one guess at a cancel code and cancels the confirmed
// request of the address's customer. A deletion that completed meanwhile
// stays completed: 400 not_allowed.
export async function confirmCancel(c: CheckCode): Promise<DeletionRequest> {
  const t = verifyOtpToken(jwtSecretOf(c.container), c.token, ["account_deletion_cancel"] as const)
  if (!t) throw invalidCode()
  const kind = t.to.includes("@") ? "email" : "phone"
  const hit = await confirmedRequestFor(c.container, kind, t.to)
  if (!hit) throw invalidCode()
  const checked = await c.opts.client.check({
    to: t.to,
    purpose: "delete_account",
    subject: cancelSubject(hit.customer_id),
    code: c.code,
    client: c.client,
  })
  if (checked.status !== "approved") throw invalidCode()
  const knex = knexOf(c.container)
  // Waits for the job's lock on the row, if it holds one; then finds the
  // request completed (no row) or still confirmed.
  const [row] = await knex(REQUEST_TABLE)
    .where({ id: hit.request_id, status: "confirmed" })
    .whereNull("deleted_at")
    .update({ status: "cancelled", cancelled_at: knex.fn.now(), updated_at: knex.fn.now() })
    .returning("*")
  if (!row) throw new MedusaError(MedusaError.Types.NOT_ALLOWED, "The account has already been deleted.")
  return row as DeletionRequest
}
