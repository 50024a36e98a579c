package main

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Account is a signed-up email in a sign-in pool. Its fields other than
// Email are only touched by the client that holds it.
type Account struct {
	Email     string
	lastMsgID string    // id of the last outbox message whose code was used
	lastSend  time.Time // when a code was last requested for it
	uses      int       // sign-ins started with it
	refresh   string    // SuperTokens: the refresh token of its latest session
	busy      bool
}

// Pool holds the accounts created by sign-ups and hands them to sign-in
// clients round-robin, in the order they were created, so that every account
// is reused as rarely as possible (once per Len sign-ins) and the oldest
// accounts, whose last code was sent longest ago, are taken first. An
// account is held by one client at a time.
type Pool struct {
	mu     sync.Mutex
	accts  []*Account
	next   int
	minGap time.Duration // shortest time between two sends to one account since resetGap
}

// Add appends an account whose sign-up code (outbox message msgID) was sent at sent.
func (p *Pool) Add(email, msgID string, sent time.Time) {
	p.add(&Account{Email: email, lastMsgID: msgID, lastSend: sent})
}

// add appends an account.
func (p *Pool) add(a *Account) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accts = append(p.accts, a)
}

// Len returns the number of accounts.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.accts)
}

// acquire returns the next free account round-robin and marks it busy, or
// nil when every account is held. It counts a sign-in, whose code is sent
// at now.
func (p *Pool) acquire(now time.Time) *Account { return p.take(now, true) }

// acquireSession is acquire for a request that sends no code (a session
// refresh): the sign-in counts and reuse gaps are left alone.
func (p *Pool) acquireSession() *Account { return p.take(time.Time{}, false) }

func (p *Pool) take(now time.Time, send bool) *Account {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.accts)
	for i := range n {
		idx := (p.next + i) % n
		a := p.accts[idx]
		if a.busy {
			continue
		}
		a.busy = true
		p.next = (idx + 1) % n
		if !send {
			return a
		}
		a.uses++
		if !a.lastSend.IsZero() {
			if gap := now.Sub(a.lastSend); p.minGap == 0 || gap < p.minGap {
				p.minGap = gap
			}
		}
		a.lastSend = now
		return a
	}
	return nil
}

// release returns an account taken with acquire.
func (p *Pool) release(a *Account) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a.busy = false
}

// resetGap starts a new measurement of the shortest reuse gap.
func (p *Pool) resetGap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.minGap = 0
}

// Stats returns the pool's size, the most sign-ins any account has served,
// and the shortest gap between two code sends to one account since the last
// resetGap (sign-up sends count).
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PoolStats{Size: len(p.accts), MinGap: p.minGap.Seconds()}
	for _, a := range p.accts {
		s.MaxUses = max(s.MaxUses, a.uses)
	}
	return s
}

// usesByEmail returns each account's sign-in count (for tests).
func (p *Pool) usesByEmail() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]int, len(p.accts))
	for _, a := range p.accts {
		m[a.Email] = a.uses
	}
	return m
}

// PasswordPool holds the emailpass accounts, which all share the run's
// password. A password sign-in changes nothing on the server that another
// would trip over, so sign-ins pick accounts at random and may share one.
type PasswordPool struct {
	mu     sync.Mutex
	emails []string
}

// Add appends a registered account.
func (p *PasswordPool) Add(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.emails = append(p.emails, email)
}

// Len returns the number of accounts.
func (p *PasswordPool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.emails)
}

// random returns a uniformly random account, or "" when there is none.
func (p *PasswordPool) random() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.emails) == 0 {
		return ""
	}
	return p.emails[rand.IntN(len(p.emails))]
}
