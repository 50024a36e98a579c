import { Module } from "@medusajs/framework/utils"
import OtpdRegistrationService from "./service"

// The plugin's module: each customer's verified contacts. Medusa registers
// it with the plugin; `medusa db:migrate` creates its table.
export const OTPD_REGISTRATION = "otpd_registration"

export default Module(OTPD_REGISTRATION, { service: OtpdRegistrationService })
