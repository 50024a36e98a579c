package supertokens_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/devoutbox"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/supertokens"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/sqlite"
)

const (
	tokenSecret  = "supertokens-test-jwt-secret-0123456789abcdef"
	accessTTL    = 10 * time.Minute
	refreshGrace = 10 * time.Second
	base         = "/st/auth"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// env is a SuperTokens-dialect server on a fresh SQLite file, with the dev
// outbox, an event recorder and an injected clock.
type env struct {
	t      *testing.T
	srv    *httptest.Server
	outbox *devoutbox.Outbox
	events *flowtest.Recorder
	clock  *clock
	flows  *flowtest.Flows
	path   string // the SQLite file
	h      *supertokens.Handler
}

func publicTenant() supertokens.Tenant {
	return supertokens.Tenant{
		ID: otpd.DefaultTenant, ContactMethod: supertokens.ContactEmailOrPhone, FlowType: supertokens.FlowCode,
		CodeTTL: supertokens.DefaultCodeTTL, MaxAttempts: supertokens.DefaultMaxAttempts,
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with configure run on the engine, the flows and
// the handler before the server starts.
func newEnvWith(t *testing.T, configure func(*otpd.Engine, *flowtest.Flows, *supertokens.Handler)) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "otpd.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := otpd.NewKeyring([][]byte{[]byte("supertokens-test-server-secret-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	outbox := devoutbox.New(100)
	rec := &flowtest.Recorder{}
	engine := &otpd.Engine{Store: db, Keys: kr, Limits: otpd.DefaultSendLimits, Immediate: []otpd.Notifier{outbox, rec}, Now: clk.Now}
	f := flowtest.New(engine)
	f.Sessions.RefreshGrace = refreshGrace
	h := &supertokens.Handler{
		Devices:  f.Devices,
		Sessions: f.Sessions,
		Tokens:   &supertokens.Tokens{Secret: []byte(tokenSecret), TTL: accessTTL, Now: clk.Now},
		Tenants:  []supertokens.Tenant{publicTenant()},
	}
	if configure != nil {
		configure(engine, f, h)
	}
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Options{Ready: db.Ping, Dialects: []httpapi.Dialect{h}}))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, outbox: outbox, events: rec, clock: clk, flows: f, h: h, path: path}
}

type response struct {
	status  int
	header  http.Header
	cookies []*http.Cookie
	body    string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (r response) str(t *testing.T, field string) string {
	t.Helper()
	s, _ := r.json(t)[field].(string)
	return s
}

func (r response) cookie(name string) *http.Cookie {
	for _, c := range r.cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// send sends a request; body is sent raw if it is a string, as JSON
// otherwise. headers are name, value pairs. It does not fail the test, so
// that goroutines may call it.
func (e *env) send(method, path string, body any, headers ...string) (response, error) {
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
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, cookies: resp.Cookies(), body: strings.TrimSpace(string(raw))}, nil
}

func (e *env) do(method, path string, body any, headers ...string) response {
	e.t.Helper()
	r, err := e.send(method, path, body, headers...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// expect checks the status and that the body is exactly the JSON want
// (compared as JSON values, so key order does not matter).
func (e *env) expect(r response, status int, want any) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status: got %s\nwant %d %v", r, status, want)
	}
	if want == nil {
		return
	}
	var got, exp any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		e.t.Fatalf("body %q: %v", r.body, err)
	}
	var raw []byte
	if s, ok := want.(string); ok {
		raw = []byte(s)
	} else {
		raw, _ = json.Marshal(want)
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		e.t.Fatalf("want %s: %v", raw, err)
	}
	if !reflect.DeepEqual(got, exp) {
		e.t.Fatalf("body: got %d %s\nwant %d %s", r.status, r.body, status, raw)
	}
}

func msg(m string) map[string]string { return map[string]string{"message": m} }

var (
	statusOK     = map[string]any{"status": "OK"}
	restartFlow  = map[string]any{"status": "RESTART_FLOW_ERROR"}
	unauthorised = msg("unauthorised")
	tryRefresh   = msg("try refresh token")
)

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func cookieHeader(name, value string) []string { return []string{"Cookie", name + "=" + value} }

// device is a createCode answer.
type device struct {
	ID, Pre string
}

// createCode asks for a code at path (tenant prefix included) and expects OK.
func (e *env) createCode(tenantPath string, body any) (device, response) {
	e.t.Helper()
	r := e.do("POST", base+tenantPath+"/signinup/code", body)
	m := r.json(e.t)
	if r.status != 200 || m["status"] != "OK" {
		e.t.Fatalf("createCode %v: %s", body, r)
	}
	d := device{ID: r.str(e.t, "deviceId"), Pre: r.str(e.t, "preAuthSessionId")}
	if d.ID == "" || d.Pre == "" {
		e.t.Fatalf("createCode: %s", r)
	}
	return d, r
}

func (e *env) code(to string) string {
	e.t.Helper()
	items := e.outbox.List(to, 1)
	if len(items) == 0 || items[0].Code == "" {
		e.t.Fatalf("no code sent to %s: %+v", to, items)
	}
	return items[0].Code
}

func (e *env) consume(tenantPath string, d device, code string, headers ...string) response {
	e.t.Helper()
	return e.do("POST", base+tenantPath+"/signinup/code/consume",
		map[string]string{"preAuthSessionId": d.Pre, "deviceId": d.ID, "userInputCode": code}, headers...)
}

// wrong returns a 6-digit code that is not code.
func wrong(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

// signIn signs email in on the public tenant and returns the consume answer.
func (e *env) signIn(email string, headers ...string) response {
	e.t.Helper()
	d, _ := e.createCode("", map[string]string{"email": email})
	r := e.consume("", d, e.code(email), headers...)
	if r.status != 200 || r.json(e.t)["status"] != "OK" {
		e.t.Fatalf("consume: %s", r)
	}
	return r
}

// tokens returns the header-mode tokens of r.
func tokens(t *testing.T, r response) (access, refresh string) {
	t.Helper()
	access, refresh = r.header.Get("st-access-token"), r.header.Get("st-refresh-token")
	if access == "" || refresh == "" {
		t.Fatalf("no tokens in %s %v", r, r.header)
	}
	return access, refresh
}

func userID(t *testing.T, r response) string {
	t.Helper()
	u, _ := r.json(t)["user"].(map[string]any)
	id, _ := u["id"].(string)
	if id == "" {
		t.Fatalf("no user id in %s", r)
	}
	return id
}

// frontToken decodes the front-token header.
func frontToken(t *testing.T, r response) map[string]any {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(r.header.Get("front-token"))
	if err != nil {
		t.Fatalf("front-token %q: %v", r.header.Get("front-token"), err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("front-token %s: %v", raw, err)
	}
	return m
}

// jwtPayload decodes a JWT's payload without verifying it.
func jwtPayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------- createCode

func TestCreateCodeEmail(t *testing.T) {
	e := newEnv(t)
	d, r := e.createCode("", map[string]string{"email": "  Alice@Example.COM "})
	m := r.json(t)
	if got := keys(m); !reflect.DeepEqual(got, []string{"deviceId", "flowType", "preAuthSessionId", "status"}) {
		t.Fatalf("createCode body keys %v: %s", got, r)
	}
	if m["flowType"] != "USER_INPUT_CODE" {
		t.Fatalf("flowType: %s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if r.cookie(supertokens.LinkContextCookie) != nil {
		t.Fatalf("code flow set a link cookie: %v", r.cookies)
	}
	ev := e.events.Last(t, "alice@example.com")
	if ev.Channel != otpd.ChannelEmail || ev.Name != otpd.EventPasswordlessLogin || len(ev.Code) != 6 || ev.Link != "" {
		t.Fatalf("event %+v", ev)
	}
	if strings.Trim(ev.Code, "0123456789") != "" {
		t.Fatalf("code %q is not numeric", ev.Code)
	}
	if ev.Metadata["preAuthSessionId"] != d.Pre || ev.Metadata["tenantId"] != "public" {
		t.Fatalf("event metadata %v", ev.Metadata)
	}
	// The code signs in as the normalized address.
	c := e.consume("", d, e.code("alice@example.com"))
	e.expect(c, 200, nil)
	u := c.json(t)["user"].(map[string]any)
	if !reflect.DeepEqual(u["emails"], []any{"alice@example.com"}) {
		t.Fatalf("user %v", u)
	}
}

func TestCreateCodePhone(t *testing.T) {
	e := newEnv(t)
	d, r := e.createCode("", map[string]string{"phoneNumber": "+1 (202) 555-0142"})
	if r.json(t)["flowType"] != "USER_INPUT_CODE" {
		t.Fatalf("createCode: %s", r)
	}
	ev := e.events.Last(t, "+12025550142")
	if ev.Channel != otpd.ChannelSMS || len(ev.Code) != 6 {
		t.Fatalf("event %+v", ev)
	}
	c := e.consume("", d, e.code("+12025550142"))
	e.expect(c, 200, nil)
	u := c.json(t)["user"].(map[string]any)
	if !reflect.DeepEqual(u["phoneNumbers"], []any{"+12025550142"}) || !reflect.DeepEqual(u["emails"], []any{}) {
		t.Fatalf("user %v", u)
	}
	lm := u["loginMethods"].([]any)[0].(map[string]any)
	if lm["phoneNumber"] != "+12025550142" || lm["recipeId"] != "passwordless" || lm["verified"] != true {
		t.Fatalf("login method %v", lm)
	}
	if _, ok := lm["email"]; ok {
		t.Fatalf("login method of a phone has an email: %v", lm)
	}
}

func TestCreateCodeBadInput(t *testing.T) {
	e := newEnv(t)
	exactlyOne := msg("Please provide exactly one of email or phoneNumber")
	for _, tc := range []struct {
		name string
		body any
		want any
	}{
		{"both", map[string]string{"email": "a@example.com", "phoneNumber": "+12025550142"}, exactlyOne},
		{"neither", map[string]string{}, exactlyOne},
		{"empty body", "", exactlyOne},
		{"nulls", `{"email":null,"phoneNumber":null}`, exactlyOne},
		{"email not a string", `{"email":42}`, msg("email must be a string")},
		{"phone not a string", `{"phoneNumber":true}`, msg("phoneNumber must be a string")},
		{"malformed JSON", `{"email":`, nil},
		{"JSON array", `["a@example.com"]`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			r := e.do("POST", base+"/signinup/code", tc.body)
			e.expect(r, 400, tc.want)
			if _, ok := r.json(t)["message"].(string); !ok {
				t.Fatalf("400 without a message: %s", r)
			}
		})
	}
	if n := e.outbox.Len(); n != 0 {
		t.Fatalf("bad input sent %d codes", n)
	}
}

func TestCreateCodeContactMethod(t *testing.T) {
	e := newEnvWith(t, func(_ *otpd.Engine, _ *flowtest.Flows, h *supertokens.Handler) {
		h.Tenants = []supertokens.Tenant{publicTenant(), publicTenant()}
		h.Tenants[0].ContactMethod = supertokens.ContactEmail
		h.Tenants[1].ID, h.Tenants[1].ContactMethod = "phones", supertokens.ContactPhone
	})
	needEmail := msg(`Please provide an email since you have set the contactMethod to "EMAIL"`)
	needPhone := msg(`Please provide a phoneNumber since you have set the contactMethod to "PHONE"`)
	e.expect(e.do("POST", base+"/signinup/code", map[string]string{"phoneNumber": "+12025550142"}), 400, needEmail)
	e.expect(e.do("POST", base+"/phones/signinup/code", map[string]string{"email": "a@example.com"}), 400, needPhone)
	// The right contact passes on each.
	e.createCode("", map[string]string{"email": "a@example.com"})
	e.createCode("/phones", map[string]string{"phoneNumber": "+12025550142"})
}

func TestCreateCodeInvalidContact(t *testing.T) {
	e := newEnv(t)
	for _, email := range []string{"not-an-email", "a@b", "Bob <bob@example.com>", "a b@example.com", ""} {
		e.expect(e.do("POST", base+"/signinup/code", map[string]string{"email": email}), 200,
			map[string]any{"status": "GENERAL_ERROR", "message": "Email is invalid"})
	}
	for _, phone := range []string{"2025550142", "+1 202 555 01x2", "hello", "+1"} {
		e.expect(e.do("POST", base+"/signinup/code", map[string]string{"phoneNumber": phone}), 200,
			map[string]any{"status": "GENERAL_ERROR", "message": "Phone number is invalid"})
	}
	if n := e.outbox.Len(); n != 0 {
		t.Fatalf("invalid contacts sent %d codes", n)
	}
}

func TestCreateCodeRateLimited(t *testing.T) {
	e := newEnv(t) // engine limits: otpd.DefaultSendLimits, cooldown 30 s
	e.createCode("", map[string]string{"email": "rate@example.com"})
	e.clock.Add(10 * time.Second)
	r := e.do("POST", base+"/signinup/code", map[string]string{"email": "Rate@Example.com"})
	e.expect(r, 200, map[string]any{"status": "GENERAL_ERROR", "message": "Please wait before requesting another code."})
	if got := r.header.Get("Retry-After"); got != "20" {
		t.Fatalf("Retry-After %q, want 20", got)
	}
	if n := e.events.Count("rate@example.com"); n != 1 {
		t.Fatalf("%d codes sent, want 1", n)
	}
	// After the cooldown a new code is sent.
	e.clock.Add(20 * time.Second)
	e.createCode("", map[string]string{"email": "rate@example.com"})
	if n := e.events.Count("rate@example.com"); n != 2 {
		t.Fatalf("%d codes sent, want 2", n)
	}
}

// ------------------------------------------------------------------- consume

func TestConsumeBadInput(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "bad@example.com"})
	preAuth := msg("Please provide preAuthSessionId")
	both := msg("Please provide both deviceId and userInputCode")
	oneOf := msg("Please provide one of (linkCode) or (deviceId+userInputCode) and not both")
	for _, tc := range []struct {
		name string
		body any
		want any
	}{
		{"no preAuthSessionId", map[string]string{"deviceId": d.ID, "userInputCode": "123456"}, preAuth},
		{"empty body", "", preAuth},
		{"deviceId only", map[string]string{"preAuthSessionId": d.Pre, "deviceId": d.ID}, both},
		{"userInputCode only", map[string]string{"preAuthSessionId": d.Pre, "userInputCode": "123456"}, both},
		{"link and code", map[string]string{"preAuthSessionId": d.Pre, "deviceId": d.ID, "userInputCode": "123456", "linkCode": "x"}, oneOf},
		{"link and deviceId", map[string]string{"preAuthSessionId": d.Pre, "deviceId": d.ID, "linkCode": "x"}, oneOf},
		{"none", map[string]string{"preAuthSessionId": d.Pre}, oneOf},
		{"code not a string", `{"preAuthSessionId":"x","deviceId":"y","userInputCode":123456}`, msg("userInputCode must be a string")},
		{"malformed JSON", `{`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.expect(e.do("POST", base+"/signinup/code/consume", tc.body), 400, tc.want)
		})
	}
	// No attempt was counted: the code still works.
	e.t = t
	e.expect(e.consume("", d, e.code("bad@example.com")), 200, nil)
}

func TestConsumeWrongCodeAttempts(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "wrong@example.com"})
	code := e.code("wrong@example.com")
	for i := 1; i <= 4; i++ {
		e.expect(e.consume("", d, wrong(code)), 200, map[string]any{
			"status": "INCORRECT_USER_INPUT_CODE_ERROR", "failedCodeInputAttemptCount": i, "maximumCodeInputAttempts": 5,
		})
	}
	e.expect(e.consume("", d, wrong(code)), 200, restartFlow)
	e.expect(e.consume("", d, code), 200, restartFlow)
}

func TestConsumeExpired(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "late@example.com"})
	code := e.code("late@example.com")
	e.expect(e.consume("", d, wrong(code)), 200, map[string]any{
		"status": "INCORRECT_USER_INPUT_CODE_ERROR", "failedCodeInputAttemptCount": 1, "maximumCodeInputAttempts": 5,
	})
	e.clock.Add(supertokens.DefaultCodeTTL + time.Second)
	expired := map[string]any{"status": "EXPIRED_USER_INPUT_CODE_ERROR", "failedCodeInputAttemptCount": 1, "maximumCodeInputAttempts": 5}
	e.expect(e.consume("", d, code), 200, expired)
	// Still expired, never signs in.
	e.expect(e.consume("", d, code), 200, expired)
	// Resend gives the device a fresh code that works.
	e.expect(e.do("POST", base+"/signinup/code/resend", map[string]string{"deviceId": d.ID, "preAuthSessionId": d.Pre}), 200, statusOK)
	e.expect(e.consume("", d, e.code("late@example.com")), 200, nil)
}

func TestConsumeSignUpThenSignIn(t *testing.T) {
	e := newEnv(t)
	joined := e.clock.Now().UnixMilli()
	d, _ := e.createCode("", map[string]string{"email": "New@Example.com"})
	code := e.code("new@example.com")
	r := e.consume("", d, code)
	id := userID(t, r)
	if !strings.HasPrefix(id, "authid_") {
		t.Fatalf("user id %q", id)
	}
	e.expect(r, 200, map[string]any{
		"status": "OK", "createdNewRecipeUser": true,
		"user": map[string]any{
			"id": id, "isPrimaryUser": false, "tenantIds": []string{"public"},
			"emails": []string{"new@example.com"}, "phoneNumbers": []string{}, "thirdParty": []any{},
			"webauthn": map[string]any{"credentialIds": []string{}}, "timeJoined": joined,
			"loginMethods": []any{map[string]any{
				"recipeId": "passwordless", "recipeUserId": id, "tenantIds": []string{"public"},
				"email": "new@example.com", "timeJoined": joined, "verified": true,
				"webauthn": map[string]any{"credentialIds": []string{}},
			}},
		},
	})
	tokens(t, r)
	// The same code again: spent.
	e.expect(e.consume("", d, code), 200, restartFlow)

	// A second sign-in signs in to the same user.
	e.clock.Add(time.Minute)
	d2, _ := e.createCode("", map[string]string{"email": "new@example.com"})
	r2 := e.consume("", d2, e.code("new@example.com"))
	e.expect(r2, 200, nil)
	m := r2.json(t)
	if m["createdNewRecipeUser"] != false || userID(t, r2) != id {
		t.Fatalf("second sign-in: %s (first user %s)", r2, id)
	}
	if u := m["user"].(map[string]any); u["timeJoined"] != float64(joined) {
		t.Fatalf("second sign-in changed timeJoined: %v, want %d", u["timeJoined"], joined)
	}
}

func TestConsumeForgedPreAuthSession(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "forge@example.com"})
	code := e.code("forge@example.com")
	tampered := []byte(d.Pre)
	tampered[len(tampered)/2] ^= 1
	if tampered[len(tampered)/2] == '.' || tampered[len(tampered)/2] == '/' {
		tampered[len(tampered)/2] = 'A'
	}
	for _, pre := range []string{"garbage", "", "!!!", base64.RawURLEncoding.EncodeToString([]byte("public\x00email\x00forge@example.com\x00AB:")), string(tampered)} {
		e.expect(e.do("POST", base+"/signinup/code/consume",
			map[string]string{"preAuthSessionId": pre, "deviceId": d.ID, "userInputCode": code}), 200, restartFlow)
	}
	// Forged ids count no attempt: the code still works.
	e.expect(e.consume("", d, code), 200, nil)
}

func TestConsumeOtherDeviceID(t *testing.T) {
	e := newEnv(t)
	a, _ := e.createCode("", map[string]string{"email": "a@example.com"})
	codeA := e.code("a@example.com")
	b, _ := e.createCode("", map[string]string{"email": "b@example.com"})
	// A's preAuthSessionId and code with B's deviceId.
	r := e.consume("", device{ID: b.ID, Pre: a.Pre}, codeA)
	if r.status != 200 || r.json(t)["status"] == "OK" {
		t.Fatalf("consume with another device's id: %s", r)
	}
	if r.header.Get("st-access-token") != "" {
		t.Fatalf("tokens issued: %v", r.header)
	}
	// A random device id too.
	r = e.consume("", device{ID: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Pre: a.Pre}, codeA)
	if r.status != 200 || r.json(t)["status"] == "OK" {
		t.Fatalf("consume with a random device id: %s", r)
	}
}

func TestConsumeSupersededDevice(t *testing.T) {
	e := newEnv(t)
	a, _ := e.createCode("", map[string]string{"email": "twice@example.com"})
	codeA := e.code("twice@example.com")
	e.clock.Add(31 * time.Second) // the resend cooldown
	b, _ := e.createCode("", map[string]string{"email": "twice@example.com"})
	codeB := e.code("twice@example.com")
	r := e.consume("", a, codeA)
	if r.status != 200 || r.json(t)["status"] == "OK" {
		t.Fatalf("code of the superseded device A: %s", r)
	}
	// B's code with A's device does not work either (codes are bound).
	r = e.consume("", a, codeB)
	if r.status != 200 || r.json(t)["status"] == "OK" {
		t.Fatalf("B's code with device A: %s", r)
	}
	e.expect(e.consume("", b, codeB), 200, nil)
}

// -------------------------------------------------------------------- resend

func TestResendBadInput(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "rb@example.com"})
	e.expect(e.do("POST", base+"/signinup/code/resend", map[string]string{"deviceId": d.ID}), 400, msg("Please provide preAuthSessionId"))
	e.expect(e.do("POST", base+"/signinup/code/resend", map[string]string{}), 400, msg("Please provide preAuthSessionId"))
	e.expect(e.do("POST", base+"/signinup/code/resend", map[string]string{"preAuthSessionId": d.Pre}), 400, msg("Please provide a deviceId"))
	e.expect(e.do("POST", base+"/signinup/code/resend", `{"preAuthSessionId":`), 400, nil)
}

func TestResend(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "resend@example.com"})
	old := e.code("resend@example.com")
	e.clock.Add(31 * time.Second)
	e.expect(e.do("POST", base+"/signinup/code/resend", map[string]string{"deviceId": d.ID, "preAuthSessionId": d.Pre}), 200, statusOK)
	if n := e.events.Count("resend@example.com"); n != 2 {
		t.Fatalf("%d codes sent, want 2", n)
	}
	fresh := e.code("resend@example.com")
	if fresh == old {
		t.Skip("the resent code equals the old one by chance (1 in a million)")
	}
	ev := e.events.Last(t, "resend@example.com")
	if ev.Metadata["preAuthSessionId"] != d.Pre {
		t.Fatalf("resent event metadata %v", ev.Metadata)
	}
	e.expect(e.consume("", d, old), 200, map[string]any{
		"status": "INCORRECT_USER_INPUT_CODE_ERROR", "failedCodeInputAttemptCount": 1, "maximumCodeInputAttempts": 5,
	})
	e.expect(e.consume("", d, fresh), 200, nil)
}

func TestResendWithinCooldown(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "rc@example.com"})
	r := e.do("POST", base+"/signinup/code/resend", map[string]string{"deviceId": d.ID, "preAuthSessionId": d.Pre})
	e.expect(r, 200, map[string]any{"status": "GENERAL_ERROR", "message": "Please wait before requesting another code."})
	if r.header.Get("Retry-After") != "30" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
}

func TestResendAfterConsume(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "done@example.com"})
	e.expect(e.consume("", d, e.code("done@example.com")), 200, nil)
	e.clock.Add(31 * time.Second)
	e.expect(e.do("POST", base+"/signinup/code/resend", map[string]string{"deviceId": d.ID, "preAuthSessionId": d.Pre}), 200, restartFlow)
	if n := e.events.Count("done@example.com"); n != 1 {
		t.Fatalf("%d codes sent, want 1", n)
	}
}

func TestResendUnknownDevice(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "unknown@example.com"})
	e.clock.Add(31 * time.Second)
	for _, body := range []map[string]string{
		{"deviceId": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "preAuthSessionId": d.Pre},
		{"deviceId": d.ID, "preAuthSessionId": "garbage"},
		{"deviceId": "x", "preAuthSessionId": "y"},
	} {
		e.expect(e.do("POST", base+"/signinup/code/resend", body), 200, restartFlow)
	}
	if n := e.events.Count("unknown@example.com"); n != 1 {
		t.Fatalf("%d codes sent, want 1", n)
	}
}

// ------------------------------------------------------------------- tenants

func acmeEnv(t *testing.T) *env {
	return newEnvWith(t, func(_ *otpd.Engine, _ *flowtest.Flows, h *supertokens.Handler) {
		h.ExistsAPIs = true
		h.Tenants = append(h.Tenants, supertokens.Tenant{
			ID: "acme", ContactMethod: supertokens.ContactEmail, FlowType: supertokens.FlowCode,
			CodeTTL: time.Minute, MaxAttempts: 3,
		})
	})
}

func TestTenantAcme(t *testing.T) {
	e := acmeEnv(t)
	e.expect(e.do("POST", base+"/acme/signinup/code", map[string]string{"phoneNumber": "+12025550142"}), 400,
		msg(`Please provide an email since you have set the contactMethod to "EMAIL"`))
	d, _ := e.createCode("/acme", map[string]string{"email": "t@example.com"})
	ev := e.events.Last(t, "t@example.com")
	if ev.Tenant != "acme" || ev.Metadata["tenantId"] != "acme" || !ev.ExpiresAt.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("event %+v", ev)
	}
	code := e.code("t@example.com")
	for i := 1; i <= 2; i++ {
		e.expect(e.consume("/acme", d, wrong(code)), 200, map[string]any{
			"status": "INCORRECT_USER_INPUT_CODE_ERROR", "failedCodeInputAttemptCount": i, "maximumCodeInputAttempts": 3,
		})
	}
	e.expect(e.consume("/acme", d, wrong(code)), 200, restartFlow)
	e.expect(e.consume("/acme", d, code), 200, restartFlow)
}

func TestTenantAcmeCodeTTL(t *testing.T) {
	e := acmeEnv(t)
	d, _ := e.createCode("/acme", map[string]string{"email": "ttl@example.com"})
	e.clock.Add(time.Minute)
	e.expect(e.consume("/acme", d, e.code("ttl@example.com")), 200, map[string]any{
		"status": "EXPIRED_USER_INPUT_CODE_ERROR", "failedCodeInputAttemptCount": 0, "maximumCodeInputAttempts": 3,
	})
}

func TestTenantUnknown(t *testing.T) {
	e := acmeEnv(t)
	notFound := msg("Tenant not found")
	e.expect(e.do("POST", base+"/nope/signinup/code", map[string]string{"email": "x@example.com"}), 404, notFound)
	e.expect(e.do("POST", base+"/nope/signinup/code/consume", map[string]string{"preAuthSessionId": "x", "linkCode": "y"}), 404, notFound)
	e.expect(e.do("POST", base+"/nope/signinup/code/resend", map[string]string{"preAuthSessionId": "x", "deviceId": "y"}), 404, notFound)
	e.expect(e.do("GET", base+"/nope/passwordless/email/exists?email=x@example.com", nil), 404, notFound)
	if e.outbox.Len() != 0 {
		t.Fatal("unknown tenant sent a code")
	}
}

func TestTenantCrossConsume(t *testing.T) {
	e := acmeEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "cross@example.com"})
	code := e.code("cross@example.com")
	e.expect(e.consume("/acme", d, code), 200, restartFlow)
	// The explicit public prefix is the same tenant as none.
	e.expect(e.consume("/public", d, code), 200, nil)
}

func TestTenantSeparateUsers(t *testing.T) {
	e := acmeEnv(t)
	pub := e.signIn("both@example.com")
	d, _ := e.createCode("/acme", map[string]string{"email": "both@example.com"})
	acme := e.consume("/acme", d, e.code("both@example.com"))
	e.expect(acme, 200, nil)
	if acme.json(t)["createdNewRecipeUser"] != true {
		t.Fatalf("acme sign-up: %s", acme)
	}
	if userID(t, pub) == userID(t, acme) {
		t.Fatalf("same user id %s in both tenants", userID(t, pub))
	}
	u := acme.json(t)["user"].(map[string]any)
	if !reflect.DeepEqual(u["tenantIds"], []any{"acme"}) {
		t.Fatalf("acme user tenantIds %v", u["tenantIds"])
	}
	if lm := u["loginMethods"].([]any)[0].(map[string]any); !reflect.DeepEqual(lm["tenantIds"], []any{"acme"}) {
		t.Fatalf("acme login method tenantIds %v", lm["tenantIds"])
	}
	// The session belongs to the tenant.
	access, _ := tokens(t, acme)
	s := e.do("GET", base+"/session", nil, bearer(access)...)
	e.expect(s, 200, nil)
	if m := s.json(t); m["tenantId"] != "acme" || m["userId"] != userID(t, acme) {
		t.Fatalf("acme session %s", s)
	}
}

// --------------------------------------------------------------- magic links

func linkEnv(t *testing.T, flow string, anyBrowser bool) *env {
	return newEnvWith(t, func(_ *otpd.Engine, _ *flowtest.Flows, h *supertokens.Handler) {
		h.Tenants[0].FlowType = flow
		h.WebsiteDomain, h.WebsiteBasePath = "https://app.example", "/auth"
		h.LinkAnyBrowser = anyBrowser
	})
}

// linkCode checks the link sent for d and returns its link code.
func (e *env) linkCode(to string, d device, tenant string) string {
	e.t.Helper()
	ev := e.events.Last(e.t, to)
	prefix := "https://app.example/auth/verify?preAuthSessionId=" + d.Pre + "&tenantId=" + tenant + "#"
	if !strings.HasPrefix(ev.Link, prefix) || len(ev.Link) == len(prefix) {
		e.t.Fatalf("link %q, want %s<linkCode>", ev.Link, prefix)
	}
	u, err := url.Parse(ev.Link)
	if err != nil || u.Query().Get("preAuthSessionId") != d.Pre || u.Query().Get("tenantId") != tenant {
		e.t.Fatalf("link %q: %v", ev.Link, err)
	}
	return strings.TrimPrefix(ev.Link, prefix)
}

func linkCookie(t *testing.T, r response) *http.Cookie {
	t.Helper()
	c := r.cookie(supertokens.LinkContextCookie)
	if c == nil || c.Value == "" {
		t.Fatalf("no %s cookie: %v", supertokens.LinkContextCookie, r.header["Set-Cookie"])
	}
	if !c.HttpOnly || c.Path != "/st/auth" {
		t.Fatalf("link cookie attributes: %s", c)
	}
	return c
}

func (e *env) consumeLink(tenantPath, pre, link string, headers ...string) response {
	e.t.Helper()
	return e.do("POST", base+tenantPath+"/signinup/code/consume", map[string]string{"preAuthSessionId": pre, "linkCode": link}, headers...)
}

func TestMagicLinkWithCookie(t *testing.T) {
	e := linkEnv(t, supertokens.FlowCodeAndLink, false)
	d, r := e.createCode("", map[string]string{"email": "Link@Example.com"})
	if r.json(t)["flowType"] != "USER_INPUT_CODE_AND_MAGIC_LINK" {
		t.Fatalf("createCode: %s", r)
	}
	ck := linkCookie(t, r)
	if ck.MaxAge != int(supertokens.DefaultCodeTTL.Seconds()) {
		t.Fatalf("link cookie Max-Age %d", ck.MaxAge)
	}
	ev := e.events.Last(t, "link@example.com")
	if len(ev.Code) != 6 || !strings.Contains(ev.Text, ev.Link) {
		t.Fatalf("event %+v", ev)
	}
	link := e.linkCode("link@example.com", d, "public")
	c := e.consumeLink("", d.Pre, link, cookieHeader(ck.Name, ck.Value)...)
	e.expect(c, 200, nil)
	if m := c.json(t); m["status"] != "OK" || m["createdNewRecipeUser"] != true {
		t.Fatalf("consume link: %s", c)
	}
	tokens(t, c)
	// The link is spent, and so is the code it carried.
	e.expect(e.consumeLink("", d.Pre, link, cookieHeader(ck.Name, ck.Value)...), 200, restartFlow)
	e.expect(e.consume("", d, ev.Code), 200, restartFlow)
}

func TestMagicLinkWithoutCookie(t *testing.T) {
	e := linkEnv(t, supertokens.FlowCodeAndLink, false)
	d, r := e.createCode("", map[string]string{"email": "scan@example.com"})
	ck := linkCookie(t, r)
	link := e.linkCode("scan@example.com", d, "public")
	// A mail scanner: no cookie, or another flow's cookie.
	for _, h := range [][]string{nil, cookieHeader(ck.Name, "bogus")} {
		s := e.consumeLink("", d.Pre, link, h...)
		e.expect(s, 200, nil)
		m := s.json(t)
		if m["status"] != "SIGN_IN_UP_NOT_ALLOWED" || len(m) != 2 {
			t.Fatalf("scanner: %s", s)
		}
		if reason, _ := m["reason"].(string); reason == "" {
			t.Fatalf("no reason: %s", s)
		}
		if s.header.Get("st-access-token") != "" || s.header.Get("front-token") != "" {
			t.Fatalf("scanner got a session: %v", s.header)
		}
	}
	// The code is still unconsumed and no attempt was counted.
	c := e.consumeLink("", d.Pre, link, cookieHeader(ck.Name, ck.Value)...)
	e.expect(c, 200, nil)
	if c.json(t)["status"] != "OK" {
		t.Fatalf("consume with the cookie after the scanner: %s", c)
	}
}

func TestMagicLinkTypedCodeNeedsNoCookie(t *testing.T) {
	e := linkEnv(t, supertokens.FlowCodeAndLink, false)
	d, _ := e.createCode("", map[string]string{"email": "typed@example.com"})
	e.expect(e.consume("", d, e.code("typed@example.com")), 200, nil)
}

func TestMagicLinkTampered(t *testing.T) {
	e := linkEnv(t, supertokens.FlowCodeAndLink, false)
	d, r := e.createCode("", map[string]string{"email": "tamper@example.com"})
	ck := linkCookie(t, r)
	link := e.linkCode("tamper@example.com", d, "public")
	flip := []byte(link)
	if flip[3] == 'A' {
		flip[3] = 'B'
	} else {
		flip[3] = 'A'
	}
	for _, bad := range []string{string(flip), link[:len(link)-2], "AAAA", "not base64!"} {
		e.expect(e.consumeLink("", d.Pre, bad, cookieHeader(ck.Name, ck.Value)...), 200, restartFlow)
	}
	// The link code of another flow does not open this one.
	e2, _ := e.createCode("", map[string]string{"email": "other@example.com"})
	other := e.linkCode("other@example.com", e2, "public")
	e.expect(e.consumeLink("", d.Pre, other, cookieHeader(ck.Name, ck.Value)...), 200, restartFlow)
	// The genuine link still works.
	c := e.consumeLink("", d.Pre, link, cookieHeader(ck.Name, ck.Value)...)
	if c.status != 200 || c.json(t)["status"] != "OK" {
		t.Fatalf("genuine link after tampered ones: %s", c)
	}
}

func TestMagicLinkAnyBrowser(t *testing.T) {
	e := linkEnv(t, supertokens.FlowCodeAndLink, true)
	d, r := e.createCode("", map[string]string{"email": "any@example.com"})
	if r.cookie(supertokens.LinkContextCookie) != nil {
		t.Fatalf("LinkAnyBrowser set a link cookie: %v", r.header["Set-Cookie"])
	}
	c := e.consumeLink("", d.Pre, e.linkCode("any@example.com", d, "public"))
	e.expect(c, 200, nil)
	if c.json(t)["status"] != "OK" {
		t.Fatalf("consume link in any browser: %s", c)
	}
	tokens(t, c)
}

func TestMagicLinkOnly(t *testing.T) {
	e := linkEnv(t, supertokens.FlowLink, false)
	d, r := e.createCode("", map[string]string{"email": "only@example.com"})
	if r.json(t)["flowType"] != "MAGIC_LINK" {
		t.Fatalf("createCode: %s", r)
	}
	ck := linkCookie(t, r)
	ev := e.events.Last(t, "only@example.com")
	if ev.Code != "" {
		t.Fatalf("MAGIC_LINK event carries a code %q", ev.Code)
	}
	if items := e.outbox.List("only@example.com", 1); len(items) != 1 || items[0].Code != "" {
		t.Fatalf("outbox %+v", items)
	}
	link := e.linkCode("only@example.com", d, "public")
	if strings.Contains(ev.Text, link) == false {
		t.Fatalf("message text lacks the link: %q", ev.Text)
	}
	c := e.consumeLink("", d.Pre, link, cookieHeader(ck.Name, ck.Value)...)
	if c.status != 200 || c.json(t)["status"] != "OK" {
		t.Fatalf("consume link: %s", c)
	}
}

func TestMagicLinkTenant(t *testing.T) {
	e := newEnvWith(t, func(_ *otpd.Engine, _ *flowtest.Flows, h *supertokens.Handler) {
		h.WebsiteDomain, h.WebsiteBasePath = "https://app.example", "/auth"
		h.Tenants = append(h.Tenants, supertokens.Tenant{
			ID: "acme", ContactMethod: supertokens.ContactEmail, FlowType: supertokens.FlowCodeAndLink,
			CodeTTL: time.Minute, MaxAttempts: 3,
		})
	})
	d, r := e.createCode("/acme", map[string]string{"email": "tl@example.com"})
	ck := linkCookie(t, r)
	if ck.MaxAge != 60 {
		t.Fatalf("link cookie Max-Age %d, want 60", ck.MaxAge)
	}
	link := e.linkCode("tl@example.com", d, "acme")
	// Not under the public tenant.
	e.expect(e.consumeLink("", d.Pre, link, cookieHeader(ck.Name, ck.Value)...), 200, restartFlow)
	c := e.consumeLink("/acme", d.Pre, link, cookieHeader(ck.Name, ck.Value)...)
	if c.status != 200 || c.json(t)["status"] != "OK" {
		t.Fatalf("consume acme link: %s", c)
	}
}

// ------------------------------------------------------------------ sessions

func TestSessionHeaderMode(t *testing.T) {
	for _, mode := range []string{"", "header"} {
		t.Run("mode="+mode, func(t *testing.T) {
			e := newEnv(t)
			var hdr []string
			if mode != "" {
				hdr = []string{"st-auth-mode", mode}
			}
			r := e.signIn("hdr@example.com", hdr...)
			access, refresh := tokens(t, r)
			if r.header.Get("Set-Cookie") != "" {
				t.Fatalf("header mode set cookies: %v", r.header["Set-Cookie"])
			}
			id := userID(t, r)
			exp := e.clock.Now().Add(accessTTL)
			ft := frontToken(t, r)
			if ft["uid"] != id || ft["ate"] != float64(exp.UnixMilli()) {
				t.Fatalf("front-token %v (user %s, exp %d)", ft, id, exp.UnixMilli())
			}
			up, _ := ft["up"].(map[string]any)
			claims := jwtPayload(t, access)
			if up["sub"] != id || up["tId"] != "public" || up["sessionHandle"] == "" || up["sessionHandle"] != claims["sessionHandle"] {
				t.Fatalf("front-token payload %v, access claims %v", up, claims)
			}
			if claims["sub"] != id || claims["exp"] != float64(exp.Unix()) {
				t.Fatalf("access claims %v", claims)
			}
			s := e.do("GET", base+"/session", nil, bearer(access)...)
			e.expect(s, 200, nil)
			m := s.json(t)
			if m["status"] != "OK" || m["userId"] != id || m["tenantId"] != "public" || m["sessionHandle"] != claims["sessionHandle"] {
				t.Fatalf("session %s", s)
			}
			if refresh == access {
				t.Fatal("refresh token equals access token")
			}
		})
	}
}

func TestSessionCookieMode(t *testing.T) {
	e := newEnv(t)
	r := e.signIn("ck@example.com", "st-auth-mode", "cookie")
	if r.header.Get("st-access-token") != "" || r.header.Get("st-refresh-token") != "" {
		t.Fatalf("cookie mode sent token headers: %v", r.header)
	}
	if ft := frontToken(t, r); ft["uid"] != userID(t, r) {
		t.Fatalf("front-token %v", ft)
	}
	ac, rc := r.cookie("sAccessToken"), r.cookie("sRefreshToken")
	if ac == nil || ac.Value == "" || ac.Path != "/" || !ac.HttpOnly {
		t.Fatalf("sAccessToken %v", ac)
	}
	if rc == nil || rc.Value == "" || rc.Path != "/st/auth/session/refresh" || !rc.HttpOnly {
		t.Fatalf("sRefreshToken %v", rc)
	}
	s := e.do("GET", base+"/session", nil, cookieHeader("sAccessToken", ac.Value)...)
	e.expect(s, 200, nil)
	if s.json(t)["userId"] != userID(t, r) {
		t.Fatalf("session %s", s)
	}
	// Refresh by cookie needs the rid header (anti-CSRF).
	e.expect(e.do("POST", base+"/session/refresh", nil, cookieHeader("sRefreshToken", rc.Value)...), 401, unauthorised)
	f := e.do("POST", base+"/session/refresh", nil, append(cookieHeader("sRefreshToken", rc.Value), "rid", "anti-csrf")...)
	e.expect(f, 200, statusOK)
	ac2, rc2 := f.cookie("sAccessToken"), f.cookie("sRefreshToken")
	if ac2 == nil || rc2 == nil || ac2.Value == "" || rc2.Value == "" || rc2.Value == rc.Value {
		t.Fatalf("refresh cookies %v", f.header["Set-Cookie"])
	}
	if rc2.Path != "/st/auth/session/refresh" || ac2.Path != "/" || !ac2.HttpOnly || !rc2.HttpOnly {
		t.Fatalf("refresh cookie attributes %v", f.header["Set-Cookie"])
	}
	if f.header.Get("st-access-token") != "" || f.header.Get("front-token") == "" {
		t.Fatalf("refresh headers %v", f.header)
	}
	e.expect(e.do("GET", base+"/session", nil, cookieHeader("sAccessToken", ac2.Value)...), 200, nil)
	// Sign-out by cookie needs rid too.
	e.expect(e.do("POST", base+"/signout", nil, cookieHeader("sAccessToken", ac2.Value)...), 401, unauthorised)
	e.expect(e.do("GET", base+"/session", nil, cookieHeader("sAccessToken", ac2.Value)...), 200, nil)
	out := e.do("POST", base+"/signout", nil, append(cookieHeader("sAccessToken", ac2.Value), "rid", "session")...)
	e.expect(out, 200, statusOK)
	if gone := out.cookie("sAccessToken"); gone == nil || gone.MaxAge >= 0 {
		t.Fatalf("sign-out did not clear sAccessToken: %v", out.header["Set-Cookie"])
	}
	e.expect(e.do("GET", base+"/session", nil, cookieHeader("sAccessToken", ac2.Value)...), 401, unauthorised)
}

func TestAccessTokenExpiry(t *testing.T) {
	e := newEnv(t)
	r := e.signIn("exp@example.com")
	access, refresh := tokens(t, r)
	e.clock.Add(accessTTL + time.Second)
	e.expect(e.do("GET", base+"/session", nil, bearer(access)...), 401, tryRefresh)
	f := e.do("POST", base+"/session/refresh", nil, bearer(refresh)...)
	e.expect(f, 200, statusOK)
	access2, refresh2 := tokens(t, f)
	if access2 == access || refresh2 == refresh {
		t.Fatal("refresh returned the old tokens")
	}
	if ft := frontToken(t, f); ft["ate"] != float64(e.clock.Now().Add(accessTTL).UnixMilli()) {
		t.Fatalf("front-token %v", ft)
	}
	s := e.do("GET", base+"/session", nil, bearer(access2)...)
	e.expect(s, 200, nil)
	if s.json(t)["userId"] != userID(t, r) || s.json(t)["sessionHandle"] != jwtPayload(t, access)["sessionHandle"] {
		t.Fatalf("session after refresh %s", s)
	}
}

func TestRefreshRotationGraceAndTheft(t *testing.T) {
	e := newEnv(t)
	r := e.signIn("rot@example.com")
	_, r0 := tokens(t, r)
	f1 := e.do("POST", base+"/session/refresh", nil, bearer(r0)...)
	e.expect(f1, 200, statusOK)
	a1, r1 := tokens(t, f1)
	// Within the grace: the same child.
	e.clock.Add(refreshGrace - time.Second)
	f2 := e.do("POST", base+"/session/refresh", nil, bearer(r0)...)
	e.expect(f2, 200, statusOK)
	if _, got := tokens(t, f2); got != r1 {
		t.Fatalf("second refresh within the grace gave another child")
	}
	// After the grace: theft; the family is revoked.
	e.clock.Add(2 * time.Second)
	th := e.do("POST", base+"/session/refresh", nil, bearer(r0)...)
	e.expect(th, 401, msg("token theft detected"))
	if th.header.Get("front-token") != "remove" {
		t.Fatalf("front-token %q, want remove", th.header.Get("front-token"))
	}
	e.expect(e.do("POST", base+"/session/refresh", nil, bearer(r1)...), 401, unauthorised)
	e.expect(e.do("GET", base+"/session", nil, bearer(a1)...), 401, unauthorised)
	// Once more: the revoked family stays refused.
	e.expect(e.do("POST", base+"/session/refresh", nil, bearer(r0)...), 401, unauthorised)
}

func TestSignOut(t *testing.T) {
	e := newEnv(t)
	r := e.signIn("out@example.com")
	access, refresh := tokens(t, r)
	out := e.do("POST", base+"/signout", nil, bearer(access)...)
	e.expect(out, 200, statusOK)
	if out.header.Get("front-token") != "remove" {
		t.Fatalf("front-token %q, want remove", out.header.Get("front-token"))
	}
	e.expect(e.do("GET", base+"/session", nil, bearer(access)...), 401, unauthorised)
	e.expect(e.do("POST", base+"/session/refresh", nil, bearer(refresh)...), 401, unauthorised)
	// Signing out again, or with no session, is fine.
	e.expect(e.do("POST", base+"/signout", nil), 200, statusOK)
	// Another session of the same user is untouched.
	e.clock.Add(31 * time.Second)
	other := e.signIn("out@example.com")
	a2, _ := tokens(t, other)
	e.expect(e.do("GET", base+"/session", nil, bearer(a2)...), 200, nil)
}

func TestSessionNoToken(t *testing.T) {
	e := newEnv(t)
	e.expect(e.do("GET", base+"/session", nil), 401, unauthorised)
	e.expect(e.do("GET", base+"/session", nil, "Authorization", "Bearer "), 401, unauthorised)
	e.expect(e.do("POST", base+"/session/refresh", nil), 401, unauthorised)
	e.expect(e.do("POST", base+"/session/refresh", nil, bearer("not-a-token")...), 401, unauthorised)
}

func hs256(secret []byte, unsigned string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(unsigned))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// signJWT signs claims with HS256 and secret, or with alg none when secret
// is nil.
func signJWT(t *testing.T, claims map[string]any, secret []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	if secret == nil {
		return enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." + enc(claims) + "."
	}
	unsigned := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
	return unsigned + "." + hs256(secret, unsigned)
}

func TestForeignAccessTokens(t *testing.T) {
	e := newEnv(t)
	r := e.signIn("foreign@example.com")
	access, _ := tokens(t, r)
	claims := jwtPayload(t, access)
	now := e.clock.Now()
	medusaStyle := map[string]any{
		"actor_id": "", "actor_type": "customer", "auth_identity_id": userID(t, r),
		"app_metadata": map[string]any{}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	for name, tok := range map[string]string{
		"medusa-style, same secret": signJWT(t, medusaStyle, []byte(tokenSecret)),
		"another secret":            signJWT(t, claims, []byte("another-secret-0123456789abcdef0123456789")),
		"alg none":                  signJWT(t, claims, nil),
		"garbage":                   "abc.def.ghi",
	} {
		t.Run(name, func(t *testing.T) {
			e.t = t
			e.expect(e.do("GET", base+"/session", nil, bearer(tok)...), 401, tryRefresh)
		})
	}
	e.t = t
	// The genuine token, re-signed with the right secret, is accepted: the
	// refusals above are about the signature, not the claims.
	e.expect(e.do("GET", base+"/session", nil, bearer(signJWT(t, claims, []byte(tokenSecret)))...), 200, nil)
}

// --------------------------------------------------------------- exists APIs

func TestExistsDisabled(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{
		"/passwordless/email/exists?email=a@example.com", "/passwordless/phonenumber/exists?phoneNumber=%2B12025550142",
		"/signup/email/exists?email=a@example.com", "/public/passwordless/email/exists?email=a@example.com",
	} {
		if r := e.do("GET", base+p, nil); r.status != 404 {
			t.Fatalf("GET %s: %s, want 404", p, r)
		}
	}
}

func TestExists(t *testing.T) {
	e := acmeEnv(t)
	emailExists := func(prefix, email string) response {
		return e.do("GET", base+prefix+"/passwordless/email/exists?email="+url.QueryEscape(email), nil)
	}
	phoneExists := func(prefix, phone string) response {
		return e.do("GET", base+prefix+"/passwordless/phonenumber/exists?phoneNumber="+url.QueryEscape(phone), nil)
	}
	no, yes := map[string]any{"status": "OK", "exists": false}, map[string]any{"status": "OK", "exists": true}
	e.expect(e.do("GET", base+"/passwordless/email/exists", nil), 400, msg("Please provide the email as a GET param"))
	e.expect(e.do("GET", base+"/passwordless/email/exists?email=", nil), 400, msg("Please provide the email as a GET param"))
	e.expect(e.do("GET", base+"/passwordless/phonenumber/exists", nil), 400, msg("Please provide the phoneNumber as a GET param"))
	e.expect(e.do("GET", base+"/signup/phonenumber/exists", nil), 400, msg("Please provide the phoneNumber as a GET param"))

	e.expect(emailExists("", "ex@example.com"), 200, no)
	e.expect(phoneExists("", "+12025550142"), 200, no)
	e.expect(emailExists("", "not an email"), 200, no)

	e.signIn("ex@example.com")
	d, _ := e.createCode("", map[string]string{"phoneNumber": "+12025550142"})
	e.expect(e.consume("", d, e.code("+12025550142")), 200, nil)

	e.expect(emailExists("", "ex@example.com"), 200, yes)
	e.expect(emailExists("", " EX@example.com "), 200, yes)
	e.expect(emailExists("/public", "ex@example.com"), 200, yes)
	e.expect(e.do("GET", base+"/signup/email/exists?email=ex%40example.com", nil), 200, yes)
	e.expect(phoneExists("", "+12025550142"), 200, yes)
	e.expect(phoneExists("", "+1 (202) 555-0142"), 200, yes)
	e.expect(e.do("GET", base+"/signup/phonenumber/exists?phoneNumber=%2B12025550142", nil), 200, yes)
	// A code requested but not consumed makes no account.
	e.createCode("", map[string]string{"email": "pending@example.com"})
	e.expect(emailExists("", "pending@example.com"), 200, no)
	// Per tenant.
	e.expect(emailExists("/acme", "ex@example.com"), 200, no)
	d, _ = e.createCode("/acme", map[string]string{"email": "ex@example.com"})
	e.expect(e.consume("/acme", d, e.code("ex@example.com")), 200, nil)
	e.expect(emailExists("/acme", "ex@example.com"), 200, yes)
	e.expect(phoneExists("/acme", "+12025550142"), 200, no)
}

// --------------------------------------------------------------- concurrency

func TestConcurrentRefresh(t *testing.T) {
	e := newEnv(t)
	_, refresh := tokens(t, e.signIn("conc@example.com"))
	const n = 100
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]response, n)
		errs    = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = e.send("POST", base+"/session/refresh", nil, bearer(refresh)...)
		}()
	}
	close(start)
	wg.Wait()
	children := map[string]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if r.status != 200 || r.body != `{"status":"OK"}` {
			t.Errorf("request %d: %s", i, r)
			continue
		}
		children[r.header.Get("st-refresh-token")]++
	}
	if len(children) != 1 {
		t.Fatalf("%d distinct refresh tokens among the answers: %v", len(children), children)
	}
	var child string
	for c := range children {
		child = c
	}
	if child == "" || child == refresh {
		t.Fatalf("child %q", child)
	}
	e.expect(e.do("POST", base+"/session/refresh", nil, bearer(child)...), 200, statusOK)
}

func TestConcurrentConsume(t *testing.T) {
	e := newEnv(t)
	d, _ := e.createCode("", map[string]string{"email": "race@example.com"})
	code := e.code("race@example.com")
	const n = 50
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]response, n)
		errs    = make([]error, n)
	)
	body := map[string]string{"preAuthSessionId": d.Pre, "deviceId": d.ID, "userInputCode": code}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = e.send("POST", base+"/signinup/code/consume", body)
		}()
	}
	close(start)
	wg.Wait()
	ok, restart := 0, 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		switch {
		case r.status == 200 && strings.Contains(r.body, `"status":"OK"`):
			ok++
			if r.header.Get("st-access-token") == "" {
				t.Errorf("OK without tokens: %s", r)
			}
		case r.status == 200 && r.body == `{"status":"RESTART_FLOW_ERROR"}`:
			restart++
		default:
			t.Errorf("request %d: %s", i, r)
		}
	}
	if ok != 1 || restart != n-1 {
		t.Fatalf("%d OK, %d RESTART_FLOW_ERROR; want 1 and %d", ok, restart, n-1)
	}
}

// TestSignInAgainAtOnce: the resend cooldown ends as soon as its code is
// spent, so a user who signs out may sign in again at once.
func TestSignInAgainAtOnce(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		access, _ := tokens(t, e.signIn("again@example.com"))
		if r := e.do("POST", base+"/signout", nil, bearer(access)...); r.status != 200 {
			t.Fatalf("signout: %s", r)
		}
	}
	if n := e.events.Count("again@example.com"); n != 3 {
		t.Fatalf("%d codes sent, want 3", n)
	}
}
