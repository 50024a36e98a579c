package otpd

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// AuditEvent names what an audit record records. The names are a public
// contract (stored, logged, sent to webhooks as "audit.<name>"): never
// rename one.
type AuditEvent string

// The audit events: every outcome of an authentication.
const (
	AuditCodeSent      AuditEvent = "code_sent"      // a code was issued (Detail "decoy" when it went nowhere)
	AuditCodeVerified  AuditEvent = "code_verified"  // a code was right and redeemed
	AuditCodeFailed    AuditEvent = "code_failed"    // a guess was wrong, or found no live code (Detail "reason")
	AuditCodeExhausted AuditEvent = "code_exhausted" // the last guess allowed was wrong: the code is burned
	AuditThrottled     AuditEvent = "throttled"      // a limit refused a request (Detail "limit")

	AuditPasswordRegistered    AuditEvent = "password_registered"      // an identity was registered with a password
	AuditPasswordSignIn        AuditEvent = "password_sign_in"         // a password sign-in succeeded
	AuditPasswordSignInRefused AuditEvent = "password_sign_in_refused" // a password sign-in failed
	AuditPasswordReset         AuditEvent = "password_reset"           // a reset token set a new password

	AuditSessionRefreshed     AuditEvent = "session_refreshed"      // a session or token was refreshed
	AuditSessionRefreshFailed AuditEvent = "session_refresh_failed" // a refresh was refused (ended, unknown)
	AuditSessionTheft         AuditEvent = "session_theft_detected" // a spent refresh token came back: its session is revoked
	AuditSessionRevoked       AuditEvent = "session_revoked"        // a sign-out or a revocation of every session

	AuditAPIKeyUsed    AuditEvent = "api_key_used"    // a server API key authenticated a call
	AuditAPIKeyRefused AuditEvent = "api_key_refused" // a revoked server API key was presented

	// Admin actions (otpd.Admin); Detail "by" names who acted. An admin's
	// revocation is AuditSessionRevoked.
	AuditIdentityDeleted      AuditEvent = "identity_deleted"      // an identity and everything of it was deleted
	AuditVerificationCanceled AuditEvent = "verification_canceled" // live verifications were canceled (Detail "count")
)

// AuditEvents lists every audit event, in a stable order.
var AuditEvents = []AuditEvent{
	AuditCodeSent, AuditCodeVerified, AuditCodeFailed, AuditCodeExhausted, AuditThrottled,
	AuditPasswordRegistered, AuditPasswordSignIn, AuditPasswordSignInRefused, AuditPasswordReset,
	AuditSessionRefreshed, AuditSessionRefreshFailed, AuditSessionTheft, AuditSessionRevoked,
	AuditAPIKeyUsed, AuditAPIKeyRefused, AuditIdentityDeleted, AuditVerificationCanceled,
}

// AuditOutcome says whether what was recorded went the user's way.
type AuditOutcome string

// Audit outcomes.
const (
	AuditSuccess AuditOutcome = "success"
	AuditFailure AuditOutcome = "failure"
)

// outcomeOf is the outcome every record of event has.
func outcomeOf(e AuditEvent) AuditOutcome {
	switch e {
	case AuditCodeFailed, AuditCodeExhausted, AuditThrottled, AuditPasswordSignInRefused,
		AuditSessionRefreshFailed, AuditSessionTheft, AuditAPIKeyRefused:
		return AuditFailure
	}
	return AuditSuccess
}

// AuditEventPrefix starts the name of the event (Event.Name) that carries an
// audit record to webhooks: "audit.code_sent", ... A subscription takes
// them only when it names them (Subscription.Audit).
const AuditEventPrefix = "audit."

// AuditAllEvents in Subscription.Audit takes every audit event.
const AuditAllEvents = "audit.*"

// AuditRecord is one authentication event. It never holds a code, a
// password, a token or a key's secret: the flows fill only the fields below,
// and Detail holds only the keys of AuditDetailKeys, each a short,
// printable value the flows set from ids and states, never from a secret.
//
// Its JSON form is what the log stream and webhooks carry.
type AuditRecord struct {
	ID         string       `json:"id"` // "aud_<ULID>": ordered by time
	Time       time.Time    `json:"time"`
	Tenant     string       `json:"tenant"`
	Event      AuditEvent   `json:"event"`
	Outcome    AuditOutcome `json:"outcome"`
	Purpose    Purpose      `json:"purpose,omitempty"`
	IdentityID string       `json:"identity_id,omitempty"` // the auth identity, when known
	Address    string       `json:"address,omitempty"`     // the normalized email or phone, when known
	ClientAddr string       `json:"client_addr,omitempty"` // the end user's address (ClientIP)
	UserAgent  string       `json:"user_agent,omitempty"`
	RequestID  string       `json:"request_id,omitempty"` // the X-Request-Id answered
	APIKeyID   string       `json:"api_key_id,omitempty"` // the server API key the call was made with

	Detail map[string]string `json:"detail,omitempty"`
}

// The keys a record's Detail may hold; anything else is dropped.
const (
	DetailChannel        = "channel"         // the code's channel
	DetailDecoy          = "decoy"           // "true": a send recorded for an address without an account, never delivered
	DetailReason         = "reason"          // why a guess or refresh failed: mismatch, no_live_code, lost_race, refused, unknown, ended
	DetailLimit          = "limit"           // the limit that refused: a Throttles name, cooldown or budget
	DetailRetryAfter     = "retry_after"     // seconds to wait, for a throttled request
	DetailAttempts       = "attempts"        // guesses counted against the code so far
	DetailMaxAttempts    = "max_attempts"    // guesses the code allows
	DetailSession        = "session"         // the session handle (family id), never the token
	DetailScope          = "scope"           // what a revocation ended: session, all, token
	DetailSubject        = "subject"         // the server API caller's subject
	DetailVerificationID = "verification_id" // the server API's verification
	DetailProvider       = "provider"        // the auth provider (emailpass, otp, ...)
	DetailActorType      = "actor_type"
	DetailCreated        = "created" // "true": the sign-in created the identity
	DetailBy             = "by"      // who did an admin action: the API key's id, or "cli"
	DetailCount          = "count"   // how many things an admin action changed
)

// AuditDetailKeys are the keys Detail may hold.
var AuditDetailKeys = []string{
	DetailChannel, DetailDecoy, DetailReason, DetailLimit, DetailRetryAfter, DetailAttempts,
	DetailMaxAttempts, DetailSession, DetailScope, DetailSubject, DetailVerificationID,
	DetailProvider, DetailActorType, DetailCreated, DetailBy, DetailCount,
}

// Bounds of what a record stores.
const (
	maxAuditValue     = 255
	maxAuditUserAgent = 512
)

// clean bounds and sanitizes r before it is stored: unknown Detail keys
// go, empty values go, every free-text field is cut to its bound and
// loses its control characters.
func (r *AuditRecord) clean() {
	r.UserAgent = cleanText(r.UserAgent, maxAuditUserAgent)
	for _, p := range []*string{&r.Tenant, &r.IdentityID, &r.Address, &r.ClientAddr, &r.RequestID, &r.APIKeyID} {
		*p = cleanText(*p, maxAuditValue)
	}
	for k, v := range r.Detail {
		if !slices.Contains(AuditDetailKeys, k) || v == "" {
			delete(r.Detail, k)
			continue
		}
		r.Detail[k] = cleanText(v, maxAuditValue)
	}
	if len(r.Detail) == 0 {
		r.Detail = nil
	}
}

func cleanText(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		s = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, s)
	}
	if len(s) > n {
		s = s[:n]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// RequestInfo is what the HTTP layer knows of a request that audit records
// carry: its id, the end user's address and user agent, and the server API
// key it was made with.
type RequestInfo struct {
	ID        string
	Client    netip.Addr
	UserAgent string
	APIKeyID  string
}

type requestInfoKey struct{}

// WithRequestInfo returns ctx carrying info, for the audit records of the
// flows run under it.
func WithRequestInfo(ctx context.Context, info RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

// RequestInfoFrom returns the RequestInfo WithRequestInfo put in ctx.
func RequestInfoFrom(ctx context.Context) RequestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(RequestInfo)
	return info
}

// WithAPIKeyID returns ctx whose RequestInfo names the server API key id.
func WithAPIKeyID(ctx context.Context, id string) context.Context {
	info := RequestInfoFrom(ctx)
	info.APIKeyID = id
	return WithRequestInfo(ctx, info)
}

// AuditTx stores audit records.
type AuditTx interface {
	// InsertAudit inserts r. r.ID must be set. Returns ECONFLICT if it
	// exists.
	InsertAudit(ctx context.Context, r *AuditRecord) error

	// FindAudit returns the records that match f, newest first (by Time,
	// then ID, both descending), at most f.Limit of them.
	FindAudit(ctx context.Context, f AuditFilter) ([]*AuditRecord, error)

	// DeleteAuditBefore removes the records older than t and returns how
	// many it removed.
	DeleteAuditBefore(ctx context.Context, t time.Time) (int, error)
}

// AuditFilter selects audit records; its zero fields select everything.
// Times are compared in whole milliseconds, as stored.
type AuditFilter struct {
	Tenant     string
	IdentityID string
	Address    string
	Events     []AuditEvent // any of them
	Outcome    AuditOutcome
	Since      time.Time // Time >= Since
	Until      time.Time // Time < Until

	// After, when set, keeps only the records that come after it in the
	// newest-first order: (Time, ID) lower than (After.Time, After.ID).
	After *AuditRecord

	Limit int // must be positive
}

// Audit records authentication events: in the store, in the transaction
// that makes the outcome happen whenever there is one (a record is never
// lost, and never written for a change rolled back); then, once that
// transaction has committed, as one JSON line to Log, when set. Webhooks
// that subscribe to audit events (Subscription.Audit) get them through the
// Outbox, queued in the same transaction.
//
// The nil *Audit records nothing.
type Audit struct {
	Store  Store
	Now    Clock
	Outbox Queue        // nil: no webhook gets audit events
	Log    *slog.Logger // the stream: one line per record ("audit"); nil for none
	Logger *slog.Logger // failures to write a record; may be nil

	// Retention is how long records are kept (the Janitor deletes older
	// ones); 0 keeps them forever.
	Retention time.Duration

	// Normalizer reads the address filter of Query as the flows stored
	// addresses.
	Normalizer Normalizer
}

// DefaultAuditRetention is the retention of a server configured with none.
const DefaultAuditRetention = 90 * 24 * time.Hour

// auditEntropy makes the ids of one process's records increase even within
// one millisecond, so that records of one instant list in the order they
// were made.
var (
	auditMu      sync.Mutex
	auditEntropy = ulid.Monotonic(cryptorand.Reader, 0)
)

// newAuditID returns a new "aud_<ULID>".
func newAuditID() string {
	auditMu.Lock()
	defer auditMu.Unlock()
	return "aud_" + ulid.MustNew(ulid.Timestamp(time.Now()), auditEntropy).String()
}

// record builds a record of event at now from what ctx knows of the
// request.
func (a *Audit) record(ctx context.Context, event AuditEvent, tenant string, now time.Time) *AuditRecord {
	info := RequestInfoFrom(ctx)
	r := &AuditRecord{
		ID: newAuditID(), Time: now.UTC().Truncate(time.Millisecond), Tenant: tenantOr(tenant),
		Event: event, Outcome: outcomeOf(event),
		UserAgent: info.UserAgent, RequestID: info.ID, APIKeyID: info.APIKeyID,
	}
	if info.Client.IsValid() && !info.Client.IsUnspecified() {
		r.ClientAddr = info.Client.Unmap().String()
	}
	return r
}

// auditNote is how a flow describes one outcome to Audit.
type auditNote struct {
	Event      AuditEvent
	Tenant     string
	Purpose    Purpose
	IdentityID string
	Address    string
	Client     netip.Addr // used when ctx carries no client address
	Detail     map[string]string
	apiKeyID   string // the key, when ctx does not name it yet
}

// make builds the record of n.
func (a *Audit) make(ctx context.Context, n auditNote) *AuditRecord {
	r := a.record(ctx, n.Event, n.Tenant, a.Now.Time())
	r.Purpose, r.IdentityID, r.Address, r.Detail = n.Purpose, n.IdentityID, n.Address, n.Detail
	if r.ClientAddr == "" && n.Client.IsValid() && !n.Client.IsUnspecified() {
		r.ClientAddr = n.Client.Unmap().String()
	}
	if n.apiKeyID != "" {
		r.APIKeyID = n.apiKeyID
	}
	r.clean()
	return r
}

// in writes the record of n in tx and queues its webhook messages, and
// returns it for done (nil for the nil Audit).
func (a *Audit) in(ctx context.Context, tx Tx, n auditNote) (*AuditRecord, error) {
	if a == nil {
		return nil, nil
	}
	r := a.make(ctx, n)
	if err := tx.InsertAudit(ctx, r); err != nil {
		return nil, err
	}
	if a.Outbox != nil {
		msgs, err := a.Outbox.Messages(auditEvent(r))
		if err != nil {
			return nil, err
		}
		if len(msgs) > 0 {
			if err := tx.EnqueueMessages(ctx, msgs); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// done streams the records written by in once their transaction has
// committed, and wakes the outbox.
func (a *Audit) done(ctx context.Context, rs ...*AuditRecord) {
	if a == nil {
		return
	}
	kick := false
	for _, r := range rs {
		if r == nil {
			continue
		}
		kick = true
		if a.Log != nil {
			a.Log.LogAttrs(ctx, slog.LevelInfo, "audit", slog.Any("record", r))
		}
	}
	if kick && a.Outbox != nil {
		a.Outbox.Kick()
	}
}

// write records n in a short transaction of its own: for an outcome that
// changes nothing (a refusal, a password sign-in). A failure is logged, not
// returned: the request's answer does not depend on it.
func (a *Audit) write(ctx context.Context, n auditNote) {
	if a == nil {
		return
	}
	var r *AuditRecord
	err := a.Store.Update(context.WithoutCancel(ctx), func(tx Tx) (err error) {
		r, err = a.in(ctx, tx, n)
		return err
	})
	if err != nil {
		if a.Logger != nil {
			a.Logger.Error("audit record not written", "event", string(n.Event), "err", err)
		}
		return
	}
	a.done(ctx, r)
}

// auditEvent is the outbox event that carries r to webhooks.
func auditEvent(r *AuditRecord) *Event {
	return &Event{
		ID: "evt_" + strings.TrimPrefix(r.ID, "aud_"), Name: AuditEventPrefix + string(r.Event),
		Tenant: r.Tenant, Purpose: r.Purpose, To: r.Address,
		CreatedAt: r.Time, ExpiresAt: r.Time.Add(24 * time.Hour), Audit: r,
	}
}

// IsAuditEvent reports whether name is the event name of an audit record.
func IsAuditEvent(name string) bool { return strings.HasPrefix(name, AuditEventPrefix) }

// sweep deletes, in tx, the records older than Retention at now. The
// Janitor calls it.
func (a *Audit) sweep(ctx context.Context, tx Tx, now time.Time) (int, error) {
	if a == nil || a.Retention <= 0 {
		return 0, nil
	}
	return tx.DeleteAuditBefore(ctx, now.Add(-a.Retention))
}

// AuditQuery is a search of the audit log, for the admin API.
type AuditQuery struct {
	Tenant     string       // "" is every tenant
	IdentityID string       // an auth identity id
	Address    string       // an email or phone number, normalized as the flows do
	Events     []AuditEvent // any of them; none is every event
	Outcome    AuditOutcome // "", success or failure
	Since      time.Time    // records at or after; zero for no bound
	Until      time.Time    // records before; zero for no bound
	Limit      int          // 1 to MaxAuditPage; 0 is DefaultAuditPage
	Cursor     string       // the next cursor of the page before; "" for the first page
}

// Page sizes of Audit.Query.
const (
	DefaultAuditPage = 50
	MaxAuditPage     = 500
)

// Query returns the records q selects, newest first, at most q.Limit of
// them, and the cursor of the next page ("" when there is none). Filters
// that cannot be read are EINVALID naming the field; the address is
// normalized as the flows stored it. The nil Audit finds nothing.
func (a *Audit) Query(ctx context.Context, q AuditQuery) ([]*AuditRecord, string, error) {
	var norm Normalizer
	if a != nil {
		norm = a.Normalizer
	}
	f, err := q.filter(norm)
	if err != nil {
		return nil, "", err
	}
	if a == nil {
		return nil, "", nil
	}
	// One more than asked for tells whether there is a next page.
	want := f.Limit
	f.Limit++
	var out []*AuditRecord
	err = a.Store.View(ctx, func(tx Tx) (err error) {
		out, err = tx.FindAudit(ctx, f)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > want {
		out = out[:want]
		next = encodeAuditCursor(out[want-1])
	}
	return out, next, nil
}

// filter checks q and returns its store filter.
func (q AuditQuery) filter(norm Normalizer) (AuditFilter, error) {
	f := AuditFilter{Tenant: q.Tenant, IdentityID: q.IdentityID, Outcome: q.Outcome, Since: q.Since, Until: q.Until, Limit: q.Limit}
	if q.Tenant != "" && !ValidTenant(q.Tenant) {
		return f, FieldErrorf("tenant", "A tenant is 1 to 64 letters, digits, '-' or '_'.")
	}
	if len(q.IdentityID) > maxAuditValue || strings.ContainsFunc(q.IdentityID, unicode.IsControl) || !utf8.ValidString(q.IdentityID) {
		return f, FieldErrorf("identity_id", "The identity id must be at most %d bytes of printable text.", maxAuditValue)
	}
	if q.Address != "" {
		c, err := norm.Parse("address", q.Address)
		if err != nil {
			return f, FieldErrorf("address", "The address must be an email address or a phone number.")
		}
		f.Address = c.Value
		if len(f.Address) > maxAuditValue {
			return f, FieldErrorf("address", "The address must be at most %d bytes.", maxAuditValue)
		}
	}
	for _, e := range q.Events {
		if !slices.Contains(AuditEvents, e) {
			return f, FieldErrorf("event", "Unknown event %q.", e)
		}
	}
	f.Events = slices.Clone(q.Events)
	switch q.Outcome {
	case "", AuditSuccess, AuditFailure:
	default:
		return f, FieldErrorf("outcome", "The outcome must be success or failure.")
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return f, FieldErrorf("until", "The end of the time range must be after its start.")
	}
	switch {
	case q.Limit == 0:
		f.Limit = DefaultAuditPage
	case q.Limit < 0 || q.Limit > MaxAuditPage:
		return f, FieldErrorf("limit", "The limit must be between 1 and %d.", MaxAuditPage)
	}
	if q.Cursor != "" {
		after, err := decodeAuditCursor(q.Cursor)
		if err != nil {
			return f, FieldErrorf("cursor", "The cursor is not one this server gave.")
		}
		f.After = after
	}
	return f, nil
}

// A cursor is the (time, id) of the last record of a page, opaque to
// callers.
func encodeAuditCursor(r *AuditRecord) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(r.Time.UnixMilli(), 10) + ":" + r.ID))
}

var errBadCursor = errors.New("bad cursor")

func decodeAuditCursor(s string) (*AuditRecord, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor
	}
	ms, id, ok := strings.Cut(string(raw), ":")
	if !ok || !strings.HasPrefix(id, "aud_") || len(id) > 64 || strings.ContainsFunc(id, unicode.IsControl) {
		return nil, errBadCursor
	}
	v, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || v < 0 {
		return nil, errBadCursor
	}
	return &AuditRecord{Time: time.UnixMilli(v).UTC(), ID: id}, nil
}

// MarshalDetail and UnmarshalDetail are the stored form of a Detail.
func MarshalDetail(d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	b, _ := json.Marshal(d)
	return string(b)
}

// UnmarshalDetail reads what MarshalDetail wrote.
func UnmarshalDetail(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	var d map[string]string
	err := json.Unmarshal([]byte(s), &d)
	return d, err
}

// AdminHook is the hook of otpd.Admin (Admin.Audit): it records each admin
// action in the action's transaction, as AuditSessionRevoked (scope
// "session" or "all"), AuditIdentityDeleted or AuditVerificationCanceled,
// with Detail "by" and "count". The log line is written by the hook, at
// the end of the transaction but before its commit (the hook has no
// after-commit step). The nil Audit records nothing.
func (a *Audit) AdminHook() func(ctx context.Context, tx Tx, act *AdminAction) error {
	return func(ctx context.Context, tx Tx, act *AdminAction) error {
		if a == nil {
			return nil
		}
		n := auditNote{Tenant: act.Tenant, IdentityID: act.AuthIdentityID, Detail: map[string]string{
			DetailBy: act.By, DetailCount: strconv.Itoa(act.Count),
			DetailSession: act.SessionHandle, DetailVerificationID: act.VerificationID, DetailSubject: act.Subject,
		}}
		switch act.Action {
		case AdminActionRevokeSession:
			n.Event, n.Detail[DetailScope] = AuditSessionRevoked, "session"
		case AdminActionRevokeSessions:
			n.Event, n.Detail[DetailScope] = AuditSessionRevoked, "all"
		case AdminActionDeleteIdentity:
			n.Event = AuditIdentityDeleted
		case AdminActionCancelVerification, AdminActionCancelVerifications:
			n.Event = AuditVerificationCanceled
		default:
			return fmt.Errorf("audit: unknown admin action %q", act.Action)
		}
		r, err := a.in(ctx, tx, n)
		if err == nil {
			a.done(ctx, r)
		}
		return err
	}
}
