package outbox

import "time"

// SetRenewal makes d renew its leases every every and call hook after each
// renewal, with the lease end it stored and the messages it renewed.
func SetRenewal(d *Dispatcher, every time.Duration, hook func(leaseUntil time.Time, renewed []string)) {
	d.renewEvery = every
	d.onRenew = hook
}

// Owner returns the id d leases messages under.
func Owner(d *Dispatcher) string { return d.owner() }
