package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/otpd/otpd"
)

// ParseTrustedProxies parses the trusted proxy setting: each entry is an IP
// address ("10.0.0.1", "::1") or a CIDR ("10.0.0.0/8"). Whitespace around an
// entry is trimmed and empty entries are skipped. IPv4-mapped IPv6 entries
// are turned into IPv4 ones, zones dropped, and host bits of a CIDR cleared.
func ParseTrustedProxies(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		p, err := parseTrustedProxy(e)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", e, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseTrustedProxy(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.WithZone("")
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() {
		// Masked leaves ::ffff: intact only when at least 96 bits remain.
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("not an address or CIDR")
	}
	return p, nil
}

// ClientAddr returns the address of the client that sent r.
//
// It is the socket address (r.RemoteAddr) unless that is one of trusted;
// then the X-Forwarded-For entries (all header lines, in order) are walked
// from right to left past trusted addresses and the first untrusted one is
// the client. An entry that is not an address stops the walk at the last
// trusted hop seen; if all entries are trusted the leftmost is returned.
// Entries may carry a port ("192.0.2.1:5678", "[2001:db8::1]:80"). No other
// header is read. IPv4-mapped addresses are returned as IPv4, without zone.
//
// The result is always a valid address: if r.RemoteAddr cannot be parsed,
// which a real server never produces, it is the unspecified 0.0.0.0, so that
// a missing address never means no limit.
//
// # Threat T13: spoofed forwarding headers
//
// otpd limits code requests per client address, so the address it attributes
// a request to must not be something the client can choose. Every header a
// client sends is under its control: X-Forwarded-For, X-Real-IP, Forwarded,
// True-Client-IP, CF-Connecting-IP. If otpd believed any of them blindly, one
// client could put a fresh random address in every request and never meet a
// per-address limit, or put a victim's address there and use up the victim's
// budget.
//
// So the address of a request is, by default, the address of the socket it
// came in on, and no header is read. Only when that socket belongs to a proxy
// the operator has declared trusted (Options.TrustedProxies, the
// trusted_proxies setting: the addresses or CIDRs of their own load balancers
// or reverse proxies, and nothing else) is X-Forwarded-For consulted, and only
// X-Forwarded-For: each proxy appends the address it received the connection
// from, so the list reads, left to right, as
//
//	<whatever the client claimed>, ..., <client as seen by the first proxy>, <proxy>, <proxy>
//
// The entries a trusted proxy appended are true; anything further left was
// written by someone else. The list is therefore walked from the right,
// skipping the operator's own proxies, and the first address that is not one
// of them is the client: the rightmost untrusted entry. The leftmost entry,
// which many frameworks return, is exactly the one the client chooses.
//
// An entry that is not an address (garbage, "unknown", an obfuscated RFC 7239
// node) stops the walk at the nearest trusted hop before it, since nothing to
// its left can be believed. If every entry is trusted the request came from
// inside the operator's own network, and the leftmost entry is used.
//
// # Setting trusted proxies
//
// An operator lists, in trusted_proxies (OTPD_TRUSTED_PROXIES, comma
// separated), the addresses or CIDRs their load balancer or reverse proxy
// connects to otpd from, for example "10.0.0.0/8" for a balancer in a
// private network or "127.0.0.1" for nginx on the same host, and nothing
// else. Each of those proxies must append the address it received the
// connection from to X-Forwarded-For (nginx: $proxy_add_x_forwarded_for),
// and clients must not be able to reach otpd around them.
//
// An operator who sets no trusted proxies while running behind a balancer
// sees every request as coming from the balancer: the limits then apply to
// all clients together, which is safe but coarse. One who trusts too much
// (0.0.0.0/0, or a shared cloud range others can send from) lets clients
// pick their own address again.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	sock, ok := parseRemoteAddr(r.RemoteAddr)
	if !ok {
		return netip.IPv4Unspecified()
	}
	if !isTrusted(sock, trusted) {
		return sock
	}
	client := sock // the last trusted hop seen
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		if strings.TrimSpace(v) == "" {
			continue // an empty header line is no header
		}
		for {
			j := strings.LastIndexByte(v, ',')
			a, ok := parseHost(v[j+1:])
			if !ok {
				return client
			}
			if !isTrusted(a, trusted) {
				return a
			}
			client = a
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return client
}

// parseRemoteAddr parses r.RemoteAddr: "host:port" as net/http writes it,
// or a bare address.
func parseRemoteAddr(s string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// parseHost parses "ip", "ip:port", "[ipv6]:port" or "[ipv6]", trimmed,
// into an unmapped address without zone.
func parseHost(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		var ap netip.AddrPort
		if ap, err = netip.ParseAddrPort(s); err == nil {
			a = ap.Addr()
		} else if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err == nil && !a.Is6() {
				err = errBracketedIPv4
			}
		}
	}
	if err != nil || !a.IsValid() {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

var errBracketedIPv4 = errors.New("square brackets around an IPv4 address")

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

const clientAddrKey ctxKey = 1

// ClientIP returns the client address stored by the server's middleware in
// ctx (see ClientAddr), or 0.0.0.0 if there is none.
func ClientIP(ctx context.Context) netip.Addr {
	if a, ok := ctx.Value(clientAddrKey).(netip.Addr); ok && a.IsValid() {
		return a
	}
	return netip.IPv4Unspecified()
}

// withClientAddr works out each request's client address once, with the
// operator's trusted proxies, and stores it for ClientIP; with the request
// id and the user agent, it is what the flows' audit records carry
// (otpd.RequestInfo).
func withClientAddr(trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := ClientAddr(r, trusted)
		ctx := context.WithValue(r.Context(), clientAddrKey, a)
		ctx = otpd.WithRequestInfo(ctx, otpd.RequestInfo{ID: RequestID(ctx), Client: a, UserAgent: r.UserAgent()})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
