package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/otpd/otpd"
)

// newKeysCommand builds `otpd keys`: the server API's keys, made, listed and
// revoked by the operator. The commands read the configuration `serve`
// reads (the database), migrate it as `serve` would (migrate_on_start),
// and work whether or not a server is running.
//
// Output for scripts: `keys create` prints the secret alone on stdout's
// first line and the key's id on the second (a note for people goes to
// stderr); with --json, one JSON object with both. `keys list --json` is a
// JSON array; neither form ever shows a secret or a hash.
func newKeysCommand() *cobra.Command {
	var configPath string
	keys := &cobra.Command{
		Use:   "keys",
		Short: "Make, list and revoke the server API's keys",
		Args:  cobra.NoArgs,
	}
	keys.PersistentFlags().StringVar(&configPath, "config", "", "YAML configuration file (the one serve reads)")

	var (
		name, tenant string
		returnCodes  bool
		admin        bool
		createJSON   bool
	)
	create := &cobra.Command{
		Use:   "create --name NAME [--tenant T] [--return-codes] [--admin] [--json]",
		Short: "Make a key and print it, once",
		Long: `Make a key and print it. The key is shown only this once: otpd stores only its hash.

Output: the key alone on the first line of stdout, its id on the second (for
otpd keys revoke); with --json, one object {"id", "secret", "name", "tenant",
"permissions", "created_at"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return errors.New("--tenant: must not be empty (leave it out for the default tenant, public)")
			}
			perms := []otpd.Permission{otpd.PermissionVerify}
			if returnCodes {
				perms = append(perms, otpd.PermissionReturnCodes)
			}
			if admin {
				perms = append(perms, otpd.PermissionAdmin)
			}
			var (
				secret string
				key    *otpd.APIKey
			)
			err := withAPIKeys(cmd.Context(), configPath, func(k *otpd.APIKeys) (err error) {
				secret, key, err = k.Create(cmd.Context(), name, tenant, perms)
				return err
			})
			if err != nil {
				return flagError(err)
			}
			out := cmd.OutOrStdout()
			if createJSON {
				v := keyJSON(key)
				v.Secret = secret
				return writeJSON(out, v)
			}
			fmt.Fprintln(out, secret)
			fmt.Fprintln(out, key.ID)
			fmt.Fprintf(cmd.ErrOrStderr(), "Made API key %s (%q, tenant %s, permissions %s). The key above is shown only once: store it now.\n",
				key.ID, key.Name, key.Tenant, permissionList(key.Permissions))
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the key is for, 1-100 characters (required)")
	create.Flags().StringVar(&tenant, "tenant", otpd.DefaultTenant, "the tenant everything made with the key lives in")
	create.Flags().BoolVar(&returnCodes, "return-codes", false, `allow delivery "return": the API answers with the code and otpd sends nothing`)
	create.Flags().BoolVar(&admin, "admin", false, "allow the admin API (/v1/admin): find and delete identities, revoke sessions, list and cancel verifications of the key's tenant")
	create.Flags().BoolVar(&createJSON, "json", false, "print one JSON object")
	create.MarkFlagRequired("name")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List every key (never the key itself)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var all []*otpd.APIKey
			err := withAPIKeys(cmd.Context(), configPath, func(k *otpd.APIKeys) (err error) {
				all, err = k.List(cmd.Context())
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if listJSON {
				v := make([]apiKeyJSON, len(all))
				for i, key := range all {
					v[i] = keyJSON(key)
				}
				return writeJSON(out, v)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tTENANT\tPERMISSIONS\tCREATED\tLAST USED\tREVOKED")
			for _, key := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", key.ID, key.Name, key.Tenant, permissionList(key.Permissions),
					key.CreatedAt.UTC().Format(time.RFC3339), timeOrDash(key.LastUsedAt), timeOrDash(key.RevokedAt))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print a JSON array")

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key: running servers refuse it within a minute",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			err := withAPIKeys(cmd.Context(), configPath, func(k *otpd.APIKeys) error {
				return k.Revoke(cmd.Context(), id)
			})
			if otpd.ErrorCode(err) == otpd.ENOTFOUND {
				return fmt.Errorf("no API key %q (otpd keys list shows the ids)", id)
			} else if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", id)
			return nil
		},
	}
	keys.AddCommand(create, list, revoke)
	return keys
}

// withStore loads the configuration as serve does, opens its store
// (migrating it when migrate_on_start is set), runs fn and closes the
// store: what every command that works on the database directly does.
func withStore(ctx context.Context, configPath string, fn func(cfg Config, db otpd.Store) error) error {
	cfg, err := loadConfig(configPath, nil)
	if err != nil {
		return err
	}
	db, err := openStore(ctx, cfg.DatabaseURL, !cfg.MigrateOnStart)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	return errors.Join(fn(cfg, db), db.Close())
}

// withAPIKeys runs fn on APIKeys over the configured store.
func withAPIKeys(ctx context.Context, configPath string, fn func(*otpd.APIKeys) error) error {
	return withStore(ctx, configPath, func(_ Config, db otpd.Store) error {
		k := &otpd.APIKeys{Store: db}
		err := fn(k)
		k.Wait()
		return err
	})
}

// flagError words an invalid request as the flag at fault.
func flagError(err error) error {
	if e := otpd.AsError(err); e != nil && e.Code == otpd.EINVALID && e.Field != "" {
		return fmt.Errorf("--%s: %s", e.Field, e.Message)
	}
	if e := otpd.AsError(err); e != nil {
		return errors.New(e.Message)
	}
	return err
}

// apiKeyJSON is a key as the --json outputs show it.
type apiKeyJSON struct {
	ID          string     `json:"id"`
	Secret      string     `json:"secret,omitempty"` // keys create only
	Name        string     `json:"name"`
	Tenant      string     `json:"tenant"`
	Permissions []string   `json:"permissions"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
}

func keyJSON(k *otpd.APIKey) apiKeyJSON {
	perms := make([]string, len(k.Permissions))
	for i, p := range k.Permissions {
		perms[i] = string(p)
	}
	return apiKeyJSON{
		ID: k.ID, Name: k.Name, Tenant: k.Tenant, Permissions: perms,
		CreatedAt: k.CreatedAt.UTC(), LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt,
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func permissionList(ps []otpd.Permission) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = string(p)
	}
	return strings.Join(names, ",")
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
