import { ModuleProvider, Modules } from "@medusajs/framework/utils"
import { PhonepassAuthProvider } from "./service"

// The auth provider `phonepass`, registered in medusa-config's auth module
// as { resolve: "@otpd/medusa/providers/phonepass", id: "phonepass" }.
export default ModuleProvider(Modules.AUTH, {
  services: [PhonepassAuthProvider],
})
