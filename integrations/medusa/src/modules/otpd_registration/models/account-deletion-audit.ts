import { model } from "@medusajs/framework/utils"

// OtpdAccountDeletionAudit is what remains of a completed deletion: which
// request and customer id, when, and how many rows of each kind were
// anonymised or deleted. No email, phone or name: the point of the
// deletion is that those are gone.
export const OtpdAccountDeletionAudit = model
  .define("otpd_account_deletion_audit", {
    id: model.id({ prefix: "adra" }).primaryKey(),
    request_id: model.text(),
    customer_id: model.text(),
    completed_at: model.dateTime(),
    // e.g. {"customer": 1, "customer_addresses": 2, "auth_identities": 1, ...}
    removed: model.json(),
  })
  .indexes([{ on: ["request_id"], unique: true, where: "deleted_at IS NULL" }])
