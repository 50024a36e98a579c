import { z } from "@medusajs/framework/zod"

// auth-otp's bodies; validateAndTransformBody makes them strict, so an
// unknown member is a 400 naming it.
export const IdentifierBody = z.object({
  identifier: z.string().min(1),
})
export type IdentifierBody = z.infer<typeof IdentifierBody>

export const VerifyBody = z.object({
  identifier: z.string().min(1),
  otp: z.string().min(1),
})
export type VerifyBody = z.infer<typeof VerifyBody>
