package otpd_test

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/flowtest"
)

var emailFlow = otpd.SignInUpFlow{Policy: otpd.Policy{Length: 6, Alphabet: otpd.AlphabetNumeric, TTL: 15 * time.Minute, MaxAttempts: 5}}

func createDevice(t *testing.T, f *flowtest.Flows, to string, flow otpd.SignInUpFlow) *otpd.Device {
	t.Helper()
	d, err := f.Devices.CreateDevice(context.Background(), otpd.DeviceRequest{Tenant: otpd.DefaultTenant, Contact: otpd.Contact{Channel: otpd.ChannelEmail, Value: to}, Flow: flow})
	if err != nil {
		t.Fatalf("CreateDevice: %v", err)
	}
	return d
}

func consume(t *testing.T, f *flowtest.Flows, d *otpd.Device, code string) *otpd.Consumed {
	t.Helper()
	res, err := f.Devices.ConsumeCode(context.Background(), otpd.ConsumeRequest{Tenant: otpd.DefaultTenant, PreAuthSessionID: d.PreAuthSessionID, DeviceID: d.ID, UserInputCode: code})
	if err != nil {
		t.Fatalf("ConsumeCode: %v", err)
	}
	return res
}

// TestDevices_Outcomes: every outcome of a sign-in-up code without HTTP:
// wrong codes counted, the right one signs up then in, a spent code or a
// foreign device restarts the flow, the last wrong guess restarts it.
func TestDevices_Outcomes(t *testing.T) {
	f, clk, rec := newFlows(t)
	d := createDevice(t, f, "ada@example.com", emailFlow)
	ev := rec.Last(t, "ada@example.com")
	if ev.Name != otpd.EventPasswordlessLogin || ev.Link != "" || ev.Metadata["preAuthSessionId"] != d.PreAuthSessionID {
		t.Fatalf("event: %+v", ev)
	}
	if r := consume(t, f, d, "999999"); r.Status != otpd.ConsumeIncorrect || r.FailedAttempts != 1 || r.MaxAttempts != 5 {
		t.Fatalf("wrong code: %+v", r)
	}
	foreign := *d
	foreign.ID = "another-device"
	if r := consume(t, f, &foreign, ev.Code); r.Status != otpd.ConsumeRestart {
		t.Fatalf("right code, foreign device: %+v, want restart", r)
	}
	r := consume(t, f, d, ev.Code)
	if r.Status != otpd.ConsumeOK || !r.User.Created || r.Session == nil || r.Session.AuthIdentityID != r.User.Identity.ID {
		t.Fatalf("right code: %+v", r)
	}
	if len(r.User.Providers) != 1 || r.User.Providers[0].EntityID != "ada@example.com" {
		t.Fatalf("user providers: %+v", r.User.Providers)
	}
	if r := consume(t, f, d, ev.Code); r.Status != otpd.ConsumeRestart {
		t.Fatalf("spent code: %+v, want restart", r)
	}
	clk.Add(31 * time.Second) // past the resend cooldown
	if err := f.Devices.ResendDeviceCode(context.Background(), otpd.DefaultTenant, d.ID, d.PreAuthSessionID, netip.Addr{}, emailFlow); !errors.Is(err, otpd.ErrRestartFlow) {
		t.Fatalf("resend after the code was spent: %v, want ErrRestartFlow", err)
	}

	// A second sign-in to the same contact is the same user.
	clk.Add(31 * time.Second)
	d2 := createDevice(t, f, "ada@example.com", emailFlow)
	r2 := consume(t, f, d2, rec.Last(t, "ada@example.com").Code)
	if r2.Status != otpd.ConsumeOK || r2.User.Created || r2.User.Identity.ID != r.User.Identity.ID {
		t.Fatalf("second sign-in: %+v", r2)
	}

	// Five wrong guesses: four are counted, the fifth restarts.
	clk.Add(31 * time.Second)
	d3 := createDevice(t, f, "ada@example.com", emailFlow)
	for i := 1; i <= 4; i++ {
		if r := consume(t, f, d3, "999999"); r.Status != otpd.ConsumeIncorrect || r.FailedAttempts != i {
			t.Fatalf("wrong guess %d: %+v", i, r)
		}
	}
	if r := consume(t, f, d3, "999999"); r.Status != otpd.ConsumeRestart {
		t.Fatalf("fifth wrong guess: %+v, want restart", r)
	}
	if r := consume(t, f, d3, rec.Last(t, "ada@example.com").Code); r.Status != otpd.ConsumeRestart {
		t.Fatalf("right code after the attempts: %+v, want restart", r)
	}
}

// TestDevices_ExpiryAndResend: a code past its lifetime is expired, with
// its attempts; a resend retires the old code; an unknown or forged device
// restarts the flow.
func TestDevices_ExpiryAndResend(t *testing.T) {
	f, clk, rec := newFlows(t)
	ctx := context.Background()
	d := createDevice(t, f, "ada@example.com", emailFlow)
	old := rec.Last(t, "ada@example.com").Code
	consume(t, f, d, "999999")
	clk.Add(emailFlow.Policy.TTL)
	if r := consume(t, f, d, old); r.Status != otpd.ConsumeExpired || r.FailedAttempts != 1 || r.MaxAttempts != 5 {
		t.Fatalf("expired code: %+v", r)
	}
	if err := f.Devices.ResendDeviceCode(ctx, otpd.DefaultTenant, d.ID, d.PreAuthSessionID, netip.Addr{}, emailFlow); err != nil {
		t.Fatalf("resend: %v", err)
	}
	fresh := rec.Last(t, "ada@example.com").Code
	if r := consume(t, f, d, old); r.Status == otpd.ConsumeOK {
		t.Fatal("the retired code signed in")
	}
	if r := consume(t, f, d, fresh); r.Status != otpd.ConsumeOK {
		t.Fatalf("resent code: %+v", r)
	}
	for _, bad := range []otpd.ConsumeRequest{
		{Tenant: otpd.DefaultTenant, PreAuthSessionID: "forged", DeviceID: d.ID, UserInputCode: fresh},
		{Tenant: "other", PreAuthSessionID: d.PreAuthSessionID, DeviceID: d.ID, UserInputCode: fresh},
		{Tenant: otpd.DefaultTenant, PreAuthSessionID: d.PreAuthSessionID, LinkCode: "forged"},
	} {
		if r, err := f.Devices.ConsumeCode(ctx, bad); err != nil || r.Status != otpd.ConsumeRestart {
			t.Fatalf("ConsumeCode(%+v): %+v %v, want restart", bad, r, err)
		}
	}
	if err := f.Devices.ResendDeviceCode(ctx, otpd.DefaultTenant, "wrong", d.PreAuthSessionID, netip.Addr{}, emailFlow); !errors.Is(err, otpd.ErrRestartFlow) {
		t.Fatalf("resend with another device id: %v, want ErrRestartFlow", err)
	}
}

// TestDevices_MagicLink: a link-only flow sends a link and no code; the
// link's code redeems the same challenge as a typed code would.
func TestDevices_MagicLink(t *testing.T) {
	f, _, rec := newFlows(t)
	flow := emailFlow
	flow.LinkOnly = true
	flow.Link = func(pre, linkCode string) string {
		return "https://shop.example.com/verify?preAuthSessionId=" + url.QueryEscape(pre) + "#" + linkCode
	}
	d := createDevice(t, f, "ada@example.com", flow)
	ev := rec.Last(t, "ada@example.com")
	if ev.Code != "" || !strings.HasPrefix(ev.Link, "https://shop.example.com/verify?") || !strings.Contains(ev.Text, ev.Link) {
		t.Fatalf("link event: %+v", ev)
	}
	_, linkCode, _ := strings.Cut(ev.Link, "#")
	res, err := f.Devices.ConsumeCode(context.Background(), otpd.ConsumeRequest{Tenant: otpd.DefaultTenant, PreAuthSessionID: d.PreAuthSessionID, LinkCode: linkCode})
	if err != nil || res.Status != otpd.ConsumeOK || !res.User.Created {
		t.Fatalf("link: %+v %v", res, err)
	}
	if !f.Devices.CheckLinkContext(d.PreAuthSessionID, f.Devices.LinkContext(d.PreAuthSessionID)) || f.Devices.CheckLinkContext(d.PreAuthSessionID, "forged") {
		t.Fatal("CheckLinkContext")
	}
}
