package supertokens_test

import (
	"maps"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi/supertokens"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/internal/hostiletest"
)

// TestHostileBodies: on every POST route of the dialect, with and without
// a tenant prefix, a body that is not strict UTF-8 JSON (a form or
// text/plain body that a page on any site could make a browser send
// without a preflight, invalid UTF-8, a lone surrogate, a duplicate key,
// cut short, broken chunking, too large) gets a 4xx {"message"}, never a
// 5xx, and stores and sends nothing; the session routes are sent valid
// tokens, so the body is read.
func TestHostileBodies(t *testing.T) {
	e := newEnv(t)
	access, refresh := tokens(t, e.signIn("ada@example.com"))
	d, _ := e.createCode("", map[string]string{"email": "bob@example.com"})
	code := e.code("bob@example.com")
	e.clock.Add(61e9) // past the resend cooldown

	type route struct {
		path, field string
		headers     []string
	}
	var routes []route
	for _, tenant := range []string{"", "/public"} {
		routes = append(routes,
			route{base + tenant + "/signinup/code", "email", nil},
			route{base + tenant + "/signinup/code/resend", "preAuthSessionId", nil},
			route{base + tenant + "/signinup/code/consume", "preAuthSessionId", nil},
		)
	}
	routes = append(routes,
		route{base + "/session/refresh", "refreshToken", []string{"Authorization", "Bearer " + refresh}},
		route{base + "/signout", "userContext", []string{"Authorization", "Bearer " + access}},
	)
	before := hostiletest.Count(t, e.path)
	sent := e.events.Count("")
	for _, rt := range routes {
		for _, b := range hostiletest.Bodies(rt.field) {
			r := hostiletest.Send(t, e.srv.URL, "POST", rt.path, b, rt.headers...)
			if msg, _ := r.Body["message"].(string); r.Status != b.Status || msg == "" || len(r.Body) != 1 {
				t.Errorf("POST %s, %s: %d %s, want %d {\"message\"}", rt.path, b.Name, r.Status, r.Raw, b.Status)
			}
		}
	}
	if after := hostiletest.Count(t, e.path); !maps.Equal(before, after) {
		t.Fatalf("rows before %v, after %v", before, after)
	}
	if n := e.events.Count(""); n != sent {
		t.Fatalf("%d messages sent by hostile requests", n-sent)
	}
	// Nothing was spent or ended: the code signs in, the refresh token
	// rotates, the session is live.
	if r := e.consume("", d, code); r.json(t)["status"] != "OK" {
		t.Fatalf("the code after hostile consumes: %s", r)
	}
	if r := e.do("GET", base+"/session", nil, "Authorization", "Bearer "+access); r.status != 200 {
		t.Fatalf("the session after hostile sign-outs: %s", r)
	}
	if r := e.do("POST", base+"/session/refresh", nil, "Authorization", "Bearer "+refresh); r.status != 200 {
		t.Fatalf("the refresh token after hostile refreshes: %s", r)
	}
}

// TestHostileBodies_Messages: the messages name the problem.
func TestHostileBodies_Messages(t *testing.T) {
	e := newEnv(t)
	for name, want := range map[string]string{
		"text/plain":     "Invalid JSON body: Content-Type must be application/json",
		"form":           "Invalid JSON body: Content-Type must be application/json",
		"raw \\xff":      "Invalid JSON body: not valid UTF-8",
		"lone surrogate": "Invalid JSON body: not valid UTF-8",
		"duplicate key":  "Invalid JSON body: email is given twice",
		"short body":     "Invalid JSON body: the body could not be read completely",
		"too large":      "Request body is larger than 102400 bytes",
	} {
		if r := hostiletest.Send(t, e.srv.URL, "POST", base+"/signinup/code", hostiletest.Named("email", name)); r.Body["message"] != want {
			t.Errorf("%s: %d %s, want message %q", name, r.Status, r.Raw, want)
		}
	}
}

// TestPanicAnswersInSuperTokens: a panic in a SuperTokens route (here a
// handler missing its device flow) is the dialect's 500 {"message"}, not
// another dialect's body.
func TestPanicAnswersInSuperTokens(t *testing.T) {
	e := newEnvWith(t, func(_ *otpd.Engine, _ *flowtest.Flows, h *supertokens.Handler) { h.Devices = nil })
	r := e.do("POST", base+"/signinup/code", map[string]string{"email": "ada@example.com"})
	if r.status != 500 || r.body != `{"message":"Internal error"}` {
		t.Fatalf("panic: %d %q", r.status, r.body)
	}
}
