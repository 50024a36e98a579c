package serverapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

// The admin API (/v1/admin): an operator's view of one tenant, for keys
// with the admin permission (otpd keys create --admin). It is a thin
// translation onto otpd.Admin; every state change there is one
// transaction, with its audit hook.

// adminRoutes are the admin API's routes, in the OpenAPI document's path
// syntax.
var adminRoutes = []Route{
	{"GET", "/v1/admin/identities"},
	{"GET", "/v1/admin/identities/{id}"},
	{"DELETE", "/v1/admin/identities/{id}"},
	{"GET", "/v1/admin/identities/{id}/sessions"},
	{"POST", "/v1/admin/identities/{id}/sessions/revoke"},
	{"POST", "/v1/admin/identities/{id}/sessions/{handle}/revoke"},
	{"GET", "/v1/admin/verifications"},
	{"POST", "/v1/admin/verifications/{id}/cancel"},
	{"POST", "/v1/admin/verifications/cancel"},
	{"GET", "/v1/admin/audit"},
}

// registerAdmin adds the admin routes through handle.
func (h *Handler) registerAdmin(handle func(string, http.HandlerFunc)) {
	for _, r := range []struct {
		route Route
		fn    func(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope)
	}{
		{adminRoutes[0], h.handleFindIdentities},
		{adminRoutes[1], h.handleGetIdentity},
		{adminRoutes[2], h.handleDeleteIdentity},
		{adminRoutes[3], h.handleListSessions},
		{adminRoutes[4], h.handleRevokeSessions},
		{adminRoutes[5], h.handleRevokeSession},
		{adminRoutes[6], h.handleListVerifications},
		{adminRoutes[7], h.handleAdminCancel},
		{adminRoutes[8], h.handleAdminCancelSubject},
		{adminRoutes[9], h.handleAudit},
	} {
		handle(r.route.Method+" "+r.route.Path, h.authed(h.admin(r.fn)))
	}
}

// admin admits a caller whose key has the admin permission; any other
// live key gets 403 naming the permission (a bad key got the one 401
// already).
func (h *Handler) admin(next func(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope)) func(http.ResponseWriter, *http.Request, Caller) {
	return func(w http.ResponseWriter, r *http.Request, c Caller) {
		if !c.Admin {
			writeProblem(w, http.StatusForbidden, "forbidden", "This API key lacks the admin permission (otpd keys create --admin).", "", 0)
			return
		}
		if h.Admin == nil {
			writeProblem(w, http.StatusNotFound, "not_found", "No such route.", "", 0)
			return
		}
		next(w, r, otpd.AdminScope{Tenant: c.Tenant, By: c.KeyID})
	}
}

// query reads a GET's query parameters: each of allowed at most once, no
// other; limit, when present, an integer.
func query(r *http.Request, allowed ...string) (url.Values, int, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, 0, otpd.FieldErrorf("query", "The query string is malformed.")
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(allowed, name) {
			return nil, 0, otpd.FieldErrorf(name, "Unknown query parameter: %s.", name)
		}
		if len(q[name]) > 1 {
			return nil, 0, otpd.FieldErrorf(name, "The query parameter %s appears twice.", name)
		}
	}
	limit := 0
	if s := q.Get("limit"); s != "" || q.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > otpd.MaxAdminPageSize {
			return nil, 0, otpd.FieldErrorf("limit", "The limit must be an integer between 1 and %d.", otpd.MaxAdminPageSize)
		}
		limit = n
	}
	return q, limit, nil
}

// noBody reads a body-less POST or DELETE: a body sent anyway is read
// under the usual rules, and may have no members.
func (h *Handler) noBody(w http.ResponseWriter, r *http.Request) bool {
	_, ok := h.decode(w, r, nil)
	return ok
}

func (h *Handler) handleFindIdentities(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	q, _, err := query(r, "address", "id")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ids, err := h.Admin.FindIdentities(r.Context(), sc, otpd.IdentityQuery{Address: q.Get("address"), ID: q.Get("id")})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"identities": ids})
}

func (h *Handler) handleGetIdentity(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	if _, _, err := query(r); err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := h.Admin.Identity(r.Context(), sc, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}

func (h *Handler) handleDeleteIdentity(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	if !h.noBody(w, r) {
		return
	}
	id := r.PathValue("id")
	d, err := h.Admin.DeleteIdentity(r.Context(), sc, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": d})
}

func (h *Handler) handleListSessions(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	q, limit, err := query(r, "cursor", "limit")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := h.Admin.Sessions(r.Context(), sc, r.PathValue("id"), q.Get("cursor"), limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
}

func (h *Handler) handleRevokeSessions(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	if !h.noBody(w, r) {
		return
	}
	id := r.PathValue("id")
	res, err := h.Admin.RevokeSessions(r.Context(), sc, id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"id": id, "revoked_refresh_tokens": res.RefreshTokens, "tokens_valid_after": res.TokensValidAfter,
	})
}

func (h *Handler) handleRevokeSession(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	if !h.noBody(w, r) {
		return
	}
	s, n, err := h.Admin.RevokeSession(r.Context(), sc, r.PathValue("id"), r.PathValue("handle"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"session": s, "revoked_refresh_tokens": n})
}

func (h *Handler) handleListVerifications(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	q, limit, err := query(r, "subject", "to", "purpose", "cursor", "limit")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := h.Admin.ListVerifications(r.Context(), sc, otpd.VerificationFilter{
		Subject: q.Get("subject"), To: q.Get("to"), Purpose: otpd.Purpose(q.Get("purpose")),
		Cursor: q.Get("cursor"), Limit: limit,
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]verification, len(p.Verifications))
	for i, v := range p.Verifications {
		out[i] = answer(v)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"verifications": out, "next_cursor": p.Next})
}

func (h *Handler) handleAdminCancel(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	if !h.noBody(w, r) {
		return
	}
	v, err := h.Admin.CancelVerification(r.Context(), sc, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, answer(v))
}

func (h *Handler) handleAdminCancelSubject(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	vals, ok := h.decode(w, r, cancelSubjectFields)
	if !ok {
		return
	}
	subject := str(vals, "subject")
	n, err := h.Admin.CancelSubject(r.Context(), sc, subject)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"subject": subject, "canceled": n})
}

// handleAudit searches the tenant's audit log: by identity, address,
// events (comma-separated), outcome and time range (RFC 3339), newest
// first, paged.
func (h *Handler) handleAudit(w http.ResponseWriter, r *http.Request, sc otpd.AdminScope) {
	q, limit, err := query(r, "identity_id", "address", "event", "outcome", "since", "until", "cursor", "limit")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	aq := otpd.AuditQuery{
		IdentityID: q.Get("identity_id"), Address: q.Get("address"), Outcome: otpd.AuditOutcome(q.Get("outcome")),
		Cursor: q.Get("cursor"), Limit: limit,
	}
	if ev := q.Get("event"); ev != "" {
		for _, e := range strings.Split(ev, ",") {
			aq.Events = append(aq.Events, otpd.AuditEvent(strings.TrimSpace(e)))
		}
	}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(t.name); v != "" {
			if *t.to, err = time.Parse(time.RFC3339Nano, v); err != nil {
				h.fail(w, r, otpd.FieldErrorf(t.name, "The %s time must be in RFC 3339 form (2026-12-04T10:00:00Z).", t.name))
				return
			}
		}
	}
	records, next, err := h.Admin.AuditRecords(r.Context(), sc, aq)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if records == nil {
		records = []*otpd.AuditRecord{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"records": records, "next_cursor": next})
}
