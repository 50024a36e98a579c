package otpd

import (
	"fmt"
	"time"
)

// RenderText is the engine's default rendering step: the subject and
// plain-text body of an event's message, by what it carries: a token, a
// link (and the code, when it has one), or the code.
func RenderText(ev *Event, ttl time.Duration) (subject, text string) {
	switch {
	case ev.Token != "":
		return renderToken(ev.Purpose, ev.Token, ttl)
	case ev.Link != "" && ev.Code == "":
		return "Your sign-in link", fmt.Sprintf("Sign in with this link: %s It expires in %s. If you did not ask for it, ignore this message.", ev.Link, humanDuration(ttl))
	case ev.Link != "":
		subject, text = renderCode(ev.Purpose, ev.Code, ttl)
		return subject, text + " Or sign in with this link: " + ev.Link
	}
	return renderCode(ev.Purpose, ev.Code, ttl)
}

// renderCode is the message that carries a code for purpose p.
func renderCode(p Purpose, code string, ttl time.Duration) (subject, text string) {
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

// renderToken is the message that carries a token for purpose p (a
// password reset token, which the client exchanges for a new password).
func renderToken(p Purpose, token string, ttl time.Duration) (subject, text string) {
	what := "verification token"
	if p == PurposeResetPassword {
		what = "password reset token"
	}
	return "Your " + what, fmt.Sprintf("Your %s is %s. It expires in %s and works once. If you did not ask for it, ignore this message.", what, token, humanDuration(ttl))
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
