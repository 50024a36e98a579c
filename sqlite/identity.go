package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// CreateAuthIdentity implements otpd.IdentityTx. The provider identity is
// stored under a's id and tenant, and a.ActorIDs, if any, become actor links.
// On any failure nothing of the call remains in the transaction, so a caller
// that handles ECONFLICT and commits does not leave an orphan identity.
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

	_, err = t.exec(ctx, qCreateAuthIdentity, a.ID, a.Tenant, string(app), sqlstore.MS(a.CreatedAt), sqlstore.MS(a.UpdatedAt))
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "Auth identity %s already exists.", a.ID)
	} else if err != nil {
		return mapError("create auth identity", err)
	}
	// From here on, undo the insert on failure (cheaper than a SAVEPOINT on
	// the success path; the cascade removes links already inserted).
	defer func() {
		if err != nil {
			if _, derr := t.exec(ctx, qDeleteAuthIdentity, a.ID); derr != nil {
				err = errors.Join(err, mapError("create auth identity: undo", derr))
			}
		}
	}()

	_, err = t.exec(ctx, qCreateProviderIdentity,
		p.ID, a.Tenant, a.ID, p.Provider, p.EntityID, string(user), string(prov), sqlstore.MS(p.CreatedAt), sqlstore.MS(p.UpdatedAt))
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "An identity for this %s identifier already exists.", p.Provider)
	} else if err != nil {
		return mapError("create provider identity", err)
	}
	for actorType, actorID := range a.ActorIDs {
		_, err = t.exec(ctx, qInsertActorLink, a.ID, actorType, actorID, a.Tenant, sqlstore.MS(a.CreatedAt))
		if err != nil {
			return mapError("create auth identity: link actor", err)
		}
	}
	return nil
}

// FindAuthIdentityByID implements otpd.IdentityTx.
func (t *tx) FindAuthIdentityByID(ctx context.Context, tenant, id string) (*otpd.AuthIdentity, error) {
	rows, err := t.query(ctx, qFindAuthIdentityByID, tenant, id)
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
			actorType, actorID sql.NullString
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
		if actorType.Valid {
			a.ActorIDs[actorType.String] = actorID.String
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
	p, err := sqlstore.ScanProviderIdentity(t.queryRow(ctx, qFindProviderIdentity, tenant, provider, entityID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Provider identity not found.")
	} else if err != nil {
		return nil, mapError("find provider identity", err)
	}
	return p, nil
}

// FindProviderIdentities implements otpd.IdentityTx. An identity with none
// (or a missing identity) gives an empty slice and no error.
func (t *tx) FindProviderIdentities(ctx context.Context, tenant, authIdentityID string) ([]*otpd.ProviderIdentity, error) {
	rows, err := t.query(ctx, qFindProviderIdentities, tenant, authIdentityID)
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
	err := t.queryRow(ctx, qFindAuthIdentityIDByActor, tenant, actorType, actorID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "No auth identity is linked to this actor.")
	} else if err != nil {
		return nil, mapError("find auth identity by actor", err)
	}
	return t.FindAuthIdentityByID(ctx, tenant, id)
}

// FindSignInSubject implements otpd.IdentityTx, in one statement.
func (t *tx) FindSignInSubject(ctx context.Context, tenant, actorType string, c otpd.Contact, passwordProvider string) (string, string, error) {
	var q query
	switch c.Channel {
	case otpd.ChannelEmail:
		q = qFindSignInSubjectByEmail
	case otpd.ChannelSMS:
		q = qFindSignInSubjectByPhone
	default:
		return "", "", nil
	}
	if c.Value == "" {
		return "", "", nil
	}
	var auth, prov sql.NullString
	if err := t.queryRow(ctx, q, tenant, actorType, c.Value, passwordProvider).Scan(&auth, &prov); err != nil {
		return "", "", mapError("find sign-in subject", err)
	}
	if auth.Valid {
		return auth.String, "", nil
	}
	return "", prov.String, nil
}

// ProveContact implements otpd.IdentityTx, in one statement.
func (t *tx) ProveContact(ctx context.Context, tenant, actorType, id string, c otpd.Contact, now time.Time) (bool, error) {
	var q query
	switch c.Channel {
	case otpd.ChannelEmail:
		q = qProveEmail
	case otpd.ChannelSMS:
		q = qProvePhone
	default:
		return false, nil
	}
	res, err := t.exec(ctx, q, tenant, actorType, c.Value, id, sqlstore.MS(now))
	if isUniqueViolation(err) {
		return false, otpd.Errorf(otpd.ECONFLICT, "An account has already proved this contact.")
	} else if err != nil {
		return false, mapError("prove contact", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, mapError("prove contact", err)
	}
	return n == 1, nil
}

// LinkActor implements otpd.IdentityTx. It also sets the identity's
// UpdatedAt to now, as changing app_metadata does in Medusa.
func (t *tx) LinkActor(ctx context.Context, tenant, authIdentityID, actorType, actorID string, now time.Time) error {
	res, err := t.exec(ctx, qLinkActor, tenant, authIdentityID, actorType, actorID, sqlstore.MS(now))
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "The identity is already linked to a %s.", actorType)
	} else if err != nil {
		return mapError("link actor", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mapError("link actor", err)
	}
	if n == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "Auth identity not found.")
	}
	if _, err := t.exec(ctx, qTouchAuthIdentity, authIdentityID, sqlstore.MS(now)); err != nil {
		return mapError("link actor", err)
	}
	return nil
}

// SetProviderMetadata implements otpd.IdentityTx, in one statement.
func (t *tx) SetProviderMetadata(ctx context.Context, tenant, id string, metadata map[string]any, now time.Time) error {
	prov, err := sqlstore.EncodeJSON(metadata)
	if err != nil {
		return wrapf("set provider metadata", err)
	}
	res, err := t.exec(ctx, qSetProviderMetadata, tenant, id, string(prov), sqlstore.MS(now))
	if err != nil {
		return mapError("set provider metadata", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mapError("set provider metadata", err)
	}
	if n == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "Provider identity not found.")
	}
	return nil
}

// RevokeTokens implements otpd.IdentityTx, in one statement.
func (t *tx) RevokeTokens(ctx context.Context, tenant, authIdentityID string, at time.Time) error {
	res, err := t.exec(ctx, qRevokeTokens, tenant, authIdentityID, sqlstore.ZeroMS(at))
	if err != nil {
		return mapError("revoke tokens", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mapError("revoke tokens", err)
	}
	if n == 0 {
		return otpd.Errorf(otpd.ENOTFOUND, "Auth identity not found.")
	}
	return nil
}

// CreateActor implements otpd.IdentityTx. The partial unique indexes on
// (tenant, type, email) and (tenant, type, phone) among actors with an
// account turn a duplicate into ECONFLICT.
func (t *tx) CreateActor(ctx context.Context, a *otpd.Actor) error {
	meta, err := sqlstore.EncodeJSON(a.Metadata)
	if err != nil {
		return wrapf("create actor: metadata", err)
	}
	_, err = t.exec(ctx, qCreateActor,
		a.ID, a.Tenant, a.Type, a.Email, a.Phone, a.FirstName, a.LastName, a.CompanyName,
		string(meta), a.EmailVerified, a.PhoneVerified, a.HasAccount, sqlstore.MS(a.CreatedAt), sqlstore.MS(a.UpdatedAt))
	if isUniqueViolation(err) {
		return otpd.Errorf(otpd.ECONFLICT, "An account with this email or phone already exists.")
	}
	return mapError("create actor", err)
}

// FindActorByID implements otpd.IdentityTx.
func (t *tx) FindActorByID(ctx context.Context, tenant, actorType, id string) (*otpd.Actor, error) {
	a, err := sqlstore.ScanActor(t.queryRow(ctx, qFindActorByID, id, tenant, actorType))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Actor not found.")
	} else if err != nil {
		return nil, mapError("find actor", err)
	}
	return a, nil
}

// FindActorByContact implements otpd.IdentityTx. Among several matches it
// returns one with an account, then the oldest.
func (t *tx) FindActorByContact(ctx context.Context, tenant, actorType string, c otpd.Contact) (*otpd.Actor, error) {
	var q query
	switch c.Channel {
	case otpd.ChannelEmail:
		q = qFindActorByEmail
	case otpd.ChannelSMS:
		q = qFindActorByPhone
	default:
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Actor not found.")
	}
	if c.Value == "" {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Actor not found.")
	}
	a, err := sqlstore.ScanActor(t.queryRow(ctx, q, tenant, actorType, c.Value))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, otpd.Errorf(otpd.ENOTFOUND, "Actor not found.")
	} else if err != nil {
		return nil, mapError("find actor by contact", err)
	}
	return a, nil
}
