import { z } from "@medusajs/framework/zod"

// The account-deletion bodies (CONTRACTS B.3); strict, so an unknown member
// is a 400 naming it.
export const RequestDeletionBody = z.object({
  reason: z.string().max(1000).optional(),
})
export type RequestDeletionBody = z.infer<typeof RequestDeletionBody>

export const CodeBody = z.object({
  token: z.string().min(1),
  code: z.string().min(1),
})
export type CodeBody = z.infer<typeof CodeBody>

export const CancelRequestBody = z
  .object({
    email: z.string().max(320).email({ message: "Field 'email' is not an email address" }).optional(),
    phone: z
      .string()
      .max(32)
      .regex(/^\+?[0-9 ().-]{4,}$/, { message: "Field 'phone' is not a phone number" })
      .optional(),
  })
  .strict()
  .refine((b) => (b.email === undefined) !== (b.phone === undefined), {
    message: "Provide exactly one of the fields 'email' or 'phone'",
  })
export type CancelRequestBody = z.infer<typeof CancelRequestBody>
