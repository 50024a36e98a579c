import type { AuthenticatedMedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { Modules } from "@medusajs/framework/utils"
import { refuseContactFields } from "../../../../lib/http"
import type { PatchMeBody } from "./validators"

// PATCH /store/customers/me: the customer-registration plugin's update of
// the customer's own fields. Email and phone change only through
// POST /store/customers/me/contact (a code to the new value).
export const PATCH = async (req: AuthenticatedMedusaRequest<PatchMeBody>, res: MedusaResponse) => {
  refuseContactFields(req.validatedBody)
  const { email: _e, phone: _p, ...fields } = req.validatedBody
  const customers = req.scope.resolve(Modules.CUSTOMER)
  const customer = await customers.updateCustomers(req.auth_context.actor_id, fields as Record<string, unknown>)
  res.status(200).json({ customer })
}
