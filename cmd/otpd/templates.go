package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/sms"
	"github.com/otpd/otpd/templates"
)

// templatePurposes lists the purposes there are templates for.
func templatePurposes() string {
	var names []string
	for _, p := range templates.Purposes() {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

// newTemplatesCommand builds `otpd templates render`: what a message would
// look like, from the configured templates (built-in and the operator's
// directory), with a sample code. It needs no database and sends nothing.
func newTemplatesCommand() *cobra.Command {
	var configPath string
	tpl := &cobra.Command{
		Use:   "templates",
		Short: "Show the messages otpd sends",
		Args:  cobra.NoArgs,
	}
	tpl.PersistentFlags().StringVar(&configPath, "config", "", "YAML configuration file (the one serve reads)")

	var (
		locale, channel, code, link, token string
		ttl                                time.Duration
	)
	render := &cobra.Command{
		Use:   "render PURPOSE [--locale fr] [--channel email|sms|whatsapp]",
		Short: "Print the message of a purpose in a language",
		Long: `Print what otpd would send for PURPOSE (` + templatePurposes() + `):
with --channel email, the subject, the plain-text part and the HTML part;
with sms or whatsapp, the text and its SMS encoding and segment count.
--locale is matched as Accept-Language is (fr-CA finds fr); a language
without templates falls back to templates.default_locale.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(templates.Purposes(), otpd.Purpose(args[0])) {
				return fmt.Errorf("unknown purpose %q (known: %s)", args[0], templatePurposes())
			}
			if !slices.Contains([]string{"email", "sms", "whatsapp"}, channel) {
				return fmt.Errorf("--channel: %q must be email, sms or whatsapp", channel)
			}
			if ttl <= 0 {
				return errors.New("--ttl: must be positive")
			}
			cfg, err := loadConfig(configPath, nil)
			if err != nil {
				return err
			}
			set, err := cfg.loadTemplates()
			if err != nil {
				return fmt.Errorf("config templates: %w", err)
			}
			now := time.Now().UTC()
			m, err := set.Render(&otpd.Event{
				Purpose: otpd.Purpose(args[0]), Channel: otpd.Channel(channel), Locale: locale,
				Code: code, Link: link, Token: token, CreatedAt: now, ExpiresAt: now.Add(ttl),
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if channel == "email" {
				fmt.Fprintf(out, "Locale: %s\nSubject: %s\n\n--- text/plain ---\n%s\n\n--- text/html ---\n%s\n", m.Locale, m.Subject, m.Text, m.HTML)
				return nil
			}
			enc, n := sms.Segments(m.SMS)
			fmt.Fprintf(out, "Locale: %s\nEncoding: %s, %d segment(s)\n\n%s\n", m.Locale, enc, n, m.SMS)
			return nil
		},
	}
	render.Flags().StringVar(&locale, "locale", "", "language (BCP 47 tag or an Accept-Language value; default templates.default_locale)")
	render.Flags().StringVar(&channel, "channel", "email", "email, sms or whatsapp")
	render.Flags().StringVar(&code, "code", "123456", "the sample code")
	render.Flags().StringVar(&link, "link", "", "a sample magic link")
	render.Flags().StringVar(&token, "token", "", "a sample token (password reset by token)")
	render.Flags().DurationVar(&ttl, "ttl", 10*time.Minute, "the code's lifetime")
	tpl.AddCommand(render)
	return tpl
}
