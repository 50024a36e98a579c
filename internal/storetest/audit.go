package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var auditTests = []subtest{
	{"InsertFindRoundTrip", testAuditRoundTrip},
	{"InsertConflict", testAuditConflict},
	{"RolledBackLeavesNothing", testAuditRollback},
	{"Filters", testAuditFilters},
	{"NewestFirstPages", testAuditPages},
	{"DeleteBefore", testAuditDeleteBefore},
	{"ConcurrentInserts", testAuditConcurrent},
}

// newAuditRecord returns a record of event at t, with every field set.
func newAuditRecord(tenant string, event otpd.AuditEvent, t time.Time) *otpd.AuditRecord {
	outcome := otpd.AuditSuccess
	if event == otpd.AuditCodeFailed {
		outcome = otpd.AuditFailure
	}
	return &otpd.AuditRecord{
		ID: otpd.NewID("aud"), Time: t, Tenant: tenant, Event: event, Outcome: outcome,
		Purpose: otpd.PurposeSignIn, IdentityID: "authid_1", Address: "alice@example.com",
		ClientAddr: "192.0.2.7", UserAgent: "test/1.0", RequestID: "req1", APIKeyID: "key_1",
		Detail: map[string]string{otpd.DetailChannel: "email", otpd.DetailAttempts: "1"},
	}
}

func insertAudit(tb testing.TB, s otpd.Store, rs ...*otpd.AuditRecord) {
	tb.Helper()
	MustUpdate(tb, s, func(tx otpd.Tx) error {
		for _, r := range rs {
			if err := tx.InsertAudit(tb.Context(), r); err != nil {
				return err
			}
		}
		return nil
	})
}

func findAudit(tb testing.TB, s otpd.Store, f otpd.AuditFilter) []*otpd.AuditRecord {
	tb.Helper()
	if f.Limit == 0 {
		f.Limit = 1000
	}
	var out []*otpd.AuditRecord
	MustView(tb, s, func(tx otpd.Tx) (err error) {
		out, err = tx.FindAudit(tb.Context(), f)
		return err
	})
	return out
}

func auditIDs(rs []*otpd.AuditRecord) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func testAuditRoundTrip(t *testing.T, s otpd.Store) {
	r := newAuditRecord(otpd.DefaultTenant, otpd.AuditCodeSent, t0)
	bare := &otpd.AuditRecord{ID: otpd.NewID("aud"), Time: t0.Add(time.Millisecond), Tenant: otpd.DefaultTenant,
		Event: otpd.AuditThrottled, Outcome: otpd.AuditFailure}
	insertAudit(t, s, r, bare)
	got := findAudit(t, s, otpd.AuditFilter{})
	if len(got) != 2 {
		t.Fatalf("found %d records, want 2", len(got))
	}
	if !reflect.DeepEqual(got[0], bare) {
		t.Errorf("bare record read back as %+v, want %+v", got[0], bare)
	}
	if !reflect.DeepEqual(got[1], r) {
		t.Errorf("record read back as %+v, want %+v", got[1], r)
	}
}

func testAuditConflict(t *testing.T, s otpd.Store) {
	r := newAuditRecord(otpd.DefaultTenant, otpd.AuditCodeSent, t0)
	insertAudit(t, s, r)
	err := s.Update(t.Context(), func(tx otpd.Tx) error { return tx.InsertAudit(t.Context(), r) })
	wantCode(t, "InsertAudit of an existing id", err, otpd.ECONFLICT)
}

func testAuditRollback(t *testing.T, s otpd.Store) {
	boom := errors.New("boom")
	err := s.Update(t.Context(), func(tx otpd.Tx) error {
		if err := tx.InsertAudit(t.Context(), newAuditRecord(otpd.DefaultTenant, otpd.AuditCodeSent, t0)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if got := findAudit(t, s, otpd.AuditFilter{}); len(got) != 0 {
		t.Fatalf("a rolled-back insert left %d records", len(got))
	}
}

func testAuditFilters(t *testing.T, s otpd.Store) {
	a := newAuditRecord("acme", otpd.AuditCodeSent, t0)
	b := newAuditRecord("acme", otpd.AuditCodeFailed, t0.Add(time.Second))
	b.IdentityID, b.Address = "authid_2", "bob@example.com"
	c := newAuditRecord("other", otpd.AuditCodeVerified, t0.Add(2*time.Second))
	d := newAuditRecord("acme", otpd.AuditThrottled, t0.Add(3*time.Second))
	d.IdentityID, d.Address, d.Outcome = "", "", otpd.AuditFailure
	insertAudit(t, s, a, b, c, d)
	cases := []struct {
		name string
		f    otpd.AuditFilter
		want []*otpd.AuditRecord
	}{
		{"All", otpd.AuditFilter{}, []*otpd.AuditRecord{d, c, b, a}},
		{"Tenant", otpd.AuditFilter{Tenant: "acme"}, []*otpd.AuditRecord{d, b, a}},
		{"Identity", otpd.AuditFilter{IdentityID: "authid_1"}, []*otpd.AuditRecord{c, a}},
		{"IdentityInTenant", otpd.AuditFilter{Tenant: "acme", IdentityID: "authid_1"}, []*otpd.AuditRecord{a}},
		{"Address", otpd.AuditFilter{Address: "bob@example.com"}, []*otpd.AuditRecord{b}},
		{"Events", otpd.AuditFilter{Events: []otpd.AuditEvent{otpd.AuditCodeSent, otpd.AuditThrottled}}, []*otpd.AuditRecord{d, a}},
		{"Outcome", otpd.AuditFilter{Outcome: otpd.AuditFailure}, []*otpd.AuditRecord{d, b}},
		{"Since", otpd.AuditFilter{Since: t0.Add(time.Second)}, []*otpd.AuditRecord{d, c, b}},
		{"Until", otpd.AuditFilter{Until: t0.Add(time.Second)}, []*otpd.AuditRecord{a}},
		{"Range", otpd.AuditFilter{Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)}, []*otpd.AuditRecord{c, b}},
		{"Limit", otpd.AuditFilter{Limit: 2}, []*otpd.AuditRecord{d, c}},
		{"NoMatch", otpd.AuditFilter{Tenant: "nobody"}, nil},
	}
	for _, tc := range cases {
		got := findAudit(t, s, tc.f)
		if fmt.Sprint(auditIDs(got)) != fmt.Sprint(auditIDs(tc.want)) {
			t.Errorf("%s: found %v, want %v", tc.name, auditIDs(got), auditIDs(tc.want))
		}
	}
}

func testAuditPages(t *testing.T, s otpd.Store) {
	// 25 records, several in the same millisecond: pages by (time, id)
	// must neither skip nor repeat one.
	var all []*otpd.AuditRecord
	for i := range 25 {
		all = append(all, newAuditRecord(otpd.DefaultTenant, otpd.AuditCodeSent, t0.Add(time.Duration(i/3)*time.Millisecond)))
	}
	insertAudit(t, s, all...)
	var seen []string
	f := otpd.AuditFilter{Limit: 4}
	for range 100 {
		page := findAudit(t, s, f)
		seen = append(seen, auditIDs(page)...)
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1]
	}
	if len(seen) != len(all) {
		t.Fatalf("pages held %d records, want %d", len(seen), len(all))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] {
			t.Fatalf("record %s repeated", seen[i])
		}
	}
	full := auditIDs(findAudit(t, s, otpd.AuditFilter{}))
	if fmt.Sprint(full) != fmt.Sprint(seen) {
		t.Fatalf("pages = %v, want the full newest-first list %v", seen, full)
	}
	for i := 1; i < len(full); i++ {
		a, b := findOne(t, s, full[i-1]), findOne(t, s, full[i])
		if a.Time.Before(b.Time) || (a.Time.Equal(b.Time) && a.ID < b.ID) {
			t.Fatalf("records out of order: %s before %s", a.ID, b.ID)
		}
	}
}

func findOne(tb testing.TB, s otpd.Store, id string) *otpd.AuditRecord {
	for _, r := range findAudit(tb, s, otpd.AuditFilter{}) {
		if r.ID == id {
			return r
		}
	}
	tb.Fatalf("no record %s", id)
	return nil
}

func testAuditDeleteBefore(t *testing.T, s otpd.Store) {
	old := newAuditRecord(otpd.DefaultTenant, otpd.AuditCodeSent, t0)
	edge := newAuditRecord(otpd.DefaultTenant, otpd.AuditCodeSent, t0.Add(time.Hour))
	young := newAuditRecord(otpd.DefaultTenant, otpd.AuditCodeSent, t0.Add(2*time.Hour))
	insertAudit(t, s, old, edge, young)
	var n int
	MustUpdate(t, s, func(tx otpd.Tx) (err error) {
		n, err = tx.DeleteAuditBefore(t.Context(), t0.Add(time.Hour))
		return err
	})
	if n != 1 {
		t.Fatalf("DeleteAuditBefore removed %d, want 1", n)
	}
	if got := auditIDs(findAudit(t, s, otpd.AuditFilter{})); fmt.Sprint(got) != fmt.Sprint([]string{young.ID, edge.ID}) {
		t.Fatalf("left %v, want %v", got, []string{young.ID, edge.ID})
	}
}

func testAuditConcurrent(t *testing.T, s otpd.Store) {
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			r := newAuditRecord(otpd.DefaultTenant, otpd.AuditCodeFailed, t0.Add(time.Duration(i)*time.Millisecond))
			errs <- s.Update(t.Context(), func(tx otpd.Tx) error { return tx.InsertAudit(t.Context(), r) })
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := findAudit(t, s, otpd.AuditFilter{Events: []otpd.AuditEvent{otpd.AuditCodeFailed}}); len(got) != n {
		t.Fatalf("found %d records, want %d", len(got), n)
	}
}
