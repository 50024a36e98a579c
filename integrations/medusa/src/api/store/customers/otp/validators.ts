import { z } from "@medusajs/framework/zod"

// The customer-registration plugin's bodies (CONTRACTS B.3); strict, so an
// unknown member is a 400 naming it.
export const SendContactCodeBody = z.object({
  customer_id: z.string().min(1),
  type: z.enum(["email_verification", "phone_verification"]),
})
export type SendContactCodeBody = z.infer<typeof SendContactCodeBody>

export const VerifyContactCodeBody = z.object({
  token: z.string().min(1),
  code: z.string().min(1),
})
export type VerifyContactCodeBody = z.infer<typeof VerifyContactCodeBody>
