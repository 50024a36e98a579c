package httpapi_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/otpd/otpd/httpapi"
)

func mustTrusted(t testing.TB, entries ...string) []netip.Prefix {
	t.Helper()
	p, err := httpapi.ParseTrustedProxies(entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientAddr(t *testing.T) {
	lb := []string{"10.0.0.0/8"}
	lb6 := []string{"10.0.0.0/8", "2001:db8:ffff::/48"}
	tests := []struct {
		name    string
		remote  string
		xff     []string // header lines; nil: no header
		other   map[string]string
		trusted []string
		want    string
	}{
		{name: "no header", remote: "203.0.113.7:4000", want: "203.0.113.7"},
		{name: "no header, trusted socket", remote: "10.1.2.3:4000", trusted: lb, want: "10.1.2.3"},
		{
			name: "no trusted proxies, spoofed XFF", remote: "203.0.113.7:4000",
			xff: []string{"198.51.100.1, 198.51.100.2"}, want: "203.0.113.7",
		},
		{
			name: "no trusted proxies, every spoofable header", remote: "203.0.113.7:4000",
			xff: []string{"198.51.100.1"},
			other: map[string]string{
				"X-Real-IP": "198.51.100.2", "Forwarded": "for=198.51.100.3",
				"True-Client-IP": "198.51.100.4", "CF-Connecting-IP": "198.51.100.5",
			},
			want: "203.0.113.7",
		},
		{
			name: "untrusted socket, XFF ignored", remote: "203.0.113.7:4000", trusted: lb,
			xff: []string{"10.0.0.1"}, want: "203.0.113.7",
		},
		{
			name: "one trusted proxy, rightmost untrusted", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"1.1.1.1, 2.2.2.2, 198.51.100.9"}, want: "198.51.100.9",
		},
		{
			name: "trusted socket, other headers ignored", remote: "10.0.0.2:4000", trusted: lb,
			other: map[string]string{
				"X-Real-IP": "198.51.100.2", "Forwarded": "for=198.51.100.3",
				"True-Client-IP": "198.51.100.4", "CF-Connecting-IP": "198.51.100.5",
			},
			want: "10.0.0.2",
		},
		{
			name: "chain of trusted proxies", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"1.1.1.1, 198.51.100.9, 10.3.3.3, 10.2.2.2"}, want: "198.51.100.9",
		},
		{
			name: "all trusted, leftmost", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"10.9.9.9, 10.3.3.3, 10.2.2.2"}, want: "10.9.9.9",
		},
		{
			name: "garbage rightmost, socket", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"198.51.100.9, unknown"}, want: "10.0.0.2",
		},
		{
			name: "garbage behind trusted hops, nearest trusted hop", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"198.51.100.9, <script>, 10.5.5.5, 10.4.4.4"}, want: "10.5.5.5",
		},
		{
			name: "garbage left of the client, ignored", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"999.1.1.1, 198.51.100.9"}, want: "198.51.100.9",
		},
		{
			name: "empty entry stops the walk", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"198.51.100.9,,10.5.5.5"}, want: "10.5.5.5",
		},
		{
			name: "IPv4 with port", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"1.1.1.1, 198.51.100.9:5678"}, want: "198.51.100.9",
		},
		{
			name: "IPv6 with port", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"1.1.1.1, [2001:db8::1]:80"}, want: "2001:db8::1",
		},
		{
			name: "IPv6 in brackets, no port", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"[2001:db8::1]"}, want: "2001:db8::1",
		},
		{
			name: "trusted hop with port", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"198.51.100.9, 10.5.5.5:443"}, want: "198.51.100.9",
		},
		{
			name: "IPv4 in brackets is garbage", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"[198.51.100.9]:80"}, want: "10.0.0.2",
		},
		{
			name: "IPv6 with port but no brackets is garbage", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"1.1.1.1, 10.5.5.5, 2001:db8::1:80:x"}, want: "10.0.0.2",
		},
		{name: "IPv6 socket", remote: "[2001:db8::7]:4000", want: "2001:db8::7"},
		{name: "IPv6 socket with zone", remote: "[fe80::1%eth0]:4000", want: "fe80::1"},
		{
			name: "IPv6 proxy chain", remote: "[2001:db8:ffff::1]:4000", trusted: lb6,
			xff: []string{"2001:db8::5, 2001:db8:ffff::2"}, want: "2001:db8::5",
		},
		{
			name: "IPv6 entry with zone", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"fe80::9%eth1"}, want: "fe80::9",
		},
		{name: "IPv4-mapped socket", remote: "[::ffff:203.0.113.7]:4000", want: "203.0.113.7"},
		{
			name: "IPv4-mapped socket matches an IPv4 trusted proxy", remote: "[::ffff:10.0.0.2]:4000",
			trusted: lb, xff: []string{"198.51.100.9"}, want: "198.51.100.9",
		},
		{
			name: "IPv4-mapped XFF entries", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"::ffff:198.51.100.9, [::ffff:10.5.5.5]:80"}, want: "198.51.100.9",
		},
		{
			name: "IPv4-mapped trusted proxy", remote: "10.0.0.2:4000", trusted: []string{"::ffff:10.0.0.0/104"},
			xff: []string{"198.51.100.9"}, want: "198.51.100.9",
		},
		{
			name: "multiple header lines, rightmost in the last", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"1.1.1.1, 2.2.2.2", "198.51.100.9, 10.4.4.4"}, want: "198.51.100.9",
		},
		{
			name: "multiple header lines, walk crosses lines", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"1.1.1.1, 198.51.100.9", "10.5.5.5", "10.4.4.4"}, want: "198.51.100.9",
		},
		{
			name: "multiple header lines, all trusted", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"10.6.6.6", "10.5.5.5"}, want: "10.6.6.6",
		},
		{
			name: "empty header value", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{""}, want: "10.0.0.2",
		},
		{
			name: "blank header value", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"   "}, want: "10.0.0.2",
		},
		{
			name: "empty header line between lines", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{"198.51.100.9", "", "10.5.5.5"}, want: "198.51.100.9",
		},
		{
			name: "whitespace and tabs around entries", remote: "10.0.0.2:4000", trusted: lb,
			xff: []string{" 1.1.1.1 ,\t198.51.100.9\t, 10.5.5.5 "}, want: "198.51.100.9",
		},
		{
			name: "trust everything, leftmost", remote: "203.0.113.7:4000", trusted: []string{"0.0.0.0/0", "::/0"},
			xff: []string{"198.51.100.1, 198.51.100.2"}, want: "198.51.100.1",
		},
		{name: "unparseable RemoteAddr", remote: "", want: "0.0.0.0"},
		{name: "unparseable RemoteAddr, pipe", remote: "@", xff: []string{"198.51.100.9"}, want: "0.0.0.0"},
		{name: "RemoteAddr without port", remote: "203.0.113.7", want: "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for k, v := range tt.other {
				r.Header.Set(k, v)
			}
			got := httpapi.ClientAddr(r, mustTrusted(t, tt.trusted...))
			if got.String() != tt.want {
				t.Errorf("ClientAddr = %v, want %v", got, tt.want)
			}
			if !got.IsValid() || got.Is4In6() || got.Zone() != "" {
				t.Errorf("ClientAddr = %#v: not a valid, unmapped, zoneless address", got)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := httpapi.ParseTrustedProxies([]string{
		" 10.0.0.1 ", "", "  ", "::1", "10.1.2.3/8", "192.168.0.0/16",
		"::ffff:172.16.0.1", "::ffff:172.16.0.0/108", "fe80::1%eth0", "2001:db8::/32",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10.0.0.1/32", "::1/128", "10.0.0.0/8", "192.168.0.0/16",
		"172.16.0.1/32", "172.16.0.0/12", "fe80::1/128", "2001:db8::/32",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("entry %d = %v, want %v", i, got[i], want[i])
		}
	}

	if got, err := httpapi.ParseTrustedProxies(nil); err != nil || len(got) != 0 {
		t.Errorf("ParseTrustedProxies(nil) = %v, %v", got, err)
	}

	for _, bad := range []string{
		"10.0.0.0/33", "::/129", "10.0.0.256", "example.com", "10.0.0.0/", "/8",
		"10.0.0.1:80", "[::1]", "10.0.0.0/8/8", "fe80::%eth0/64", "unknown",
	} {
		_, err := httpapi.ParseTrustedProxies([]string{"127.0.0.1", " " + bad + " "})
		if err == nil {
			t.Errorf("ParseTrustedProxies(%q): no error", bad)
			continue
		}
		if prefix := fmt.Sprintf("trusted proxy %q: ", bad); !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("ParseTrustedProxies(%q) = %q, want it to start with %q", bad, err, prefix)
		}
	}
}

// echoDialect serves GET /ip with the client address the server saw.
type echoDialect struct{}

func (echoDialect) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /ip", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, httpapi.ClientIP(r.Context()).String())
	})
}

// TestSpoofedHeaders is T13: a client that sends forwarding headers of its
// choosing gets the address of its socket unless that socket is a trusted
// proxy, and then only the rightmost untrusted X-Forwarded-For entry.
func TestSpoofedHeaders(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	// Addresses outside loopback, written the ways a client or proxy might.
	randAddr := func() (written string, want netip.Addr) {
		for {
			var a netip.Addr
			if rng.IntN(3) == 0 {
				var b [16]byte
				for i := range b {
					b[i] = byte(rng.UintN(256))
				}
				b[0] = 0x20 // global unicast, never ::1 or ::ffff:
				a = netip.AddrFrom16(b)
			} else {
				a = netip.AddrFrom4([4]byte{byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256))})
			}
			if a.IsLoopback() || !a.IsValid() {
				continue
			}
			switch {
			case rng.IntN(4) > 0:
				return a.String(), a
			case a.Is4() && rng.IntN(2) == 0:
				return netip.AddrFrom16(a.As16()).String(), a // IPv4-mapped
			default:
				return netip.AddrPortFrom(a, uint16(rng.UintN(65536))).String(), a
			}
		}
	}
	randLoopback := func() string {
		if rng.IntN(4) == 0 {
			return "::1"
		}
		return netip.AddrFrom4([4]byte{127, byte(rng.UintN(256)), byte(rng.UintN(256)), byte(1 + rng.UintN(255))}).String()
	}
	garbage := []string{
		"unknown", "_hidden", "999.1.1.1", "1.2.3", "[1.2.3.4]:80", "::1::", "localhost",
		"<script>alert(1)</script>", "for=1.2.3.4", "1.2.3.4:port", "' OR 1=1 --", "0x7f000001",
		"2001:db8::1:80:", "[2001:db8::1", "%", "1.2.3.4/32",
	}
	spoof := func(req *http.Request) {
		a, _ := randAddr()
		b, _ := randAddr()
		c, _ := randAddr()
		d, _ := randAddr()
		req.Header.Set("X-Real-IP", a)
		req.Header.Set("Forwarded", "for="+b+";proto=https")
		req.Header.Set("True-Client-IP", c)
		req.Header.Set("CF-Connecting-IP", d)
	}
	// setXFF sends entries as one or several header lines.
	setXFF := func(req *http.Request, entries []string) {
		for len(entries) > 0 {
			n := 1 + rng.IntN(len(entries))
			req.Header.Add("X-Forwarded-For", strings.Join(entries[:n], ", "))
			entries = entries[n:]
		}
	}

	configs := []struct {
		name    string
		trusted []netip.Prefix
		// request fills in req and returns the address the server must see.
		request func(req *http.Request, socket netip.Addr) netip.Addr
	}{
		{
			name: "no trusted proxy",
			request: func(req *http.Request, socket netip.Addr) netip.Addr {
				var xff []string
				for range rng.IntN(5) {
					w, _ := randAddr()
					xff = append(xff, w)
				}
				if rng.IntN(3) == 0 {
					xff = append(xff, randLoopback())
				}
				setXFF(req, xff)
				spoof(req)
				return socket
			},
		},
		{
			name:    "loopback trusted",
			trusted: mustTrusted(t, "127.0.0.0/8", "::1"),
			request: func(req *http.Request, socket netip.Addr) netip.Addr {
				spoof(req)
				if rng.IntN(10) == 0 {
					return socket // no X-Forwarded-For
				}
				var xff []string
				for range rng.IntN(4) { // whatever the client claimed
					if rng.IntN(4) == 0 {
						xff = append(xff, garbage[rng.IntN(len(garbage))])
					} else {
						w, _ := randAddr()
						xff = append(xff, w)
					}
				}
				w, client := randAddr() // appended by the first proxy
				xff = append(xff, w)
				for range rng.IntN(3) { // further proxies
					xff = append(xff, randLoopback())
				}
				setXFF(req, xff)
				return client
			},
		},
		{
			name:    "garbage",
			trusted: mustTrusted(t, "127.0.0.0/8", "::1"),
			request: func(req *http.Request, socket netip.Addr) netip.Addr {
				spoof(req)
				var xff []string
				for range rng.IntN(3) {
					w, _ := randAddr()
					xff = append(xff, w)
				}
				xff = append(xff, garbage[rng.IntN(len(garbage))])
				// Nothing left of the garbage can be believed: the answer is
				// the trusted hop just right of it, or the socket.
				want := socket
				for i := range rng.IntN(3) {
					hop := randLoopback()
					xff = append(xff, hop)
					if i == 0 {
						want = netip.MustParseAddr(hop)
					}
				}
				setXFF(req, xff)
				return want
			},
		},
	}

	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			srv := httptest.NewServer(httpapi.NewHandler(httpapi.Options{
				Dialects:       []httpapi.Dialect{echoDialect{}},
				TrustedProxies: cfg.trusted,
			}))
			defer srv.Close()
			socket := netip.MustParseAddrPort(srv.Listener.Addr().String()).Addr().Unmap()
			if !socket.IsLoopback() {
				t.Fatalf("test server on %v, want loopback", socket)
			}
			client := srv.Client()
			seen := map[netip.Addr]int{}
			for i := range 1000 {
				req, err := http.NewRequest("GET", srv.URL+"/ip", nil)
				if err != nil {
					t.Fatal(err)
				}
				want := cfg.request(req, socket)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, body, err)
				}
				got, err := netip.ParseAddr(string(body))
				if err != nil {
					t.Fatalf("request %d: server saw %q", i, body)
				}
				if got != want {
					t.Fatalf("request %d with %q: server saw %v, want %v", i, req.Header, got, want)
				}
				seen[got]++
			}
			if cfg.trusted == nil && len(seen) != 1 {
				t.Errorf("without trusted proxies the server saw %d addresses, want 1", len(seen))
			}
		})
	}
}

func TestClientIPAbsent(t *testing.T) {
	if got := httpapi.ClientIP(t.Context()); got != netip.IPv4Unspecified() {
		t.Errorf("ClientIP without middleware = %v, want 0.0.0.0", got)
	}
}

func FuzzClientAddr(f *testing.F) {
	f.Add("203.0.113.7:4000", "198.51.100.1, 198.51.100.2", "", uint8(0))
	f.Add("10.0.0.2:4000", "1.1.1.1, 198.51.100.9:5678, 10.3.3.3", "10.4.4.4", uint8(1))
	f.Add("[::ffff:10.0.0.2]:4000", "unknown, [2001:db8::1]:80", "", uint8(1))
	f.Add("[fe80::1%eth0]:80", "fe80::2%eth1, ::1", "::ffff:1.2.3.4", uint8(2))
	f.Add("127.0.0.1:1", ",,, ,", " ", uint8(3))
	f.Add("", "1.2.3.4", "", uint8(3))
	f.Add("@", "[1.2.3.4]:80, [::1", "%", uint8(2))
	trustSets := [][]netip.Prefix{
		nil,
		mustTrusted(f, "10.0.0.0/8", "2001:db8:ffff::/48"),
		mustTrusted(f, "127.0.0.0/8", "::1", "fe80::/10"),
		mustTrusted(f, "0.0.0.0/0", "::/0"),
	}
	f.Fuzz(func(t *testing.T, remote, xff1, xff2 string, sel uint8) {
		trusted := trustSets[int(sel)%len(trustSets)]
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		if xff1 != "" {
			r.Header.Add("X-Forwarded-For", xff1)
		}
		if xff2 != "" {
			r.Header.Add("X-Forwarded-For", xff2)
		}
		got := httpapi.ClientAddr(r, trusted)
		if !got.IsValid() {
			t.Fatalf("ClientAddr(%q, %q) = invalid address", remote, r.Header)
		}
		if got.Is4In6() || got.Zone() != "" {
			t.Fatalf("ClientAddr(%q, %q) = %v: mapped or zoned", remote, r.Header, got)
		}
		// An untrusted socket is the answer whatever the headers say.
		if sock, ok := parseSocket(remote); ok {
			trustedSock := false
			for _, p := range trusted {
				trustedSock = trustedSock || p.Contains(sock)
			}
			if !trustedSock && got != sock {
				t.Fatalf("ClientAddr(%q, %q) = %v, want the untrusted socket %v", remote, r.Header, got, sock)
			}
		}
	})
}

// parseSocket parses a RemoteAddr as net/http writes it.
func parseSocket(s string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
