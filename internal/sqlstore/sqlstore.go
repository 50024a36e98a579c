// Package sqlstore holds what otpd's SQL stores (sqlite, postgres) share
// because their schemas have one meaning: times stored as unix milliseconds,
// JSON objects stored as text, the scanning of a row into otpd's types in
// the column order both schemas use, and the listing of embedded migration
// files. Transactions, statements and error mapping stay in each store: they
// are where the drivers differ.
//
// The scanners work with database/sql rows and pgx rows alike: both scan
// integers into *int64, NULL into a nil **int64, text into *[]byte.
package sqlstore

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd"
)

// MS returns the stored form of a time: unix milliseconds.
func MS(t time.Time) int64 { return t.UnixMilli() }

// FromMS returns a stored time, in UTC.
func FromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// ZeroMS returns the stored form of a time whose zero value means "none"
// (a NOT NULL column with DEFAULT 0): 0 for the zero time.
func ZeroMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return MS(t)
}

// FromZeroMS returns a time stored by ZeroMS: the zero time for 0.
func FromZeroMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return FromMS(v)
}

// NullMS returns the stored form of an optional time: nil for nil.
func NullMS(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := MS(*t)
	return &v
}

// FromNullMS returns a stored optional time.
func FromNullMS(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := FromMS(*v)
	return &t
}

// EncodeJSON returns the stored form of a JSON object: {} when m is empty.
func EncodeJSON(m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return []byte("{}"), nil
	}
	return json.Marshal(m)
}

// DecodeJSON decodes a stored JSON object, returning an empty map, never nil.
func DecodeJSON(b []byte) (map[string]any, error) {
	m := map[string]any{}
	if len(b) == 0 || string(b) == "{}" {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Scanner is a row: *sql.Row, *sql.Rows, pgx.Row and pgx.Rows all are.
type Scanner interface{ Scan(dest ...any) error }

// ChallengeColumns, in the order ScanChallenge reads them.
const ChallengeColumns = `id, tenant, actor_type, purpose, destination, channel, subject_id,
	code_hash, attempts, max_attempts, created_at, expires_at, consumed_at, retired_at`

// ScanChallenge reads a row of ChallengeColumns.
func ScanChallenge(s Scanner) (*otpd.Challenge, error) {
	var (
		c                  otpd.Challenge
		purpose, channel   string
		created, expires   int64
		consumed, retired  *int64
		attempts, maxTries int64
	)
	err := s.Scan(&c.ID, &c.Tenant, &c.ActorType, &purpose, &c.Destination, &channel, &c.SubjectID,
		&c.CodeHash, &attempts, &maxTries, &created, &expires, &consumed, &retired)
	if err != nil {
		return nil, err
	}
	c.Purpose = otpd.Purpose(purpose)
	c.Channel = otpd.Channel(channel)
	c.Attempts, c.MaxAttempts = int(attempts), int(maxTries)
	c.CreatedAt, c.ExpiresAt = FromMS(created), FromMS(expires)
	c.ConsumedAt, c.RetiredAt = FromNullMS(consumed), FromNullMS(retired)
	return &c, nil
}

// RefreshTokenColumns, in the order ScanRefreshToken reads them.
const RefreshTokenColumns = `id, tenant, family_id, auth_identity_id, parent_id, token_hash,
	created_at, expires_at, rotated_at, revoked_at`

// ScanRefreshToken reads a row of RefreshTokenColumns.
func ScanRefreshToken(s Scanner) (*otpd.RefreshToken, error) {
	var (
		rt               otpd.RefreshToken
		created, expires int64
		rotated, revoked *int64
	)
	err := s.Scan(&rt.ID, &rt.Tenant, &rt.FamilyID, &rt.AuthIdentityID, &rt.ParentID, &rt.Hash,
		&created, &expires, &rotated, &revoked)
	if err != nil {
		return nil, err
	}
	rt.CreatedAt, rt.ExpiresAt = FromMS(created), FromMS(expires)
	rt.RotatedAt, rt.RevokedAt = FromNullMS(rotated), FromNullMS(revoked)
	return &rt, nil
}

// APIKeyColumns, in the order ScanAPIKey reads them.
const APIKeyColumns = `id, tenant, name, permissions, key_hash, created_at, last_used_at, revoked_at`

// ScanAPIKey reads a row of APIKeyColumns.
func ScanAPIKey(s Scanner) (*otpd.APIKey, error) {
	var (
		k                 otpd.APIKey
		perms             string
		created           int64
		lastUsed, revoked *int64
	)
	if err := s.Scan(&k.ID, &k.Tenant, &k.Name, &perms, &k.Hash, &created, &lastUsed, &revoked); err != nil {
		return nil, err
	}
	k.Permissions = DecodePermissions(perms)
	k.CreatedAt = FromMS(created)
	k.LastUsedAt, k.RevokedAt = FromNullMS(lastUsed), FromNullMS(revoked)
	return &k, nil
}

// SigningKeyColumns, in the order ScanSigningKey reads them.
const SigningKeyColumns = `id, seq, alg, public_key, private_key, created_at, active_at`

// ScanSigningKey reads a row of SigningKeyColumns.
func ScanSigningKey(s Scanner) (*otpd.SigningKey, error) {
	var (
		k               otpd.SigningKey
		created, active int64
	)
	if err := s.Scan(&k.ID, &k.Seq, &k.Alg, &k.PublicKey, &k.PrivateKey, &created, &active); err != nil {
		return nil, err
	}
	k.CreatedAt, k.ActiveAt = FromMS(created), FromMS(active)
	return &k, nil
}

// EncodePermissions returns the stored form of permissions: their names
// joined by commas, in the order given ("" for none).
func EncodePermissions(ps []otpd.Permission) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = string(p)
	}
	return strings.Join(names, ",")
}

// DecodePermissions reads permissions stored by EncodePermissions.
func DecodePermissions(s string) []otpd.Permission {
	if s == "" {
		return nil
	}
	var ps []otpd.Permission
	for name := range strings.SplitSeq(s, ",") {
		ps = append(ps, otpd.Permission(name))
	}
	return ps
}

// NonNil returns b, or an empty slice for nil: a nil []byte binds as NULL,
// which a NOT NULL hash column refuses and no stored hash equals.
func NonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ProviderIdentityColumns, in the order ScanProviderIdentity reads them.
const ProviderIdentityColumns = `id, tenant, auth_identity_id, provider, entity_id,
	user_metadata, provider_metadata, created_at, updated_at`

// ScanProviderIdentity reads a row of ProviderIdentityColumns.
func ScanProviderIdentity(s Scanner) (*otpd.ProviderIdentity, error) {
	var (
		p                otpd.ProviderIdentity
		user, prov       []byte
		created, updated int64
	)
	err := s.Scan(&p.ID, &p.Tenant, &p.AuthIdentityID, &p.Provider, &p.EntityID, &user, &prov, &created, &updated)
	if err != nil {
		return nil, err
	}
	if p.UserMetadata, err = DecodeJSON(user); err != nil {
		return nil, fmt.Errorf("user_metadata: %w", err)
	}
	if p.ProviderMetadata, err = DecodeJSON(prov); err != nil {
		return nil, fmt.Errorf("provider_metadata: %w", err)
	}
	p.CreatedAt, p.UpdatedAt = FromMS(created), FromMS(updated)
	return &p, nil
}

// ActorColumns, in the order ScanActor reads them.
const ActorColumns = `id, tenant, type, email, phone, first_name, last_name, company_name,
	metadata, email_verified, phone_verified, has_account, created_at, updated_at`

// ScanActor reads a row of ActorColumns.
func ScanActor(s Scanner) (*otpd.Actor, error) {
	var (
		a                otpd.Actor
		meta             []byte
		created, updated int64
	)
	err := s.Scan(&a.ID, &a.Tenant, &a.Type, &a.Email, &a.Phone, &a.FirstName, &a.LastName, &a.CompanyName,
		&meta, &a.EmailVerified, &a.PhoneVerified, &a.HasAccount, &created, &updated)
	if err != nil {
		return nil, err
	}
	if a.Metadata, err = DecodeJSON(meta); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	a.CreatedAt, a.UpdatedAt = FromMS(created), FromMS(updated)
	return &a, nil
}

// MessageColumns, in the order ScanMessage reads them.
const MessageColumns = `id, notifier, payload, attempts, next_attempt_at, created_at, expires_at, last_error, lease_owner`

// ScanMessage reads a row of MessageColumns.
func ScanMessage(s Scanner) (*otpd.OutboxMessage, error) {
	var (
		m                      otpd.OutboxMessage
		attempts               int64
		next, created, expires int64
	)
	if err := s.Scan(&m.ID, &m.Notifier, &m.Payload, &attempts, &next, &created, &expires, &m.LastError, &m.LeaseOwner); err != nil {
		return nil, err
	}
	m.Attempts = int(attempts)
	m.NextAttemptAt, m.CreatedAt, m.ExpiresAt = FromMS(next), FromMS(created), FromMS(expires)
	return &m, nil
}

// SortClaimed orders claimed messages oldest first (CreatedAt, then ID):
// neither database orders the rows of UPDATE ... RETURNING.
func SortClaimed(msgs []*otpd.OutboxMessage) {
	slices.SortFunc(msgs, func(a, b *otpd.OutboxMessage) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Migration is one embedded schema migration.
type Migration struct {
	Version int
	Name    string // file name, NNNN_description.sql
	SQL     string
}

// Migrations returns the migrations in dir of fsys (files named
// NNNN_description.sql, NNNN the version), sorted by version. Names that do
// not follow the pattern and versions used twice are errors.
func Migrations(fsys fs.FS, dir string) ([]Migration, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", base)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: base, SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share a version", out[i-1].Name, out[i].Name)
		}
	}
	return out, nil
}

// Rows is what both drivers' result sets offer: *sql.Rows and pgx.Rows.
type Rows interface {
	Scanner
	Next() bool
	Err() error
}

// Collect reads every row of rows with scan, in order; an empty result is
// an empty, non-nil slice. The caller closes rows.
func Collect[T any](rows Rows, scan func(Scanner) (T, error)) ([]T, error) {
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ScanString reads a row of one text column.
func ScanString(s Scanner) (string, error) {
	var v string
	err := s.Scan(&v)
	return v, err
}
