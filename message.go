package otpd

import (
	"fmt"
	"time"
)

// RenderMessage returns the subject and plain-text body of the message that
// carries a code for purpose.
func RenderMessage(p Purpose, code string, ttl time.Duration) (subject, text string) {
	what := "verification code"
	switch p {
	case PurposeSignIn, PurposeSecondFactor:
		what = "sign-in code"
	case PurposeSignUp:
		what = "sign-up code"
	case PurposeChangeContact:
		what = "code to confirm your new contact"
	case PurposeResetPassword:
		what = "password reset code"
	case PurposeDeleteAccount:
		what = "code to delete your account"
	}
	subject = "Your " + what
	text = fmt.Sprintf("Your %s is %s. It expires in %s. If you did not ask for it, ignore this message.", what, code, humanDuration(ttl))
	return subject, text
}

// RenderTokenMessage returns the subject and plain-text body of the message
// that carries a token for purpose (a password reset token, which the
// storefront exchanges for a new password).
func RenderTokenMessage(p Purpose, token string, ttl time.Duration) (subject, text string) {
	what := "verification token"
	if p == PurposeResetPassword {
		what = "password reset token"
	}
	return "Your " + what, fmt.Sprintf("Your %s is %s. It expires in %s and works once. If you did not ask for it, ignore this message.", what, token, humanDuration(ttl))
}

// RenderLinkMessage returns the subject and plain-text body of a message
// that carries a magic link, and the code when there is one to type.
func RenderLinkMessage(p Purpose, code, link string, ttl time.Duration) (subject, text string) {
	if code == "" {
		return "Your sign-in link", fmt.Sprintf("Sign in with this link: %s It expires in %s. If you did not ask for it, ignore this message.", link, humanDuration(ttl))
	}
	subject, text = RenderMessage(p, code, ttl)
	return subject, text + " Or sign in with this link: " + link
}

func humanDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return plural(int(d/time.Minute), "minute")
	default:
		return plural(int((d+time.Second-1)/time.Second), "second")
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
