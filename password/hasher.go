package password

import "context"

// Hasher runs Hash and Verify with a bound on how many run at once. One
// scrypt run at the default parameters takes 32 MiB and roughly 80-150 ms of
// a core, so a burst of password logins run without a bound would take every
// core and starve the rest of the server. On a 2-core machine a concurrency
// of 1 or 2 is right; callers beyond the bound wait for a slot, or give up
// when their context ends.
//
// A Hasher is safe for concurrent use. The zero value is not usable: create
// one with NewHasher.
type Hasher struct {
	// Policy is the rules Check applies to new passwords (zero: the
	// defaults).
	Policy Policy

	slots  chan struct{}
	params params // for new hashes
	limits limits // for stored hashes
	kdf    kdfFunc
}

// NewHasher returns a Hasher that runs at most concurrency scrypt
// computations at once. A concurrency below 1 is taken as 1.
func NewHasher(concurrency int) *Hasher {
	if concurrency < 1 {
		concurrency = 1
	}
	return &Hasher{
		slots:  make(chan struct{}, concurrency),
		params: defaultParams,
		limits: defaultLimits,
		kdf:    scryptKDF,
	}
}

// acquire waits for a slot or for ctx to end. A context that has already
// ended never gets a slot, even if one is free.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Hasher) release() { <-h.slots }

// Check applies h.Policy to a new password: see [Policy.Check].
func (h *Hasher) Check(password string) error { return h.Policy.Check(password) }

// Hash is [Hash] run in one of h's slots. It waits for a free slot and
// returns ctx.Err() if ctx ends first. Once started, the scrypt computation
// runs to completion: it cannot be interrupted.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return hash(password, h.params, h.kdf)
}

// Verify is [Verify] run in one of h's slots. It waits for a free slot and
// returns ctx.Err() if ctx ends first. A malformed stored hash is reported
// without waiting for a slot, since it costs no scrypt work. When Verify
// tries both the given and the NFKC form of the password, both runs happen
// in the same slot.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (bool, error) {
	if _, _, err := decode(encoded, h.limits); err != nil {
		return false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	return verify(password, encoded, h.limits, h.kdf)
}
