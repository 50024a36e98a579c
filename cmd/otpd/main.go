// Command otpd is the otpd authentication server.
//
//	otpd serve [--addr 127.0.0.1:8080] [--config otpd.yaml] [--dev]
//	otpd migrate [--config otpd.yaml]
//	otpd keys create --name NAME [--tenant T] [--return-codes] [--json]
//	otpd keys list [--json]
//	otpd keys revoke ID
//	otpd signing-keys rotate [--alg EdDSA|RS256] [--activate-in 10m] [--json]
//	otpd signing-keys list [--json]
//	otpd admin identities find (--address A | --id ID) | delete ID
//	otpd admin sessions list ID | revoke ID (--session H | --all)
//	otpd admin verifications list [--subject S --to A --purpose P] | cancel (ID | --subject S)
//	otpd version
//
// This is the only place where otpd's packages are wired together.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/devoutbox"
	"github.com/otpd/otpd/httpapi"
	"github.com/otpd/otpd/httpapi/supertokens"
	"github.com/otpd/otpd/memlimit"
	"github.com/otpd/otpd/metrics"
	"github.com/otpd/otpd/outbox"
	"github.com/otpd/otpd/password"
	"github.com/otpd/otpd/postgres"
	"github.com/otpd/otpd/redis"
	"github.com/otpd/otpd/sqlite"
	"github.com/otpd/otpd/webhook"
)

func main() {
	if err := newRootCommand(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "otpd:", err)
		os.Exit(1)
	}
}

// newRootCommand builds the CLI.
func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "otpd",
		Short:         "otpd: self-hosted one-time-code authentication server",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)

	var configPath, addr string
	var dev, profile bool
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(configPath, func(c *Config) {
				if cmd.Flags().Changed("addr") {
					c.Addr = addr
				}
				if cmd.Flags().Changed("dev") {
					c.Dev = dev
				}
			})
			if err != nil {
				return err
			}
			if err := cfg.ValidateServe(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m := &Main{Config: cfg, Stderr: stderr, Profile: profile}
			if err := m.Open(ctx); err != nil {
				m.Close()
				return err
			}
			<-ctx.Done()
			return m.Close()
		},
	}
	serve.Flags().StringVar(&addr, "addr", "", "listen address (default 127.0.0.1:8080; env OTPD_ADDR)")
	serve.Flags().StringVar(&configPath, "config", "", "YAML configuration file")
	serve.Flags().BoolVar(&dev, "dev", false, "dev mode: in-memory outbox at /dev/outbox, generated secrets, loopback only (env OTPD_DEV)")
	serve.Flags().BoolVar(&profile, "pprof", false, "serve Go profiles at /debug/pprof/ (loopback addresses only)")

	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(configPath, nil)
			if err != nil {
				return err
			}
			db, err := openStore(cmd.Context(), cfg.DatabaseURL, true)
			if err != nil {
				return err
			}
			defer db.Close()
			n, err := db.Migrate(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %d migration(s) to %s\n", n, redactURL(cfg.DatabaseURL))
			return nil
		},
	}
	migrate.Flags().StringVar(&configPath, "config", "", "YAML configuration file")

	version := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "otpd %s %s\n", otpd.Version, otpd.Commit)
		},
	}
	root.AddCommand(serve, migrate, newKeysCommand(), newSigningKeysCommand(), newAdminCommand(), newTemplatesCommand(), version)
	return root
}

// loadConfig builds the configuration: defaults, file, environment, then
// flags (via override), and validates it.
func loadConfig(path string, override func(*Config)) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := cfg.ReadConfigFile(path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
		return cfg, err
	}
	if override != nil {
		override(&cfg)
	}
	return cfg, cfg.Validate()
}

// Main is a running server. Open starts it; Close stops it gracefully.
type Main struct {
	Config  Config
	Stderr  io.Writer
	Profile bool // serve /debug/pprof/

	Logger     *slog.Logger
	DB         store
	Limiter    limiter
	Addr       net.Addr // the address actually listened on
	httpServer *http.Server
	janitorJob *otpd.Janitor
	apiKeys    *otpd.APIKeys
	notifiers  []outbox.Notifier // closed (SMTP connections) once the dispatcher stopped
	cancel     context.CancelFunc
	done       chan struct{}
}

// flows are otpd's flows, built on one engine, store, clock and limiter.
// Each dialect takes the ones it needs.
type flows struct {
	codes     *otpd.Codes
	actors    *otpd.Actors
	passwords *otpd.Passwords
	sessions  *otpd.Sessions
	devices   *otpd.Devices

	verifications *otpd.Verifications
}

// newFlows builds the flows on engine from a validated configuration.
func newFlows(cfg Config, engine *otpd.Engine, lim otpd.Limiter, met *metrics.Metrics, log *slog.Logger) *flows {
	throttler := &otpd.Throttler{Limiter: lim, Throttles: cfg.Throttles(), Keys: engine.Keys, Audit: engine.Audit}
	if met != nil {
		throttler.Metrics = met
		throttler.Limiter = met.Limiter(lim)
	}
	normalizer := otpd.Normalizer{DefaultRegion: cfg.Phone.DefaultRegion}
	actors := &otpd.Actors{Store: engine.Store, Now: engine.Now, Normalizer: normalizer, AuthMethods: cfg.AuthMethodsPerActor}
	for _, t := range cfg.ActorTypes {
		actors.Types = append(actors.Types, otpd.ActorType{Name: t.Name, IDPrefix: t.IDPrefix})
	}
	codes := &otpd.Codes{Engine: engine, Actors: actors, Throttler: throttler, KeepUnprovenPasswords: cfg.Medusa.KeepUnprovenPasswords}
	sessions := &otpd.Sessions{
		Store: engine.Store, Keys: engine.Keys, Now: engine.Now, Logger: log, Audit: engine.Audit,
		RevokeOnLogout: cfg.Sessions.RevokeOnLogout,
		RefreshTTL:     time.Duration(cfg.SuperTokens.RefreshTokenTTL),
		RefreshGrace:   time.Duration(cfg.SuperTokens.RefreshGrace),
	}
	if met != nil {
		sessions.Metrics = met
	}
	return &flows{
		codes:  codes,
		actors: actors,
		passwords: &otpd.Passwords{
			Codes: codes,
			// One scrypt hash is ~80 ms of a core and 32 MiB: two at a
			// time, so a burst of password logins cannot starve the code
			// flows.
			Hasher:        password.NewHasher(2),
			ResetTokenTTL: time.Duration(cfg.Sessions.ResetTokenTTL),
		},
		sessions: sessions,
		devices:  &otpd.Devices{Engine: engine, Throttler: throttler, Sessions: sessions, Normalizer: normalizer},

		verifications: &otpd.Verifications{Engine: engine, Throttler: throttler, Normalizer: normalizer},
	}
}

// Open wires otpd together and starts serving.
func (m *Main) Open(ctx context.Context) error {
	cfg := m.Config
	if m.Stderr == nil {
		m.Stderr = os.Stderr
	}
	m.Logger = newLogger(m.Stderr, cfg.Log.Level, cfg.Log.Format)
	log := m.Logger

	secrets := make([][]byte, 0, len(cfg.Secrets))
	for _, s := range cfg.Secrets {
		secrets = append(secrets, []byte(s))
	}
	if len(secrets) == 0 {
		secrets = append(secrets, randomSecret())
		log.Warn("dev mode: no server secret configured; using a random one. Codes and queued messages do not survive a restart. Set OTPD_SECRETS outside dev mode.")
	}
	jwtSecret := []byte(cfg.JWT.Secret)
	if len(jwtSecret) == 0 {
		jwtSecret = randomSecret()
		log.Warn("dev mode: no JWT secret configured; using a random one. Tokens do not survive a restart, and no other service can verify them. Set OTPD_JWT_SECRET.")
	}
	keys, err := otpd.NewKeyring(secrets)
	if err != nil {
		return err
	}

	m.DB, err = openStore(ctx, cfg.DatabaseURL, !cfg.MigrateOnStart)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}

	var met *metrics.Metrics
	if cfg.Metrics {
		met = metrics.New()
	}

	// Notifiers: the dev outbox is in-process and immediate; webhooks are
	// durable, through the outbox table and the dispatcher.
	var devOutbox *devoutbox.Outbox
	// The flows' store: with metrics on, each transaction is timed.
	var db otpd.Store = m.DB
	if met != nil {
		db = met.Store(m.DB)
	}
	engine := &otpd.Engine{
		Store:    db,
		Keys:     keys,
		Policies: cfg.Policies(),
		Limits: otpd.SendLimits{
			Cooldown: time.Duration(cfg.Limits.ResendCooldown),
			Budget:   cfg.Limits.SendBudget,
			Window:   time.Duration(cfg.Limits.SendWindow),
		},
		Logger: log,
	}
	if met != nil {
		engine.Metrics = met
	}
	if cfg.Dev {
		devOutbox = devoutbox.New(10000)
		engine.Immediate = append(engine.Immediate, devOutbox)
	}
	// Messages: templates per purpose and locale render what mail and SMS
	// carry, and the subject and text every event stores.
	tpl, err := cfg.loadTemplates()
	if err != nil {
		return fmt.Errorf("config templates: %w", err)
	}
	engine.Render = tpl.RenderText
	notifiers, err := cfg.senders(tpl)
	if err != nil {
		return err
	}
	senders := len(notifiers)
	m.notifiers = notifiers
	for i, u := range cfg.Webhooks.URLs {
		n, err := webhook.New(fmt.Sprintf("webhook-%d", i+1), u, cfg.Webhooks.Secret, webhook.WithTimeout(time.Duration(cfg.Webhooks.Timeout)),
			webhook.WithAuditEvents(cfg.Audit.WebhookEvents))
		if err != nil {
			return fmt.Errorf("config webhooks.urls[%d]: %w", i, err)
		}
		notifiers = append(notifiers, n)
	}
	dispatcher := &outbox.Dispatcher{
		Store:       db,
		Keys:        keys,
		Notifiers:   notifiers,
		Now:         engine.Now,
		Logger:      log,
		MaxAttempts: cfg.Webhooks.MaxAttempts,
		Timeout:     time.Duration(cfg.Webhooks.Timeout),
		Routes:      cfg.routes(),
	}
	if met != nil {
		dispatcher.Metrics = met
	}
	if devOutbox != nil {
		dispatcher.OnStatus = devOutbox.Status
	}
	if len(notifiers) > 0 {
		engine.Outbox = dispatcher
	}
	// The audit log: every flow records through the engine's.
	engine.Audit = cfg.newAudit(m.DB, engine.Now, engine.Outbox, log, m.Stderr)

	redis.SetLogger(log)
	m.Limiter, err = openLimiter(cfg)
	if err != nil {
		return fmt.Errorf("open redis: %w", err)
	}
	if scheme, _ := parseDatabaseURL(cfg.DatabaseURL); cfg.RedisURL == "" && !cfg.Dev && scheme == "postgres" {
		log.Warn("no redis_url: per-address, per-destination and global limits are kept in this process only; with several instances each allows the full amount")
	}
	f := newFlows(cfg, engine, m.Limiter, met, log)
	m.janitorJob = &otpd.Janitor{Store: m.DB, Now: engine.Now, Limits: engine.Limits, Logger: log, Audit: engine.Audit}
	trusted, err := httpapi.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return fmt.Errorf("config trusted_proxies: %w", err)
	}

	// Signing keys, when a dialect signs with them: the first key is made
	// here on a fresh database (one instance wins), and the JWKS served.
	var signing *otpd.SigningKeys
	if cfg.usesSigningKeys() {
		signing = cfg.signingKeySet(m.DB, keys)
		signing.Now, signing.Logger = engine.Now, log
		if err := signing.Init(ctx); err != nil {
			return fmt.Errorf("signing keys: %w", err)
		}
	}
	md, err := cfg.medusaHandler(f, jwtSecret, signing)
	if err != nil {
		return err
	}
	md.Logger = log
	opts := httpapi.Options{
		Logger:         log,
		TrustedProxies: trusted,
		Ready: func(ctx context.Context) error {
			return errors.Join(m.DB.Ping(ctx), m.Limiter.Ping(ctx))
		},
		Dialects:    []httpapi.Dialect{md, m.serverAPI(f, log, tpl.Locales()[0])},
		CORS:        cfg.medusaCORS(),
		MatchLocale: tpl.Match,
	}
	if cfg.SuperTokens.Enabled {
		st, err := cfg.superTokensHandler(f, jwtSecret, signing)
		if err != nil {
			return err
		}
		st.Logger = log
		opts.Dialects = append(opts.Dialects, st)
		opts.CORS = append(opts.CORS, httpapi.CORSRule{
			PathPrefix: cfg.SuperTokens.APIBasePath, Origins: cfg.SuperTokens.CORS, ExposeHeaders: supertokens.ExposedHeaders,
		})
	}
	if devOutbox != nil {
		opts.DevOutbox = devOutbox.Handler()
	}
	if met != nil {
		opts.Metrics = met.Handler()
	}
	if signing != nil {
		opts.JWKS = httpapi.JWKS(signing)
	}
	handler := httpapi.NewHandler(opts)
	if m.Profile {
		handler = withProfiling(handler)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	if m.Profile && !isLoopback(ln.Addr().(*net.TCPAddr).IP.String()) {
		ln.Close()
		return errors.New("--pprof: only on a loopback address")
	}
	m.Addr = ln.Addr()
	m.httpServer = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		if err := dispatcher.Run(bg); err != nil {
			log.Error("outbox dispatcher stopped: mail, SMS and webhooks are not delivered", "err", err)
		}
	}()
	go m.janitor(bg)
	go func() {
		if err := m.httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()

	log.Info("otpd listening", "addr", m.Addr.String(), "version", otpd.Version, "dev", cfg.Dev, "database", redactURL(cfg.DatabaseURL), "redis", redactURL(cfg.RedisURL), "senders", senders, "webhooks", len(notifiers)-senders, "locales", tpl.Locales())
	if cfg.Dev {
		log.Info("dev mode: codes are kept in memory, read them at http://" + m.Addr.String() + "/dev/outbox")
	}
	return nil
}

// limiter is what otpd needs of the coarse limits' backend.
type limiter interface {
	otpd.Limiter
	Close() error
}

// openLimiter opens the backend of the coarse limits: Redis when configured,
// shared by every instance, else this process's memory. This is the one
// place where it is chosen.
func openLimiter(cfg Config) (limiter, error) {
	if cfg.RedisURL == "" {
		return memlimit.New(), nil
	}
	l, err := redis.Open(cfg.RedisURL, redis.Options{Prefix: cfg.RedisPrefix})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// store is what otpd needs of a backend: the otpd.Store and its migrations.
type store interface {
	otpd.Store
	Migrate(ctx context.Context) (applied int, err error)
}

// openStore opens the backend named by the URL's scheme. This is the one
// place where the backend is chosen.
func openStore(ctx context.Context, dbURL string, noMigrate bool) (store, error) {
	scheme, err := parseDatabaseURL(dbURL)
	if err != nil {
		return nil, err
	}
	// Each branch returns a nil interface on error, never a typed nil.
	switch scheme {
	case "postgres":
		db, err := postgres.Open(ctx, dbURL, postgres.Options{NoMigrate: noMigrate})
		if err != nil {
			return nil, err
		}
		return db, nil
	default:
		db, err := sqlite.Open(ctx, strings.TrimPrefix(dbURL, "sqlite://"), sqlite.Options{NoMigrate: noMigrate})
		if err != nil {
			return nil, err
		}
		return db, nil
	}
}

// Close stops accepting requests, lets those in flight finish, stops the
// background work and closes the database. Queued messages stay queued.
func (m *Main) Close() error {
	var errs []error
	if m.httpServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.Config.ShutdownTimeout))
		errs = append(errs, m.httpServer.Shutdown(ctx))
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
	if m.apiKeys != nil {
		m.apiKeys.Wait() // last-use writes in flight
	}
	for _, n := range m.notifiers {
		if c, ok := n.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	if m.DB != nil {
		errs = append(errs, m.DB.Close())
	}
	if m.Limiter != nil {
		errs = append(errs, m.Limiter.Close())
	}
	return errors.Join(errs...)
}

// janitor runs the Janitor's sweep every minute until ctx is done.
func (m *Main) janitor(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Its own deadline: a large delete may take longer than a request's
		// transaction may (postgres.Options.TxTimeout).
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := m.janitorJob.Sweep(jctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			m.Logger.Warn("janitor", "err", err)
		}
	}
}

func withProfiling(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", next)
	return mux
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func randomSecret() []byte {
	b := make([]byte, 48)
	rand.Read(b)
	return []byte(base64.RawStdEncoding.EncodeToString(b))
}
