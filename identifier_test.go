package otpd_test

import (
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
