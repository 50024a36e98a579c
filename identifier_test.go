package otpd_test

import (
	"errors"
	"testing"

	"github.com/otpd/otpd"
)

func TestNormalizer_Parse(t *testing.T) {
	n := otpd.Normalizer{DefaultRegion: "US"}
	for _, tc := range []struct {
		in      string
		channel otpd.Channel
		want    string
	}{
		{"alice@example.com", otpd.ChannelEmail, "alice@example.com"},
		{"  Alice@Example.COM ", otpd.ChannelEmail, "alice@example.com"},
		{"victim@example.com ", otpd.ChannelEmail, "victim@example.com"},
		{"+1 (202) 555-0100", otpd.ChannelSMS, "+12025550100"},
		{"+12025550100", otpd.ChannelSMS, "+12025550100"},
		{"(202) 555-0123", otpd.ChannelSMS, "+12025550123"},
		{"+33 6 12 34 56 78", otpd.ChannelSMS, "+33612345678"},
		{"+44 20 7946 0958", otpd.ChannelSMS, "+442079460958"},
	} {
		c, err := n.Parse("identifier", tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if c.Channel != tc.channel || c.Value != tc.want {
			t.Errorf("Parse(%q)=%+v, want %s %s", tc.in, c, tc.channel, tc.want)
		}
		// Idempotent: normalizing a normalized value changes nothing.
		again, err := n.Parse("identifier", c.Value)
		if err != nil || again != c {
			t.Errorf("Parse(Parse(%q))=%+v,%v, want %+v", tc.in, again, err, c)
		}
	}
}

func TestNormalizer_ParseRejects(t *testing.T) {
	for _, in := range []string{
		"", "   ", "not-an-email", "a@", "@b.com", "a@b", "Alice <alice@example.com>", "a b@example.com",
		"5550100000" /* no region */, "+1 555", "+1-800-FLOWERS", "alice@@example.com",
	} {
		c, err := otpd.Normalizer{}.Parse("identifier", in)
		e := otpd.AsError(err)
		if e == nil || e.Code != otpd.EINVALID || e.Field != "identifier" {
			t.Errorf("Parse(%q)=%+v,%v, want EINVALID on field identifier", in, c, err)
		}
	}
}

func FuzzNormalizer(f *testing.F) {
	for _, s := range []string{"alice@example.com", "+12025550100", "(202) 555-0123", "Ä@b.c", "+٣٣٦١٢٣٤٥٦٧٨"} {
		f.Add(s)
	}
	n := otpd.Normalizer{DefaultRegion: "US"}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := n.Parse("identifier", in)
		if err != nil {
			return
		}
		again, err := n.Parse("identifier", c.Value)
		if err != nil || again != c {
			t.Fatalf("not idempotent: %q -> %+v -> %+v, %v", in, c, again, err)
		}
	})
}

// TestParseAs: one channel only; a bad identifier names its field and
// matches ErrBadIdentifier.
func TestParseAs(t *testing.T) {
	n := otpd.Normalizer{}
	if c, err := n.ParseAs(otpd.ChannelEmail, " Ada@Example.com "); err != nil || c != (otpd.Contact{Channel: otpd.ChannelEmail, Value: "ada@example.com"}) {
		t.Fatalf("email: %+v %v", c, err)
	}
	if c, err := n.ParseAs(otpd.ChannelSMS, "+1 (202) 555-0142"); err != nil || c != (otpd.Contact{Channel: otpd.ChannelSMS, Value: "+12025550142"}) {
		t.Fatalf("phone: %+v %v", c, err)
	}
	for _, tc := range []struct {
		ch         otpd.Channel
		raw, field string
	}{{otpd.ChannelEmail, "+12025550142", "email"}, {otpd.ChannelSMS, "ada@example.com", "phone"}, {otpd.ChannelEmail, "", "email"}} {
		_, err := n.ParseAs(tc.ch, tc.raw)
		if !errors.Is(err, otpd.ErrBadIdentifier) || otpd.AsError(err).Field != tc.field || otpd.ErrorCode(err) != otpd.EINVALID {
			t.Fatalf("ParseAs(%s, %q): %v, want a field error on %s matching ErrBadIdentifier", tc.ch, tc.raw, err, tc.field)
		}
	}
}
