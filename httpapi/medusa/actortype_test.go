package medusa_test

import (
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi/medusa"
	"github.com/otpd/otpd/internal/flowtest"
)

// TestStoreActorType: the store routes serve the configured actor type,
// and the messages that name an actor type name it, not "customer".
func TestStoreActorType(t *testing.T) {
	e := newEnvWith(t, func(f *flowtest.Flows, h *medusa.Handler) {
		f.Actors.Types = []otpd.ActorType{{Name: "member", IDPrefix: "mem"}}
		h.StoreActorType = "member"
	})
	signUp := func(id string) string {
		t.Helper()
		e.expect(e.do("POST", "/auth/member/otp/pre-register", map[string]string{"identifier": id}), 200, "")
		return token(t, e.do("POST", "/auth/member/otp/register", map[string]string{"identifier": id, "otp": e.code(id)}))
	}
	reg := signUp("mia@example.com")
	ok := e.do("POST", "/store/customers", map[string]string{}, bearer(reg)...)
	e.expect(ok, 200, "")
	if id, _ := ok.json(t)["customer"].(map[string]any)["id"].(string); len(id) < 4 || id[:4] != "mem_" {
		t.Fatalf("customer id %q, want mem_...", id)
	}
	e.expect(e.do("POST", "/store/customers", map[string]string{}, bearer(reg)...), 400,
		`{"type":"invalid_data","message":"Request already authenticated as a member."}`)
	other := signUp("+12025550142")
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "mia@example.com"}, bearer(other)...), 422,
		`{"code":"invalid_request_error","type":"duplicate_error","message":"Member with this email already has an account"}`)
	login := token(t, e.do("POST", "/auth/token/refresh", nil, bearer(reg)...))
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(login)...), 200, "")
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "mia@example.com"}), 400,
		`{"type":"invalid_data","message":"Invalid request: The actor type 'customer' is not configured."}`)
}
