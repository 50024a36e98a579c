package sqlstore_test

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/otpd/otpd/internal/sqlstore"
)

func TestMigrations(t *testing.T) {
	ok := fstest.MapFS{
		"migration/0002_more.sql": {Data: []byte("B")},
		"migration/0001_init.sql": {Data: []byte("A")},
		"migration/README.md":     {Data: []byte("not a migration")},
	}
	got, err := sqlstore.Migrations(ok, "migration")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Version != 1 || got[0].Name != "0001_init.sql" || got[0].SQL != "A" || got[1].Version != 2 {
		t.Fatalf("Migrations = %+v, want 0001 then 0002", got)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":       {"migration/init.sql": {Data: []byte("A")}},
		"zero version":   {"migration/0000_init.sql": {Data: []byte("A")}},
		"shared version": {"migration/0001_a.sql": {Data: []byte("A")}, "migration/1_b.sql": {Data: []byte("B")}},
	} {
		if _, err := sqlstore.Migrations(fsys, "migration"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestJSONAndTimes(t *testing.T) {
	if b, _ := sqlstore.EncodeJSON(nil); string(b) != "{}" {
		t.Fatalf("EncodeJSON(nil) = %s, want {}", b)
	}
	m, err := sqlstore.DecodeJSON(nil)
	if err != nil || m == nil || len(m) != 0 {
		t.Fatalf("DecodeJSON(nil) = %v, %v; want an empty map", m, err)
	}
	if _, err := sqlstore.DecodeJSON([]byte("[1]")); err == nil {
		t.Fatal("DecodeJSON of an array: no error")
	}
	b, _ := sqlstore.EncodeJSON(map[string]any{"tier": "gold"})
	if m, _ := sqlstore.DecodeJSON(b); m["tier"] != "gold" || !strings.Contains(string(b), "gold") {
		t.Fatalf("round trip: %s -> %v", b, m)
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 678e6, time.FixedZone("x", 3600))
	if got := sqlstore.FromMS(sqlstore.MS(now)); !got.Equal(now) || got.Location() != time.UTC {
		t.Fatalf("FromMS(MS(t)) = %v, want %v in UTC", got, now)
	}
	if sqlstore.NullMS(nil) != nil || sqlstore.FromNullMS(nil) != nil {
		t.Fatal("nil times do not stay nil")
	}
	if got := sqlstore.FromNullMS(sqlstore.NullMS(&now)); got == nil || !got.Equal(now) {
		t.Fatalf("FromNullMS(NullMS(t)) = %v", got)
	}
	if v := sqlstore.ZeroMS(time.Time{}); v != 0 {
		t.Fatalf("ZeroMS(zero time) = %d, want 0", v)
	}
	if got := sqlstore.FromZeroMS(0); !got.IsZero() {
		t.Fatalf("FromZeroMS(0) = %v, want the zero time", got)
	}
	if got := sqlstore.FromZeroMS(sqlstore.ZeroMS(now)); !got.Equal(now) || got.Location() != time.UTC {
		t.Fatalf("FromZeroMS(ZeroMS(t)) = %v, want %v in UTC", got, now)
	}
}

// fakeRows yields vals, then err.
type fakeRows struct {
	vals []string
	i    int
	err  error
}

func (r *fakeRows) Next() bool { r.i++; return r.i <= len(r.vals) }
func (r *fakeRows) Err() error { return r.err }
func (r *fakeRows) Scan(dest ...any) error {
	*dest[0].(*string) = r.vals[r.i-1]
	return nil
}

func TestCollect(t *testing.T) {
	got, err := sqlstore.Collect(&fakeRows{vals: []string{"a", "b"}}, sqlstore.ScanString)
	if err != nil || len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Collect = %q, %v", got, err)
	}
	got, err = sqlstore.Collect(&fakeRows{}, sqlstore.ScanString)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Collect of no rows = %#v, %v; want an empty, non-nil slice", got, err)
	}
	broken := errors.New("connection lost")
	if _, err := sqlstore.Collect(&fakeRows{vals: []string{"a"}, err: broken}, sqlstore.ScanString); !errors.Is(err, broken) {
		t.Fatalf("Collect with a failed iteration: %v", err)
	}
}
