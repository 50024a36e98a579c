package medusa_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/devoutbox"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/medusa"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/password"
	"github.com/otpd/otpd/sqlite"
)

const jwtSecret = "medusa-test-jwt-secret-0123456789abcdef"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// env is a Medusa-dialect server on a fresh SQLite file, with the dev outbox
// and an injected clock.
type env struct {
	t      *testing.T
	srv    *httptest.Server
	outbox *devoutbox.Outbox
	clock  *clock
	tokens *medusa.Tokens
	db     otpd.Store
	path   string // the SQLite file
}

func newEnv(t *testing.T, keys ...string) *env {
	t.Helper()
	return newEnvWith(t, nil, keys...)
}

// handlerOn is the Medusa dialect on f's flows.
func handlerOn(f *flowtest.Flows) *medusa.Handler {
	return &medusa.Handler{Codes: f.Codes, Actors: f.Actors, Passwords: f.Passwords, Sessions: f.Sessions}
}

// newEnvWith is newEnv with configure run on the flows and the handler
// before the server starts.
func newEnvWith(t *testing.T, configure func(*flowtest.Flows, *medusa.Handler), keys ...string) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "otpd.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := otpd.NewKeyring([][]byte{[]byte("medusa-test-server-secret-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	outbox := devoutbox.New(100)
	engine := &otpd.Engine{Store: db, Keys: kr, Limits: otpd.DefaultSendLimits, Immediate: []otpd.Notifier{outbox}, Now: clk.Now}
	f := flowtest.New(engine)
	f.Passwords.Hasher = password.NewHasher(2)
	f.Sessions.RevokeOnLogout = true
	tokens := &medusa.Tokens{Secret: []byte(jwtSecret), Now: clk.Now}
	mh := handlerOn(f)
	mh.Tokens, mh.PublishableKeys = tokens, keys
	if configure != nil {
		configure(f, mh)
	}
	h := httpapi.NewHandler(httpapi.Options{
		Ready:    db.Ping,
		Dialects: []httpapi.Dialect{mh},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, outbox: outbox, clock: clk, tokens: tokens, db: db, path: path}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// do sends a request; body is sent raw if it is a string, as JSON otherwise.
func (e *env) do(method, path string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	default:
		buf, _ := json.Marshal(b)
		rd, ctype = bytes.NewReader(buf), "application/json"
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: strings.TrimSpace(string(raw))}
}

func (e *env) expect(r response, status int, body string) {
	e.t.Helper()
	if r.status != status || (body != "" && r.body != body) {
		e.t.Fatalf("got %d %s\nwant %d %s", r.status, r.body, status, body)
	}
}

func (e *env) code(to string) string {
	e.t.Helper()
	items := e.outbox.List(to, 1)
	if len(items) == 0 {
		e.t.Fatalf("no code sent to %s", to)
	}
	return items[0].Code
}

func (e *env) sent(to string) int { return len(e.outbox.List(to, 100)) }

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func token(t *testing.T, r response) string {
	t.Helper()
	tok, _ := r.json(t)["token"].(string)
	if tok == "" {
		t.Fatalf("no token in %d %s", r.status, r.body)
	}
	return tok
}

// claims decodes a JWT's payload without verifying it.
func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(raw, &m)
	return m
}

// signUp registers a customer by code and returns its login token.
func (e *env) signUp(email string) string {
	e.t.Helper()
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": email}), 200, "")
	reg := token(e.t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": email, "otp": e.code(email)}))
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": email}, bearer(reg)...), 200, "")
	return token(e.t, e.do("POST", "/auth/token/refresh", nil, bearer(reg)...))
}

const (
	bodyGenerated   = `{"message":"If an account exists with this identifier, an OTP will be sent."}`
	bodyPreRegister = `{"message":"Please validate the OTP to continue with the registration process."}`
	bodyInvalidOTP  = `{"type":"invalid_data","message":"Invalid OTP"}`
	bodyUnauthOTP   = `{"type":"unauthorized","message":"Invalid OTP"}`
	bodyUnauth      = `{"message":"Unauthorized"}`
)

func TestSignUpAndSignIn(t *testing.T) {
	e := newEnv(t)
	// Sign-up: pre-register, register by code, create the customer.
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "Bob@Example.com"}), 200, bodyPreRegister)
	items := e.outbox.List("bob@example.com", 1)
	if len(items) != 1 || items[0].Event != "pre-register.otp.generated" || items[0].Purpose != "sign_up" || items[0].Channel != "email" {
		t.Fatalf("outbox %+v", items)
	}
	code := items[0].Code
	e.expect(e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "bob@example.com", "otp": wrong(code)}), 401, bodyUnauthOTP)
	e.expect(e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "bob@example.com"}), 401, `{"type":"unauthorized","message":"OTP is required"}`)
	e.expect(e.do("POST", "/auth/customer/otp/register", map[string]string{"otp": code}), 401, `{"type":"unauthorized","message":"Identifier is required"}`)
	reg := token(t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "BOB@example.com ", "otp": code}))
	c := claims(t, reg)
	if c["actor_id"] != "" || c["actor_type"] != "customer" || !strings.HasPrefix(c["auth_identity_id"].(string), "authid_") {
		t.Fatalf("registration claims %v", c)
	}
	if got := c["exp"].(float64) - c["iat"].(float64); got != 86400 {
		t.Fatalf("exp-iat=%v, want 86400", got)
	}
	// The registration code is spent.
	e.expect(e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "bob@example.com", "otp": code}), 401, bodyUnauthOTP)
	// A registration token is not a customer session.
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(reg)...), 401, bodyUnauth)
	// The follow-up shortcut is refused, not spent, before the customer exists.
	e.expect(e.do("POST", "/auth/customer/otp", map[string]string{"identifier": "bob@example.com", "otp": code}), 401, bodyUnauthOTP)

	cus := e.do("POST", "/store/customers", map[string]any{"first_name": "Bob", "last_name": "Ref", "metadata": map[string]any{"tier": 1}}, bearer(reg)...)
	e.expect(cus, 200, "")
	got := cus.json(t)["customer"].(map[string]any)
	if !strings.HasPrefix(got["id"].(string), "cus_") || got["email"] != "bob@example.com" || got["first_name"] != "Bob" ||
		got["has_account"] != true || got["phone"] != nil || got["company_name"] != nil || got["deleted_at"] != nil {
		t.Fatalf("customer %v", got)
	}
	if addrs, ok := got["addresses"].([]any); !ok || len(addrs) != 0 {
		t.Fatalf("addresses %v", got["addresses"])
	}
	// Once, within a minute, the sign-up code signs in as the new customer.
	e.expect(e.do("POST", "/auth/customer/otp", map[string]string{"identifier": "bob@example.com"}), 401, `{"type":"unauthorized","message":"OTP is required for authentication"}`)
	e.expect(e.do("POST", "/auth/customer/otp", map[string]string{}), 401, `{"type":"unauthorized","message":"Identifier is required"}`)
	follow := token(t, e.do("POST", "/auth/customer/otp", map[string]string{"identifier": "bob@example.com", "otp": code}))
	if fc := claims(t, follow); fc["actor_id"] != got["id"] {
		t.Fatalf("follow-up token actor_id=%v, want %v", fc["actor_id"], got["id"])
	}
	e.expect(e.do("POST", "/auth/customer/otp", map[string]string{"identifier": "bob@example.com", "otp": code}), 401, bodyUnauthOTP)

	// Refreshing the registration token picks up the customer.
	login := token(t, e.do("POST", "/auth/token/refresh", nil, bearer(reg)...))
	lc := claims(t, login)
	if lc["actor_id"] != got["id"] || lc["app_metadata"].(map[string]any)["customer_id"] != got["id"] {
		t.Fatalf("refreshed claims %v", lc)
	}
	me := e.do("GET", "/store/customers/me", nil, bearer(login)...)
	e.expect(me, 200, "")
	if me.json(t)["customer"].(map[string]any)["id"] != got["id"] {
		t.Fatalf("me %s", me.body)
	}

	// Sign-in: generate, verify.
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "BOB@example.com"}), 200, bodyGenerated)
	in := e.outbox.List("bob@example.com", 1)[0]
	if in.Event != "otp.generated" || in.Purpose != "sign_in" || in.Code == code {
		t.Fatalf("sign-in message %+v", in)
	}
	e.expect(e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "bob@example.com", "otp": wrong(in.Code)}), 400, bodyInvalidOTP)
	tok := token(t, e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "bob@example.com", "otp": in.Code}))
	if claims(t, tok)["actor_id"] != got["id"] {
		t.Fatalf("sign-in claims %v", claims(t, tok))
	}
	e.expect(e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "bob@example.com", "otp": in.Code}), 400, bodyInvalidOTP)
}

// wrong returns a code that differs from c.
func wrong(c string) string {
	if c == "000000" {
		return "000001"
	}
	return "000000"
}

func TestGenerate_Enumeration(t *testing.T) {
	e := newEnv(t)
	e.signUp("alice@example.com")
	known := e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "alice@example.com"})
	unknown := e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "ghost@example.com"})
	e.expect(known, 200, bodyGenerated)
	e.expect(unknown, 200, bodyGenerated)
	if e.sent("ghost@example.com") != 0 {
		t.Fatal("a code was sent to an identifier without an account")
	}
	// The reference plugin's takeover: verifying the unknown identifier with
	// the known account's code must not sign in as anyone.
	e.expect(e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "ghost@example.com", "otp": e.code("alice@example.com")}), 400, bodyInvalidOTP)
	// Limits answer alike: a second request within the cooldown is 429 for both.
	k2 := e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "alice@example.com"})
	u2 := e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "ghost@example.com"})
	if k2.status != 429 || u2.status != 429 || k2.body != u2.body || k2.header.Get("Retry-After") != u2.header.Get("Retry-After") || k2.header.Get("Retry-After") == "" {
		t.Fatalf("rate-limit answers differ: %d %s %q / %d %s %q", k2.status, k2.body, k2.header.Get("Retry-After"), u2.status, u2.body, u2.header.Get("Retry-After"))
	}
	// Pre-register for an existing account: same answer, no code.
	e.clock.Add(time.Minute) // past the cooldown of alice's sign-up code
	before := e.sent("alice@example.com")
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "alice@example.com"}), 200, bodyPreRegister)
	if e.sent("alice@example.com") != before {
		t.Fatal("pre-register sent a code for an existing account")
	}
	e.expect(e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "alice@example.com", "otp": "123456"}), 401, bodyUnauthOTP)
}

func TestOTP_ActorTypes(t *testing.T) {
	e := newEnv(t)
	e.signUp("carol@example.com")
	// A customer is not a user: no code for the user actor type.
	e.expect(e.do("POST", "/auth/user/otp/generate", map[string]string{"identifier": "carol@example.com"}), 200, bodyGenerated)
	if n := e.sent("carol@example.com"); n != 1 {
		t.Fatalf("messages=%d, want only the sign-up code", n)
	}
	for _, path := range []string{"/auth/merchant/otp/generate", "/auth/merchant/otp/pre-register", "/auth/merchant/otp/verify", "/auth/merchant/otp/register", "/auth/merchant/otp"} {
		r := e.do("POST", path, map[string]string{"identifier": "carol@example.com", "otp": "123456"})
		e.expect(r, 400, `{"type":"invalid_data","message":"Invalid request: The actor type 'merchant' is not configured."}`)
	}
	e.expect(e.do("POST", "/auth/customer/nosuch", map[string]string{"email": "x"}), 401, `{"type":"unauthorized","message":"Unable to retrieve the auth provider with id: nosuch"}`)
	e.expect(e.do("POST", "/auth/customer/nosuch/register", map[string]string{"email": "x"}), 401, `{"type":"unauthorized","message":"Unable to retrieve the auth provider with id: nosuch"}`)
}

func TestOTP_Validation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		path   string
		body   any
		ctype  string
		status int
		want   string
	}{
		{"Missing", "/auth/customer/otp/generate", `{}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Field 'identifier' is required"}`},
		{"Empty", "/auth/customer/otp/generate", `{"identifier":""}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Value for field 'identifier' too small, expected at least: '1'"}`},
		{"Number", "/auth/customer/otp/generate", `{"identifier":12345}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Expected type: 'string' for field 'identifier', got: 'number'"}`},
		{"Null", "/auth/customer/otp/generate", `{"identifier":null}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Expected type: 'string' for field 'identifier', got: 'null'"}`},
		{"Unknown", "/auth/customer/otp/generate", `{"identifier":"a@b.co","foo":1}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Unrecognized fields: 'foo'"}`},
		{"Array", "/auth/customer/otp/generate", `[1,2]`, "", 400, `{"type":"invalid_data","message":"Invalid request: Expected type: 'object' for field '', got: 'array'"}`},
		{"Malformed", "/auth/customer/otp/generate", `{"identifier": `, "", 400, `{"type":"invalid_data","message":"Invalid request: Body is not valid JSON"}`},
		{"Trailing", "/auth/customer/otp/generate", `{"identifier":"a@b.co"} {}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Body is not valid JSON"}`},
		{"TextPlain", "/auth/customer/otp/generate", `identifier=x`, "text/plain", 400, `{"type":"invalid_data","message":"Invalid request: Content-Type must be 'application/json'"}`},
		{"NotAnEmail", "/auth/customer/otp/generate", `{"identifier":"not-an-email"}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Field 'identifier' must be an email address or a phone number in international format (+...)"}`},
		{"BadEmail", "/auth/customer/otp/pre-register", `{"identifier":"a@b"}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Field 'identifier' must be a valid email address"}`},
		{"HugeIdentifier", "/auth/customer/otp/generate", `{"identifier":"` + strings.Repeat("a", 90000) + `@x.io"}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Field 'identifier' must be an email address or a phone number"}`},
		{"TooLarge", "/auth/customer/otp/generate", `{"identifier":"` + strings.Repeat("a", 2<<20) + `"}`, "", 413, `{"type":"invalid_data","message":"Request body is larger than 102400 bytes"}`},
		{"VerifyMissingOTP", "/auth/customer/otp/verify", `{"identifier":"a@b.co"}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Field 'otp' is required"}`},
		{"VerifyMissingBoth", "/auth/customer/otp/verify", `{}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Field 'identifier' is required; Field 'otp' is required"}`},
		{"VerifyOTPNumber", "/auth/customer/otp/verify", `{"identifier":"a@b.co","otp":123456}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Expected type: 'string' for field 'otp', got: 'number'"}`},
		{"VerifyBadIdentifier", "/auth/customer/otp/verify", `{"identifier":"nope","otp":"123456"}`, "", 400, bodyInvalidOTP},
		{"PreRegisterMissing", "/auth/customer/otp/pre-register", `{}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Field 'identifier' is required"}`},
		{"RegisterOTPNumber", "/auth/customer/otp/register", `{"identifier":"a@b.co","otp":1}`, "", 400, `{"type":"invalid_data","message":"Invalid request: Expected type: 'string' for field 'otp', got: 'number'"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", e.srv.URL+tc.path, strings.NewReader(tc.body.(string)))
			ct := tc.ctype
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := strings.TrimSpace(string(raw)); resp.StatusCode != tc.status || got != tc.want {
				t.Fatalf("got %d %s\nwant %d %s", resp.StatusCode, got, tc.status, tc.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
	// Nothing above issued a code.
	if items := e.outbox.List("", 100); len(items) != 0 {
		t.Fatalf("validation failures sent %d messages", len(items))
	}
}

func TestOTP_PhoneIdentifier(t *testing.T) {
	e := newEnv(t)
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "+1 (202) 555-0199"}), 200, bodyPreRegister)
	items := e.outbox.List("+12025550199", 1)
	if len(items) != 1 || items[0].Channel != "sms" || items[0].To != "+12025550199" {
		t.Fatalf("outbox %+v", items)
	}
	reg := token(t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "+12025550199", "otp": items[0].Code}))
	cus := e.do("POST", "/store/customers", map[string]string{"email": "pat@example.com"}, bearer(reg)...)
	e.expect(cus, 200, "")
	if c := cus.json(t)["customer"].(map[string]any); c["phone"] != "+12025550199" || c["email"] != "pat@example.com" {
		t.Fatalf("customer %v", c)
	}
	login := token(t, e.do("POST", "/auth/token/refresh", nil, bearer(reg)...))
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "+1 202 555 0199"}), 200, bodyGenerated)
	tok := token(t, e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "+1 202-555-0199", "otp": e.code("+12025550199")}))
	if claims(t, tok)["actor_id"] != claims(t, login)["actor_id"] {
		t.Fatal("phone sign-in reached another customer")
	}
}

func TestOTP_Expiry(t *testing.T) {
	e := newEnv(t)
	e.signUp("dave@example.com")
	e.clock.Add(time.Minute)
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "dave@example.com"}), 200, bodyGenerated)
	code := e.code("dave@example.com")
	e.clock.Add(10*time.Minute + time.Second)
	e.expect(e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "dave@example.com", "otp": code}), 400, bodyInvalidOTP)
}

func TestOTP_RateLimit(t *testing.T) {
	e := newEnv(t)
	e.signUp("erin@example.com")
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "erin@example.com"}), 200, bodyGenerated)
	r := e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "erin@example.com"})
	e.expect(r, 429, `{"type":"not_allowed","message":"Please wait before requesting another code."}`)
	if got := r.header.Get("Retry-After"); got != "30" {
		t.Fatalf("Retry-After=%q, want 30", got)
	}
	// Sends 3, 4 and 5 of the 15-minute budget (the sign-up code was the first).
	for i := 0; i < 3; i++ {
		e.clock.Add(30 * time.Second)
		e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "erin@example.com"}), 200, bodyGenerated)
	}
	e.clock.Add(30 * time.Second)
	r = e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "erin@example.com"})
	e.expect(r, 429, `{"type":"not_allowed","message":"Too many codes were requested for this identifier. Try again later."}`)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
}

func TestStoreCustomers(t *testing.T) {
	e := newEnv(t, "pk_test")
	pk := []string{"x-publishable-api-key", "pk_test"}
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "fay@example.com"}), 200, "")
	reg := token(t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "fay@example.com", "otp": e.code("fay@example.com")}))
	auth := append(bearer(reg), pk...)

	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "fay@example.com"}, bearer(reg)...), 400,
		`{"type":"not_allowed","message":"Publishable API key required in the request header: x-publishable-api-key. You can manage your keys in settings in the dashboard."}`)
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "fay@example.com"}, append(bearer(reg), "x-publishable-api-key", "pk_other")...), 400,
		`{"type":"not_allowed","message":"A valid publishable key is required to proceed with the request"}`)
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "fay@example.com"}, pk...), 401, bodyUnauth)
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "fay@example.com"}, append(bearer("abc.def.ghi"), pk...)...), 401, bodyUnauth)
	e.expect(e.do("POST", "/store/customers", map[string]any{"email": "fay@example.com", "nickname": "f"}, auth...), 400,
		`{"type":"invalid_data","message":"Invalid request: Unrecognized fields: 'nickname'"}`)
	e.expect(e.do("POST", "/store/customers", map[string]any{"email": 5}, auth...), 400,
		`{"type":"invalid_data","message":"Invalid request: Expected type: 'string' for field 'email', got: 'number'"}`)
	// The identity proved fay@example.com: it cannot claim another address.
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "mallory@example.com"}, auth...), 400,
		`{"type":"invalid_data","message":"Invalid request: Field 'email' must be the address verified at sign-up"}`)
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "fay@example.com", "phone": "12"}, auth...), 400,
		`{"type":"invalid_data","message":"Invalid request: Field 'phone' must be a phone number in international format (+...)"}`)
	ok := e.do("POST", "/store/customers", map[string]any{"email": "FAY@example.com", "company_name": "Fay Co", "phone": nil}, auth...)
	e.expect(ok, 200, "")
	if c := ok.json(t)["customer"].(map[string]any); c["email"] != "fay@example.com" || c["company_name"] != "Fay Co" {
		t.Fatalf("customer %v", c)
	}
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "fay@example.com"}, auth...), 400,
		`{"type":"invalid_data","message":"Request already authenticated as a customer."}`)
	login := token(t, e.do("POST", "/auth/token/refresh", nil, bearer(reg)...))
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "fay@example.com"}, append(bearer(login), pk...)...), 400,
		`{"type":"invalid_data","message":"Request already authenticated as a customer."}`)
	e.expect(e.do("GET", "/store/customers/me", nil, bearer(login)...), 400, "")
	e.expect(e.do("GET", "/store/customers/me", nil, pk...), 401, bodyUnauth)
	e.expect(e.do("GET", "/store/customers/me", nil, append(bearer(reg), pk...)...), 401, bodyUnauth)
	e.expect(e.do("GET", "/store/customers/me", nil, append(bearer(login), pk...)...), 200, "")
	e.expect(e.do("GET", "/store/customers/me", nil, append([]string{"Authorization", "bearer  " + login}, pk...)...), 200, "")
	e.expect(e.do("GET", "/store/customers/me", nil, append([]string{"Authorization", "Basic " + login}, pk...)...), 401, bodyUnauth)
}

func TestStoreCustomers_DuplicateEmail(t *testing.T) {
	// A phone-registered identity may not take an email that already has an
	// account.
	e := newEnv(t)
	e.signUp("gus@example.com")
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "+12025550142"}), 200, "")
	reg := token(t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "+12025550142", "otp": e.code("+12025550142")}))
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "gus@example.com"}, bearer(reg)...), 422,
		`{"code":"invalid_request_error","type":"duplicate_error","message":"Customer with this email already has an account"}`)
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	login := e.signUp("hal@example.com")
	c := claims(t, login)
	sign := func(method jwt.SigningMethod, key any, mc jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, mc).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := func() jwt.MapClaims {
		m := jwt.MapClaims{}
		for k, v := range c {
			m[k] = v
		}
		return m
	}
	expired := base()
	expired["exp"] = float64(e.clock.Now().Add(-time.Minute).Unix())
	noExp := base()
	delete(noExp, "exp")
	for name, tok := range map[string]string{
		"AlgNone":     sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, base()),
		"HS512":       sign(jwt.SigningMethodHS512, []byte(jwtSecret), base()),
		"OtherSecret": sign(jwt.SigningMethodHS256, []byte("another-secret-another-secret-1234"), base()),
		"Expired":     sign(jwt.SigningMethodHS256, []byte(jwtSecret), expired),
		"NoExp":       sign(jwt.SigningMethodHS256, []byte(jwtSecret), noExp),
		"Stripped":    login[:strings.LastIndexByte(login, '.')+1],
		"Garbage":     "abc.def.ghi",
	} {
		t.Run(name, func(t *testing.T) {
			e.expect(e.do("GET", "/store/customers/me", nil, bearer(tok)...), 401, bodyUnauth)
			e.expect(e.do("POST", "/auth/token/refresh", nil, bearer(tok)...), 401, bodyUnauth)
		})
	}
	// Claims in Medusa's order.
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(login, ".")[1])
	order := []string{`"actor_id"`, `"actor_type"`, `"auth_identity_id"`, `"app_metadata"`, `"user_metadata"`, `"auth_provider":"otp"`, `"mfa_enabled":false`, `"iat"`, `"exp"`}
	last := -1
	for _, k := range order {
		i := bytes.Index(payload, []byte(k))
		if i <= last {
			t.Fatalf("claim %s out of Medusa's order in %s", k, payload)
		}
		last = i
	}
	if !bytes.Contains(payload, []byte(`"roles":[]`)) {
		t.Fatalf("app_metadata lacks roles: %s", payload)
	}
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(login, ".")[0])
	if string(header) != `{"alg":"HS256","typ":"JWT"}` {
		t.Fatalf("header %s", header)
	}
	// A token outlives its refresh as long as the identity exists.
	e.clock.Add(23 * time.Hour)
	e.expect(e.do("POST", "/auth/token/refresh", nil, bearer(login)...), 200, "")
}

func TestHealthAndRouting(t *testing.T) {
	e := newEnv(t)
	e.expect(e.do("GET", "/health", nil), 200, `{"status":"ok"}`)
	e.expect(e.do("GET", "/ready", nil), 200, `{"status":"ready"}`)
	r := e.do("GET", "/auth/customer/otp/generate", nil)
	if r.status != 405 && r.status != 404 {
		t.Fatalf("GET on a POST route: %d", r.status)
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
	if e.do("GET", "/dev/outbox", nil).status != 404 {
		t.Fatal("/dev/outbox served without a dev outbox")
	}
}

// TestConcurrentVerify: 200 simultaneous verifications of one code through
// HTTP give exactly one token.
func TestConcurrentVerify(t *testing.T) {
	e := newEnv(t)
	e.signUp("ivy@example.com")
	e.clock.Add(time.Minute)
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "ivy@example.com"}), 200, "")
	body, _ := json.Marshal(map[string]string{"identifier": "ivy@example.com", "otp": e.code("ivy@example.com")})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	start := make(chan struct{})
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.Post(e.srv.URL+"/auth/customer/otp/verify", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if statuses[200] != 1 || statuses[400] != 199 {
		t.Fatalf("statuses %v, want 1×200, 199×400", statuses)
	}
}

// TestStoreCustomers_UnverifiedContactReservesNothing: an identity that
// proved a phone may store an email it did not prove, but that email neither
// signs in to the account nor stops its owner from signing up.
func TestStoreCustomers_UnverifiedContactReservesNothing(t *testing.T) {
	e := newEnv(t)
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "+12025550177"}), 200, "")
	reg := token(t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "+12025550177", "otp": e.code("+12025550177")}))
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "victim@example.com"}, bearer(reg)...), 200, "")

	// A sign-in code for the unverified email is not sent: it is not the
	// account's proven address.
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "victim@example.com"}), 200, bodyGenerated)
	if n := e.sent("victim@example.com"); n != 0 {
		t.Fatalf("%d code(s) sent to an unverified address", n)
	}
	// Its owner signs up with it and gets an account of her own.
	victim := e.signUp("victim@example.com")
	if claims(t, victim)["actor_id"] == claims(t, token(t, e.do("POST", "/auth/token/refresh", nil, bearer(reg)...)))["actor_id"] {
		t.Fatal("the owner of the address landed in the squatter's account")
	}
	// Now that an account proved it, nobody else may store it.
	e.clock.Add(time.Minute)
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "+12025550178"}), 200, "")
	reg2 := token(t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "+12025550178", "otp": e.code("+12025550178")}))
	e.expect(e.do("POST", "/store/customers", map[string]string{"email": "victim@example.com"}, bearer(reg2)...), 422,
		`{"code":"invalid_request_error","type":"duplicate_error","message":"Customer with this email already has an account"}`)
	e.expect(e.do("POST", "/auth/customer/otp/pre-register", map[string]string{"identifier": "x@example.com"}), 200, "")
	reg3 := token(t, e.do("POST", "/auth/customer/otp/register", map[string]string{"identifier": "x@example.com", "otp": e.code("x@example.com")}))
	e.expect(e.do("POST", "/store/customers", map[string]string{"phone": "+12025550177"}, bearer(reg3)...), 422,
		`{"code":"invalid_request_error","type":"duplicate_error","message":"Customer with this phone already has an account"}`)
}

// brokenStore fails every transaction with err.
type brokenStore struct {
	otpd.Store
	err error
}

func (b brokenStore) Update(context.Context, func(otpd.Tx) error) error { return b.err }
func (b brokenStore) View(context.Context, func(otpd.Tx) error) error   { return b.err }
func (b brokenStore) Ping(context.Context) error                        { return b.err }

// newBrokenEnv serves the dialect on a store that fails with err, logging
// into logs.
func newBrokenEnv(t *testing.T, err error, logs *bytes.Buffer) *httptest.Server {
	kr, _ := otpd.NewKeyring([][]byte{[]byte("medusa-test-server-secret-0123456789abcdef")})
	store := brokenStore{err: err}
	engine := &otpd.Engine{Store: store, Keys: kr, Limits: otpd.DefaultSendLimits}
	log := slog.New(slog.NewTextHandler(logs, nil))
	mh := handlerOn(flowtest.New(engine))
	mh.Tokens, mh.Logger = &medusa.Tokens{Secret: []byte(jwtSecret)}, log
	h := httpapi.NewHandler(httpapi.Options{
		Logger:   log,
		Ready:    store.Ping,
		Dialects: []httpapi.Dialect{mh},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, strings.TrimSpace(string(raw))
}

// TestInternalError: an unexpected failure is a 500 with Medusa's generic
// body, logged with the request id, and its text never reaches the client.
func TestInternalError(t *testing.T) {
	var logs bytes.Buffer
	srv := newBrokenEnv(t, errors.New("disk on fire at /var/lib/otpd"), &logs)
	resp, body := post(t, srv.URL+"/auth/customer/otp/generate", `{"identifier":"a@example.com"}`)
	if resp.StatusCode != 500 || body != `{"code":"unknown_error","type":"unknown_error","message":"An unknown error occurred."}` {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" || !strings.Contains(logs.String(), "request_id="+id) || !strings.Contains(logs.String(), "disk on fire") {
		t.Fatalf("log lacks the request id %q or the cause:\n%s", id, logs.String())
	}
}

// TestUnavailable: a store that cannot be reached gives 503 with
// Retry-After, and /ready turns false.
func TestUnavailable(t *testing.T) {
	var logs bytes.Buffer
	srv := newBrokenEnv(t, otpd.Errorf(otpd.EUNAVAILABLE, "The database is unavailable."), &logs)
	for path, req := range map[string]string{
		"/auth/customer/otp/generate": `{"identifier":"a@example.com"}`,
		"/auth/customer/otp/verify":   `{"identifier":"a@example.com","otp":"123456"}`,
	} {
		resp, body := post(t, srv.URL+path, req)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"service_unavailable"`) {
			t.Fatalf("%s: got %d %s (Retry-After %q)", path, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	resp, err := http.Get(srv.URL + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("/ready: %d, want 503", resp.StatusCode)
	}
}

// TestOTP_SignInAgainAtOnce: the resend cooldown ends as soon as its code
// is spent, so a customer who signs in and out may sign in again at once;
// a code not yet spent still holds it.
func TestOTP_SignInAgainAtOnce(t *testing.T) {
	e := newEnv(t)
	e.signUp("again@example.com")
	for i := range 2 {
		e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "again@example.com"}), 200, bodyGenerated)
		tok := token(t, e.do("POST", "/auth/customer/otp/verify", map[string]string{"identifier": "again@example.com", "otp": e.code("again@example.com")}))
		e.expect(e.do("DELETE", "/auth/session", nil, bearer(tok)...), 200, "")
		if n := e.sent("again@example.com"); n != i+2 {
			t.Fatalf("sign-in %d: %d codes sent, want %d", i+1, n, i+2)
		}
	}
	e.expect(e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "again@example.com"}), 200, bodyGenerated)
	r := e.do("POST", "/auth/customer/otp/generate", map[string]string{"identifier": "again@example.com"})
	e.expect(r, 429, `{"type":"not_allowed","message":"Please wait before requesting another code."}`)
}
