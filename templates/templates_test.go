package templates_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/sms"
	"github.com/otpd/otpd/templates"
)

func load(t *testing.T, o templates.Options) *templates.Set {
	t.Helper()
	s, err := templates.Load(o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func event(p otpd.Purpose, locale string) *otpd.Event {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	return &otpd.Event{Purpose: p, Locale: locale, Code: "482913", CreatedAt: at, ExpiresAt: at.Add(10 * time.Minute)}
}

// Every purpose renders in both built-in languages: the code in the
// subject-less parts, a one-segment SMS ending with the origin-bound line.
func TestRender_EveryPurposeAndLocale(t *testing.T) {
	s := load(t, templates.Options{AppName: "Shop", Domain: "shop.example"})
	for _, locale := range []string{"en", "fr"} {
		for _, p := range templates.Purposes() {
			m, err := s.Render(event(p, locale))
			if err != nil {
				t.Fatalf("%s/%s: %v", locale, p, err)
			}
			if m.Locale != locale {
				t.Errorf("%s/%s: rendered in %s", locale, p, m.Locale)
			}
			for part, text := range map[string]string{"text": m.Text, "html": m.HTML, "sms": m.SMS} {
				if !strings.Contains(text, "482913") {
					t.Errorf("%s/%s: %s has no code: %q", locale, p, part, text)
				}
			}
			if !strings.Contains(m.Subject, "Shop") || strings.Contains(m.Subject, "\n") {
				t.Errorf("%s/%s: subject %q", locale, p, m.Subject)
			}
			lines := strings.Split(m.SMS, "\n")
			if last := lines[len(lines)-1]; last != "@shop.example #482913" {
				t.Errorf("%s/%s: SMS last line %q", locale, p, last)
			}
			if _, n := sms.Segments(m.SMS); n != 1 {
				t.Errorf("%s/%s: SMS takes %d segments: %q", locale, p, n, m.SMS)
			}
			if !strings.Contains(m.HTML, `lang="`+locale+`"`) {
				t.Errorf("%s/%s: html lang", locale, p)
			}
		}
	}
	m, _ := s.Render(event(otpd.PurposeSignIn, "fr"))
	if m.Subject != "Votre code de connexion Shop" || !strings.Contains(m.Text, "Il expire dans 10 minutes.") {
		t.Errorf("French sign-in: %q / %q", m.Subject, m.Text)
	}
	if m.SMS != "482913 est votre code de connexion Shop. Il expire dans 10 min.\n\n@shop.example #482913" {
		t.Errorf("French SMS %q", m.SMS)
	}
	m, _ = s.Render(event(otpd.PurposeSignIn, "en"))
	if m.Subject != "Your Shop sign-in code" || m.SMS != "482913 is your Shop sign-in code. It expires in 10 min.\n\n@shop.example #482913" {
		t.Errorf("English sign-in: %q / %q", m.Subject, m.SMS)
	}
}

// Locales are matched as Accept-Language is: regional variants find their
// language, the preference order counts, and unknown languages get the default.
func TestMatch(t *testing.T) {
	s := load(t, templates.Options{DefaultLocale: "fr"})
	for pref, want := range map[string]string{
		"":                        "fr",
		"en":                      "en",
		"en-GB":                   "en",
		"fr-CA":                   "fr",
		"de-DE, en;q=0.8":         "en",
		"de":                      "fr",
		"ja;q=0.9, fr;q=0.1":      "fr",
		"not a tag at all !!!":    "fr",
		strings.Repeat("x", 5000): "fr",
	} {
		if got := s.Match(pref); got != want {
			t.Errorf("Match(%q) = %q, want %q", pref, got, want)
		}
	}
	if got := s.Locales(); len(got) != 2 || got[0] != "fr" {
		t.Errorf("Locales %v", got)
	}
}

// Links and tokens: an email carries the link as an HTML anchor, escaped;
// an SMS with only a link carries the link; the origin-bound line needs a code.
func TestRender_LinkAndToken(t *testing.T) {
	s := load(t, templates.Options{AppName: "Shop", Domain: "shop.example"})
	ev := event(otpd.PurposeSignIn, "en")
	ev.Code, ev.Link = "", `https://shop.example/verify?a=1&b="><script>`
	m, err := s.Render(ev)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<script>") || !strings.Contains(m.HTML, `href="https://shop.example/verify?a=1&amp;b=%22%3e%3cscript%3e"`) {
		t.Errorf("html link not escaped: %s", m.HTML)
	}
	if !strings.HasSuffix(m.SMS, ev.Link) || strings.Contains(m.SMS, "@shop.example") {
		t.Errorf("link SMS %q", m.SMS)
	}
	ev = event(otpd.PurposeResetPassword, "fr")
	ev.Code, ev.Token = "", "tok_abc"
	m, _ = s.Render(ev)
	if !strings.Contains(m.Text, "Votre jeton de réinitialisation du mot de passe est :") || !strings.Contains(m.Text, "tok_abc") {
		t.Errorf("token text %q", m.Text)
	}
}

// An operator's directory overrides one block of one purpose, and adds a
// locale; a broken template or a two-segment SMS fails Load.
func TestLoad_Overrides(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("en/sign_in.tmpl", `{{define "sms"}}Code {{.Code}} for {{.AppName}}{{end}}`)
	write("de/layout.txt", `{{define "text"}}Ihr Code: {{.Code}}{{end}}{{define "sms"}}{{.Code}} ist Ihr Code{{end}}{{define "subject"}}Ihr Code{{end}}{{define "lead"}}Ihr Code{{end}}{{define "button"}}Weiter{{end}}`)
	write("de/layout.html", `{{define "html"}}<p>{{.Code}}</p>{{end}}`)
	for _, p := range templates.Purposes() {
		write("de/"+string(p)+".tmpl", `{{define "what"}}Code{{end}}`)
	}
	s := load(t, templates.Options{AppName: "Shop", Domain: "shop.example", Dir: dir})
	m, _ := s.Render(event(otpd.PurposeSignIn, "en"))
	if m.SMS != "Code 482913 for Shop\n\n@shop.example #482913" {
		t.Errorf("override SMS %q", m.SMS)
	}
	if m.Subject != "Your Shop sign-in code" {
		t.Errorf("the rest of the built-in purpose changed: %q", m.Subject)
	}
	if m, _ := s.Render(event(otpd.PurposeSignUp, "de-AT")); m.Locale != "de" || m.Text != "Ihr Code: 482913" {
		t.Errorf("German %+v", m)
	}

	write("en/sign_up.tmpl", `{{define "sms"}}{{.Nope}}{{end}}`)
	if _, err := templates.Load(templates.Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "en/sign_up") {
		t.Errorf("broken template loaded: %v", err)
	}
	write("en/sign_up.tmpl", `{{define "sms"}}`+strings.Repeat("long text ", 20)+`{{.Code}}{{end}}`)
	if _, err := templates.Load(templates.Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "segments") {
		t.Errorf("two-segment SMS loaded: %v", err)
	}
	if _, err := templates.Load(templates.Options{Dir: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing directory loaded")
	}
	if _, err := templates.Load(templates.Options{DefaultLocale: "de"}); err == nil {
		t.Error("a default locale without templates loaded")
	}
}

// The engine renders the subject and text of every code it issues, in the
// request; mail and SMS notifiers render the whole message, later.
func BenchmarkRenderText(b *testing.B) {
	s, _ := templates.Load(templates.Options{AppName: "Shop", Domain: "shop.example"})
	ev := event(otpd.PurposeSignIn, "fr")
	for b.Loop() {
		s.RenderText(ev, 10*time.Minute)
	}
}

func BenchmarkRender(b *testing.B) {
	s, _ := templates.Load(templates.Options{AppName: "Shop", Domain: "shop.example"})
	ev := event(otpd.PurposeSignIn, "fr")
	for b.Loop() {
		s.Render(ev)
	}
}

// The baseline: the engine's built-in wording, one Sprintf.
func BenchmarkRenderTextBuiltin(b *testing.B) {
	ev := event(otpd.PurposeSignIn, "fr")
	for b.Loop() {
		otpd.RenderText(ev, 10*time.Minute)
	}
}
