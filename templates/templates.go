// Package templates renders the messages that carry codes: an email's
// subject, plain-text and HTML parts, and the text of an SMS or WhatsApp
// message, per purpose and locale.
//
// The built-in templates (English and French) are embedded under builtin/,
// one directory per locale:
//
//	layout.txt     the "subject", "text", "sms" and "lead" blocks (text/template)
//	layout.html    the "html" block (html/template)
//	<purpose>.tmpl what differs per purpose: at least "what" ("sign-in code"),
//	               and any block of the layouts to replace
//
// An operator's directory (Options.Dir) has the same shape. Each file found
// there is parsed after the built-in file of the same name, so it can
// redefine a single block ({{define "sms"}}…{{end}}) or all of them; a
// directory for a new locale (de/) must define every block the layouts use,
// or loading fails.
//
// Every template is executed once with sample data when the set is loaded:
// an error in any of them, or a sign-in SMS longer than one segment, fails
// startup instead of the first delivery.
//
// The SMS text always ends with the origin-bound line "@domain #code" (WICG
// origin-bound one-time codes) when a domain is configured, added here rather
// than in the templates so that an override cannot break browser autofill.
package templates

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"

	"golang.org/x/text/language"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/sms"
)

//go:embed builtin
var builtin embed.FS

// purposes are those whose codes are sent: the configurable ones, and the
// sign-in-up of the SuperTokens dialect.
var purposes = append(slices.Clone(otpd.Purposes), otpd.PurposeSignInUp)

// Purposes returns the purposes there are templates for.
func Purposes() []otpd.Purpose { return slices.Clone(purposes) }

// Options configure a Set.
type Options struct {
	AppName       string // the product's name, in every message ("Shop")
	Domain        string // the site's host for the SMS origin-bound line ("shop.example"); "" omits it
	DefaultLocale string // the locale of messages whose event asks for none or for one not found ("en")
	Dir           string // an operator's template directory; "" uses only the built-in templates
}

// Data is what templates see.
type Data struct {
	AppName          string
	Domain           string
	Purpose          string
	Locale           string
	Code             string // the code; "" when the message carries only a link or a token
	Link             string // a magic link, when the message carries one
	Token            string // a token, when the message carries one (password reset)
	ExpiresIn        string // the lifetime in the locale's words: "10 minutes", "1 heure"
	ExpiresInMinutes int    // rounded up
}

// set is the parsed templates of one locale and purpose.
type set struct {
	text *texttemplate.Template
	html *htmltemplate.Template
}

// Set is the loaded templates of every locale and purpose. It implements
// otpd.Renderer and is safe for concurrent use.
type Set struct {
	opts    Options
	locales []string // the default first
	matcher language.Matcher
	sets    map[string]map[otpd.Purpose]*set // locale → purpose
}

var _ otpd.Renderer = (*Set)(nil)

// Load parses the built-in templates and the operator's directory, and checks
// every template by rendering it with sample data.
func Load(o Options) (*Set, error) {
	if o.AppName == "" {
		o.AppName = "otpd"
	}
	if o.DefaultLocale == "" {
		o.DefaultLocale = "en"
	}
	if strings.ContainsAny(o.Domain, " \n\t/#@") {
		return nil, errors.New("templates: the domain must be a bare host name, such as shop.example")
	}
	def, err := language.Parse(o.DefaultLocale)
	if err != nil {
		return nil, fmt.Errorf("templates: default locale %q is not a BCP 47 tag", o.DefaultLocale)
	}
	o.DefaultLocale = def.String()

	var override fs.FS
	if o.Dir != "" {
		st, err := os.Stat(o.Dir)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("templates: directory %s cannot be read", o.Dir)
		}
		override = os.DirFS(o.Dir)
	}
	builtinFS, _ := fs.Sub(builtin, "builtin")
	locales, err := localesOf(builtinFS, override)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(locales, o.DefaultLocale) {
		return nil, fmt.Errorf("templates: no templates for the default locale %s (have %s)", o.DefaultLocale, strings.Join(locales, ", "))
	}
	// The default goes first: the matcher answers with it when nothing fits.
	locales = slices.DeleteFunc(locales, func(l string) bool { return l == o.DefaultLocale })
	locales = append([]string{o.DefaultLocale}, locales...)

	s := &Set{opts: o, locales: locales, sets: map[string]map[otpd.Purpose]*set{}}
	tags := make([]language.Tag, len(locales))
	for i, l := range locales {
		tags[i] = language.MustParse(l)
		s.sets[l] = map[otpd.Purpose]*set{}
		for _, p := range purposes {
			ps, err := parse(builtinFS, override, l, p)
			if err != nil {
				return nil, err
			}
			s.sets[l][p] = ps
		}
	}
	s.matcher = language.NewMatcher(tags)
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// localesOf lists the locale directories of both file systems.
func localesOf(fsys ...fs.FS) ([]string, error) {
	var out []string
	for _, f := range fsys {
		if f == nil {
			continue
		}
		entries, err := fs.ReadDir(f, ".")
		if err != nil {
			return nil, fmt.Errorf("templates: %w", err)
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			tag, err := language.Parse(e.Name())
			if err != nil {
				return nil, fmt.Errorf("templates: directory %s is not a BCP 47 locale (en, fr, pt-BR)", e.Name())
			}
			if l := tag.String(); !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out, nil
}

// parse reads the templates of locale l and purpose p: the layouts, then the
// purpose's file; each built-in file first, then the operator's file of the
// same name.
func parse(builtinFS, override fs.FS, l string, p otpd.Purpose) (*set, error) {
	var sources []string
	for _, name := range []string{"layout.txt", "layout.html", string(p) + ".tmpl"} {
		for _, f := range []fs.FS{builtinFS, override} {
			if f == nil {
				continue
			}
			b, err := fs.ReadFile(f, path.Join(l, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("templates: %s/%s: %w", l, name, err)
			}
			sources = append(sources, string(b))
		}
	}
	text := texttemplate.New(l + "/" + string(p)).Option("missingkey=error")
	html := htmltemplate.New(l + "/" + string(p)).Option("missingkey=error")
	for _, src := range sources {
		var err error
		if text, err = text.Parse(src); err != nil {
			return nil, fmt.Errorf("templates: %s/%s: %w", l, p, err)
		}
		if html, err = html.Parse(src); err != nil {
			return nil, fmt.Errorf("templates: %s/%s: %w", l, p, err)
		}
	}
	return &set{text: text, html: html}, nil
}

// check renders every template with sample data: a code, a link, a token.
func (s *Set) check() error {
	for _, l := range s.locales {
		for _, p := range purposes {
			for _, sample := range []otpd.Event{
				{Code: "123456"},
				{Code: "123456", Link: "https://shop.example/verify?code=abc"},
				{Link: "https://shop.example/verify?code=abc"},
				{Token: "tok_0123456789abcdef"},
			} {
				ev := sample
				ev.Purpose, ev.Locale = p, l
				ev.CreatedAt = time.Unix(0, 0)
				ev.ExpiresAt = ev.CreatedAt.Add(10 * time.Minute)
				m, err := s.Render(&ev)
				if err != nil {
					return err
				}
				if ev.Link == "" && ev.Token == "" {
					if enc, n := sms.Segments(m.SMS); n > 1 {
						return fmt.Errorf("templates: %s/%s: the SMS text takes %d %s segments; one-time codes must fit in one (160 GSM-7 or 70 UCS-2 characters, with the @domain #code line): %q", l, p, n, enc, m.SMS)
					}
				}
			}
		}
	}
	return nil
}

// Locales returns the locales there are templates for, the default first.
func (s *Set) Locales() []string { return slices.Clone(s.locales) }

// Match returns the locale whose templates best fit a language preference:
// a BCP 47 tag ("fr-CA") or an Accept-Language header ("de;q=0.9, fr").
// It returns the default locale when nothing fits.
func (s *Set) Match(pref string) string {
	if pref == "" {
		return s.locales[0]
	}
	if slices.Contains(s.locales, pref) {
		return pref // the common case: a locale the request matched already
	}
	if len(pref) > 256 {
		pref = pref[:256]
	}
	tags, _, err := language.ParseAcceptLanguage(pref)
	if err != nil || len(tags) == 0 {
		return s.locales[0]
	}
	_, i, conf := s.matcher.Match(tags...)
	if conf == language.No {
		return s.locales[0]
	}
	return s.locales[i]
}

// Render renders ev's message in the locale that best fits ev.Locale.
func (s *Set) Render(ev *otpd.Event) (*otpd.Message, error) {
	return s.render(ev, true)
}

// render renders the subject and text of ev's message and, when all is
// set, its SMS text and HTML part too.
func (s *Set) render(ev *otpd.Event, all bool) (*otpd.Message, error) {
	l := s.Match(ev.Locale)
	ps := s.sets[l][ev.Purpose]
	if ps == nil {
		return nil, fmt.Errorf("templates: no templates for purpose %q", ev.Purpose)
	}
	ttl := ev.ExpiresAt.Sub(ev.CreatedAt)
	d := Data{
		AppName:          s.opts.AppName,
		Domain:           s.opts.Domain,
		Purpose:          string(ev.Purpose),
		Locale:           l,
		Code:             ev.Code,
		Link:             ev.Link,
		Token:            ev.Token,
		ExpiresIn:        humanDuration(ttl, l),
		ExpiresInMinutes: int((ttl + time.Minute - 1) / time.Minute),
	}
	m := &otpd.Message{Locale: l}
	var err error
	if m.Subject, err = execText(ps.text, "subject", d); err != nil {
		return nil, err
	}
	m.Subject = strings.Join(strings.Fields(m.Subject), " ") // one line, whatever the template did
	if m.Text, err = execText(ps.text, "text", d); err != nil {
		return nil, err
	}
	if !all {
		return m, nil
	}
	if m.SMS, err = execText(ps.text, "sms", d); err != nil {
		return nil, err
	}
	if ev.Link != "" && ev.Code == "" {
		m.SMS = strings.TrimSpace(m.SMS + " " + ev.Link)
	}
	if s.opts.Domain != "" && ev.Code != "" {
		m.SMS += "\n\n@" + s.opts.Domain + " #" + ev.Code
	}
	var b bytes.Buffer
	if err := ps.html.ExecuteTemplate(&b, "html", d); err != nil {
		return nil, fmt.Errorf("templates: %s/%s html: %w", l, ev.Purpose, err)
	}
	m.HTML = b.String()
	return m, nil
}

func execText(t *texttemplate.Template, name string, d Data) (string, error) {
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, name, d); err != nil {
		return "", fmt.Errorf("templates: %s: %w", t.Name(), err)
	}
	return strings.TrimSpace(b.String()), nil
}

// RenderText is an otpd.Engine Render function: the subject and plain-text
// body stored with each event (what webhooks receive), in the event's
// locale. If the templates fail, it falls back to otpd.RenderText.
func (s *Set) RenderText(ev *otpd.Event, ttl time.Duration) (subject, text string) {
	m, err := s.render(ev, false)
	if err != nil {
		return otpd.RenderText(ev, ttl)
	}
	return m.Subject, m.Text
}

// humanDuration writes d in locale l's words ("10 minutes", "1 hour").
func humanDuration(d time.Duration, l string) string {
	units := [3][2]string{{"hour", "hours"}, {"minute", "minutes"}, {"second", "seconds"}}
	if l == "fr" || strings.HasPrefix(l, "fr-") {
		units = [3][2]string{{"heure", "heures"}, {"minute", "minutes"}, {"seconde", "secondes"}}
	}
	n, u := 0, 0
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		n, u = int(d/time.Hour), 0
	case d >= time.Minute && d%time.Minute == 0:
		n, u = int(d/time.Minute), 1
	default:
		n, u = int((d+time.Second-1)/time.Second), 2
	}
	if n == 1 {
		return "1 " + units[u][0]
	}
	return fmt.Sprintf("%d %s", n, units[u][1])
}
