import type { MedusaContainer } from "@medusajs/framework/types"
import { configManager } from "@medusajs/framework/config"
import { completeDueDeletions } from "../lib/deletion-job"
import { PLUGIN_NAME } from "../lib/options"

// Completes the account deletions that are due. Every Medusa instance runs
// it (Medusa's in-memory workflow engine schedules jobs per process); each
// request is claimed by one of them (see src/lib/deletion-job.ts).
export default async function completeAccountDeletions(container: MedusaContainer) {
  await completeDueDeletions(container)
}

// The schedule is the plugin's option accountDeletion.jobSchedule: Medusa
// reads `config` when it loads the job, after medusa-config is loaded.
function scheduleOf(): string {
  const plugins = (configManager.config?.plugins ?? []) as Array<string | { resolve: string; options?: any }>
  const entry = plugins.find((p) => typeof p !== "string" && p.resolve === PLUGIN_NAME)
  const schedule = typeof entry === "object" ? entry.options?.accountDeletion?.jobSchedule : undefined
  return typeof schedule === "string" && schedule.trim() !== "" ? schedule.trim() : "*/5 * * * *"
}

export const config = {
  name: "otpd-complete-account-deletions",
  schedule: scheduleOf(),
}
