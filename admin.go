package otpd

import (
	"context"
	"encoding/base64"
	"strings"
	"time"
)

// Admin is the operator's flow: find an auth identity by address or id,
// list and revoke its sessions, delete it with everything of it, and list
// and cancel live verifications. The server API's admin routes
// (/v1/admin, keys with PermissionAdmin) and `otpd admin` on the host are
// thin translations onto it.
//
// Every action works inside one tenant (the admin key's, or the CLI's
// --tenant), and every state change is one transaction of single
// conditional statements: revoking, deleting and cancelling race with
// sign-ins, refreshes and one another with exact outcomes.
type Admin struct {
	Store         Store
	Now           Clock
	Normalizer    Normalizer
	Verifications *Verifications // cancels verifications (Cancel, CancelSubject)

	// Audit, when set, is called inside the transaction of every admin
	// action that changes state (revoke, delete, cancel), after the change
	// and before the commit: an error from it rolls the action back, so an
	// action is never done without its record.
	//
	// Audit.AdminHook is the audit log's; nil writes no record.
	Audit func(ctx context.Context, tx Tx, a *AdminAction) error

	// Log is the audit log AuditRecords reads; nil finds nothing.
	Log *Audit
}

// AuditRecords searches the audit log of sc's tenant, newest first, with
// Audit.Query's filters and pages (q.Tenant is replaced by the scope's).
func (a *Admin) AuditRecords(ctx context.Context, sc AdminScope, q AuditQuery) ([]*AuditRecord, string, error) {
	q.Tenant = tenantOr(sc.Tenant)
	return a.Log.Query(ctx, q)
}

// AdminAction is what an admin did, for the audit log. It never carries a
// secret (no code, token or key).
type AdminAction struct {
	Action         string // one of the AdminAction* names
	Tenant         string
	By             string // who: the API key's id, or "cli"
	AuthIdentityID string // the identity acted on, if any
	SessionHandle  string // the session revoked, if one
	VerificationID string // the verification canceled, if one
	Subject        string // the subject whose verifications were canceled
	Count          int    // how many things the action changed
	At             time.Time
}

// Names of admin actions.
const (
	AdminActionRevokeSession       = "admin.session_revoked"
	AdminActionRevokeSessions      = "admin.sessions_revoked"
	AdminActionDeleteIdentity      = "admin.identity_deleted"
	AdminActionCancelVerification  = "admin.verification_canceled"
	AdminActionCancelVerifications = "admin.verifications_canceled"
)

// AdminScope is who acts and where: the tenant every lookup and change is
// confined to, and the actor named in audit records.
type AdminScope struct {
	Tenant string // "" is DefaultTenant
	By     string
}

func (a *Admin) audit(ctx context.Context, tx Tx, act *AdminAction) error {
	if a.Audit == nil {
		return nil
	}
	return a.Audit(ctx, tx, act)
}

// Pagination bounds of the admin lists.
const (
	DefaultAdminPageSize = 50
	MaxAdminPageSize     = 200
	// MaxFoundIdentities bounds the identities one address finds.
	MaxFoundIdentities = 100
)

// Admin lookups' errors.
var (
	ErrIdentityNotFound = &Error{Code: ENOTFOUND, Message: "No such identity."}
	ErrSessionNotFound  = &Error{Code: ENOTFOUND, Message: "No such session."}
)

// IdentityView is an auth identity as an operator sees it: its provider
// identities and actor links, never a password hash (ProviderMetadata is
// left out).
type IdentityView struct {
	ID               string            `json:"id"`
	Tenant           string            `json:"tenant"`
	ActorIDs         map[string]string `json:"actors"`
	AppMetadata      map[string]any    `json:"app_metadata"`
	TokensValidAfter *time.Time        `json:"tokens_valid_after"` // nil: none revoked
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
	Providers        []ProviderView    `json:"provider_identities"`
}

// ProviderView is a provider identity without its provider metadata.
type ProviderView struct {
	ID           string         `json:"id"`
	Provider     string         `json:"provider"`
	EntityID     string         `json:"entity_id"`
	UserMetadata map[string]any `json:"user_metadata"`
	CreatedAt    time.Time      `json:"created_at"`
	UpdatedAt    time.Time      `json:"updated_at"`
}

// SessionInfo is a rotating session (a family of refresh tokens) as the
// store summarizes it; it carries no token.
type SessionInfo struct {
	Handle         string     `json:"handle"`
	AuthIdentityID string     `json:"auth_identity_id"`
	CreatedAt      time.Time  `json:"created_at"`      // its first token
	LastRefreshAt  time.Time  `json:"last_refresh_at"` // its newest token
	ExpiresAt      time.Time  `json:"expires_at"`      // its absolute end
	Refreshes      int        `json:"refreshes"`
	RevokedAt      *time.Time `json:"revoked_at"` // set once no token of it is unrevoked
	Live           bool       `json:"live"`       // an unrevoked, unexpired token remains
}

// SessionQuery selects the sessions of one auth identity, newest first
// (by handle, which is time-ordered).
type SessionQuery struct {
	Tenant         string
	AuthIdentityID string
	Before         string // only handles that sort before it ("" for the newest)
	Limit          int
	Now            time.Time // for Live
}

// ChallengeQuery selects the live challenges (not consumed, not retired,
// not expired at Now, guesses left) of one tenant, newest first (by id).
type ChallengeQuery struct {
	Tenant          string
	ActorType       string // exact; "" for every actor type starting with ActorTypePrefix
	ActorTypePrefix string
	Purpose         Purpose // "" for any
	Destination     string  // "" for any
	Before          string  // only ids that sort before it ("" for the newest)
	Limit           int
	Now             time.Time
}

// DeletedIdentity counts the rows a deletion removed, per table.
type DeletedIdentity struct {
	Challenges         int `json:"challenges"`
	RefreshTokens      int `json:"refresh_tokens"`
	ProviderIdentities int `json:"provider_identities"`
	ActorLinks         int `json:"actor_links"`
}

// AdminTx is what the admin flow needs of a store beyond the flows'.
type AdminTx interface {
	// FindAuthIdentityIDs returns the ids of the auth identities of tenant
	// that have a provider identity whose entity_id is address (any
	// provider), or are linked to an actor of tenant whose email or phone
	// is address (verified or not), oldest first, at most limit.
	FindAuthIdentityIDs(ctx context.Context, tenant, address string, limit int) ([]string, error)

	// ListSessions returns the sessions selected by q, at most q.Limit.
	ListSessions(ctx context.Context, q SessionQuery) ([]*SessionInfo, error)

	// FindSession returns session handle of tenant as of now. Returns
	// ENOTFOUND if the tenant has no refresh token of that family.
	FindSession(ctx context.Context, tenant, handle string, now time.Time) (*SessionInfo, error)

	// ListLiveChallenges returns the challenges selected by q, at most
	// q.Limit.
	ListLiveChallenges(ctx context.Context, q ChallengeQuery) ([]*Challenge, error)

	// DeleteAuthIdentity deletes auth identity id of tenant and everything
	// of it: the challenges whose SubjectID is the identity or one of its
	// provider identities, its refresh tokens, its provider identities and
	// its actor links (actors themselves stay: other identities may be
	// linked to them). Each table is one DELETE; the identity's own row
	// goes last and decides: it returns ENOTFOUND when the identity does
	// not exist (a concurrent deletion won), and the caller rolls back.
	DeleteAuthIdentity(ctx context.Context, tenant, id string) (DeletedIdentity, error)
}

// adminID reports whether id can be an id otpd made with prefix: the
// prefix, "_", then at most 60 letters and digits. Anything else names
// nothing, and is not looked up.
func adminID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix+"_")
	return ok && rest != "" && len(rest) <= 60 && !strings.ContainsFunc(rest, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z')
	})
}

// IdentityQuery finds identities: by Address (an email address or a phone
// number, normalized as the flows normalize them) or by ID, one of the two.
type IdentityQuery struct {
	Address string
	ID      string
}

// FindIdentities returns the identities q names, oldest first: none is an
// empty list, not an error.
func (a *Admin) FindIdentities(ctx context.Context, sc AdminScope, q IdentityQuery) ([]*IdentityView, error) {
	tenant := tenantOr(sc.Tenant)
	switch {
	case q.Address != "" && q.ID != "":
		return nil, FieldErrorf("id", "Give address or id, not both.")
	case q.Address == "" && q.ID == "":
		return nil, FieldErrorf("address", "An address or an id is required.")
	}
	var out []*IdentityView
	err := a.Store.View(ctx, func(tx Tx) error {
		ids := []string{q.ID}
		if q.Address != "" {
			c, err := a.Normalizer.Parse("address", q.Address)
			if err != nil {
				return err
			}
			if ids, err = tx.FindAuthIdentityIDs(ctx, tenant, c.Value, MaxFoundIdentities); err != nil {
				return err
			}
		} else if !adminID("authid", q.ID) {
			return nil
		}
		for _, id := range ids {
			v, err := identityView(ctx, tx, tenant, id)
			if ErrorCode(err) == ENOTFOUND {
				continue
			} else if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if out == nil {
		out = []*IdentityView{}
	}
	return out, err
}

// Identity returns identity id. Returns ErrIdentityNotFound if the tenant
// has none of that id.
func (a *Admin) Identity(ctx context.Context, sc AdminScope, id string) (*IdentityView, error) {
	if !adminID("authid", id) {
		return nil, ErrIdentityNotFound
	}
	var v *IdentityView
	err := a.Store.View(ctx, func(tx Tx) (err error) {
		v, err = identityView(ctx, tx, tenantOr(sc.Tenant), id)
		return err
	})
	if ErrorCode(err) == ENOTFOUND {
		return nil, ErrIdentityNotFound
	}
	return v, err
}

func identityView(ctx context.Context, tx Tx, tenant, id string) (*IdentityView, error) {
	ai, err := tx.FindAuthIdentityByID(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	pis, err := tx.FindProviderIdentities(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	v := &IdentityView{
		ID: ai.ID, Tenant: ai.Tenant, ActorIDs: ai.ActorIDs, AppMetadata: ai.AppMetadata,
		CreatedAt: ai.CreatedAt.UTC(), UpdatedAt: ai.UpdatedAt.UTC(), Providers: make([]ProviderView, len(pis)),
	}
	if v.ActorIDs == nil {
		v.ActorIDs = map[string]string{}
	}
	if v.AppMetadata == nil {
		v.AppMetadata = map[string]any{}
	}
	if !ai.TokensValidAfter.IsZero() {
		t := ai.TokensValidAfter.UTC()
		v.TokensValidAfter = &t
	}
	for i, p := range pis {
		md := p.UserMetadata
		if md == nil {
			md = map[string]any{}
		}
		v.Providers[i] = ProviderView{ID: p.ID, Provider: p.Provider, EntityID: p.EntityID, UserMetadata: md,
			CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC()}
	}
	return v, nil
}

// Page is the cursor of the next page of a list: "" when the list is done.
// Cursors are opaque to callers.
type Page struct {
	Next string `json:"next_cursor"`
}

// cursorPrefix versions the cursors.
const cursorPrefix = "c1:"

func encodeCursor(last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + last))
}

// decodeCursor reads a cursor of a list whose ids have prefix; "" is the
// first page.
func decodeCursor(cursor, prefix string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	last, ok := strings.CutPrefix(string(b), cursorPrefix)
	if err != nil || !ok || !adminID(prefix, last) {
		return "", FieldErrorf("cursor", "The cursor is not one this list gave.")
	}
	return last, nil
}

func pageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultAdminPageSize, nil
	case limit < 1 || limit > MaxAdminPageSize:
		return 0, FieldErrorf("limit", "The limit must be between 1 and %d.", MaxAdminPageSize)
	}
	return limit, nil
}

// SessionPage is one page of an identity's sessions, newest first.
type SessionPage struct {
	Sessions []*SessionInfo `json:"sessions"`
	// TokensValidAfter is the identity's revocation time of stateless
	// session tokens (Medusa's JWTs): every one issued before it is
	// refused. Those tokens are not stored, so they are not listed; they
	// end together, by RevokeSessions.
	TokensValidAfter *time.Time `json:"tokens_valid_after"`
	Page
}

// Sessions lists the rotating sessions of identity id, newest first, limit
// a page (0 for DefaultAdminPageSize) after cursor ("" for the first).
func (a *Admin) Sessions(ctx context.Context, sc AdminScope, id, cursor string, limit int) (*SessionPage, error) {
	before, err := decodeCursor(cursor, "sess")
	if err != nil {
		return nil, err
	}
	if limit, err = pageLimit(limit); err != nil {
		return nil, err
	}
	if !adminID("authid", id) {
		return nil, ErrIdentityNotFound
	}
	tenant := tenantOr(sc.Tenant)
	out := &SessionPage{}
	err = a.Store.View(ctx, func(tx Tx) error {
		ai, err := tx.FindAuthIdentityByID(ctx, tenant, id)
		if ErrorCode(err) == ENOTFOUND {
			return ErrIdentityNotFound
		} else if err != nil {
			return err
		}
		if !ai.TokensValidAfter.IsZero() {
			t := ai.TokensValidAfter.UTC()
			out.TokensValidAfter = &t
		}
		out.Sessions, err = tx.ListSessions(ctx, SessionQuery{Tenant: tenant, AuthIdentityID: id, Before: before, Limit: limit + 1, Now: a.Now.Time()})
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(out.Sessions) > limit {
		out.Sessions = out.Sessions[:limit]
		out.Next = encodeCursor(out.Sessions[limit-1].Handle)
	}
	if out.Sessions == nil {
		out.Sessions = []*SessionInfo{}
	}
	return out, nil
}

// RevokeSession ends session handle of identity id: its refresh tokens
// stop working at once, on every instance (they are checked in the store
// on every refresh). It returns the session as it is afterwards and how
// many tokens this call revoked (0 when it was revoked already: of any
// number of concurrent revocations, one revokes). Stateless session tokens
// (Medusa's) belong to no session: RevokeSessions ends those.
func (a *Admin) RevokeSession(ctx context.Context, sc AdminScope, id, handle string) (*SessionInfo, int, error) {
	if !adminID("authid", id) {
		return nil, 0, ErrIdentityNotFound
	}
	if !adminID("sess", handle) {
		return nil, 0, ErrSessionNotFound
	}
	tenant := tenantOr(sc.Tenant)
	var (
		s *SessionInfo
		n int
	)
	err := a.Store.Update(ctx, func(tx Tx) (err error) {
		now := a.Now.Time()
		s, err = tx.FindSession(ctx, tenant, handle, now)
		if ErrorCode(err) == ENOTFOUND || err == nil && s.AuthIdentityID != id {
			return ErrSessionNotFound
		} else if err != nil {
			return err
		}
		if n, err = tx.RevokeRefreshFamily(ctx, tenant, handle, now); err != nil {
			return err
		}
		if s, err = tx.FindSession(ctx, tenant, handle, now); err != nil {
			return err
		}
		// AUDIT HOOK: the revocation's record, in its transaction.
		return a.audit(ctx, tx, &AdminAction{Action: AdminActionRevokeSession, Tenant: tenant, By: sc.By,
			AuthIdentityID: id, SessionHandle: handle, Count: n, At: now})
	})
	if err != nil {
		return nil, 0, err
	}
	return s, n, nil
}

// RevokedSessions is what RevokeSessions did.
type RevokedSessions struct {
	RefreshTokens    int       `json:"revoked_refresh_tokens"` // revoked by this call
	TokensValidAfter time.Time `json:"tokens_valid_after"`     // stateless tokens issued before it are refused
}

// RevokeSessions ends every session of identity id, on every device and
// instance: its rotating sessions' refresh tokens are revoked, and its
// TokensValidAfter moves to the next whole second, so every stateless
// session token issued until now is refused where otpd checks it.
func (a *Admin) RevokeSessions(ctx context.Context, sc AdminScope, id string) (*RevokedSessions, error) {
	if !adminID("authid", id) {
		return nil, ErrIdentityNotFound
	}
	tenant := tenantOr(sc.Tenant)
	var out RevokedSessions
	err := a.Store.Update(ctx, func(tx Tx) error {
		now := a.Now.Time()
		out.TokensValidAfter = revocationTime(now).UTC()
		if err := tx.RevokeTokens(ctx, tenant, id, out.TokensValidAfter); ErrorCode(err) == ENOTFOUND {
			return ErrIdentityNotFound
		} else if err != nil {
			return err
		}
		n, err := tx.RevokeRefreshTokens(ctx, tenant, id, now)
		if err != nil {
			return err
		}
		out.RefreshTokens = n
		// AUDIT HOOK: the revocation's record, in its transaction.
		return a.audit(ctx, tx, &AdminAction{Action: AdminActionRevokeSessions, Tenant: tenant, By: sc.By,
			AuthIdentityID: id, Count: n, At: now})
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteIdentity deletes identity id and everything of it (see
// AdminTx.DeleteAuthIdentity) in one transaction, and returns what it
// deleted. Its tokens die with it: a refresh finds no token, and a
// stateless token's identity is gone. Of concurrent deletions of one
// identity, one deletes and the others get ErrIdentityNotFound.
func (a *Admin) DeleteIdentity(ctx context.Context, sc AdminScope, id string) (*DeletedIdentity, error) {
	if !adminID("authid", id) {
		return nil, ErrIdentityNotFound
	}
	tenant := tenantOr(sc.Tenant)
	var out DeletedIdentity
	err := a.Store.Update(ctx, func(tx Tx) (err error) {
		out, err = tx.DeleteAuthIdentity(ctx, tenant, id)
		if ErrorCode(err) == ENOTFOUND {
			return ErrIdentityNotFound
		} else if err != nil {
			return err
		}
		// AUDIT HOOK: the deletion's record, in its transaction.
		return a.audit(ctx, tx, &AdminAction{Action: AdminActionDeleteIdentity, Tenant: tenant, By: sc.By,
			AuthIdentityID: id, Count: out.Challenges + out.RefreshTokens + out.ProviderIdentities + out.ActorLinks + 1,
			At: a.Now.Time()})
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// VerificationFilter selects live verifications; every field is optional.
type VerificationFilter struct {
	Subject string  // exact; "" for every subject
	To      string  // an address, normalized as Create does
	Purpose Purpose // "" for every purpose
	Cursor  string
	Limit   int // 0 for DefaultAdminPageSize
}

// VerificationPage is one page of live verifications, newest first.
type VerificationPage struct {
	Verifications []*Verification `json:"verifications"`
	Page
}

// ListVerifications lists the live (pending) verifications of the server
// API that f selects, newest first.
func (a *Admin) ListVerifications(ctx context.Context, sc AdminScope, f VerificationFilter) (*VerificationPage, error) {
	q := ChallengeQuery{Tenant: tenantOr(sc.Tenant), ActorTypePrefix: scopePrefix}
	var err error
	if q.Before, err = decodeCursor(f.Cursor, "ver"); err != nil {
		return nil, err
	}
	if q.Limit, err = pageLimit(f.Limit); err != nil {
		return nil, err
	}
	limit := q.Limit
	q.Limit++
	if f.Subject != "" {
		if err := checkSubject(f.Subject); err != nil {
			return nil, err
		}
		q.ActorType = subjectScope(f.Subject)
	}
	if f.To != "" {
		c, err := a.Normalizer.Parse("to", f.To)
		if err != nil {
			return nil, err
		}
		q.Destination = c.Value
	}
	if f.Purpose != "" {
		if q.Purpose, err = parsePurpose(f.Purpose); err != nil {
			return nil, err
		}
	}
	q.Now = a.Now.Time()
	var cs []*Challenge
	err = a.Store.View(ctx, func(tx Tx) (err error) {
		cs, err = tx.ListLiveChallenges(ctx, q)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := &VerificationPage{Verifications: make([]*Verification, 0, len(cs))}
	if len(cs) > limit {
		cs = cs[:limit]
		out.Next = encodeCursor(cs[limit-1].ID)
	}
	for _, c := range cs {
		out.Verifications = append(out.Verifications, a.Verifications.view(c, q.Now))
	}
	return out, nil
}

// CancelVerification cancels verification id as Verifications.Cancel does,
// with its audit record.
func (a *Admin) CancelVerification(ctx context.Context, sc AdminScope, id string) (*Verification, error) {
	tenant := tenantOr(sc.Tenant)
	return a.Verifications.cancel(ctx, tenant, id, func(tx Tx, c *Challenge, canceled bool) error {
		if !canceled {
			return nil
		}
		// AUDIT HOOK: the cancellation's record, in its transaction.
		return a.audit(ctx, tx, &AdminAction{Action: AdminActionCancelVerification, Tenant: tenant, By: sc.By,
			VerificationID: c.ID, Count: 1, At: a.Now.Time()})
	})
}

// CancelSubject cancels every pending verification of subject as
// Verifications.CancelSubject does, with its audit record.
func (a *Admin) CancelSubject(ctx context.Context, sc AdminScope, subject string) (int, error) {
	tenant := tenantOr(sc.Tenant)
	return a.Verifications.cancelSubject(ctx, tenant, subject, func(tx Tx, n int) error {
		// AUDIT HOOK: the cancellation's record, in its transaction.
		return a.audit(ctx, tx, &AdminAction{Action: AdminActionCancelVerifications, Tenant: tenant, By: sc.By,
			Subject: subject, Count: n, At: a.Now.Time()})
	})
}
