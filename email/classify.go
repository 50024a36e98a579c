package email

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"regexp"

	"github.com/otpd/otpd"
	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// replyError is an SMTP server's refusal, reduced to what is safe to store
// and show: the stage, the reply code and the enhanced status code. The
// reply's text is left out, as it may quote the recipient or the message.
type replyError struct {
	Stage    string // "RCPT TO", "AUTH", …
	Code     int    // 421, 550, …
	Enhanced string // "5.1.1"; "" when the server sent none
}

func (e *replyError) Error() string {
	s := fmt.Sprintf("%s: the server answered %d", e.Stage, e.Code)
	if e.Enhanced != "" {
		s += " " + e.Enhanced
	}
	return s
}

var enhancedCode = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)

// tempClass is the class of a 4xx reply: the codes servers use to ask for a
// slower pace (and for greylisting) are rate_limited, the rest unavailable.
func tempClass(code int) string {
	switch code {
	case 421, 450, 451, 452:
		return otpd.DeliveryRateLimited
	}
	return otpd.DeliveryUnavailable
}

// classifyOpening classifies a failure while opening a session (greeting,
// EHLO, STARTTLS, AUTH). A 4xx reply or a network failure is temporary; a
// 5xx reply means this server will not take mail from this configuration:
// permanent, config.
func classifyOpening(ctx context.Context, stage string, err error, dc *deadlineConn) error {
	if errors.Is(err, errNoMechanism) || errors.Is(err, smtp.ErrUnencrypted) || errors.Is(err, smtp.ErrWrongHostname) {
		return otpd.Permanent(Provider, otpd.DeliveryConfig, fmt.Errorf("%s: %w", stage, err))
	}
	if te, ok := errors.AsType[*textproto.Error](err); ok {
		re := &replyError{Stage: stage, Code: te.Code, Enhanced: enhancedCode.FindString(te.Msg)}
		if te.Code/100 == 4 {
			return otpd.Temporary(Provider, tempClass(te.Code), re)
		}
		return otpd.Permanent(Provider, otpd.DeliveryConfig, re)
	}
	// Connection refused or reset, a TLS handshake failure (certificate
	// included), a timeout: retry later.
	return otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("%s: %w", stage, dc.cause(ctx, err)))
}

var stages = map[gomail.SendErrReason]string{
	gomail.ErrGetSender:     "sender address",
	gomail.ErrGetRcpts:      "recipient address",
	gomail.ErrSMTPMailFrom:  "MAIL FROM",
	gomail.ErrSMTPRcptTo:    "RCPT TO",
	gomail.ErrSMTPData:      "DATA",
	gomail.ErrSMTPDataClose: "end of DATA",
	gomail.ErrSMTPReset:     "RSET",
	gomail.ErrWriteContent:  "message content",
	gomail.ErrConnCheck:     "NOOP",
	gomail.ErrNoUnencoded:   "8BITMIME",
}

// classifySend classifies go-mail's error for one message. Its ErrorCode
// is the reply code, 0 when the failure was not an SMTP reply (network,
// timeout); IsTemp is only meaningful for replies.
func classifySend(ctx context.Context, se *gomail.SendError, dc *deadlineConn) error {
	stage, ok := stages[se.Reason]
	if !ok {
		stage = se.Reason.String()
	}
	code := se.ErrorCode()
	if code == 0 {
		switch se.Reason {
		case gomail.ErrSMTPDataClose:
			if dc.writeFailed() {
				// The final dot never left: the server drops an
				// unfinished message.
				return otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("%s: the message was not completed: %w", stage, dc.cause(ctx, nil)))
			}
			// The message was complete and the answer never came: the
			// server may have queued it. The outbox retries this once.
			return otpd.Ambiguous(Provider, fmt.Errorf("%s: no answer, the server may have accepted the message: %w", stage, dc.cause(ctx, nil)))
		case gomail.ErrGetSender, gomail.ErrNoUnencoded:
			return otpd.Permanent(Provider, otpd.DeliveryConfig, fmt.Errorf("%s: %s", stage, se.Reason))
		case gomail.ErrGetRcpts:
			return otpd.Permanent(Provider, otpd.DeliveryRejected, errors.New("the recipient is not a valid email address"))
		}
		return otpd.Temporary(Provider, otpd.DeliveryUnavailable, fmt.Errorf("%s: %w", stage, dc.cause(ctx, nil)))
	}
	re := &replyError{Stage: stage, Code: code, Enhanced: se.EnhancedStatusCode()}
	switch {
	case se.IsTemp():
		return otpd.Temporary(Provider, tempClass(code), re)
	case code == 530:
		// "Authentication required": the URL lacks credentials.
		return otpd.Permanent(Provider, otpd.DeliveryConfig, re)
	}
	switch se.Reason {
	case gomail.ErrSMTPMailFrom, gomail.ErrSMTPRcptTo, gomail.ErrSMTPData, gomail.ErrSMTPDataClose:
		return otpd.Permanent(Provider, otpd.DeliveryRejected, re)
	}
	// A 5xx to NOOP or RSET says nothing about this message.
	return otpd.Temporary(Provider, otpd.DeliveryUnavailable, re)
}
