// Completing due account deletions. Each request is done in one database
// transaction on Medusa's shared connection, claimed with FOR UPDATE SKIP
// LOCKED: with several Medusa instances (each runs the scheduled job), each
// request is completed by exactly one of them, and a crash (or kill -9) in
// the middle rolls the whole request back, to be done again by the next run.
// The customer's pending otpd codes are canceled inside that transaction
// (POST /v1/verifications/cancel per subject): with otpd unreachable, the
// request rolls back and waits for a run that can reach it.
// Medusa's deleteCustomersWorkflow / removeCustomerAccountWorkflow are not
// used: they soft-delete (the row keeps email, phone and names) and run as a
// saga across modules, which a crash can leave half done.
import { setTimeout as sleep } from "node:timers/promises"
import type { MedusaContainer } from "@medusajs/framework/types"
import type { Knex } from "@medusajs/framework/mikro-orm/knex"
import { ContainerRegistrationKeys, generateEntityId, Modules } from "@medusajs/framework/utils"
import { AUDIT_TABLE, cancelSubject, deletionSubject, REQUEST_TABLE } from "./deletion"
import { contactChangeSubject } from "./contact-change"
import { signInSubject } from "./codes"
import { contactSubject } from "./registration"
import { type OtpdClient, OtpdRefused, OtpdUnavailable } from "./otpd"
import { PLUGIN_NAME, pluginOptions } from "./options"

// TEST-ONLY: the fixture's crash test sets this to hold each deletion's
// transaction open for that many milliseconds after the customer's rows are
// changed, so that it can kill Medusa in the middle. Never set in a shop.
const TEST_DELAY_ENV = "OTPD_MEDUSA_TEST_DELETION_DELAY_MS"

export type Removed = {
  customer: number
  customer_addresses: number
  auth_identities_deleted: number
  auth_identities_unlinked: number
  contact_verifications: number
  otpd_verifications_canceled: number
}

type Claimed = { id: string; customer_id: string }

// completeOne completes one due request, or answers null when none is left
// that another runner does not hold.
async function completeOne(
  knex: Knex,
  otpd: OtpdClient,
  testDelayMs: number
): Promise<(Claimed & { removed: Removed }) | null> {
  return knex.transaction(async (trx) => {
    const claimed: Claimed | undefined = await trx(REQUEST_TABLE)
      .select("id", "customer_id")
      .where("status", "confirmed")
      .whereNull("deleted_at")
      .where("scheduled_for", "<=", trx.fn.now())
      .orderBy([{ column: "scheduled_for" }, { column: "id" }])
      .forUpdate()
      .skipLocked()
      .first()
    if (!claimed) return null
    const cid = claimed.customer_id

    // The customer: every personal field emptied, the row soft-deleted (an
    // order or a cart may still name its id). A customer already
    // soft-deleted otherwise is anonymised too.
    const customer = await trx("customer")
      .where({ id: cid })
      .update({
        email: null,
        phone: null,
        first_name: null,
        last_name: null,
        company_name: null,
        metadata: null,
        deleted_at: trx.raw("coalesce(deleted_at, now())"),
        updated_at: trx.fn.now(),
      })
    const customer_addresses = await trx("customer_address")
      .where({ customer_id: cid })
      .update({
        address_name: null,
        company: null,
        first_name: null,
        last_name: null,
        address_1: null,
        address_2: null,
        city: null,
        province: null,
        postal_code: null,
        phone: null,
        metadata: null,
        deleted_at: trx.raw("coalesce(deleted_at, now())"),
        updated_at: trx.fn.now(),
      })

    // The customer's sign-in identities, named before they go: their
    // sign-in codes are canceled in otpd below.
    const identityIds: string[] = (
      await trx("auth_identity").select("id").whereRaw("app_metadata->>'customer_id' = ?", [cid])
    ).map((r: { id: string }) => r.id)

    // Auth identities: deleted (with their provider identities, MFA data and
    // tokens: ON DELETE CASCADE) when they serve only this customer; one that
    // also serves another actor (an admin user, say) only loses its link to
    // the customer, as Medusa's removeCustomerAccountWorkflow does (its
    // provider identity, whose entity_id may be the email, stays: the other
    // actor signs in with it).
    const auth_identities_deleted = await trx("auth_identity")
      .whereRaw("app_metadata->>'customer_id' = ?", [cid])
      .whereRaw("not exists (select 1 from jsonb_each(app_metadata) e where e.key <> 'customer_id' and e.value <> 'null'::jsonb)")
      .del()
    const auth_identities_unlinked = await trx("auth_identity")
      .whereRaw("app_metadata->>'customer_id' = ?", [cid])
      .update({ app_metadata: trx.raw("app_metadata - 'customer_id'"), updated_at: trx.fn.now() })

    // The plugin's own record of the customer's verified contacts holds the
    // addresses: gone too.
    const contact_verifications = await trx("otpd_customer_verification").where({ customer_id: cid }).del()

    // Every code otpd still holds for the customer (contact verification,
    // contact change, deletion and its cancel, sign-in) is canceled, so
    // none sent before can be used after. Idempotent; done before the
    // commit, so that an otpd down rolls the request back, to be completed
    // (and canceled) by a later run, never completed with codes left live.
    const subjects = [
      contactSubject(cid),
      contactChangeSubject(cid),
      deletionSubject(cid),
      cancelSubject(cid),
      ...identityIds.map((id) => signInSubject("customer", id)),
    ]
    let otpd_verifications_canceled = 0
    for (const subject of subjects) otpd_verifications_canceled += await otpd.cancelSubject(subject)

    if (testDelayMs > 0) await sleep(testDelayMs)

    const removed: Removed = {
      customer,
      customer_addresses,
      auth_identities_deleted,
      auth_identities_unlinked,
      contact_verifications,
      otpd_verifications_canceled,
    }
    await trx(AUDIT_TABLE).insert({
      id: generateEntityId(undefined, "adra"),
      request_id: claimed.id,
      customer_id: cid,
      completed_at: trx.fn.now(),
      removed: JSON.stringify(removed),
    })
    await trx(REQUEST_TABLE)
      .where({ id: claimed.id })
      .update({ status: "completed", completed_at: trx.fn.now(), updated_at: trx.fn.now() })
    return { ...claimed, removed }
  })
}

// completeDueDeletions completes every due request it can claim, one at a
// time, and answers how many. Running it again, here or on another
// instance, finds nothing left to do.
export async function completeDueDeletions(container: MedusaContainer): Promise<number> {
  const knex = container.resolve(ContainerRegistrationKeys.PG_CONNECTION) as unknown as Knex
  const logger = container.resolve(ContainerRegistrationKeys.LOGGER)
  const { client } = pluginOptions(container.resolve(ContainerRegistrationKeys.CONFIG_MODULE))
  const testDelayMs = Number(process.env[TEST_DELAY_ENV] ?? 0) || 0
  let n = 0
  for (;;) {
    let done: Awaited<ReturnType<typeof completeOne>>
    try {
      done = await completeOne(knex, client, testDelayMs)
    } catch (err) {
      if (!(err instanceof OtpdUnavailable || err instanceof OtpdRefused)) throw err
      // Rolled back: the request stays confirmed and due for the next run.
      logger.warn(`${PLUGIN_NAME}: account deletions wait for the next run: canceling codes in otpd failed: ${err.message}`)
      return n
    }
    if (!done) return n
    n++
    // Ids only: the log holds no personal data.
    logger.info(`${PLUGIN_NAME}: account deletion request ${done.id} completed for customer ${done.customer_id}`)
    try {
      await container.resolve(Modules.EVENT_BUS).emit({ name: "customer.deleted", data: { id: done.customer_id } })
    } catch (err) {
      logger.warn(`${PLUGIN_NAME}: customer.deleted not emitted for ${done.customer_id}: ${(err as Error).message}`)
    }
  }
}
