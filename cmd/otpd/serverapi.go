package main

import (
	"context"
	"log/slog"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi/serverapi"
)

// serverAPI builds the server API (/v1) on f's Verifications, with the API
// keys of m's database; a verification that names no locale gets
// defaultLocale.
func (m *Main) serverAPI(f *flows, log *slog.Logger, defaultLocale string) *serverapi.Handler {
	m.apiKeys = &otpd.APIKeys{Store: m.DB, Now: f.verifications.Engine.Now, Logger: log, Audit: f.verifications.Engine.Audit}
	keys := m.apiKeys
	return &serverapi.Handler{
		Verifications: f.verifications,
		Admin:         newAdmin(m.DB, f.verifications),
		Logger:        log,
		DefaultLocale: defaultLocale,
		Authenticate: func(ctx context.Context, secret string) (serverapi.Caller, error) {
			k, err := keys.Authenticate(ctx, secret)
			if err != nil {
				return serverapi.Caller{}, err
			}
			return serverapi.Caller{KeyID: k.ID, Tenant: k.Tenant, ReturnCodes: k.Can(otpd.PermissionReturnCodes), Admin: k.Can(otpd.PermissionAdmin)}, nil
		},
	}
}

// newAdmin builds the admin flow on db and the server API's verifications;
// the audit log of their engine records every admin action (revoke,
// delete, cancel) in its transaction.
func newAdmin(db otpd.Store, v *otpd.Verifications) *otpd.Admin {
	return &otpd.Admin{Store: db, Now: v.Engine.Now, Normalizer: v.Normalizer, Verifications: v, Audit: v.Engine.Audit.AdminHook(), Log: v.Engine.Audit}
}
