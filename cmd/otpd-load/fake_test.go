package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOTPD is an in-memory otpd with the seven Medusa routes and the three
// SuperTokens routes the load generator uses (plus the outbox), the latter
// under both fakeSTBases. Messages show up in the outbox delay after the
// request that sent them, as in the real server's asynchronous delivery.
type fakeOTPD struct {
	delay        time.Duration // before a sent message is visible in the outbox
	loginLimit   time.Duration // minimum gap between two login codes to one email; 0 = none
	passwordMax  int           // emailpass requests admitted (as otpd's ip_password limit); 0 = no limit
	publishable  string        // required x-publishable-api-key when not empty
	retryAfterS  int
	mu           sync.Mutex
	seq          int
	pending      map[string]string // email → pre-register code
	regTokens    map[string]string // registration token → email
	customers    map[string]bool
	login        map[string]string // email → unused login code
	lastLogin    map[string]time.Time
	outbox       map[string][]fakeMsg // oldest first
	hits         map[string]int       // route → requests
	generates    map[string]int       // email → successful generates
	verifies     map[string]int       // email → successful verifies
	inFlight     map[string]bool      // email between generate and verify
	overlapping  int                  // generates for an email already in flight
	passwords    map[string]string    // email → emailpass password
	pwLogins     map[string]int       // email → successful emailpass sign-ins
	pwRequests   int                  // emailpass registrations and sign-ins, for passwordMax
	server       *httptest.Server
	URL          string
	registration int

	// SuperTokens dialect.
	stLimit         time.Duration            // minimum gap between two createCodes for one email (GENERAL_ERROR with Retry-After); 0 = none
	stConsumeStatus string                   // when set, every consume answers this status
	stDevices       map[string]*fakeSTDevice // deviceId → device
	stUsers         map[string]bool          // emails with a user
	stLastCode      map[string]time.Time     // email → last createCode
	stCodes         map[string]int           // email → successful createCodes
	stConsumes      map[string]int           // email → successful consumes
	stInFlight      map[string]bool          // email between createCode and consume
	stOverlapping   int                      // createCodes for an email already in flight
	stSessions      map[string]string        // live refresh token → email
	stRetired       map[string]bool          // refresh tokens already rotated
	stRefreshes     map[string]int           // email → successful refreshes
	stThefts        int                      // refreshes with a retired token
	stBases         map[string]int           // base path → requests
	stSeq           int
}

// fakeSTBases are the base paths the fake serves the SuperTokens dialect under.
var fakeSTBases = []string{DefaultSTBase, "/other/st"}

type fakeSTDevice struct {
	email, pre, code string
	used             bool
}

type fakeMsg struct {
	ID        string `json:"id"`
	Event     string `json:"event"`
	Channel   string `json:"channel"`
	To        string `json:"to"`
	Purpose   string `json:"purpose"`
	Code      string `json:"code"`
	Subject   string `json:"subject"`
	Text      string `json:"text"`
	CreatedAt string `json:"created_at"`
}

func newFake(t *testing.T, delay time.Duration) *fakeOTPD {
	f := &fakeOTPD{
		delay: delay, retryAfterS: 30,
		pending: map[string]string{}, regTokens: map[string]string{}, customers: map[string]bool{},
		login: map[string]string{}, lastLogin: map[string]time.Time{}, outbox: map[string][]fakeMsg{},
		hits: map[string]int{}, generates: map[string]int{}, verifies: map[string]int{}, inFlight: map[string]bool{},
		passwords: map[string]string{}, pwLogins: map[string]int{},
		stDevices: map[string]*fakeSTDevice{}, stUsers: map[string]bool{}, stLastCode: map[string]time.Time{},
		stCodes: map[string]int{}, stConsumes: map[string]int{}, stInFlight: map[string]bool{},
		stSessions: map[string]string{}, stRetired: map[string]bool{}, stRefreshes: map[string]int{}, stBases: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/{actor}/otp/pre-register", f.preRegister)
	mux.HandleFunc("POST /auth/{actor}/otp/register", f.register)
	mux.HandleFunc("POST /store/customers", f.createCustomer)
	mux.HandleFunc("POST /auth/{actor}/otp/generate", f.generate)
	mux.HandleFunc("POST /auth/{actor}/otp/verify", f.verify)
	mux.HandleFunc("POST /auth/{actor}/emailpass/register", f.registerPassword)
	mux.HandleFunc("POST /auth/{actor}/emailpass", f.signInPassword)
	mux.HandleFunc("GET /dev/outbox", f.readOutbox)
	for _, b := range fakeSTBases {
		mux.HandleFunc("POST "+b+"/signinup/code", f.stHandler(b, f.stCreateCode))
		mux.HandleFunc("POST "+b+"/signinup/code/consume", f.stHandler(b, f.stConsume))
		mux.HandleFunc("POST "+b+"/session/refresh", f.stHandler(b, f.stRefresh))
	}
	f.server = httptest.NewServer(mux)
	f.URL = f.server.URL
	t.Cleanup(f.server.Close)
	return f
}

func (f *fakeOTPD) count(route string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[route]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readIdentifier(w http.ResponseWriter, r *http.Request) (id, otp string, ok bool) {
	var body struct {
		Identifier string `json:"identifier"`
		OTP        string `json:"otp"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.Identifier == "" {
		writeJSON(w, 400, map[string]string{"message": "Identifier is required"})
		return "", "", false
	}
	return body.Identifier, body.OTP, true
}

// sendLocked queues a message for email; f.mu must be held.
func (f *fakeOTPD) sendLocked(email, event string) string {
	f.seq++
	code := fmt.Sprintf("%06d", f.seq)
	m := fakeMsg{ID: "msg_" + strconv.Itoa(f.seq), Event: event, Channel: "email", To: email, Code: code,
		Subject: "code", Text: "Your code is " + code, CreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	time.AfterFunc(f.delay, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.outbox[email] = append(f.outbox[email], m)
	})
	return code
}

func (f *fakeOTPD) preRegister(w http.ResponseWriter, r *http.Request) {
	email, _, ok := readIdentifier(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	f.hits["pre-register"]++
	if !f.customers[email] {
		f.pending[email] = f.sendLocked(email, "pre-register.otp.generated")
	}
	f.mu.Unlock()
	writeJSON(w, 200, map[string]string{"message": "Please validate the OTP to continue with the registration process."})
}

func (f *fakeOTPD) register(w http.ResponseWriter, r *http.Request) {
	email, otp, ok := readIdentifier(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits["register"]++
	if code, ok := f.pending[email]; !ok || code != otp {
		writeJSON(w, 401, map[string]string{"type": "unauthorized", "message": "Invalid OTP"})
		return
	}
	delete(f.pending, email)
	f.registration++
	tok := "reg." + strconv.Itoa(f.registration)
	f.regTokens[tok] = email
	writeJSON(w, 200, map[string]string{"token": tok})
}

func (f *fakeOTPD) createCustomer(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits["customer"]++
	if f.publishable != "" && r.Header.Get("x-publishable-api-key") != f.publishable {
		writeJSON(w, 400, map[string]string{"type": "not_allowed", "message": "Publishable API key required"})
		return
	}
	email, ok := f.regTokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	var body struct {
		Email string `json:"email"`
	}
	if !ok || json.NewDecoder(r.Body).Decode(&body) != nil || body.Email != email {
		writeJSON(w, 401, map[string]string{"message": "Unauthorized"})
		return
	}
	if f.customers[email] {
		writeJSON(w, 422, map[string]string{"type": "duplicate_error"})
		return
	}
	f.customers[email] = true
	writeJSON(w, 200, map[string]any{"customer": map[string]any{"id": "cus_" + email, "email": email, "has_account": true}})
}

func (f *fakeOTPD) generate(w http.ResponseWriter, r *http.Request) {
	email, _, ok := readIdentifier(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits["generate"]++
	if !f.customers[email] {
		writeJSON(w, 200, map[string]string{"message": "If an account exists with this identifier, an OTP will be sent to the user"})
		return
	}
	if last, ok := f.lastLogin[email]; ok && f.loginLimit > 0 && time.Since(last) < f.loginLimit {
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfterS))
		writeJSON(w, 429, map[string]string{"type": "too_many_requests", "message": "Too many requests"})
		return
	}
	if f.inFlight[email] {
		f.overlapping++
	}
	f.inFlight[email] = true
	f.lastLogin[email] = time.Now()
	f.generates[email]++
	f.login[email] = f.sendLocked(email, "otp.generated")
	writeJSON(w, 200, map[string]string{"message": "If an account exists with this identifier, an OTP will be sent to the user"})
}

func (f *fakeOTPD) verify(w http.ResponseWriter, r *http.Request) {
	email, otp, ok := readIdentifier(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits["verify"]++
	f.inFlight[email] = false
	if code, ok := f.login[email]; !ok || code != otp {
		writeJSON(w, 401, map[string]string{"type": "unauthorized", "message": "Invalid OTP"})
		return
	}
	delete(f.login, email) // a code works once
	f.verifies[email]++
	writeJSON(w, 200, map[string]string{"token": "login." + email})
}

// readCredentials decodes an emailpass body, answering 401 as Medusa's
// provider does when a member is missing, and counts the request against
// passwordMax (answering 429 past it); f.mu must be held.
func (f *fakeOTPD) readCredentials(w http.ResponseWriter, r *http.Request) (email, password string, ok bool) {
	var body struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.Email == "" || body.Password == "" {
		writeJSON(w, 401, map[string]string{"type": "unauthorized", "message": "Email should be a string"})
		return "", "", false
	}
	if f.pwRequests++; f.passwordMax > 0 && f.pwRequests > f.passwordMax {
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfterS))
		writeJSON(w, 429, map[string]string{"type": "too_many_requests", "message": "Too many requests"})
		return "", "", false
	}
	return body.Email, body.Password, true
}

func (f *fakeOTPD) registerPassword(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits["emailpass-register"]++
	email, pw, ok := f.readCredentials(w, r)
	if !ok {
		return
	}
	if _, ok := f.passwords[email]; ok {
		writeJSON(w, 401, map[string]string{"type": "unauthorized", "message": "Identity with email already exists"})
		return
	}
	f.passwords[email] = pw
	writeJSON(w, 200, map[string]string{"token": "reg." + email})
}

func (f *fakeOTPD) signInPassword(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits["emailpass"]++
	email, pw, ok := f.readCredentials(w, r)
	if !ok {
		return
	}
	if stored, ok := f.passwords[email]; !ok || stored != pw {
		writeJSON(w, 401, map[string]string{"type": "unauthorized", "message": "Invalid email or password"})
		return
	}
	f.pwLogins[email]++
	writeJSON(w, 200, map[string]string{"token": "login." + email})
}

func (f *fakeOTPD) readOutbox(w http.ResponseWriter, r *http.Request) {
	to := r.URL.Query().Get("to")
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 {
		limit = 50
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits["outbox"]++
	msgs := f.outbox[to]
	out := []fakeMsg{}
	for i := len(msgs) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, msgs[i])
	}
	writeJSON(w, 200, map[string]any{"messages": out})
}

// stHandler serves a SuperTokens route under base with f.mu held.
func (f *fakeOTPD) stHandler(base string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.stBases[base]++
		h(w, r)
	}
}

func (f *fakeOTPD) stCreateCode(w http.ResponseWriter, r *http.Request) {
	f.hits["st-code"]++
	var body struct {
		Email string `json:"email"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.Email == "" {
		writeJSON(w, 400, map[string]string{"message": "Please provide exactly one of email or phoneNumber"})
		return
	}
	email := body.Email
	if last, ok := f.stLastCode[email]; ok && f.stLimit > 0 && time.Since(last) < f.stLimit {
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfterS))
		writeJSON(w, 200, map[string]string{"status": "GENERAL_ERROR", "message": "Too many requests. Try again later."})
		return
	}
	if f.stInFlight[email] {
		f.stOverlapping++
	}
	f.stInFlight[email] = true
	f.stLastCode[email] = time.Now()
	f.stCodes[email]++
	f.stSeq++
	d := &fakeSTDevice{email: email, pre: "pre." + strconv.Itoa(f.stSeq), code: f.sendLocked(email, "passwordless.login")}
	id := "dev." + strconv.Itoa(f.stSeq)
	f.stDevices[id] = d
	writeJSON(w, 200, map[string]string{"status": "OK", "deviceId": id, "preAuthSessionId": d.pre, "flowType": "USER_INPUT_CODE"})
}

func (f *fakeOTPD) stConsume(w http.ResponseWriter, r *http.Request) {
	f.hits["st-consume"]++
	var body struct {
		PreAuthSessionID string `json:"preAuthSessionId"`
		DeviceID         string `json:"deviceId"`
		UserInputCode    string `json:"userInputCode"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.PreAuthSessionID == "" || body.DeviceID == "" || body.UserInputCode == "" {
		writeJSON(w, 400, map[string]string{"message": "Please provide both deviceId and userInputCode"})
		return
	}
	d, ok := f.stDevices[body.DeviceID]
	if ok {
		f.stInFlight[d.email] = false
	}
	switch {
	case f.stConsumeStatus != "":
		writeJSON(w, 200, map[string]string{"status": f.stConsumeStatus})
		return
	case !ok || d.pre != body.PreAuthSessionID || d.used:
		writeJSON(w, 200, map[string]string{"status": "RESTART_FLOW_ERROR"})
		return
	case d.code != body.UserInputCode:
		writeJSON(w, 200, map[string]any{"status": "INCORRECT_USER_INPUT_CODE_ERROR", "failedCodeInputAttemptCount": 1, "maximumCodeInputAttempts": 5})
		return
	}
	d.used = true
	created := !f.stUsers[d.email]
	f.stUsers[d.email] = true
	f.stConsumes[d.email]++
	f.stNewTokensLocked(w, d.email)
	writeJSON(w, 200, map[string]any{"status": "OK", "createdNewRecipeUser": created,
		"user": map[string]any{"id": "user." + d.email, "emails": []string{d.email}, "loginMethods": []any{}}})
}

// stNewTokensLocked sets the session headers of a new access and refresh
// token for email; f.mu must be held.
func (f *fakeOTPD) stNewTokensLocked(w http.ResponseWriter, email string) {
	f.stSeq++
	rt := "rt." + strconv.Itoa(f.stSeq)
	f.stSessions[rt] = email
	w.Header().Set("st-access-token", "at."+strconv.Itoa(f.stSeq))
	w.Header().Set("st-refresh-token", rt)
	w.Header().Set("front-token", "e30=")
}

func (f *fakeOTPD) stRefresh(w http.ResponseWriter, r *http.Request) {
	f.hits["st-refresh"]++
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	email, ok := f.stSessions[tok]
	switch {
	case f.stRetired[tok]:
		f.stThefts++
		writeJSON(w, 401, map[string]string{"message": "token theft detected"})
		return
	case !ok:
		writeJSON(w, 401, map[string]string{"message": "unauthorised"})
		return
	}
	delete(f.stSessions, tok)
	f.stRetired[tok] = true
	f.stRefreshes[email]++
	f.stNewTokensLocked(w, email)
	writeJSON(w, 200, map[string]string{"status": "OK"})
}
