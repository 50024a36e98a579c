package supertokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd"
)

// Session transport, as supertokens-node names it.
const (
	headerAccess     = "st-access-token"
	headerRefresh    = "st-refresh-token"
	headerFrontToken = "front-token"
	headerAuthMode   = "st-auth-mode"
	cookieAccess     = "sAccessToken"
	cookieRefresh    = "sRefreshToken"
)

// ExposedHeaders are the response headers a browser client must be able to
// read across origins (for the CORS rule of the dialect's routes).
var ExposedHeaders = []string{headerAccess, headerRefresh, headerFrontToken, "anti-csrf"}

// Messages of session failures, SuperTokens' own: clients key on them.
const (
	msgTryRefresh  = "try refresh token"
	msgUnauthorise = "unauthorised"
	msgTheft       = "token theft detected"
)

// DefaultAccessTokenTTL is the access token's life.
const DefaultAccessTokenTTL = 15 * time.Minute

// Tokens signs and verifies access tokens: JWTs with SuperTokens' claims
// (sub, tId, sessionHandle, iat, exp), signed by otpd's signing keys
// (EdDSA or RS256, a kid in the header, verifiable by any backend with the
// JWKS) when Keys is set, else HS256 under Secret. They have no
// auth_identity_id, so the Medusa dialect never accepts one, and Medusa
// tokens have no sessionHandle, so this dialect never accepts theirs.
type Tokens struct {
	Keys   *otpd.SigningKeys // asymmetric signing; nil for HS256 under Secret
	Secret []byte
	TTL    time.Duration
	Now    func() time.Time
}

type accessClaims struct {
	Subject       string           `json:"sub"`
	TenantID      string           `json:"tId"`
	SessionHandle string           `json:"sessionHandle"`
	RecipeUserID  string           `json:"rsub"`
	IssuedAt      *jwt.NumericDate `json:"iat"`
	ExpiresAt     *jwt.NumericDate `json:"exp"`
}

var _ jwt.Claims = accessClaims{}

func (c accessClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c accessClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c accessClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c accessClaims) GetIssuer() (string, error)                   { return "", nil }
func (c accessClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c accessClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

func (t *Tokens) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Tokens) ttl() time.Duration {
	if t.TTL > 0 {
		return t.TTL
	}
	return DefaultAccessTokenTTL
}

// sign returns the access token of s and its claims.
func (t *Tokens) sign(s *otpd.Session) (string, accessClaims, error) {
	now := t.now().Truncate(time.Second)
	c := accessClaims{
		Subject: s.AuthIdentityID, TenantID: s.Tenant, SessionHandle: s.Handle, RecipeUserID: s.AuthIdentityID,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(t.ttl())),
	}
	if t.Keys != nil {
		tok, err := t.Keys.Sign(c)
		return tok, c, err
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.Secret)
	return tok, c, err
}

// errExpired is a well-signed access token past its exp; errBadAccess any
// other invalid one.
var (
	errExpired   = errors.New("access token expired")
	errBadAccess = errors.New("invalid access token")
)

// parse verifies an access token. The algorithm is pinned (to the kid's
// key's with Keys, else to HS256) and exp is required; there is no leeway,
// so the client's clock (front-token) and the server agree on when to
// refresh.
func (t *Tokens) parse(token string) (*accessClaims, error) {
	var c accessClaims
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(t.now)}
	var err error
	if t.Keys != nil {
		err = t.Keys.Parse(token, &c, opts...)
	} else {
		_, err = jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.Secret, nil },
			append(opts, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))...)
	}
	if errors.Is(err, jwt.ErrTokenExpired) && c.SessionHandle != "" {
		return nil, errExpired
	}
	if err != nil || c.Subject == "" || c.TenantID == "" || c.SessionHandle == "" {
		return nil, errBadAccess
	}
	return &c, nil
}

// CookieOptions are the attributes of the dialect's cookies.
type CookieOptions struct {
	Domain   string
	Secure   bool
	SameSite http.SameSite // default Lax
}

// cookie returns an HttpOnly cookie; maxAge < 0 deletes it.
func (o CookieOptions) cookie(name, value, path string, maxAge int) *http.Cookie {
	ss := o.SameSite
	if ss == 0 {
		ss = http.SameSiteLaxMode
	}
	c := &http.Cookie{Name: name, Value: value, Path: path, Domain: o.Domain, Secure: o.Secure, HttpOnly: true, SameSite: ss, MaxAge: maxAge}
	if maxAge < 0 {
		c.Expires = time.Unix(0, 0)
	}
	return c
}

// transferMode is how the client wants new session tokens: "cookie" when
// it says so in st-auth-mode, "header" otherwise (SuperTokens' default).
func transferMode(r *http.Request) string {
	if strings.EqualFold(strings.TrimSpace(r.Header.Get(headerAuthMode)), "cookie") {
		return "cookie"
	}
	return "header"
}

// attachSession hands s's tokens to the client in mode: response headers,
// or cookies (the refresh cookie only reaches the refresh route), with the
// front-token header either way: the payload and expiry the client SDK
// reads.
func (h *Handler) attachSession(w http.ResponseWriter, r *http.Request, s *otpd.Session, mode string) error {
	access, c, err := h.Tokens.sign(s)
	if err != nil {
		return err
	}
	front, err := json.Marshal(map[string]any{"uid": s.AuthIdentityID, "ate": c.ExpiresAt.UnixMilli(), "up": c})
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set(headerFrontToken, base64.StdEncoding.EncodeToString(front))
	if mode == "cookie" {
		life := int(s.ExpiresAt.Sub(h.Tokens.now()).Seconds())
		http.SetCookie(w, h.Cookies.cookie(cookieAccess, access, "/", life))
		http.SetCookie(w, h.Cookies.cookie(cookieRefresh, s.RefreshToken, h.base()+"/session/refresh", life))
		return nil
	}
	hd.Set(headerAccess, access)
	hd.Set(headerRefresh, s.RefreshToken)
	// A client that switched to headers must not keep old cookies.
	if _, err := r.Cookie(cookieAccess); err == nil {
		http.SetCookie(w, h.Cookies.cookie(cookieAccess, "", "/", -1))
		http.SetCookie(w, h.Cookies.cookie(cookieRefresh, "", h.base()+"/session/refresh", -1))
	}
	return nil
}

// clearSession tells the client its session is gone: front-token "remove",
// and its tokens emptied in both transports.
func (h *Handler) clearSession(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set(headerFrontToken, "remove")
	if r.Header.Get("Authorization") != "" {
		hd.Set(headerAccess, "")
		hd.Set(headerRefresh, "")
	}
	if _, err := r.Cookie(cookieAccess); err == nil {
		http.SetCookie(w, h.Cookies.cookie(cookieAccess, "", "/", -1))
	}
	if _, err := r.Cookie(cookieRefresh); err == nil {
		http.SetCookie(w, h.Cookies.cookie(cookieRefresh, "", h.base()+"/session/refresh", -1))
	}
}

// requestToken returns the token a request carries: the Bearer token of
// Authorization (header mode) or else the cookie named (cookie mode).
func requestToken(r *http.Request, cookie string) (token string, fromCookie bool) {
	if v := r.Header.Get("Authorization"); v != "" {
		if scheme, tok, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) != "" {
			return strings.TrimSpace(tok), false
		}
	}
	if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
		return c.Value, true
	}
	return "", false
}

// csrfOK is the anti-CSRF check of a state-changing request authenticated
// by cookie (SuperTokens' VIA_CUSTOM_HEADER): it must carry the rid header,
// which a cross-site form cannot send and a cross-site script cannot send
// without a CORS preflight that only allowed origins pass.
func csrfOK(r *http.Request, fromCookie bool) bool {
	return !fromCookie || r.Header.Get("rid") != ""
}

// verify returns the claims of the request's access token, or writes the
// 401 that tells the client what to do: refresh, or sign in again.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request) (*accessClaims, bool) {
	token, fromCookie := requestToken(r, cookieAccess)
	if token == "" {
		writeMessage(w, http.StatusUnauthorized, msgUnauthorise)
		return nil, false
	}
	c, err := h.Tokens.parse(token)
	if err != nil {
		// Expired or not ours: the refresh token decides.
		writeMessage(w, http.StatusUnauthorized, msgTryRefresh)
		return nil, false
	}
	if r.Method != http.MethodGet && !csrfOK(r, fromCookie) {
		h.clearSession(w, r)
		writeMessage(w, http.StatusUnauthorized, msgUnauthorise)
		return nil, false
	}
	return c, true
}

// POST {base}/session/refresh
func (h *Handler) handleRefresh(w http.ResponseWriter, r *http.Request) {
	token, fromCookie := requestToken(r, cookieRefresh)
	if token == "" || !csrfOK(r, fromCookie) {
		h.clearSession(w, r)
		writeMessage(w, http.StatusUnauthorized, msgUnauthorise)
		return
	}
	if h.readBody(w, r) == nil {
		return
	}
	s, err := h.Sessions.RefreshSession(r.Context(), token)
	switch {
	case errors.Is(err, otpd.ErrRefreshReused):
		h.clearSession(w, r)
		writeMessage(w, http.StatusUnauthorized, msgTheft)
		return
	case otpd.ErrorCode(err) == otpd.EUNAUTHORIZED:
		h.clearSession(w, r)
		writeMessage(w, http.StatusUnauthorized, msgUnauthorise)
		return
	case err != nil:
		h.writeError(w, r, err)
		return
	}
	mode := "header"
	if fromCookie {
		mode = "cookie"
	}
	if err := h.attachSession(w, r, s, mode); err != nil {
		h.writeError(w, r, err)
		return
	}
	writeStatus(w, map[string]any{"status": "OK"})
}

// POST {base}/signout
func (h *Handler) handleSignOut(w http.ResponseWriter, r *http.Request) {
	if h.readBody(w, r) == nil {
		return
	}
	if tok, _ := requestToken(r, cookieAccess); tok == "" {
		// No session: signing out is already done.
		writeStatus(w, map[string]any{"status": "OK"})
		return
	}
	c, ok := h.verify(w, r)
	if !ok {
		return
	}
	if err := h.Sessions.EndSession(r.Context(), c.TenantID, c.SessionHandle); err != nil {
		h.writeError(w, r, err)
		return
	}
	h.clearSession(w, r)
	writeStatus(w, map[string]any{"status": "OK"})
}

// GET {base}/session: otpd's session check for apps and tests. With a
// valid access token of a live session it answers the session; a signed-out
// or revoked session is 401 unauthorised even while its access token has
// not expired.
func (h *Handler) handleSession(w http.ResponseWriter, r *http.Request) {
	c, ok := h.verify(w, r)
	if !ok {
		return
	}
	if err := h.Sessions.CheckSession(r.Context(), c.TenantID, c.SessionHandle); otpd.ErrorCode(err) == otpd.EUNAUTHORIZED {
		h.clearSession(w, r)
		writeMessage(w, http.StatusUnauthorized, msgUnauthorise)
		return
	} else if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeStatus(w, map[string]any{
		"status": "OK", "userId": c.Subject, "tenantId": c.TenantID, "sessionHandle": c.SessionHandle,
		"accessTokenPayload": c,
	})
}
