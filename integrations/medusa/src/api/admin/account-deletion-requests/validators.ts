import { z } from "@medusajs/framework/zod"
import { createFindParams } from "@medusajs/medusa/api/utils/validators"

// GET /admin/account-deletion-requests?limit&offset&order&status
export const ListDeletionRequestsQuery = createFindParams({ limit: 20, offset: 0 }).merge(
  z.object({ status: z.enum(["pending", "confirmed", "completed", "cancelled"]).optional() })
)
export type ListDeletionRequestsQuery = z.infer<typeof ListDeletionRequestsQuery>

export const LIST_FIELDS = [
  "id",
  "customer_id",
  "status",
  "reason",
  "scheduled_for",
  "confirmed_at",
  "completed_at",
  "cancelled_at",
  "created_at",
  "updated_at",
]
