import { sendSignInCode } from "../../../../../lib/codes"
import { GENERATE_MESSAGE, sendCodeRoute } from "../../../../../lib/http"

// POST /auth/{actor_type}/otp/generate: a sign-in code for the actor with
// this identifier, sent by otpd or by the shop's subscriber of otp.generated.
// An unknown identifier gets the same answer, and a decoy in otpd: no code,
// no event, the same limits.
export const POST = sendCodeRoute(sendSignInCode, GENERATE_MESSAGE)
