package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/otpd/otpd"
)

// newAdminCommand builds `otpd admin`: the admin API's actions for an
// operator on the host, on the configured database directly (as `otpd
// keys` does), whether or not a server runs. Every command prints JSON
// lines: one JSON object per line, one per identity, session or
// verification for the lists (which walk every page), one for an action's
// result. Errors go to stderr with a non-zero exit.
func newAdminCommand() *cobra.Command {
	var configPath, tenant string
	admin := &cobra.Command{
		Use:   "admin",
		Short: "Find and delete identities, revoke sessions, list and cancel verifications",
		Args:  cobra.NoArgs,
	}
	admin.PersistentFlags().StringVar(&configPath, "config", "", "YAML configuration file (the one serve reads)")
	admin.PersistentFlags().StringVar(&tenant, "tenant", otpd.DefaultTenant, "the tenant to act in")
	run := func(cmd *cobra.Command, fn func(ctx context.Context, a *otpd.Admin, sc otpd.AdminScope, out *json.Encoder) error) error {
		if tenant == "" || !otpd.ValidTenant(tenant) {
			return errors.New("--tenant: a tenant is 1 to 64 letters, digits, '-' or '_'")
		}
		err := withAdmin(cmd.Context(), configPath, func(a *otpd.Admin) error {
			return fn(cmd.Context(), a, otpd.AdminScope{Tenant: tenant, By: "cli"}, json.NewEncoder(cmd.OutOrStdout()))
		})
		return flagError(err)
	}

	identities := &cobra.Command{Use: "identities", Short: "Find and delete auth identities", Args: cobra.NoArgs}
	var address, id string
	find := &cobra.Command{
		Use:   "find (--address ADDRESS | --id ID)",
		Short: "Print the identities of an email address or phone number, or of an id (never a password hash)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, func(ctx context.Context, a *otpd.Admin, sc otpd.AdminScope, out *json.Encoder) error {
				ids, err := a.FindIdentities(ctx, sc, otpd.IdentityQuery{Address: address, ID: id})
				if err != nil {
					return err
				}
				for _, v := range ids {
					if err := out.Encode(v); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	find.Flags().StringVar(&address, "address", "", "an email address or a phone number, normalized as sign-in does")
	find.Flags().StringVar(&id, "id", "", "an auth identity id (authid_...)")
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an identity with its codes, sessions, refresh tokens, provider identities and actor links",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, func(ctx context.Context, a *otpd.Admin, sc otpd.AdminScope, out *json.Encoder) error {
				d, err := a.DeleteIdentity(ctx, sc, args[0])
				if err != nil {
					return err
				}
				return out.Encode(map[string]any{"id": args[0], "deleted": d})
			})
		},
	}
	identities.AddCommand(find, del)

	sessions := &cobra.Command{Use: "sessions", Short: "List and revoke an identity's sessions", Args: cobra.NoArgs}
	listSessions := &cobra.Command{
		Use:   "list IDENTITY_ID",
		Short: "Print the identity's rotating sessions, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, func(ctx context.Context, a *otpd.Admin, sc otpd.AdminScope, out *json.Encoder) error {
				cursor := ""
				for {
					p, err := a.Sessions(ctx, sc, args[0], cursor, otpd.MaxAdminPageSize)
					if err != nil {
						return err
					}
					for _, s := range p.Sessions {
						if err := out.Encode(s); err != nil {
							return err
						}
					}
					if cursor = p.Next; cursor == "" {
						return nil
					}
				}
			})
		},
	}
	var handle string
	var all bool
	revoke := &cobra.Command{
		Use:   "revoke IDENTITY_ID (--session HANDLE | --all)",
		Short: "End one session, or every session and token of the identity, on every instance",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (handle == "") == !all {
				return errors.New("--session or --all: give one of the two")
			}
			return run(cmd, func(ctx context.Context, a *otpd.Admin, sc otpd.AdminScope, out *json.Encoder) error {
				if all {
					r, err := a.RevokeSessions(ctx, sc, args[0])
					if err != nil {
						return err
					}
					return out.Encode(map[string]any{"id": args[0], "revoked_refresh_tokens": r.RefreshTokens, "tokens_valid_after": r.TokensValidAfter})
				}
				s, n, err := a.RevokeSession(ctx, sc, args[0], handle)
				if err != nil {
					return err
				}
				return out.Encode(map[string]any{"session": s, "revoked_refresh_tokens": n})
			})
		},
	}
	revoke.Flags().StringVar(&handle, "session", "", "the session's handle (sess_..., from sessions list)")
	revoke.Flags().BoolVar(&all, "all", false, "every session, and every stateless token issued until now")
	sessions.AddCommand(listSessions, revoke)

	verifications := &cobra.Command{Use: "verifications", Short: "List and cancel live verifications of the server API", Args: cobra.NoArgs}
	var filter otpd.VerificationFilter
	var purpose string
	listVer := &cobra.Command{
		Use:   "list [--subject S] [--to ADDRESS] [--purpose P]",
		Short: "Print the pending verifications, newest first (never a code)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			filter.Purpose = otpd.Purpose(purpose)
			return run(cmd, func(ctx context.Context, a *otpd.Admin, sc otpd.AdminScope, out *json.Encoder) error {
				f := filter
				f.Limit = otpd.MaxAdminPageSize
				for {
					p, err := a.ListVerifications(ctx, sc, f)
					if err != nil {
						return err
					}
					for _, v := range p.Verifications {
						if err := out.Encode(v); err != nil {
							return err
						}
					}
					if f.Cursor = p.Next; f.Cursor == "" {
						return nil
					}
				}
			})
		},
	}
	listVer.Flags().StringVar(&filter.Subject, "subject", "", "only the verifications made with this subject")
	listVer.Flags().StringVar(&filter.To, "to", "", "only those to this address")
	listVer.Flags().StringVar(&purpose, "purpose", "", "only those of this purpose")
	var subject string
	cancel := &cobra.Command{
		Use:   "cancel (ID | --subject S)",
		Short: "Cancel one verification, or every pending one of a subject",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (subject != "") {
				return errors.New("give a verification id or --subject, one of the two")
			}
			return run(cmd, func(ctx context.Context, a *otpd.Admin, sc otpd.AdminScope, out *json.Encoder) error {
				if subject != "" {
					n, err := a.CancelSubject(ctx, sc, subject)
					if err != nil {
						return err
					}
					return out.Encode(map[string]any{"subject": subject, "canceled": n})
				}
				v, err := a.CancelVerification(ctx, sc, args[0])
				if err != nil {
					return err
				}
				return out.Encode(v)
			})
		},
	}
	cancel.Flags().StringVar(&subject, "subject", "", "cancel every pending verification of this subject")
	verifications.AddCommand(listVer, cancel)

	var aq otpd.AuditQuery
	var events []string
	var outcome, since, until string
	var max int
	audit := &cobra.Command{
		Use:   "audit [--identity ID] [--address A] [--event E]... [--outcome success|failure] [--since T] [--until T]",
		Short: "Print the tenant's audit records, newest first (never a code, password, token or key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := aq
			q.Outcome = otpd.AuditOutcome(outcome)
			for _, e := range events {
				q.Events = append(q.Events, otpd.AuditEvent(e))
			}
			for _, t := range []struct {
				flag, v string
				to      *time.Time
			}{{"since", since, &q.Since}, {"until", until, &q.Until}} {
				if t.v == "" {
					continue
				}
				var err error
				if *t.to, err = time.Parse(time.RFC3339Nano, t.v); err != nil {
					return fmt.Errorf("--%s: a time in RFC 3339 form (2026-12-04T10:00:00Z)", t.flag)
				}
			}
			if max < 0 {
				return errors.New("--limit: 0 (every record) or more")
			}
			return run(cmd, func(ctx context.Context, a *otpd.Admin, sc otpd.AdminScope, out *json.Encoder) error {
				printed := 0
				for {
					q.Limit = otpd.MaxAuditPage
					if max > 0 {
						q.Limit = min(otpd.MaxAuditPage, max-printed)
					}
					records, next, err := a.AuditRecords(ctx, sc, q)
					if err != nil {
						return err
					}
					for _, r := range records {
						if err := out.Encode(r); err != nil {
							return err
						}
					}
					printed += len(records)
					if q.Cursor = next; next == "" || (max > 0 && printed >= max) {
						return nil
					}
				}
			})
		},
	}
	audit.Flags().StringVar(&aq.IdentityID, "identity", "", "only the records of this auth identity")
	audit.Flags().StringVar(&aq.Address, "address", "", "only the records of this email address or phone number")
	audit.Flags().StringSliceVar(&events, "event", nil, "only these events (repeat, or comma-separated)")
	audit.Flags().StringVar(&outcome, "outcome", "", "success or failure")
	audit.Flags().StringVar(&since, "since", "", "records at or after this time (RFC 3339)")
	audit.Flags().StringVar(&until, "until", "", "records before this time (RFC 3339)")
	audit.Flags().IntVar(&max, "limit", 100, "at most this many records; 0 for all")

	admin.AddCommand(identities, sessions, verifications, audit)
	return admin
}

// withAdmin runs fn on the admin flow over the configured store.
func withAdmin(ctx context.Context, configPath string, fn func(*otpd.Admin) error) error {
	return withStore(ctx, configPath, func(cfg Config, db otpd.Store) error {
		engine := &otpd.Engine{Store: db, Limits: otpd.SendLimits{Cooldown: time.Duration(cfg.Limits.ResendCooldown)}}
		// The audit log records the CLI's actions too ("by": "cli"); its
		// webhooks are the server's to send, so none are queued here.
		engine.Audit = cfg.newAudit(db, nil, nil, nil, os.Stderr)
		v := &otpd.Verifications{Engine: engine, Normalizer: otpd.Normalizer{DefaultRegion: cfg.Phone.DefaultRegion}}
		return fn(newAdmin(db, v))
	})
}
