package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/otpd/otpd"
)

// Token signing: which dialects sign their session tokens with otpd's
// signing keys (asymmetric, published as a JWKS) rather than the HS256
// jwt.secret.
const (
	signingKeys   = "keys"   // otpd's signing keys (EdDSA or RS256)
	signingSecret = "secret" // HS256 under jwt.secret
)

// SigningKeysConfig configures otpd's asymmetric signing keys.
type SigningKeysConfig struct {
	// Algorithm is the algorithm of the keys otpd makes: the first, made
	// at start, and those of otpd signing-keys rotate (EdDSA or RS256).
	Algorithm string `yaml:"algorithm"`
	// ReloadEvery is how often a server rereads the key list, to sign with
	// a key rotated by another instance or the CLI (a token of an unknown
	// kid makes it reread at once, at most every 10 seconds).
	ReloadEvery Duration `yaml:"reload_every"`
}

// keyRetentionMargin is added to the longest token life to make how long
// a retired key stays published: clock skew between otpd and verifiers,
// and the Medusa dialect's leeway.
const keyRetentionMargin = 10 * time.Minute

// defaultActivateIn is how long after a rotation the new key starts
// signing: twice the JWKS's max-age, so that verifiers caching the JWKS
// fetched it before they see a token of the new key.
const defaultActivateIn = 10 * time.Minute

var signingKeysEnv = []envVar{
	{"OTPD_SIGNING_KEY_ALGORITHM", envString(func(c *Config) *string { return &c.SigningKeys.Algorithm })},
	{"OTPD_SIGNING_KEYS_RELOAD_EVERY", envDuration(func(c *Config) *Duration { return &c.SigningKeys.ReloadEvery })},
	{"OTPD_SUPERTOKENS_TOKEN_SIGNING", envString(func(c *Config) *string { return &c.SuperTokens.TokenSigning })},
	{"OTPD_MEDUSA_TOKEN_SIGNING", envString(func(c *Config) *string { return &c.Medusa.TokenSigning })},
}

// validateSigningKeys checks the signing settings, naming the key at fault.
func (c *Config) validateSigningKeys() error {
	if !slices.Contains(otpd.SigningAlgs, c.SigningKeys.Algorithm) {
		return fmt.Errorf("config signing_keys.algorithm: %q must be EdDSA or RS256", c.SigningKeys.Algorithm)
	}
	if d := time.Duration(c.SigningKeys.ReloadEvery); d < time.Second || d > time.Hour {
		return errors.New("config signing_keys.reload_every: must be between 1s and 1h")
	}
	for _, kv := range [][2]string{{"supertokens.token_signing", c.SuperTokens.TokenSigning}, {"medusa.token_signing", c.Medusa.TokenSigning}} {
		if key, v := kv[0], kv[1]; v != signingKeys && v != signingSecret {
			return fmt.Errorf("config %s: %q must be keys (otpd's signing keys, published as a JWKS) or secret (HS256 under jwt.secret)", key, v)
		}
	}
	return nil
}

// usesSigningKeys reports whether a dialect signs with the signing keys.
func (c *Config) usesSigningKeys() bool {
	return (c.SuperTokens.Enabled && c.SuperTokens.TokenSigning == signingKeys) || c.Medusa.TokenSigning == signingKeys
}

// keyRetention is how long a retired key stays published: the longest life
// of a token the keys sign, plus a margin. With no dialect configured to
// use the keys it covers both, so a list or rotation from the CLI never
// underestimates it.
func (c *Config) keyRetention() time.Duration {
	var longest time.Duration
	if c.SuperTokens.TokenSigning == signingKeys || !c.usesSigningKeys() {
		longest = time.Duration(c.SuperTokens.AccessTokenTTL)
	}
	if c.Medusa.TokenSigning == signingKeys || !c.usesSigningKeys() {
		longest = max(longest, time.Duration(c.JWT.ExpiresIn))
	}
	return longest + keyRetentionMargin
}

// signingKeySet returns the key set over db and keys as configured.
func (c *Config) signingKeySet(db otpd.Store, keys *otpd.Keyring) *otpd.SigningKeys {
	return &otpd.SigningKeys{Store: db, Keys: keys, Alg: c.SigningKeys.Algorithm, Retention: c.keyRetention(), ReloadEvery: time.Duration(c.SigningKeys.ReloadEvery)}
}

// newSigningKeysCommand builds `otpd signing-keys`: the keys that sign
// session tokens, listed and rotated by the operator. Like `otpd keys`, it
// reads the configuration serve reads and works whether or not a server
// is running; running servers learn of a rotation within a minute (and at
// once when they meet a token of the new key).
func newSigningKeysCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "signing-keys",
		Short: "List and rotate the keys that sign session tokens (published as a JWKS)",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&configPath, "config", "", "YAML configuration file (the one serve reads)")

	var (
		alg        string
		activateIn time.Duration
		rotateJSON bool
	)
	rotate := &cobra.Command{
		Use:   "rotate [--alg EdDSA|RS256] [--activate-in 10m] [--json]",
		Short: "Make a new signing key; the old ones stay published until their tokens expired",
		Long: `Make a new signing key. It is published in the JWKS at once and signs new
tokens from --activate-in on (default 10m: twice the JWKS cache life, so
that verifiers caching the JWKS know the key before they see a token of it;
0s after a leak). Older keys stay published until every token they signed
has expired (the longest access-token life, plus 10 minutes).

Output: the new key's id (its kid) on stdout; with --json, one object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var k *otpd.SigningKey
			err := withSigningKeys(cmd.Context(), configPath, func(ks *otpd.SigningKeys) (err error) {
				if alg == "" {
					alg = ks.Alg
				}
				k, err = ks.Rotate(cmd.Context(), alg, activateIn)
				return err
			})
			if err != nil {
				return flagError(err)
			}
			if rotateJSON {
				return writeJSON(cmd.OutOrStdout(), signingKeyJSON{ID: k.ID, Alg: k.Alg, CreatedAt: k.CreatedAt.UTC(), ActiveAt: k.ActiveAt.UTC(), State: "next"})
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.ID)
			fmt.Fprintf(cmd.ErrOrStderr(), "Made signing key %s (%s): published now, signs from %s.\n", k.ID, k.Alg, k.ActiveAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	rotate.Flags().StringVar(&alg, "alg", "", "EdDSA or RS256 (default: signing_keys.algorithm)")
	rotate.Flags().DurationVar(&activateIn, "activate-in", defaultActivateIn, "when the new key starts signing")
	rotate.Flags().BoolVar(&rotateJSON, "json", false, "print one JSON object")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the signing keys with their state (never a private key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var all []otpd.KeyStatus
			err := withSigningKeys(cmd.Context(), configPath, func(ks *otpd.SigningKeys) (err error) {
				all, err = ks.List(cmd.Context())
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if listJSON {
				v := make([]signingKeyJSON, len(all))
				for i, k := range all {
					v[i] = signingKeyJSON{ID: k.ID, Alg: k.Alg, State: string(k.State), CreatedAt: k.CreatedAt.UTC(), ActiveAt: k.ActiveAt.UTC()}
					if !k.RetiredAt.IsZero() {
						r, p := k.RetiredAt.UTC(), k.PublishedUntil.UTC()
						v[i].RetiredAt, v[i].PublishedUntil = &r, &p
					}
				}
				return writeJSON(out, v)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tSIGNS FROM\tRETIRED\tPUBLISHED UNTIL")
			for _, k := range all {
				retired, until := "-", "-"
				if !k.RetiredAt.IsZero() {
					retired, until = k.RetiredAt.UTC().Format(time.RFC3339), k.PublishedUntil.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Alg, k.State,
					k.CreatedAt.UTC().Format(time.RFC3339), k.ActiveAt.UTC().Format(time.RFC3339), retired, until)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print a JSON array")
	cmd.AddCommand(rotate, list)
	return cmd
}

// signingKeyJSON is a key as the --json outputs show it.
type signingKeyJSON struct {
	ID             string     `json:"kid"`
	Alg            string     `json:"alg"`
	State          string     `json:"state"`
	CreatedAt      time.Time  `json:"created_at"`
	ActiveAt       time.Time  `json:"active_at"`
	RetiredAt      *time.Time `json:"retired_at"`
	PublishedUntil *time.Time `json:"published_until"`
}

// withSigningKeys runs fn on the key set over the configured store. The
// server secrets are required: they seal the private keys.
func withSigningKeys(ctx context.Context, configPath string, fn func(*otpd.SigningKeys) error) error {
	return withStore(ctx, configPath, func(cfg Config, db otpd.Store) error {
		if len(cfg.Secrets) == 0 {
			return errors.New("config secrets (OTPD_SECRETS): required: the signing keys' private parts are sealed under them (use the servers' secrets)")
		}
		secrets := make([][]byte, len(cfg.Secrets))
		for i, s := range cfg.Secrets {
			secrets[i] = []byte(s)
		}
		keys, err := otpd.NewKeyring(secrets)
		if err != nil {
			return err
		}
		return fn(cfg.signingKeySet(db, keys))
	})
}
