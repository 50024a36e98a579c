import { z } from "@medusajs/framework/zod"

// POST /store/customers/me/contact: exactly one of email and phone.
export const RequestContactChangeBody = z
  .object({ email: z.string().min(1).optional(), phone: z.string().min(1).optional() })
  .refine((b) => (b.email === undefined) !== (b.phone === undefined), {
    message: "Provide exactly one of email or phone.",
  })
export type RequestContactChangeBody = z.infer<typeof RequestContactChangeBody>

export const ApplyContactChangeBody = z.object({
  token: z.string().min(1),
  code: z.string().min(1),
})
export type ApplyContactChangeBody = z.infer<typeof ApplyContactChangeBody>

// PATCH /store/customers/me: the fields a customer changes without a code.
// email and phone are accepted by the schema only to be refused with the
// contract's message (refuseContactFields).
export const PatchMeBody = z.object({
  first_name: z.string().nullish(),
  last_name: z.string().nullish(),
  company_name: z.string().nullish(),
  metadata: z.record(z.string(), z.unknown()).nullish(),
  email: z.unknown().optional(),
  phone: z.unknown().optional(),
})
export type PatchMeBody = z.infer<typeof PatchMeBody>
