import { model } from "@medusajs/framework/utils"

// OtpdCustomerVerification is what the plugin knows of a customer's
// contacts: whether their email and phone were proved by a code, when, by
// which otpd verification, and for which value (a changed address is not
// verified any more).
export const OtpdCustomerVerification = model
  .define("otpd_customer_verification", {
    id: model.id({ prefix: "cver" }).primaryKey(),
    customer_id: model.text(),
    email_verified: model.boolean().default(false),
    email_verified_at: model.dateTime().nullable(),
    email_verified_value: model.text().nullable(),
    email_verification_id: model.text().nullable(),
    phone_verified: model.boolean().default(false),
    phone_verified_at: model.dateTime().nullable(),
    phone_verified_value: model.text().nullable(),
    phone_verification_id: model.text().nullable(),
  })
  .indexes([{ on: ["customer_id"], unique: true, where: "deleted_at IS NULL" }])
