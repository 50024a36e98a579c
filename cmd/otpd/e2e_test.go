package main_test

// End-to-end tests: the real otpd binary, started as a process on a SQLite
// file, driven over HTTP.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/otpd/otpd/internal/flowtest"
)

var otpdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "otpd-e2e")
	if err != nil {
		panic(err)
	}
	otpdBin = filepath.Join(dir, "otpd")
	out, err := exec.Command("go", "build", "-race", "-o", otpdBin, ".").CombinedOutput()
	if err != nil {
		// -race needs cgo; fall back to a plain build.
		out, err = exec.Command("go", "build", "-o", otpdBin, ".").CombinedOutput()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "building otpd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	testSecrets   = "e2e-server-secret-0123456789abcdef-0123456789"
	testJWTSecret = "e2e-jwt-secret-0123456789abcdef-0123456789"
)

// server is a running otpd process.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	logs *flowtest.SyncBuffer
	done chan struct{}
}

var listenRE = regexp.MustCompile(`otpd listening.*addr=(\S+)`)

// startServer runs `otpd serve` with the database in dir and extra env.
func startServer(t *testing.T, dir string, env ...string) *server {
	t.Helper()
	cmd := exec.Command(otpdBin, "serve", "--addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(),
		"OTPD_DATABASE_URL=sqlite://"+filepath.Join(dir, "otpd.db"),
		"OTPD_LOG_LEVEL=debug",
	)
	cmd.Env = append(cmd.Env, env...)
	logs := &flowtest.SyncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, logs: logs, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			logs.Write([]byte(line + "\n"))
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	select {
	case a := <-addr:
		s.base = "http://" + a
	case <-s.done:
		t.Fatalf("otpd exited at start:\n%s", logs.String())
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("otpd did not start:\n%s", logs.String())
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("otpd did not stop on SIGTERM")
	}
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// call sends a JSON request, with headers given as name, value pairs, and
// decodes a JSON response into out (if not nil).
func (s *server) call(method, path, token string, body any, out any, headers ...string) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		buf, _ := json.Marshal(body)
		rd = bytes.NewReader(buf)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// outboxCode reads the newest code sent to `to` from the dev outbox.
func (s *server) outboxCode(to string) string {
	s.t.Helper()
	var res struct {
		Messages []struct {
			Code string `json:"code"`
		} `json:"messages"`
	}
	if st := s.call("GET", "/dev/outbox?to="+to+"&limit=1", "", nil, &res); st != 200 || len(res.Messages) == 0 {
		s.t.Fatalf("no outbox message for %s (status %d)", to, st)
	}
	return res.Messages[0].Code
}

// signUp registers a customer by code and returns a token carrying its id.
func (s *server) signUp(email string) string {
	s.t.Helper()
	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": email}, nil); st != 200 {
		s.t.Fatalf("pre-register: %d", st)
	}
	code := s.outboxCode(email)
	var tok struct{ Token string }
	if st := s.call("POST", "/auth/customer/otp/register", "", map[string]string{"identifier": email, "otp": code}, &tok); st != 200 {
		s.t.Fatalf("register: %d", st)
	}
	var cus struct{ Customer struct{ ID, Email string } }
	if st := s.call("POST", "/store/customers", tok.Token, map[string]string{"email": email}, &cus); st != 200 {
		s.t.Fatalf("create customer: %d", st)
	}
	if st := s.call("POST", "/auth/token/refresh", tok.Token, nil, &tok); st != 200 {
		s.t.Fatalf("refresh: %d", st)
	}
	return tok.Token
}

// devEnv is a dev server with fixed secrets. Every test request comes from
// 127.0.0.1, so the per-address limits are raised far above the bursts the
// tests send; the tests of those limits set their own.
func devEnv() []string {
	return []string{"OTPD_DEV=true", "OTPD_SECRETS=" + testSecrets, "OTPD_JWT_SECRET=" + testJWTSecret,
		"OTPD_LIMIT_IP_SEND=100000/5m", "OTPD_LIMIT_IP_VERIFY=100000/5m"}
}

// TestE2E_Walkthrough follows the README: sign up, then sign in, by code.
func TestE2E_Walkthrough(t *testing.T) {
	s := startServer(t, t.TempDir(), "OTPD_DEV=true")
	tok := s.signUp("Walker@Example.com")
	var me struct{ Customer struct{ ID, Email string } }
	if st := s.call("GET", "/store/customers/me", tok, nil, &me); st != 200 || me.Customer.Email != "walker@example.com" {
		t.Fatalf("me: %d %+v", st, me)
	}
	if st := s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "walker@example.com"}, nil); st != 200 {
		t.Fatalf("generate: %d", st)
	}
	code := s.outboxCode("walker@example.com")
	var tok2 struct{ Token string }
	if st := s.call("POST", "/auth/customer/otp/verify", "", map[string]string{"identifier": "WALKER@example.com", "otp": code}, &tok2); st != 200 {
		t.Fatalf("verify: %d", st)
	}
	var me2 struct{ Customer struct{ ID string } }
	if st := s.call("GET", "/store/customers/me", tok2.Token, nil, &me2); st != 200 || me2.Customer.ID != me.Customer.ID {
		t.Fatalf("me after sign-in: %d %+v, want %s", st, me2, me.Customer.ID)
	}
	// Sends for addresses with and without an account count alike: /metrics
	// must not reveal which addresses have accounts.
	before := s.metric("otpd_code_sends_total", `purpose="sign_in"`)
	s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "nobody@example.com"}, nil)
	if got := s.metric("otpd_code_sends_total", `purpose="sign_in"`); got != before+1 {
		t.Fatalf("sends metric %d -> %d for an address without an account, want +1 like any send", before, got)
	}
	for _, path := range []string{"/health", "/ready"} {
		if st := s.call("GET", path, "", nil, nil); st != 200 {
			t.Fatalf("%s: %d", path, st)
		}
	}
}

// metric reads one counter from /metrics.
func (s *server) metric(name, labels string) int {
	s.t.Helper()
	resp, err := client.Get(s.base + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, labels) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			return int(v)
		}
	}
	return 0
}

// burst sends n copies of one verify request at once and returns the count
// of each status.
func (s *server) burst(n int, path string, body any) map[int]int {
	buf, _ := json.Marshal(body)
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", s.base+path, bytes.NewReader(buf))
			req.Header.Set("Content-Type", "application/json")
			<-start
			resp, err := client.Do(req)
			st := -1
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				st = resp.StatusCode
			}
			mu.Lock()
			counts[st]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return counts
}

func TestE2E_ConcurrentVerifyOneSuccess(t *testing.T) {
	s := startServer(t, t.TempDir(), devEnv()...)
	s.signUp("race@example.com")
	s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "race@example.com"}, nil)
	code := s.outboxCode("race@example.com")
	counts := s.burst(200, "/auth/customer/otp/verify", map[string]string{"identifier": "race@example.com", "otp": code})
	if counts[200] != 1 || counts[400] != 199 {
		t.Fatalf("statuses %v, want exactly 1×200 and 199×400", counts)
	}
	if got := s.metric("otpd_code_verifications_total", `outcome="success",purpose="sign_in"`); got != 1 {
		t.Fatalf("success metric=%d, want 1", got)
	}
}

func TestE2E_ConcurrentWrongGuesses(t *testing.T) {
	s := startServer(t, t.TempDir(), devEnv()...)
	s.signUp("guess@example.com")
	s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "guess@example.com"}, nil)
	code := s.outboxCode("guess@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "000001"
	}
	counts := s.burst(200, "/auth/customer/otp/verify", map[string]string{"identifier": "guess@example.com", "otp": wrong})
	if counts[400] != 200 {
		t.Fatalf("statuses %v, want 200×400", counts)
	}
	if got := s.metric("otpd_code_verifications_total", `outcome="mismatch",purpose="sign_in"`); got != 5 {
		t.Fatalf("guesses compared=%d, want 5 (max_attempts)", got)
	}
	if st := s.call("POST", "/auth/customer/otp/verify", "", map[string]string{"identifier": "guess@example.com", "otp": code}, nil); st != 400 {
		t.Fatalf("right code after the burst: %d, want 400", st)
	}
}

// TestE2E_RestartKeepsAttemptCount: the attempt count is in the database, so
// a restart between guesses does not reset it.
func TestE2E_RestartKeepsAttemptCount(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, devEnv()...)
	s.signUp("restart@example.com")
	s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "restart@example.com"}, nil)
	code := s.outboxCode("restart@example.com")
	wrong := map[string]string{"identifier": "restart@example.com", "otp": "abcdef"}
	for i := 0; i < 3; i++ {
		s.call("POST", "/auth/customer/otp/verify", "", wrong, nil)
	}
	s.stop()
	s = startServer(t, dir, devEnv()...)
	for i := 0; i < 2; i++ {
		if st := s.call("POST", "/auth/customer/otp/verify", "", wrong, nil); st != 400 {
			t.Fatalf("wrong guess after restart: %d", st)
		}
	}
	if st := s.call("POST", "/auth/customer/otp/verify", "", map[string]string{"identifier": "restart@example.com", "otp": code}, nil); st != 400 {
		t.Fatalf("right code after 3+2 wrong guesses across a restart: %d, want 400", st)
	}
}

// TestE2E_CodeSurvivesRestart is the control of the test above: a live code
// issued before a restart still verifies after it.
func TestE2E_CodeSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, devEnv()...)
	s.signUp("survive@example.com")
	s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "survive@example.com"}, nil)
	code := s.outboxCode("survive@example.com")
	s.call("POST", "/auth/customer/otp/verify", "", map[string]string{"identifier": "survive@example.com", "otp": "abcdef"}, nil)
	s.stop()
	s = startServer(t, dir, devEnv()...)
	if st := s.call("POST", "/auth/customer/otp/verify", "", map[string]string{"identifier": "survive@example.com", "otp": code}, nil); st != 200 {
		t.Fatalf("code issued before restart: %d, want 200", st)
	}
}

// receiver is a webhook endpoint that fails its first `fail` deliveries.
type receiver struct {
	t      *testing.T
	secret string
	fail   atomic.Int64
	mu     sync.Mutex
	events []map[string]any
	seen   int64
	got    chan struct{}
}

func newReceiver(t *testing.T, fail int) (*receiver, *httptest.Server) {
	r := &receiver{t: t, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", got: make(chan struct{}, 100)}
	r.fail.Store(int64(fail))
	wh, err := standardwebhooks.NewWebhook(r.secret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.seen++
		r.mu.Unlock()
		if r.fail.Add(-1) >= 0 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		if err := wh.Verify(body, req.Header); err != nil {
			t.Errorf("webhook signature: %v", err)
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		r.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *receiver) wait(n int, within time.Duration) []map[string]any {
	r.t.Helper()
	deadline := time.After(within)
	for {
		r.mu.Lock()
		if len(r.events) >= n {
			out := append([]map[string]any(nil), r.events...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			r.t.Fatalf("webhook received %d events within %s, want %d", len(r.events), within, n)
		}
	}
}

func eventData(ev map[string]any) map[string]any {
	d, _ := ev["data"].(map[string]any)
	return d
}

// prodEnv is a non-dev configuration: no dev outbox, codes only by webhook.
func prodEnv(webhookURL, secret string) []string {
	return []string{"OTPD_SECRETS=" + testSecrets, "OTPD_JWT_SECRET=" + testJWTSecret,
		"OTPD_WEBHOOK_URLS=" + webhookURL, "OTPD_WEBHOOK_SECRET=" + secret}
}

// TestE2E_WebhookRetriesAndSecrecy: a receiver that fails twice still gets
// the event, signed; outside dev mode no code or token reaches the logs, and
// the database files never hold a code in plaintext.
func TestE2E_WebhookRetriesAndSecrecy(t *testing.T) {
	rcv, srv := newReceiver(t, 2)
	dir := t.TempDir()
	s := startServer(t, dir, prodEnv(srv.URL, rcv.secret)...)

	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "hook@example.com"}, nil); st != 200 {
		t.Fatalf("pre-register: %d", st)
	}
	evs := rcv.wait(1, 30*time.Second)
	if got := evs[0]["type"]; got != "pre-register.otp.generated" {
		t.Fatalf("event type %v", got)
	}
	data := eventData(evs[0])
	code, _ := data["otp"].(string)
	if data["identifier"] != "hook@example.com" || len(code) != 6 {
		t.Fatalf("event data %v", data)
	}
	rcv.mu.Lock()
	seen := rcv.seen
	rcv.mu.Unlock()
	if seen != 3 {
		t.Fatalf("deliveries tried=%d, want 3 (two failures, then success)", seen)
	}

	var tok struct{ Token string }
	if st := s.call("POST", "/auth/customer/otp/register", "", map[string]string{"identifier": "hook@example.com", "otp": code}, &tok); st != 200 {
		t.Fatalf("register: %d", st)
	}
	if st := s.call("POST", "/store/customers", tok.Token, map[string]string{"first_name": "Hook"}, nil); st != 200 {
		t.Fatalf("create customer: %d", st)
	}
	s.call("POST", "/auth/token/refresh", tok.Token, nil, &tok)
	if st := s.call("GET", "/dev/outbox", "", nil, nil); st != 404 {
		t.Fatalf("/dev/outbox outside dev mode: %d, want 404", st)
	}
	// A live code, to look for in the database files.

	s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "hook@example.com"}, nil)
	live, _ := eventData(rcv.wait(2, 30*time.Second)[1])["otp"].(string)

	s.stop()
	logs := s.logs.String()
	for _, secret := range []string{code, live, tok.Token, testSecrets, testJWTSecret, rcv.secret} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret %q:\n%s", secret, logs)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "otpd.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		for _, c := range []string{code, live} {
			if bytes.Contains(raw, []byte(c)) {
				t.Errorf("%s contains code %s in plaintext", filepath.Base(f), c)
			}
		}
	}
}

// TestE2E_PasswordResetByWebhook: through the real server and its durable
// outbox, a reset request reaches a webhook as Medusa's auth.password_reset
// {entity_id, actor_type, token, metadata}; the token sets a new password
// once, and neither it nor any password reaches the logs or the database in
// plaintext.
func TestE2E_PasswordResetByWebhook(t *testing.T) {
	rcv, srv := newReceiver(t, 0)
	dir := t.TempDir()
	s := startServer(t, dir, prodEnv(srv.URL, rcv.secret)...)
	const oldPW, newPW = "first password 1", "second password 2"
	var tok struct{ Token string }
	if st := s.call("POST", "/auth/customer/emailpass/register", "", map[string]string{"email": "reset@example.com", "password": oldPW}, &tok); st != 200 {
		t.Fatalf("register: %d", st)
	}
	if st := s.call("POST", "/auth/customer/emailpass/reset-password", "", map[string]any{"identifier": "Reset@Example.com", "metadata": map[string]any{"locale": "fr"}}, nil); st != 201 {
		t.Fatalf("reset-password: %d", st)
	}
	ev := rcv.wait(1, 30*time.Second)[0]
	data := eventData(ev)
	reset, _ := data["token"].(string)
	if ev["type"] != "auth.password_reset" || data["entity_id"] != "reset@example.com" || data["actor_type"] != "customer" || reset == "" ||
		data["metadata"].(map[string]any)["locale"] != "fr" || data["otp"] != "" {
		t.Fatalf("event %v", ev)
	}
	var ok map[string]bool
	if st := s.call("POST", "/auth/customer/emailpass/update", reset, map[string]string{"password": newPW}, &ok); st != 200 || !ok["success"] {
		t.Fatalf("update: %d %v", st, ok)
	}
	if st := s.call("POST", "/auth/customer/emailpass/update", reset, map[string]string{"password": "third password 3"}, nil); st != 401 {
		t.Fatalf("reused reset token: %d, want 401", st)
	}
	if st := s.call("POST", "/auth/token/refresh", tok.Token, nil, nil); st != 401 {
		t.Fatalf("token from before the reset: %d, want 401", st)
	}
	if st := s.call("POST", "/auth/customer/emailpass", "", map[string]string{"email": "reset@example.com", "password": newPW}, nil); st != 200 {
		t.Fatalf("login with the new password: %d", st)
	}
	s.stop()
	jti := ""
	if parts := strings.Split(reset, "."); len(parts) == 3 {
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c map[string]any
		json.Unmarshal(raw, &c)
		jti, _ = c["jti"].(string)
	}
	if len(jti) != 10 {
		t.Fatalf("reset token jti %q", jti)
	}
	for _, secret := range []string{reset, jti, oldPW, newPW, tok.Token} {
		if strings.Contains(s.logs.String(), secret) {
			t.Errorf("logs contain a secret %q", secret)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "otpd.db*"))
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		for _, secret := range []string{reset, jti, oldPW, newPW} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("%s holds %q in plaintext", filepath.Base(f), secret)
			}
		}
	}
}

// TestE2E_WebhookSurvivesRestart: an event queued while the receiver is down
// is delivered by the next process.
func TestE2E_WebhookSurvivesRestart(t *testing.T) {
	rcv, srv := newReceiver(t, 1<<30) // down until told otherwise
	dir := t.TempDir()
	s := startServer(t, dir, prodEnv(srv.URL, rcv.secret)...)
	if st := s.call("POST", "/auth/customer/otp/pre-register", "", map[string]string{"identifier": "later@example.com"}, nil); st != 200 {
		t.Fatalf("pre-register: %d", st)
	}
	// Wait until the first delivery has failed, then stop the server.
	for i := 0; ; i++ {
		rcv.mu.Lock()
		seen := rcv.seen
		rcv.mu.Unlock()
		if seen > 0 {
			break
		}
		if i > 300 {
			t.Fatal("no delivery attempt")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	rcv.fail.Store(0)
	startServer(t, dir, prodEnv(srv.URL, rcv.secret)...)
	evs := rcv.wait(1, 60*time.Second)
	if d := eventData(evs[0]); d["identifier"] != "later@example.com" {
		t.Fatalf("event %v", evs[0])
	}
}

func runCLI(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, otpdBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	db := "OTPD_DATABASE_URL=sqlite://" + filepath.Join(dir, "cli.db")
	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		wantErr bool
		want    string
	}{
		{"Version", nil, []string{"version"}, false, "otpd "},
		{"Migrate", []string{db}, []string{"migrate"}, false, "applied"},
		{"MigrateAgain", []string{db}, []string{"migrate"}, false, "applied 0 migration(s)"},
		{"NoSecretOutsideDev", []string{db}, []string{"serve"}, true, "OTPD_SECRETS"},
		{"NoJWTSecretOutsideDev", []string{db, "OTPD_SECRETS=" + testSecrets}, []string{"serve"}, true, "OTPD_JWT_SECRET"},
		{"DevRefusesPublicAddr", []string{db}, []string{"serve", "--dev", "--addr", "0.0.0.0:8080"}, true, "loopback"},
		{"BadEnvNamesVariable", []string{db, "OTPD_SEND_BUDGET=lots"}, []string{"serve", "--dev"}, true, "OTPD_SEND_BUDGET"},
		{"BadCodeLength", []string{db, "OTPD_CODE_LENGTH=3"}, []string{"serve", "--dev"}, true, "codes.length"},
		{"UnknownScheme", []string{"OTPD_DATABASE_URL=mysql://x"}, []string{"serve", "--dev"}, true, "database_url"},
		{"PostgresUnreachable", []string{"OTPD_DATABASE_URL=postgres://otpd:s3cret-pw@127.0.0.1:1/otpd?connect_timeout=1"}, []string{"serve", "--dev"}, true, "open database"},
		{"ShortSecret", []string{db, "OTPD_SECRETS=short"}, []string{"serve", "--dev"}, true, "secrets[0]"},
		{"BadRate", []string{db, "OTPD_LIMIT_IP_SEND=30 a minute"}, []string{"serve", "--dev"}, true, "OTPD_LIMIT_IP_SEND"},
		{"BadTrustedProxy", []string{db, "OTPD_TRUSTED_PROXIES=10.0.0.0/8,10.0.0.0/33"}, []string{"serve", "--dev"}, true, "trusted_proxies"},
		{"BadRedisURL", []string{db, "OTPD_REDIS_URL=http://localhost:6379"}, []string{"serve", "--dev"}, true, "redis_url"},
		{"BadPrefixLength", []string{db, "OTPD_LIMIT_PHONE_PREFIX_LENGTH=1"}, []string{"serve", "--dev"}, true, "limits.phone_prefix_length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCLI(t, tc.env, tc.args...)
			if (err != nil) != tc.wantErr || !strings.Contains(out, tc.want) {
				t.Fatalf("otpd %v: err=%v output=%q, want error=%v and %q", tc.args, err, out, tc.wantErr, tc.want)
			}
			if strings.Contains(out, testSecrets) {
				t.Fatalf("output shows a secret: %q", out)
			}
		})
	}
	t.Run("UnknownConfigKey", func(t *testing.T) {
		cfg := filepath.Join(dir, "otpd.yaml")
		os.WriteFile(cfg, []byte("dev: true\ncodes:\n  lenght: 8\n"), 0o600)
		out, err := runCLI(t, []string{db}, "serve", "--config", cfg)
		if err == nil || !strings.Contains(out, "lenght") {
			t.Fatalf("err=%v output=%q, want an error naming the unknown key", err, out)
		}
	})
}

// postgresEnv points a server at a fresh schema of the PostgreSQL database
// named by OTPD_TEST_POSTGRES_URL, or skips the test.
func postgresEnv(t *testing.T) []string {
	base := os.Getenv("OTPD_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("OTPD_TEST_POSTGRES_URL is not set: PostgreSQL end-to-end tests skipped")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect %s: %v", base, err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	schema := "otpd_e2e_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return []string{"OTPD_DATABASE_URL=" + base + sep + "search_path=" + schema}
}

// TestE2E_Postgres runs the core guarantees on the PostgreSQL store: a whole
// sign-up and sign-in, exactly one success of 200 simultaneous verifies,
// exactly max_attempts guesses compared of 200 wrong ones, and a restart
// that keeps the count.
func TestE2E_Postgres(t *testing.T) {
	env := append(devEnv(), postgresEnv(t)...)
	dir := t.TempDir()
	s := startServer(t, dir, env...)
	tok := s.signUp("pg@example.com")
	if st := s.call("GET", "/store/customers/me", tok, nil, nil); st != 200 {
		t.Fatalf("me: %d", st)
	}

	s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "pg@example.com"}, nil)
	code := s.outboxCode("pg@example.com")
	if counts := s.burst(200, "/auth/customer/otp/verify", map[string]string{"identifier": "pg@example.com", "otp": code}); counts[200] != 1 || counts[400] != 199 {
		t.Fatalf("simultaneous verifies: %v, want 1×200 and 199×400", counts)
	}

	s.signUp("pg2@example.com")
	s.call("POST", "/auth/customer/otp/generate", "", map[string]string{"identifier": "pg2@example.com"}, nil)
	code = s.outboxCode("pg2@example.com")
	if counts := s.burst(200, "/auth/customer/otp/verify", map[string]string{"identifier": "pg2@example.com", "otp": "abcdef"}); counts[400] != 200 {
		t.Fatalf("wrong guesses: %v", counts)
	}
	if got := s.metric("otpd_code_verifications_total", `outcome="mismatch",purpose="sign_in"`); got != 5 {
		t.Fatalf("guesses compared=%d, want 5", got)
	}
	s.stop()
	s = startServer(t, dir, env...)
	if st := s.call("POST", "/auth/customer/otp/verify", "", map[string]string{"identifier": "pg2@example.com", "otp": code}, nil); st != 400 {
		t.Fatalf("right code after the burst, across a restart: %d, want 400", st)
	}
}

// TestE2E_PostgresPasswords: on PostgreSQL, a reset token presented by 50
// simultaneous updates changes the password exactly once, and a logout
// revokes the identity's older tokens.
func TestE2E_PostgresPasswords(t *testing.T) {
	env := append(devEnv(), postgresEnv(t)...)
	env = append(env, "OTPD_LIMIT_IP_PASSWORD=100000/5m", "OTPD_LIMIT_PASSWORD_IDENTITY=100000/5m")
	s := startServer(t, t.TempDir(), env...)
	var tok struct{ Token string }
	if st := s.call("POST", "/auth/customer/emailpass/register", "", map[string]string{"email": "pgpw@example.com", "password": "first password 1"}, &tok); st != 200 {
		t.Fatalf("register: %d", st)
	}
	if st := s.call("POST", "/auth/customer/emailpass/reset-password", "", map[string]string{"identifier": "pgpw@example.com"}, nil); st != 201 {
		t.Fatalf("reset-password: %d", st)
	}
	var res struct {
		Messages []struct {
			Token string `json:"token"`
		} `json:"messages"`
	}
	if st := s.call("GET", "/dev/outbox?to=pgpw@example.com&limit=1", "", nil, &res); st != 200 || len(res.Messages) != 1 || res.Messages[0].Token == "" {
		t.Fatalf("outbox: %d %+v", st, res)
	}
	reset := res.Messages[0].Token
	// Each update hashes the new password (scrypt, two at a time, slow under
	// -race) before it tries the token: 10 keep the burst within the client
	// timeout when the whole suite loads both cores (20 timed out there).
	const n = 10
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- s.call("POST", "/auth/customer/emailpass/update", reset, map[string]string{"password": fmt.Sprintf("new password %02d", i)}, nil)
		}()
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for st := range statuses {
		counts[st]++
	}
	if counts[200] != 1 || counts[401] != n-1 {
		t.Fatalf("simultaneous updates with one token: %v, want 1×200 and %d×401", counts, n-1)
	}
	if st := s.call("POST", "/auth/token/refresh", tok.Token, nil, nil); st != 401 {
		t.Fatalf("token from before the reset: %d, want 401", st)
	}

	login := s.signUp("pglogout@example.com")
	var other struct{ Token string } // a second device's token
	if st := s.call("POST", "/auth/token/refresh", login, nil, &other); st != 200 {
		t.Fatalf("refresh: %d", st)
	}
	if st := s.call("DELETE", "/auth/session", login, nil, nil); st != 200 {
		t.Fatalf("logout: %d", st)
	}
	for _, tk := range []string{login, other.Token} {
		if st := s.call("GET", "/store/customers/me", tk, nil, nil); st != 401 {
			t.Fatalf("token after logout: %d, want 401", st)
		}
	}
}
