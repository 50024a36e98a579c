package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// CreateAuthIdentity implements otpd.IdentityTx. The provider identity is
// stored under a's id and tenant, and a.ActorIDs, if any, become actor links.
// A conflict inserts nothing (ON CONFLICT DO NOTHING), so the transaction
// stays usable; if the provider identity conflicts, the auth identity just
// inserted is deleted again, so a caller that handles ECONFLICT and commits
// does not leave an orphan identity.
func (t *tx) CreateAuthIdentity(ctx context.Context, a *otpd.AuthIdentity, p *otpd.ProviderIdentity) (err error) {
	app, err := sqlstore.EncodeJSON(a.AppMetadata)
	if err != nil {
		return wrapf("create auth identity: app_metadata", err)
	}
	user, err := sqlstore.EncodeJSON(p.UserMetadata)
	if err != nil {
		return wrapf("create auth identity: user_metadata", err)
	}
	prov, err := sqlstore.EncodeJSON(p.ProviderMetadata)
	if err != nil {
		return wrapf("create auth identity: provider_metadata", err)
	}

	tag, err := t.tx.Exec(ctx, sqlCreateAuthIdentity, a.ID, a.Tenant, app, sqlstore.MS(a.CreatedAt), sqlstore.MS(a.UpdatedAt))
	if err != nil {
		return mapError("create auth identity", err)
	} else if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "Auth identity %s already exists.", a.ID)
	}
	// From here on, undo the insert on failure (cheaper than a SAVEPOINT on
	// the success path; the cascade removes links already inserted).
	defer func() {
		if err != nil {
			if _, derr := t.tx.Exec(ctx, sqlDeleteAuthIdentity, a.ID); derr != nil {
				err = errors.Join(err, mapError("create auth identity: undo", derr))
			}
		}
	}()

	tag, err = t.tx.Exec(ctx, sqlCreateProviderIdentity,
		p.ID, a.Tenant, a.ID, p.Provider, p.EntityID, user, prov, sqlstore.MS(p.CreatedAt), sqlstore.MS(p.UpdatedAt))
	if err != nil {
		return mapError("create provider identity", err)
	} else if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "An identity for this %s identifier already exists.", p.Provider)
	}
	for actorType, actorID := range a.ActorIDs {
		if _, err = t.tx.Exec(ctx, sqlInsertActorLink, a.ID, actorType, actorID, a.Tenant, sqlstore.MS(a.CreatedAt)); err != nil {
			return mapError("create auth identity: link actor", err)
		}
	}
	return nil
}

// FindAuthIdentityByID implements otpd.IdentityTx.
func (t *tx) FindAuthIdentityByID(ctx context.Context, tenant, id string) (*otpd.AuthIdentity, error) {
	rows, err := t.tx.Query(ctx, sqlFindAuthIdentityByID, tenant, id)
	if err != nil {
		return nil, mapError("find auth identity", err)
	}
	defer rows.Close()
	var a *otpd.AuthIdentity
	for rows.Next() {
		var (
			app                []byte
			created, updated   int64
			validAfter         int64
			actorType, actorID *string
			scanID, scanTenant string
		)
		if err := rows.Scan(&scanID, &scanTenant, &app, &created, &updated, &validAfter, &actorType, &actorID); err != nil {
			return nil, mapError("find auth identity", err)
		}
		if a == nil {
			meta, err := sqlstore.DecodeJSON(app)
			if err != nil {
				return nil, wrapf("find auth identity: app_metadata", err)
			}
			a = &otpd.AuthIdentity{
				ID: scanID, Tenant: scanTenant, ActorIDs: map[string]string{}, AppMetadata: meta,
				TokensValidAfter: sqlstore.FromZeroMS(validAfter),
				CreatedAt:        sqlstore.FromMS(created), UpdatedAt: sqlstore.FromMS(updated),
			}
		}
		if actorType != nil && actorID != nil {
			a.ActorIDs[*actorType] = *actorID
		}
	}
	if err := rows.Err(); err != nil {
		return nil, mapError("find auth identity", err)
	}
	if a == nil {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Auth identity not found.")
	}
	return a, nil
}

// FindProviderIdentity implements otpd.IdentityTx.
func (t *tx) FindProviderIdentity(ctx context.Context, tenant, provider, entityID string) (*otpd.ProviderIdentity, error) {
	p, err := sqlstore.ScanProviderIdentity(t.tx.QueryRow(ctx, sqlFindProviderIdentity, tenant, provider, entityID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Provider identity not found.")
	} else if err != nil {
		return nil, mapError("find provider identity", err)
	}
	return p, nil
}

// FindProviderIdentities implements otpd.IdentityTx. An identity with none
// (or a missing identity) gives an empty slice and no error.
func (t *tx) FindProviderIdentities(ctx context.Context, tenant, authIdentityID string) ([]*otpd.ProviderIdentity, error) {
	rows, err := t.tx.Query(ctx, sqlFindProviderIdentities, tenant, authIdentityID)
	if err != nil {
		return nil, mapError("find provider identities", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanProviderIdentity)
	if err != nil {
		return nil, mapError("find provider identities", err)
	}
	return out, nil
}

// FindAuthIdentityByActor implements otpd.IdentityTx.
func (t *tx) FindAuthIdentityByActor(ctx context.Context, tenant, actorType, actorID string) (*otpd.AuthIdentity, error) {
	var id string
	err := t.tx.QueryRow(ctx, sqlFindAuthIdentityIDByActor, tenant, actorType, actorID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No auth identity is linked to this actor.")
	} else if err != nil {
		return nil, mapError("find auth identity by actor", err)
	}
	return t.FindAuthIdentityByID(ctx, tenant, id)
}

// FindSignInSubject implements otpd.IdentityTx, in one statement.
func (t *tx) FindSignInSubject(ctx context.Context, tenant, actorType string, c otpd.Contact, passwordProvider string) (string, string, error) {
	var q string
	switch c.Channel {
	case otpd.ChannelEmail:
		q = sqlFindSignInSubjectByEmail
	case otpd.ChannelSMS:
		q = sqlFindSignInSubjectByPhone
	default:
		return "", "", nil
	}
	if c.Value == "" {
		return "", "", nil
	}
	var auth, prov *string
	if err := t.tx.QueryRow(ctx, q, tenant, actorType, c.Value, passwordProvider).Scan(&auth, &prov); err != nil {
		return "", "", mapError("find sign-in subject", err)
	}
	if auth != nil {
		return *auth, "", nil
	}
	if prov != nil {
		return "", *prov, nil
	}
	return "", "", nil
}

// ProveContact implements otpd.IdentityTx, in one statement. A unique
// violation (another account proved the contact concurrently) aborts the
// transaction; it is ECONFLICT, and the caller rolls back.
func (t *tx) ProveContact(ctx context.Context, tenant, actorType, id string, c otpd.Contact, now time.Time) (bool, error) {
	var q string
	switch c.Channel {
	case otpd.ChannelEmail:
		q = sqlProveEmail
	case otpd.ChannelSMS:
		q = sqlProvePhone
	default:
		return false, nil
	}
	tag, err := t.tx.Exec(ctx, q, tenant, actorType, c.Value, id, sqlstore.MS(now))
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return false, otpd.Errorf(otpd.ECONFLICT, "An account has already proved this contact.")
	} else if err != nil {
		return false, mapError("prove contact", err)
	}
	return tag.RowsAffected() == 1, nil
}

// LinkActor implements otpd.IdentityTx, in one statement. It also sets the
// identity's UpdatedAt to now, as changing app_metadata does in Medusa.
func (t *tx) LinkActor(ctx context.Context, tenant, authIdentityID, actorType, actorID string, now time.Time) error {
	var found, linked int64
	err := t.tx.QueryRow(ctx, sqlLinkActor, tenant, authIdentityID, actorType, actorID, sqlstore.MS(now)).Scan(&found, &linked)
	if err != nil {
		return mapError("link actor", err)
	}
	if found == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "Auth identity not found.")
	}
	if linked == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "The identity is already linked to a %s.", actorType)
	}
	return nil
}

// SetProviderMetadata implements otpd.IdentityTx, in one statement.
func (t *tx) SetProviderMetadata(ctx context.Context, tenant, id string, metadata map[string]any, now time.Time) error {
	prov, err := sqlstore.EncodeJSON(metadata)
	if err != nil {
		return wrapf("set provider metadata", err)
	}
	tag, err := t.tx.Exec(ctx, sqlSetProviderMetadata, tenant, id, prov, sqlstore.MS(now))
	if err != nil {
		return mapError("set provider metadata", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "Provider identity not found.")
	}
	return nil
}

// RevokeTokens implements otpd.IdentityTx, in one statement.
func (t *tx) RevokeTokens(ctx context.Context, tenant, authIdentityID string, at time.Time) error {
	tag, err := t.tx.Exec(ctx, sqlRevokeTokens, tenant, authIdentityID, sqlstore.ZeroMS(at))
	if err != nil {
		return mapError("revoke tokens", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "Auth identity not found.")
	}
	return nil
}

// CreateActor implements otpd.IdentityTx. The partial unique indexes on
// (tenant, type, email) and (tenant, type, phone) among actors with an
// account, and the primary key, turn a duplicate into ECONFLICT (no row
// inserted, the transaction still usable).
func (t *tx) CreateActor(ctx context.Context, a *otpd.Actor) error {
	meta, err := sqlstore.EncodeJSON(a.Metadata)
	if err != nil {
		return wrapf("create actor: metadata", err)
	}
	tag, err := t.tx.Exec(ctx, sqlCreateActor,
		a.ID, a.Tenant, a.Type, a.Email, a.Phone, a.FirstName, a.LastName, a.CompanyName,
		meta, a.EmailVerified, a.PhoneVerified, a.HasAccount, sqlstore.MS(a.CreatedAt), sqlstore.MS(a.UpdatedAt))
	if err != nil {
		return mapError("create actor", err)
	}
	if tag.RowsAffected() == 0 {
		return otpd.Errorf(otpd.ECONFLICT, "An account with this email or phone already exists.")
	}
	return nil
}

// FindActorByID implements otpd.IdentityTx.
func (t *tx) FindActorByID(ctx context.Context, tenant, actorType, id string) (*otpd.Actor, error) {
	a, err := sqlstore.ScanActor(t.tx.QueryRow(ctx, sqlFindActorByID, id, tenant, actorType))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Actor not found.")
	} else if err != nil {
		return nil, mapError("find actor", err)
	}
	return a, nil
}

// FindActorByContact implements otpd.IdentityTx.
func (t *tx) FindActorByContact(ctx context.Context, tenant, actorType string, c otpd.Contact) (*otpd.Actor, error) {
	var q string
	switch c.Channel {
	case otpd.ChannelEmail:
		q = sqlFindActorByEmail
	case otpd.ChannelSMS:
		q = sqlFindActorByPhone
	default:
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Actor not found.")
	}
	if c.Value == "" {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Actor not found.")
	}
	a, err := sqlstore.ScanActor(t.tx.QueryRow(ctx, q, tenant, actorType, c.Value))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Actor not found.")
	} else if err != nil {
		return nil, mapError("find actor by contact", err)
	}
	return a, nil
}
