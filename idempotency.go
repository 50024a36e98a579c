package otpd

import (
	"context"
	"time"
)

// StoredResponse is the first answer to a request made with an idempotency
// key, kept so that a retry of the same request gets it again instead of
// acting twice. Body is sealed under the server key (it may carry a code).
type StoredResponse struct {
	Tenant      string
	Scope       string // who may replay it: the API key that made the request
	Key         string // the client's Idempotency-Key
	RequestHash []byte // SHA-256 of the request; a retry with another body is refused
	Status      int
	Body        []byte
	CreatedAt   time.Time
}

// IdempotencyTx stores the answers of idempotent requests.
type IdempotencyTx interface {
	// SaveResponse inserts r. A record of the same (Tenant, Scope, Key)
	// created at or before expiredBefore is replaced; a newer one is kept
	// and SaveResponse returns ECONFLICT. Two transactions saving one key
	// at once: one wins, the other gets ECONFLICT.
	SaveResponse(ctx context.Context, r *StoredResponse, expiredBefore time.Time) error

	// FindResponse returns the record of (tenant, scope, key) created after
	// since. Returns ENOTFOUND if there is none.
	FindResponse(ctx context.Context, tenant, scope, key string, since time.Time) (*StoredResponse, error)

	// DeleteResponsesBefore removes the records created before t and
	// returns how many it removed.
	DeleteResponsesBefore(ctx context.Context, t time.Time) (int, error)
}
