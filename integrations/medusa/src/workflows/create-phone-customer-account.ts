// Core's createCustomerAccountWorkflow, for a customer without email: core's
// refuses one ("Email is required to create a customer"), this one checks
// the phone instead. Same steps otherwise: the customer (has_account), then
// the auth identity's app_metadata.customer_id, undone if either fails.
import { createCustomersWorkflow, setAuthAppMetadataStep } from "@medusajs/medusa/core-flows"
import { MedusaError, Modules } from "@medusajs/framework/utils"
import { createStep, createWorkflow, transform, WorkflowResponse } from "@medusajs/framework/workflows-sdk"

export type PhoneCustomerAccountInput = {
  authIdentityId: string
  customerData: {
    phone: string // E.164
    first_name?: string | null
    last_name?: string | null
    company_name?: string | null
    metadata?: Record<string, unknown> | null
  }
}

// As core's check of the email: one account per phone; and the identity
// must not have a customer already (core's step would throw a plain Error,
// a 500).
const validatePhoneCustomerAccount = createStep(
  "otpd-validate-phone-customer-account",
  async (input: PhoneCustomerAccountInput, { container }) => {
    const customers = container.resolve(Modules.CUSTOMER)
    // (The customer module filters on any column; its filter type lists few.)
    const filter = { phone: input.customerData.phone, has_account: true } as Record<string, unknown>
    const same = await customers.listCustomers(filter)
    if (same.length > 0) {
      throw new MedusaError(MedusaError.Types.DUPLICATE_ERROR, "Customer with this phone already has an account")
    }
    const identity = await container.resolve(Modules.AUTH).retrieveAuthIdentity(input.authIdentityId)
    if (identity.app_metadata?.customer_id) {
      throw new MedusaError(MedusaError.Types.INVALID_DATA, "Request already authenticated as a customer.")
    }
  }
)

export const createPhoneCustomerAccountWorkflow = createWorkflow(
  "otpd-create-phone-customer-account",
  (input: PhoneCustomerAccountInput) => {
    validatePhoneCustomerAccount(input)
    const customersData = transform({ input }, ({ input }) => [{ ...input.customerData, has_account: true }])
    const customers = createCustomersWorkflow.runAsStep({ input: { customersData } })
    const customer = transform(customers, (c) => c[0])
    setAuthAppMetadataStep({ authIdentityId: input.authIdentityId, actorType: "customer", value: customer.id })
    return new WorkflowResponse(customer)
  }
)
