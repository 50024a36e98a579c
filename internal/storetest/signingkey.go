package storetest

import (
	"bytes"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd"
)

var signingKeyTests = []subtest{
	{"InsertListRoundTrip", testSigningKeyRoundTrip},
	{"InsertTakenSeq", testSigningKeyTakenSeq},
	{"InsertTakenID", testSigningKeyTakenID},
	{"ListEmpty", testSigningKeyListEmpty},
	{"ConcurrentFirstKeyOneWins", testSigningKeyConcurrentFirst},
}

// newSigningKey returns a key of seq with random key bytes.
func newSigningKey(seq int64, created time.Time) *otpd.SigningKey {
	pub, priv := make([]byte, 44), make([]byte, 80)
	rand.Read(pub)
	rand.Read(priv)
	return &otpd.SigningKey{
		ID: otpd.NewID("sk"), Seq: seq, Alg: otpd.AlgEdDSA, PublicKey: pub, PrivateKey: priv,
		CreatedAt: created, ActiveAt: created.Add(time.Duration(seq) * time.Minute),
	}
}

func insertSigningKey(tb testing.TB, s otpd.Store, k *otpd.SigningKey) (bool, error) {
	tb.Helper()
	var won bool
	err := s.Update(tb.Context(), func(tx otpd.Tx) (err error) {
		won, err = tx.InsertSigningKey(tb.Context(), k)
		return err
	})
	return won, err
}

func listSigningKeys(tb testing.TB, s otpd.Store) []*otpd.SigningKey {
	tb.Helper()
	var out []*otpd.SigningKey
	MustView(tb, s, func(tx otpd.Tx) (err error) {
		out, err = tx.ListSigningKeys(tb.Context())
		return err
	})
	return out
}

func testSigningKeyRoundTrip(t *testing.T, s otpd.Store) {
	// Inserted out of order, listed by seq.
	k2, k1 := newSigningKey(2, t0), newSigningKey(1, t0)
	k2.Alg = otpd.AlgRS256
	for _, k := range []*otpd.SigningKey{k2, k1} {
		if won, err := insertSigningKey(t, s, k); err != nil || !won {
			t.Fatalf("InsertSigningKey(seq %d) = %v, %v; want true, nil", k.Seq, won, err)
		}
	}
	got := listSigningKeys(t, s)
	if len(got) != 2 {
		t.Fatalf("ListSigningKeys: %d keys, want 2", len(got))
	}
	for i, want := range []*otpd.SigningKey{k1, k2} {
		g := got[i]
		if g.ID != want.ID || g.Seq != want.Seq || g.Alg != want.Alg || !bytes.Equal(g.PublicKey, want.PublicKey) ||
			!bytes.Equal(g.PrivateKey, want.PrivateKey) || !g.CreatedAt.Equal(want.CreatedAt) || !g.ActiveAt.Equal(want.ActiveAt) {
			t.Errorf("key %d = %+v, want %+v", i, g, want)
		}
	}
}

func testSigningKeyTakenSeq(t *testing.T, s otpd.Store) {
	first := newSigningKey(1, t0)
	if won, err := insertSigningKey(t, s, first); err != nil || !won {
		t.Fatalf("first insert = %v, %v", won, err)
	}
	if won, err := insertSigningKey(t, s, newSigningKey(1, t0.Add(time.Hour))); err != nil || won {
		t.Fatalf("insert of a taken seq = %v, %v; want false, nil", won, err)
	}
	if got := listSigningKeys(t, s); len(got) != 1 || got[0].ID != first.ID {
		t.Fatalf("after a taken seq: %d keys, want only the first", len(got))
	}
}

func testSigningKeyTakenID(t *testing.T, s otpd.Store) {
	k := newSigningKey(1, t0)
	if won, err := insertSigningKey(t, s, k); err != nil || !won {
		t.Fatalf("first insert = %v, %v", won, err)
	}
	dup := newSigningKey(2, t0)
	dup.ID = k.ID
	if _, err := insertSigningKey(t, s, dup); otpd.ErrorCode(err) != otpd.ECONFLICT {
		t.Fatalf("insert of a taken id: %v, want ECONFLICT", err)
	}
}

func testSigningKeyListEmpty(t *testing.T, s otpd.Store) {
	if got := listSigningKeys(t, s); len(got) != 0 {
		t.Fatalf("ListSigningKeys on an empty store: %d keys", len(got))
	}
}

// Several instances making the first key at once: exactly one insert wins.
func testSigningKeyConcurrentFirst(t *testing.T, s otpd.Store) {
	const n = 16
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
		errs []error
	)
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			won, err := insertSigningKey(t, s, newSigningKey(1, t0))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if won {
				wins++
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 || wins != 1 {
		t.Fatalf("%d concurrent first keys: %d won, errors %v; want exactly 1 and none", n, wins, errs)
	}
	if got := listSigningKeys(t, s); len(got) != 1 {
		t.Fatalf("%d keys stored, want 1", len(got))
	}
}
