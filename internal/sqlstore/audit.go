package sqlstore

import (
	"strconv"
	"strings"

	"github.com/otpd/otpd"
)

// AuditColumns, in the order ScanAudit reads them and AuditArgs gives them.
const AuditColumns = `id, tenant, created_at, event, outcome, purpose, identity_id, address,
	client_addr, user_agent, request_id, api_key_id, detail`

// AuditArgs are the values of r for an insert of AuditColumns.
func AuditArgs(r *otpd.AuditRecord) []any {
	return []any{r.ID, r.Tenant, MS(r.Time), string(r.Event), string(r.Outcome), string(r.Purpose),
		r.IdentityID, r.Address, r.ClientAddr, r.UserAgent, r.RequestID, r.APIKeyID, otpd.MarshalDetail(r.Detail)}
}

// ScanAudit reads a row of AuditColumns.
func ScanAudit(s Scanner) (*otpd.AuditRecord, error) {
	var (
		r                       otpd.AuditRecord
		created                 int64
		event, outcome, purpose string
		detail                  string
	)
	err := s.Scan(&r.ID, &r.Tenant, &created, &event, &outcome, &purpose, &r.IdentityID, &r.Address,
		&r.ClientAddr, &r.UserAgent, &r.RequestID, &r.APIKeyID, &detail)
	if err != nil {
		return nil, err
	}
	r.Time = FromMS(created)
	r.Event, r.Outcome, r.Purpose = otpd.AuditEvent(event), otpd.AuditOutcome(outcome), otpd.Purpose(purpose)
	if r.Detail, err = otpd.UnmarshalDetail(detail); err != nil {
		return nil, err
	}
	return &r, nil
}

// FindAuditSQL is the statement of otpd.AuditTx.FindAudit for f, and its
// arguments; param(n) is the driver's n-th placeholder (1-based).
//
// Each filter is one conjunct, so that the planner picks the index of the
// most selective: audit_log_identity_idx and audit_log_address_idx (their
// partial predicate is repeated so that it is implied), or else
// audit_log_time_idx, read backwards with the other filters applied. The
// page after a cursor is a keyset condition on (created_at, id).
func FindAuditSQL(f otpd.AuditFilter, param func(n int) string) (string, []any) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return param(len(args))
	}
	if f.Tenant != "" {
		where = append(where, "tenant = "+arg(f.Tenant))
	}
	if f.IdentityID != "" {
		where = append(where, "identity_id = "+arg(f.IdentityID)+" AND identity_id <> ''")
	}
	if f.Address != "" {
		where = append(where, "address = "+arg(f.Address)+" AND address <> ''")
	}
	if len(f.Events) > 0 {
		in := make([]string, len(f.Events))
		for i, e := range f.Events {
			in[i] = arg(string(e))
		}
		where = append(where, "event IN ("+strings.Join(in, ", ")+")")
	}
	if f.Outcome != "" {
		where = append(where, "outcome = "+arg(string(f.Outcome)))
	}
	if !f.Since.IsZero() {
		where = append(where, "created_at >= "+arg(MS(f.Since)))
	}
	if !f.Until.IsZero() {
		where = append(where, "created_at < "+arg(MS(f.Until)))
	}
	if a := f.After; a != nil {
		ms := MS(a.Time)
		where = append(where, "created_at <= "+arg(ms)+" AND (created_at < "+arg(ms)+" OR id < "+arg(a.ID)+")")
	}
	q := "SELECT " + AuditColumns + " FROM audit_log"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT " + strconv.Itoa(max(f.Limit, 0))
	return q, args
}
