package serverapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/serverapi"
	"github.com/otpd/otpd/internal/flowtest"
	"github.com/otpd/otpd/internal/hostiletest"
	"github.com/otpd/otpd/outbox"
	"github.com/otpd/otpd/postgres"
	"github.com/otpd/otpd/sqlite"
)

// The keys the fake authenticator knows. Real keys (otpd keys create) are
// tested through the binary in cmd/otpd.
const (
	keyPlain   = "otpd_sk_plainplainplainplainplainplainplainplai"
	keyReturn  = "otpd_sk_returnreturnreturnreturnreturnreturnre"
	keyOther   = "otpd_sk_othertenantothertenantothertenantother"
	keyRevoked = "otpd_sk_revokedrevokedrevokedrevokedrevokedrev"
	keyAdmin   = "otpd_sk_adminadminadminadminadminadminadminadmi"
	// keyOtherAdmin is an admin key of tenant "other".
	keyOtherAdmin = "otpd_sk_otheradminotheradminotheradminotheradm"
)

func authenticate(_ context.Context, secret string) (serverapi.Caller, error) {
	switch secret {
	case keyPlain:
		return serverapi.Caller{KeyID: "key_plain", Tenant: otpd.DefaultTenant}, nil
	case keyReturn:
		return serverapi.Caller{KeyID: "key_return", Tenant: otpd.DefaultTenant, ReturnCodes: true}, nil
	case keyOther:
		return serverapi.Caller{KeyID: "key_other", Tenant: "other", ReturnCodes: true}, nil
	case keyAdmin:
		return serverapi.Caller{KeyID: "key_admin", Tenant: otpd.DefaultTenant, Admin: true}, nil
	case keyOtherAdmin:
		return serverapi.Caller{KeyID: "key_other_admin", Tenant: "other", Admin: true}, nil
	}
	return serverapi.Caller{}, &otpd.Error{Code: otpd.EUNAUTHORIZED, Message: "bad key"}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// recorder is a durable notifier that takes every event.
type recorder struct{ flowtest.Recorder }

func (r *recorder) Name() string                    { return "recorder" }
func (r *recorder) Subscription() otpd.Subscription { return otpd.Subscription{} }

type env struct {
	t      *testing.T
	srv    *httptest.Server
	clock  *clock
	codes  *flowtest.Recorder // the codes sent (immediate)
	events *recorder          // every event, through the durable outbox
	disp   *outbox.Dispatcher
	store  otpd.Store
	path   string
	flows  *flowtest.Flows
}

func sqliteStore(t *testing.T) (otpd.Store, string) {
	path := filepath.Join(t.TempDir(), "otpd.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func postgresStore(t *testing.T) otpd.Store {
	u := os.Getenv("OTPD_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("OTPD_TEST_POSTGRES_URL is not set: the PostgreSQL run is skipped")
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema := "otpd_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Errorf("drop schema: %v", err)
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	db, err := postgres.Open(context.Background(), u, postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, path := sqliteStore(t)
	return newEnvOn(t, db, path)
}

func newEnvOn(t *testing.T, db otpd.Store, path string) *env {
	t.Helper()
	kr, err := otpd.NewKeyring([][]byte{[]byte("serverapi-test-server-secret-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	codes := &flowtest.Recorder{}
	events := &recorder{}
	disp := &outbox.Dispatcher{Store: db, Keys: kr, Notifiers: []outbox.Notifier{events}, Now: clk.Now}
	engine := &otpd.Engine{Store: db, Keys: kr, Limits: otpd.DefaultSendLimits, Immediate: []otpd.Notifier{codes}, Outbox: disp, Now: clk.Now}
	f := flowtest.New(engine)
	admin := &otpd.Admin{Store: db, Now: clk.Now, Verifications: f.Verifications, Normalizer: f.Verifications.Normalizer}
	h := &serverapi.Handler{Verifications: f.Verifications, Admin: admin, Authenticate: authenticate}
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Options{Dialects: []httpapi.Dialect{h}}))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, clock: clk, codes: codes, events: events, disp: disp, store: db, path: path, flows: f}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// do sends a request with key (none if "") and body (raw if a string, JSON
// otherwise, none if nil); headers are name, value pairs. It does not fail
// the test, so goroutines may call it.
func (e *env) do(method, path, key string, body any, headers ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// call is do that fails the test on a transport error and checks the
// answer against the OpenAPI document: its status is documented for the
// route, and its body valid against the documented schema.
func (e *env) call(method, path, key string, body any, headers ...string) response {
	e.t.Helper()
	r, err := e.do(method, path, key, body, headers...)
	if err != nil {
		e.t.Fatal(err)
	}
	checkDocumented(e.t, method, path, r)
	return r
}

func (e *env) create(key string, body map[string]any, headers ...string) response {
	e.t.Helper()
	return e.call("POST", "/v1/verifications", key, body, headers...)
}

func (e *env) check(body map[string]any) response {
	e.t.Helper()
	return e.call("POST", "/v1/verifications/check", keyPlain, body)
}

func wantStatus(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

// wantError checks an error answer's status, code and field.
func wantError(t *testing.T, r response, status int, code, field string) {
	t.Helper()
	wantStatus(t, r, status)
	e, _ := r.json(t)["error"].(map[string]any)
	if e == nil || e["code"] != code || fmt.Sprint(e["field"]) != field && !(field == "" && e["field"] == nil) {
		t.Fatalf("error %s, want code %q field %q", r.body, code, field)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Fatalf("error %s has no message", r.body)
	}
}

func field(t *testing.T, r response, name string) any {
	t.Helper()
	return r.json(t)[name]
}

// --- the lifecycle, status by status ---

func TestApprovedOnceThenNotFound(t *testing.T) {
	e := newEnv(t)
	r := e.create(keyPlain, map[string]any{"to": " Ada@Example.com ", "subject": "cus_1", "metadata": map[string]any{"cart": "c1"}})
	wantStatus(t, r, 201)
	v := r.json(t)
	if v["status"] != "pending" || v["to"] != "ada@example.com" || v["channel"] != "email" || v["purpose"] != "sign_in" || v["subject"] != "cus_1" {
		t.Fatalf("created %s", r.body)
	}
	if _, ok := v["code"]; ok {
		t.Fatalf("a code in the answer of delivery otpd: %s", r.body)
	}
	id := v["id"].(string)
	ev := e.codes.Last(t, "ada@example.com")
	if ev.VerificationID != id || ev.SubjectID != "cus_1" || ev.Name != otpd.EventOTPGenerated || ev.Code == "" || ev.Metadata["cart"] != "c1" {
		t.Fatalf("event %+v", ev)
	}

	wrong := wrongCode(ev.Code)
	r = e.check(map[string]any{"id": id, "code": wrong, "subject": "cus_1"})
	if field(t, r, "status") != "pending" || field(t, r, "attempts_left") != 4.0 {
		t.Fatalf("wrong code: %s", r.body)
	}
	r = e.check(map[string]any{"id": id, "code": ev.Code, "subject": "cus_1"})
	if field(t, r, "status") != "approved" || field(t, r, "id") != id {
		t.Fatalf("right code: %s", r.body)
	}
	r = e.check(map[string]any{"id": id, "code": ev.Code, "subject": "cus_1"})
	if field(t, r, "status") != "not_found" {
		t.Fatalf("the right code again: %s", r.body)
	}
	r = e.call("GET", "/v1/verifications/"+id, keyPlain, nil)
	if field(t, r, "status") != "approved" {
		t.Fatalf("GET after approval: %s", r.body)
	}
	if _, ok := r.json(t)["code"]; ok {
		t.Fatalf("GET shows a code: %s", r.body)
	}

	// The approval went out as an event without the code.
	if _, err := e.disp.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	approved := e.events.Events(otpd.EventVerificationApproved)
	if len(approved) != 1 || approved[0].VerificationID != id || approved[0].SubjectID != "cus_1" || approved[0].Code != "" {
		t.Fatalf("approved events %+v", approved)
	}
}

func wrongCode(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

func TestCheckByAddressAndPurpose(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, e.create(keyPlain, map[string]any{"to": "+33612345678", "purpose": "verify_contact"}), 201)
	code := e.codes.Last(t, "+33612345678").Code
	// The purpose is part of the slot: sign_in has no live code.
	r := e.check(map[string]any{"to": "+33 6 12 34 56 78", "purpose": "sign_in", "code": code})
	if field(t, r, "status") != "not_found" {
		t.Fatalf("another purpose: %s", r.body)
	}
	r = e.check(map[string]any{"to": "+33 6 12 34 56 78", "purpose": "verify_contact", "code": code})
	if field(t, r, "status") != "approved" || field(t, r, "channel") != "sms" {
		t.Fatalf("by address: %s", r.body)
	}
}

func TestMaxAttemptsReached(t *testing.T) {
	e := newEnv(t)
	id := field(t, e.create(keyPlain, map[string]any{"to": "max@example.com"}), "id").(string)
	code := e.codes.Last(t, "max@example.com").Code
	for i := 4; i >= 0; i-- {
		r := e.check(map[string]any{"id": id, "code": wrongCode(code)})
		want := "pending"
		if i == 0 {
			want = "max_attempts_reached"
		}
		if field(t, r, "status") != want || field(t, r, "attempts_left") != float64(i) {
			t.Fatalf("guess %d: %s", 5-i, r.body)
		}
	}
	// The right code after the last guess is refused, and counts nothing.
	r := e.check(map[string]any{"id": id, "code": code})
	if field(t, r, "status") != "max_attempts_reached" {
		t.Fatalf("right code after the attempts ran out: %s", r.body)
	}
	if _, err := e.disp.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if failed := e.events.Events(otpd.EventVerificationFailed); len(failed) != 1 || failed[0].VerificationID != id {
		t.Fatalf("failed events %+v", failed)
	}
}

func TestExpired(t *testing.T) {
	e := newEnv(t)
	id := field(t, e.create(keyPlain, map[string]any{"to": "late@example.com"}), "id").(string)
	code := e.codes.Last(t, "late@example.com").Code
	e.clock.Add(otpd.DefaultPolicy.TTL)
	r := e.check(map[string]any{"id": id, "code": code})
	if field(t, r, "status") != "expired" {
		t.Fatalf("after the TTL: %s", r.body)
	}
	if field(t, e.call("GET", "/v1/verifications/"+id, keyPlain, nil), "status") != "expired" {
		t.Fatal("GET does not say expired")
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	id := field(t, e.create(keyPlain, map[string]any{"to": "cancel@example.com"}), "id").(string)
	code := e.codes.Last(t, "cancel@example.com").Code
	for range 2 { // idempotent
		r := e.call("POST", "/v1/verifications/"+id+"/cancel", keyPlain, nil)
		if field(t, r, "status") != "canceled" {
			t.Fatalf("cancel: %s", r.body)
		}
	}
	if r := e.check(map[string]any{"id": id, "code": code}); field(t, r, "status") != "canceled" {
		t.Fatalf("check after cancel: %s", r.body)
	}
	// A final verification stays as it is.
	id2 := field(t, e.create(keyPlain, map[string]any{"to": "done@example.com"}), "id").(string)
	e.check(map[string]any{"id": id2, "code": e.codes.Last(t, "done@example.com").Code})
	if r := e.call("POST", "/v1/verifications/"+id2+"/cancel", keyPlain, nil); field(t, r, "status") != "approved" {
		t.Fatalf("cancel of an approved verification: %s", r.body)
	}
	wantError(t, e.call("POST", "/v1/verifications/ver_nope/cancel", keyPlain, nil), 404, "not_found", "")
	wantError(t, e.call("POST", "/v1/verifications/"+id+"/cancel", keyPlain, `{"x":1}`), 400, "invalid_request", "x")
}

// TestCancelSubject: every pending verification of one subject, of any
// address and purpose, is canceled in one call; other subjects, other
// tenants and final verifications are left as they are.
func TestCancelSubject(t *testing.T) {
	e := newEnv(t)
	mk := func(key, to, purpose, subject string) (id, code string) {
		id = field(t, e.create(key, map[string]any{"to": to, "purpose": purpose, "subject": subject}), "id").(string)
		return id, e.codes.Last(t, to).Code
	}
	a1, _ := mk(keyPlain, "a1@example.com", "verify_contact", "cus_a")
	a2, _ := mk(keyPlain, "a2@example.com", "delete_account", "cus_a")
	a3, a3code := mk(keyPlain, "a3@example.com", "sign_in", "cus_a")
	b, bcode := mk(keyPlain, "b@example.com", "verify_contact", "cus_b")
	prefix, _ := mk(keyPlain, "p@example.com", "verify_contact", "cus_ab")
	other, _ := mk(keyOther, "o@example.com", "verify_contact", "cus_a")
	if r := e.check(map[string]any{"id": a3, "code": a3code, "subject": "cus_a"}); field(t, r, "status") != "approved" {
		t.Fatalf("approve a3: %s", r.body)
	}
	r := e.call("POST", "/v1/verifications/cancel", keyPlain, map[string]any{"subject": "cus_a"})
	if r.status != 200 || field(t, r, "canceled") != 2.0 || field(t, r, "subject") != "cus_a" {
		t.Fatalf("cancel subject: %s", r)
	}
	if r := e.call("POST", "/v1/verifications/cancel", keyPlain, map[string]any{"subject": "cus_a"}); field(t, r, "canceled") != 0.0 {
		t.Fatalf("second cancel: %s", r)
	}
	for id, want := range map[string]string{a1: "canceled", a2: "canceled", a3: "approved", b: "pending", prefix: "pending"} {
		if r := e.call("GET", "/v1/verifications/"+id, keyPlain, nil); field(t, r, "status") != want {
			t.Errorf("%s after cancel: %s, want %s", id, r.body, want)
		}
	}
	if r := e.call("GET", "/v1/verifications/"+other, keyOther, nil); field(t, r, "status") != "pending" {
		t.Errorf("another tenant's verification: %s", r.body)
	}
	if r := e.check(map[string]any{"id": b, "code": bcode, "subject": "cus_b"}); field(t, r, "status") != "approved" {
		t.Fatalf("another subject's code after the cancel: %s", r.body)
	}
	for name, tc := range map[string]struct {
		body  any
		field string
	}{
		"no subject":      {map[string]any{}, "subject"},
		"empty subject":   {map[string]any{"subject": ""}, "subject"},
		"subject number":  {map[string]any{"subject": 7}, "subject"},
		"long subject":    {map[string]any{"subject": strings.Repeat("s", 256)}, "subject"},
		"control subject": {map[string]any{"subject": "a\nb"}, "subject"},
		"unknown field":   {map[string]any{"subject": "cus_a", "to": "a1@example.com"}, "to"},
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, e.call("POST", "/v1/verifications/cancel", keyPlain, tc.body), 400, "invalid_request", tc.field)
		})
	}
	for _, hb := range hostiletest.Bodies("subject") {
		r := hostiletest.Send(t, e.srv.URL, "POST", "/v1/verifications/cancel", hb, "Authorization", "Bearer "+keyPlain)
		if r.Status != hb.Status {
			t.Errorf("%s: %d, want %d: %s", hb.Name, r.Status, hb.Status, r.Raw)
		}
	}
	wantError(t, e.call("POST", "/v1/verifications/cancel", "", map[string]any{"subject": "cus_a"}), 401, "unauthorized", "")
}

// TestCancelSubjectConcurrent: cancels of one subject racing each other
// and new codes cancel each pending verification exactly once.
func TestCancelSubjectConcurrent(t *testing.T) {
	e := newEnv(t)
	const n = 12
	for i := range n {
		to := fmt.Sprintf("race%d@example.com", i)
		wantStatus(t, e.create(keyPlain, map[string]any{"to": to, "purpose": "verify_contact", "subject": "cus_race"}), 201)
	}
	var wg sync.WaitGroup
	var total atomic.Int64
	for range 8 {
		wg.Go(func() {
			r := e.call("POST", "/v1/verifications/cancel", keyPlain, map[string]any{"subject": "cus_race"})
			if r.status != 200 {
				t.Errorf("cancel: %s", r)
				return
			}
			var got struct{ Canceled int64 }
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Errorf("cancel answer %s: %v", r, err)
			}
			total.Add(got.Canceled)
		})
	}
	wg.Wait()
	if total.Load() != n {
		t.Fatalf("concurrent cancels canceled %d in all, want %d", total.Load(), n)
	}
}

func TestNotFound(t *testing.T) {
	e := newEnv(t)
	id := field(t, e.create(keyPlain, map[string]any{"to": "nf@example.com", "subject": "cus_a"}), "id").(string)
	code := e.codes.Last(t, "nf@example.com").Code
	for name, body := range map[string]map[string]any{
		"unknown id":          {"id": "ver_01JDZ8Q6R1T0V4B9XW3K2M5N7P", "code": code},
		"malformed id":        {"id": "chal_../../x", "code": code},
		"no subject":          {"id": id, "code": code},
		"another subject":     {"id": id, "code": code, "subject": "cus_b"},
		"by address, no subj": {"to": "nf@example.com", "purpose": "sign_in", "code": code},
	} {
		if r := e.check(body); field(t, r, "status") != "not_found" {
			t.Fatalf("%s: %s", name, r.body)
		}
	}
	// None of those counted a guess, and another tenant's key sees nothing.
	r := e.call("GET", "/v1/verifications/"+id, keyPlain, nil)
	if field(t, r, "attempts_left") != 5.0 {
		t.Fatalf("attempts after not_found checks: %s", r.body)
	}
	wantError(t, e.call("GET", "/v1/verifications/"+id, keyOther, nil), 404, "not_found", "")
	if r := e.call("POST", "/v1/verifications/check", keyOther, map[string]any{"id": id, "code": code, "subject": "cus_a"}); field(t, r, "status") != "not_found" {
		t.Fatalf("another tenant's check: %s", r.body)
	}
	wantError(t, e.call("GET", "/v1/verifications/ver_01JDZ8Q6R1T0V4B9XW3K2M5N7P", keyPlain, nil), 404, "not_found", "")
	if r := e.check(map[string]any{"id": id, "code": code, "subject": "cus_a"}); field(t, r, "status") != "approved" {
		t.Fatalf("the right subject: %s", r.body)
	}
}

// --- decoys ---

func TestDecoyShapeAndNeverApproved(t *testing.T) {
	e := newEnv(t)
	real := e.create(keyReturn, map[string]any{"to": "real@example.com", "subject": "s"})
	decoy := e.create(keyReturn, map[string]any{"to": "decoy@example.com", "subject": "s", "deliver": false})
	wantStatus(t, decoy, 201)
	if !slices.Equal(slices.Sorted(maps.Keys(real.json(t))), slices.Sorted(maps.Keys(decoy.json(t)))) {
		t.Fatalf("shapes differ:\nreal  %s\ndecoy %s", real.body, decoy.body)
	}
	if e.codes.Count("decoy@example.com") != 0 {
		t.Fatal("a decoy sent a code")
	}
	// Even with delivery return, a decoy has no code.
	ret := e.create(keyReturn, map[string]any{"to": "decoy2@example.com", "deliver": false, "delivery": "return"})
	if _, ok := ret.json(t)["code"]; ok {
		t.Fatalf("a decoy returned a code: %s", ret.body)
	}
	id := field(t, decoy, "id").(string)
	for i, code := range []string{"000000", "123456", "999999", "482913", "555555"} {
		r := e.check(map[string]any{"id": id, "code": code, "subject": "s"})
		if s := field(t, r, "status"); s == "approved" || (i < 4 && s != "pending") {
			t.Fatalf("decoy guess %d: %s", i, r.body)
		}
	}
	if r := e.check(map[string]any{"id": id, "code": "000001", "subject": "s"}); field(t, r, "status") != "max_attempts_reached" {
		t.Fatalf("decoy after the attempts: %s", r.body)
	}
	// A decoy counts against the cooldown like a real send.
	r := e.create(keyPlain, map[string]any{"to": "decoy@example.com", "subject": "s", "deliver": false})
	wantError(t, r, 429, "rate_limited", "")
}

// --- delivery return and permissions ---

func TestDeliveryReturn(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.create(keyPlain, map[string]any{"to": "ret@example.com", "delivery": "return"}), 403, "forbidden", "delivery")
	r := e.create(keyReturn, map[string]any{"to": "ret@example.com", "delivery": "return"})
	wantStatus(t, r, 201)
	code, _ := field(t, r, "code").(string)
	if len(code) != 6 {
		t.Fatalf("no code in %s", r.body)
	}
	if e.codes.Count("ret@example.com") != 0 {
		t.Fatal("delivery return sent a message")
	}
	if _, err := e.disp.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(e.events.Events(otpd.EventOTPGenerated)) != 0 {
		t.Fatal("delivery return emitted a code-bearing event")
	}
	if r := e.check(map[string]any{"id": field(t, r, "id"), "code": code}); field(t, r, "status") != "approved" {
		t.Fatalf("returned code: %s", r.body)
	}
}

// --- the cooldown ---

func TestCooldownEndsOnceSpent(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, e.create(keyPlain, map[string]any{"to": "again@example.com"}), 201)
	r := e.create(keyPlain, map[string]any{"to": "again@example.com"})
	wantError(t, r, 429, "rate_limited", "")
	if r.header.Get("Retry-After") == "" || field(t, r, "error").(map[string]any)["retry_after"] == nil {
		t.Fatalf("429 without Retry-After: %v %s", r.header, r.body)
	}
	code := e.codes.Last(t, "again@example.com").Code
	wantStatus(t, e.check(map[string]any{"to": "again@example.com", "purpose": "sign_in", "code": code}), 200)
	// Signed in; signing out and in again at once gets a new code.
	wantStatus(t, e.create(keyPlain, map[string]any{"to": "again@example.com"}), 201)
	if n := e.codes.Count("again@example.com"); n != 2 {
		t.Fatalf("%d codes sent, want 2", n)
	}
}

func TestNewVerificationRetiresThePrevious(t *testing.T) {
	e := newEnv(t)
	first := field(t, e.create(keyPlain, map[string]any{"to": "two@example.com"}), "id").(string)
	code1 := e.codes.Last(t, "two@example.com").Code
	e.clock.Add(31 * time.Second)
	wantStatus(t, e.create(keyPlain, map[string]any{"to": "two@example.com"}), 201)
	if r := e.check(map[string]any{"id": first, "code": code1}); field(t, r, "status") != "canceled" {
		t.Fatalf("the retired verification: %s", r.body)
	}
	// Another subject's slot is its own.
	wantStatus(t, e.create(keyPlain, map[string]any{"to": "two@example.com", "subject": "x"}), 201)
}

// --- idempotency ---

func TestIdempotency(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"to": "idem@example.com", "delivery": "return", "metadata": map[string]any{"a": 1, "b": 2}}
	first := e.create(keyReturn, body, "Idempotency-Key", "k-1")
	wantStatus(t, first, 201)
	// The same body, spelled otherwise: the first answer, and no second send
	// (which the cooldown would have refused with 429).
	again := e.call("POST", "/v1/verifications", keyReturn, `{ "metadata": {"b":2, "a":1}, "delivery":"return", "to":"idem@example.com" }`, "Idempotency-Key", "k-1")
	wantStatus(t, again, 201)
	if !bytes.Equal(first.body, again.body) {
		t.Fatalf("replay differs:\n%s\n%s", first.body, again.body)
	}
	wantError(t, e.create(keyReturn, map[string]any{"to": "other@example.com", "delivery": "return"}, "Idempotency-Key", "k-1"), 409, "idempotency_conflict", "Idempotency-Key")
	// Keys are per API key: another key's k-1 is a new request.
	wantStatus(t, e.create(keyPlain, map[string]any{"to": "idem2@example.com"}, "Idempotency-Key", "k-1"), 201)
	// After 24 h the key is new again.
	e.clock.Add(24*time.Hour + time.Second)
	r := e.create(keyReturn, body, "Idempotency-Key", "k-1")
	wantStatus(t, r, 201)
	if field(t, r, "id") == field(t, first, "id") {
		t.Fatal("a day-old key replayed")
	}
	wantError(t, e.create(keyPlain, map[string]any{"to": "idem@example.com"}, "Idempotency-Key", strings.Repeat("k", 256)), 400, "invalid_request", "Idempotency-Key")
	wantError(t, e.create(keyPlain, map[string]any{"to": "idem@example.com"}, "Idempotency-Key", "bad key"), 400, "invalid_request", "Idempotency-Key")
}

func TestIdempotencyConcurrent(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			e := newEnvOn(t, st.open(t), "")
			const n = 20
			var wg sync.WaitGroup
			answers := make([]response, n)
			for i := range n {
				wg.Go(func() {
					r, err := e.do("POST", "/v1/verifications", keyPlain, map[string]any{"to": "race@example.com"}, "Idempotency-Key", "same")
					if err != nil {
						t.Error(err)
					}
					answers[i] = r
				})
			}
			wg.Wait()
			for _, r := range answers {
				if r.status != 201 || !bytes.Equal(r.body, answers[0].body) {
					t.Fatalf("answers differ: %s vs %s", r, answers[0])
				}
			}
			if c := e.codes.Count("race@example.com"); c != 1 {
				t.Fatalf("%d codes sent, want 1", c)
			}
		})
	}
}

// --- concurrency: one approved ---

type storeCase struct {
	name string
	open func(t *testing.T) otpd.Store
}

func stores(t *testing.T) []storeCase {
	return []storeCase{
		{"sqlite", func(t *testing.T) otpd.Store { s, _ := sqliteStore(t); return s }},
		{"postgres", postgresStore},
	}
}

func TestConcurrentChecksOneApproved(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			e := newEnvOn(t, st.open(t), "")
			r := e.create(keyReturn, map[string]any{"to": "many@example.com", "delivery": "return"})
			id, code := field(t, r, "id"), field(t, r, "code")
			const n = 200
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				counts = map[string]int{}
			)
			for range n {
				wg.Go(func() {
					r, err := e.do("POST", "/v1/verifications/check", keyPlain, map[string]any{"id": id, "code": code})
					if err != nil {
						t.Error(err)
						return
					}
					var v map[string]any
					json.Unmarshal(r.body, &v)
					mu.Lock()
					counts[fmt.Sprint(r.status, " ", v["status"])]++
					mu.Unlock()
				})
			}
			wg.Wait()
			if counts["200 approved"] != 1 || counts["200 not_found"] != n-1 {
				t.Fatalf("answers %v, want one approved and %d not_found", counts, n-1)
			}
		})
	}
}

// --- keys ---

func TestBadKeysAnswerAlike(t *testing.T) {
	e := newEnv(t)
	var first response
	for i, h := range []string{"", "Bearer", "Bearer ", "Basic " + keyPlain, "Bearer " + keyRevoked, "Bearer " + keyPlain + "x",
		"Bearer otpd_sk_", "Bearer " + strings.Repeat("A", 4000), "Bearer \u00e9\u00e9"} {
		r, err := e.do("POST", "/v1/verifications", "", map[string]any{"to": "k@example.com"}, "Authorization", h)
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, r, 401, "unauthorized", "")
		if i == 0 {
			first = r
		} else if !bytes.Equal(r.body, first.body) || r.header.Get("WWW-Authenticate") != first.header.Get("WWW-Authenticate") {
			t.Fatalf("header %q answered %s, not like the others (%s)", h, r.body, first.body)
		}
	}
	if e.codes.Count("") != 0 {
		t.Fatal("an unauthenticated request sent a code")
	}
	for _, rt := range serverapi.Routes() {
		if rt.Path == "/v1/openapi.json" {
			continue
		}
		path := strings.ReplaceAll(rt.Path, "{id}", "ver_x")
		r, _ := e.do(rt.Method, path, "", nil)
		if r.status != 401 {
			t.Errorf("%s %s without a key: %d", rt.Method, path, r.status)
		}
	}
}

// --- bad input: 4xx naming the field, nothing stored ---

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	for name, tc := range map[string]struct {
		body  any
		field string
	}{
		"no to":             {map[string]any{}, "to"},
		"to not a string":   {map[string]any{"to": 5}, "to"},
		"bad to":            {map[string]any{"to": "not an address"}, "to"},
		"bad channel":       {map[string]any{"to": "a@example.com", "channel": "pigeon"}, "channel"},
		"sms to an email":   {map[string]any{"to": "a@example.com", "channel": "sms"}, "channel"},
		"email to a phone":  {map[string]any{"to": "+33612345678", "channel": "email"}, "channel"},
		"bad purpose":       {map[string]any{"to": "a@example.com", "purpose": "sign_up_follow_up"}, "purpose"},
		"long subject":      {map[string]any{"to": "a@example.com", "subject": strings.Repeat("s", 256)}, "subject"},
		"control subject":   {map[string]any{"to": "a@example.com", "subject": "a\nb"}, "subject"},
		"deliver a string":  {map[string]any{"to": "a@example.com", "deliver": "no"}, "deliver"},
		"bad delivery":      {map[string]any{"to": "a@example.com", "delivery": "carrier"}, "delivery"},
		"bad locale":        {map[string]any{"to": "a@example.com", "locale": "not a locale!"}, "locale"},
		"bad client ip":     {map[string]any{"to": "a@example.com", "client": map[string]any{"ip": "300.1.1.1"}}, "client.ip"},
		"client ip number":  {map[string]any{"to": "a@example.com", "client": map[string]any{"ip": 7}}, "client.ip"},
		"client extra":      {map[string]any{"to": "a@example.com", "client": map[string]any{"mac": "x"}}, "client.mac"},
		"metadata too big":  {map[string]any{"to": "a@example.com", "metadata": map[string]any{"x": strings.Repeat("m", 5000)}}, "metadata"},
		"metadata an array": {map[string]any{"to": "a@example.com", "metadata": []any{1}}, "metadata"},
		"unknown field":     {map[string]any{"to": "a@example.com", "admin": true}, "admin"},
		"array body":        {`[1]`, ""},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.call("POST", "/v1/verifications", keyPlain, tc.body)
			wantError(t, r, 400, "invalid_request", tc.field)
		})
	}
	for name, tc := range map[string]struct {
		body  any
		field string
	}{
		"no code":           {map[string]any{"id": "ver_x"}, "code"},
		"empty code":        {map[string]any{"id": "ver_x", "code": ""}, "code"},
		"long code":         {map[string]any{"id": "ver_x", "code": strings.Repeat("1", 65)}, "code"},
		"neither id nor to": {map[string]any{"code": "123456"}, "id"},
		"to, no purpose":    {map[string]any{"to": "a@example.com", "code": "123456"}, "purpose"},
		"bad to":            {map[string]any{"to": "nope", "purpose": "sign_in", "code": "123456"}, "to"},
		"bad purpose":       {map[string]any{"to": "a@example.com", "purpose": "x", "code": "123456"}, "purpose"},
		"code a number":     {map[string]any{"id": "ver_x", "code": 123456}, "code"},
	} {
		t.Run("check/"+name, func(t *testing.T) {
			wantError(t, e.check(tc.body.(map[string]any)), 400, "invalid_request", tc.field)
		})
	}
	counts := hostiletest.Count(t, e.path)
	if counts["challenges"] != 0 {
		t.Fatalf("bad requests stored %d challenges", counts["challenges"])
	}
}

func TestHostileBodies(t *testing.T) {
	e := newEnv(t)
	for _, b := range hostiletest.Bodies("to") {
		for _, path := range []string{"/v1/verifications", "/v1/verifications/check"} {
			r := hostiletest.Send(t, e.srv.URL, "POST", path, b, "Authorization", "Bearer "+keyPlain)
			if r.Status != b.Status {
				t.Errorf("%s %s: %d, want %d: %s", path, b.Name, r.Status, b.Status, r.Raw)
				continue
			}
			errObj, _ := r.Body["error"].(map[string]any)
			want := "invalid_request"
			if b.Status == 413 {
				want = "body_too_large"
			}
			if errObj == nil || errObj["code"] != want {
				t.Errorf("%s %s: body %s", path, b.Name, r.Raw)
			}
		}
	}
	if n := hostiletest.Count(t, e.path)["challenges"]; n != 0 {
		t.Fatalf("hostile bodies stored %d challenges", n)
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t)
	for _, rt := range [][2]string{{"GET", "/v1/verifications"}, {"DELETE", "/v1/verifications/ver_x"}, {"POST", "/v1/nope"}, {"GET", "/v1/"}} {
		r, _ := e.do(rt[0], rt[1], keyPlain, nil)
		wantError(t, r, 404, "not_found", "")
	}
}

func TestStoreDown(t *testing.T) {
	e := newEnv(t)
	e.store.Close()
	r := e.create(keyPlain, map[string]any{"to": "down@example.com"})
	if r.status != 503 && r.status != 500 {
		t.Fatalf("store closed: %s", r)
	}
	wantError(t, r, 503, "unavailable", "")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

// --- the OpenAPI document ---

var (
	docOnce sync.Once
	doc     map[string]any
	schemas *jsonschema.Compiler
)

func openAPI(t *testing.T) (map[string]any, *jsonschema.Compiler) {
	t.Helper()
	docOnce.Do(func() {
		raw := serverapi.OpenAPI()
		if err := json.Unmarshal(raw, &doc); err != nil {
			panic(err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			panic(err)
		}
		schemas = jsonschema.NewCompiler()
		schemas.DefaultDraft(jsonschema.Draft2020)
		if err := schemas.AddResource("https://otpd.example/openapi.json", v); err != nil {
			panic(err)
		}
	})
	return doc, schemas
}

func compile(t *testing.T, pointer string) *jsonschema.Schema {
	t.Helper()
	_, c := openAPI(t)
	s, err := c.Compile("https://otpd.example/openapi.json#" + pointer)
	if err != nil {
		t.Fatalf("compile %s: %v", pointer, err)
	}
	return s
}

// operation returns the documented operation of method and a concrete path.
func operation(t *testing.T, method, path string) (string, map[string]any) {
	d, _ := openAPI(t)
	paths := d["paths"].(map[string]any)
	path, _, _ = strings.Cut(path, "?")
	for p, item := range paths {
		re := "^" + regexp.MustCompile(`\\\{[a-z]+\\\}`).ReplaceAllString(regexp.QuoteMeta(p), `[^/]+`) + "$"
		if regexp.MustCompile(re).MatchString(path) {
			if op, ok := item.(map[string]any)[strings.ToLower(method)].(map[string]any); ok {
				return p, op
			}
		}
	}
	return "", nil
}

// checkDocumented fails the test unless r's status is documented for the
// route and its JSON body is valid against the documented schema.
func checkDocumented(t *testing.T, method, path string, r response) {
	t.Helper()
	p, op := operation(t, method, path)
	if op == nil {
		if r.status != 404 && r.status != 401 {
			t.Fatalf("%s %s is not documented but answered %d", method, path, r.status)
		}
		return
	}
	status := fmt.Sprint(r.status)
	resp, ok := op["responses"].(map[string]any)[status].(map[string]any)
	if !ok {
		t.Fatalf("%s %s answered %d, which the document does not list: %s", method, p, r.status, r.body)
	}
	pointer := ""
	if ref, ok := resp["$ref"].(string); ok {
		pointer = strings.TrimPrefix(ref, "#") + "/content/application~1json/schema"
	} else {
		pointer = fmt.Sprintf("/paths/%s/%s/responses/%s/content/application~1json/schema", strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1"), strings.ToLower(method), status)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("%s %s: body %q: %v", method, p, r.body, err)
	}
	if err := compile(t, pointer).Validate(v); err != nil {
		t.Fatalf("%s %s %d: body %s does not match the document: %v", method, p, r.status, r.body, err)
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	d, _ := openAPI(t)
	if d["openapi"] != "3.1.0" {
		t.Fatalf("openapi %v", d["openapi"])
	}
	var documented []serverapi.Route
	for p, item := range d["paths"].(map[string]any) {
		for m := range item.(map[string]any) {
			documented = append(documented, serverapi.Route{Method: strings.ToUpper(m), Path: p})
		}
	}
	served := serverapi.Routes()
	if !sameRoutes(documented, served) {
		t.Fatalf("documented routes %v\nserved routes %v", documented, served)
	}
	// Every documented route is served: with a key, none answers the
	// unknown-route 404.
	for _, rt := range served {
		path := strings.ReplaceAll(rt.Path, "{id}", "ver_01JDZ8Q6R1T0V4B9XW3K2M5N7P")
		r, _ := e.do(rt.Method, path, keyPlain, map[string]any{})
		if r.status == 404 && strings.Contains(string(r.body), "No such route") {
			t.Errorf("%s %s is documented but not served", rt.Method, rt.Path)
		}
	}
	r := e.call("GET", "/v1/openapi.json", "", nil)
	if !bytes.Equal(r.body, serverapi.OpenAPI()) || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatal("GET /v1/openapi.json does not serve the document")
	}
}

func TestOpenAPIExamplesValid(t *testing.T) {
	d, _ := openAPI(t)
	n := 0
	var walk func(pointer string, node any)
	walk = func(pointer string, node any) {
		m, ok := node.(map[string]any)
		if !ok {
			return
		}
		if schema, ok := m["schema"]; ok && schema != nil {
			check := func(name string, ex any) {
				b, _ := json.Marshal(ex)
				v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
				if err := compile(t, pointer+"/schema").Validate(v); err != nil {
					t.Errorf("example %s at %s: %v", name, pointer, err)
				}
				n++
			}
			if ex, ok := m["example"]; ok {
				check("example", ex)
			}
			if exs, ok := m["examples"].(map[string]any); ok {
				for name, ex := range exs {
					check(name, ex.(map[string]any)["value"])
				}
			}
		}
		for k, v := range m {
			walk(pointer+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"), v)
		}
	}
	walk("", d)
	if n < 15 {
		t.Fatalf("checked %d examples; the document has more", n)
	}
}

// TestDocsCoverEveryRoute: docs/server-api.md has a section for every
// route of the document, and none for a route it does not have.
func TestDocsCoverEveryRoute(t *testing.T) {
	b, err := os.ReadFile("../../docs/server-api.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []serverapi.Route
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "### `"); ok {
			method, path, _ := strings.Cut(strings.TrimSuffix(rest, "`"), " ")
			documented = append(documented, serverapi.Route{Method: method, Path: path})
		}
	}
	served := serverapi.Routes()
	if !sameRoutes(documented, served) {
		t.Fatalf("docs/server-api.md sections %v\nroutes %v", documented, served)
	}
}

// sameRoutes reports whether a and b hold the same routes, in any order;
// it sorts both.
func sameRoutes(a, b []serverapi.Route) bool {
	cmp := func(x, y serverapi.Route) int { return strings.Compare(x.Method+" "+x.Path, y.Method+" "+y.Path) }
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

// TestIdempotencyKeepsOnlySuccess: a request refused by a limit stores no
// answer under its Idempotency-Key (the refusal rolls back with the
// transaction that would have issued), so its retry after the wait acts.
func TestIdempotencyKeepsOnlySuccess(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, e.create(keyPlain, map[string]any{"to": "wait@example.com"}), 201)
	body := map[string]any{"to": "wait@example.com"}
	wantError(t, e.create(keyPlain, body, "Idempotency-Key", "retry-me"), 429, "rate_limited", "")
	e.clock.Add(otpd.DefaultSendLimits.Cooldown)
	r := e.create(keyPlain, body, "Idempotency-Key", "retry-me")
	wantStatus(t, r, 201)
	if n := e.codes.Count("wait@example.com"); n != 2 {
		t.Fatalf("%d codes sent, want 2", n)
	}
	if again := e.create(keyPlain, body, "Idempotency-Key", "retry-me"); !bytes.Equal(again.body, r.body) {
		t.Fatalf("the successful answer is not replayed: %s vs %s", again.body, r.body)
	}
}

// downLimiter is a limiter that cannot be reached.
type downLimiter struct{}

func (downLimiter) Allow(context.Context, ...otpd.Limit) (otpd.Decision, error) {
	return otpd.Decision{}, otpd.Errorf(otpd.EUNAVAILABLE, "redis: connection refused")
}
func (downLimiter) Ping(context.Context) error { return otpd.Errorf(otpd.EUNAVAILABLE, "down") }

// TestLimiterDown: with the shared limiter unreachable, creates and checks
// answer 503 with Retry-After, send nothing and count no guess.
func TestLimiterDown(t *testing.T) {
	e := newEnv(t)
	r := e.create(keyReturn, map[string]any{"to": "down@example.com", "delivery": "return"})
	id, code := field(t, r, "id"), field(t, r, "code")
	e.flows.Throttler.Throttles = otpd.DefaultThrottles
	e.flows.Throttler.Limiter = downLimiter{}
	r = e.create(keyPlain, map[string]any{"to": "down2@example.com"})
	wantError(t, r, 503, "unavailable", "")
	if r.header.Get("Retry-After") == "" || strings.Contains(string(r.body), "redis") {
		t.Fatalf("503: %v %s", r.header, r.body)
	}
	wantError(t, e.check(map[string]any{"id": id, "code": code}), 503, "unavailable", "")
	if e.codes.Count("down2@example.com") != 0 {
		t.Fatal("a code was sent while the limiter was down")
	}
	e.flows.Throttler.Limiter = nil
	if r := e.check(map[string]any{"id": id, "code": code}); field(t, r, "status") != "approved" || field(t, r, "attempts_left") != 4.0 {
		t.Fatalf("after the limiter came back: %s", r.body)
	}
}
