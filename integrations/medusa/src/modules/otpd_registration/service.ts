import { MedusaService } from "@medusajs/framework/utils"
import { OtpdAccountDeletionAudit } from "./models/account-deletion-audit"
import { OtpdAccountDeletionRequest } from "./models/account-deletion-request"
import { OtpdCustomerVerification } from "./models/customer-verification"

// The keys must be the PascalCase form of the models' table names, or
// Medusa's query and links cannot find the generated methods.
export default class OtpdRegistrationService extends MedusaService({
  OtpdCustomerVerification,
  OtpdAccountDeletionRequest,
  OtpdAccountDeletionAudit,
}) {}
