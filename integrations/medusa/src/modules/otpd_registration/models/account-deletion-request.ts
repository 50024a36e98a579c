import { model } from "@medusajs/framework/utils"

// OtpdAccountDeletionRequest is a customer's request to delete their
// account: pending until the customer confirms it with a code, confirmed
// (and due at scheduled_for) until the job completes it or the customer
// cancels it. The job and the cancel route move it out of "confirmed" with
// conditional updates in SQL, so one of them wins.
export const OtpdAccountDeletionRequest = model
  .define("otpd_account_deletion_request", {
    id: model.id({ prefix: "adr" }).primaryKey(),
    customer_id: model.text(),
    status: model.enum(["pending", "confirmed", "completed", "cancelled"]).default("pending"),
    // What the customer wrote, for the shop; kept after the deletion.
    reason: model.text().nullable(),
    scheduled_for: model.dateTime().nullable(),
    confirmed_at: model.dateTime().nullable(),
    completed_at: model.dateTime().nullable(),
    cancelled_at: model.dateTime().nullable(),
  })
  .indexes([
    { on: ["customer_id"] },
    // At most one live (pending or confirmed) request per customer: two
    // simultaneous requests cannot both create one.
    { on: ["customer_id"], unique: true, where: "status IN ('pending', 'confirmed') AND deleted_at IS NULL" },
    // The job's query: confirmed requests in order of their due time.
    { on: ["status", "scheduled_for"] },
  ])
