import { sendSignUpCode } from "../../../../../lib/codes"
import { PRE_REGISTER_MESSAGE, sendCodeRoute } from "../../../../../lib/http"

// POST /auth/{actor_type}/otp/pre-register: a sign-up code for an identifier
// no actor has yet, for POST /auth/{actor_type}/otp/register. An identifier
// that already has an actor gets the same answer and a decoy.
export const POST = sendCodeRoute(sendSignUpCode, PRE_REGISTER_MESSAGE)
