package otpd_test

import (
	"context"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
)

// newFlows returns every flow on a fresh engine (newEngine's clock and
// codes), with the events it delivers recorded.
func newFlows(t *testing.T) (*flowtest.Flows, *clock, *flowtest.Recorder) {
	t.Helper()
	e, clk, _ := newEngine(t)
	rec := &flowtest.Recorder{}
	e.Immediate = []otpd.Notifier{rec}
	return flowtest.New(e), clk, rec
}

// signUp signs up email by code and returns the principal of its new
// identity (no actor yet) and the code that did it.
func signUp(t *testing.T, f *flowtest.Flows, rec *flowtest.Recorder, email string) (*otpd.Principal, string) {
	t.Helper()
	ctx := context.Background()
	r := otpd.CodeRequest{ActorType: "customer", Identifier: email}
	if err := f.Codes.RequestSignUp(ctx, r); err != nil {
		t.Fatalf("RequestSignUp: %v", err)
	}
	code := rec.Last(t, email).Code
	p, err := f.Codes.SignUp(ctx, r, code)
	if err != nil {
		t.Fatalf("SignUp: %v", err)
	}
	return p, code
}
