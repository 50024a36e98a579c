import type { AuthenticatedMedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { serializeRequest, type DeletionRequest } from "../../../lib/deletion"
import { OTPD_REGISTRATION } from "../../../modules/otpd_registration"
import type OtpdRegistrationService from "../../../modules/otpd_registration/service"

// GET /admin/account-deletion-requests (Medusa authenticates /admin/* as a
// user): the deletion requests, newest first, filtered by status.
export const GET = async (req: AuthenticatedMedusaRequest, res: MedusaResponse) => {
  const svc = req.scope.resolve<OtpdRegistrationService>(OTPD_REGISTRATION)
  const { skip, take, order } = req.queryConfig.pagination
  const [rows, count] = await svc.listAndCountOtpdAccountDeletionRequests(req.filterableFields, {
    skip,
    take,
    order: order && Object.keys(order).length ? order : { created_at: "DESC" },
  })
  res.json({
    account_deletion_requests: (rows as unknown as DeletionRequest[]).map(serializeRequest),
    count,
    offset: skip,
    limit: take,
  })
}
