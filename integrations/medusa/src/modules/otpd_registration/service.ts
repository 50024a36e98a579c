import { MedusaService } from "@medusajs/framework/utils"
import { OtpdCustomerVerification } from "./models/customer-verification"

// The keys must be the PascalCase form of the models' table names, or
// Medusa's query and links cannot find the generated methods.
export default class OtpdRegistrationService extends MedusaService({ OtpdCustomerVerification }) {}
