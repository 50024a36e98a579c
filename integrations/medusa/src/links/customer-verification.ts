import { defineLink } from "@medusajs/framework/utils"
import CustomerModule from "@medusajs/medusa/customer"
import OtpdRegistrationModule from "../modules/otpd_registration"

// A customer's verified contacts, readable with Medusa's Query and the
// `fields` parameter of the customer routes:
// GET /store/customers/me?fields=+otpd_customer_verification.*
// Read-only (no link table): the plugin's record names its customer by
// customer_id, and the plugin alone writes it.
export default defineLink(
  { linkable: CustomerModule.linkable.customer, field: "id" },
  { ...OtpdRegistrationModule.linkable.otpdCustomerVerification.id, primaryKey: "customer_id" },
  { readOnly: true }
)
