import { ModuleProvider, Modules } from "@medusajs/framework/utils"
import { OtpdAuthProvider } from "./service"

// The auth provider `otp`, registered in medusa-config as
// { resolve: "@otpd/medusa/providers/otp", id: "otp", options: { url, apiKey } }.
export default ModuleProvider(Modules.AUTH, {
  services: [OtpdAuthProvider],
})
