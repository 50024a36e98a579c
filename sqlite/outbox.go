package sqlite

import (
	"context"
	"encoding/json"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/internal/sqlstore"
)

// EnqueueMessages implements otpd.OutboxTx.
func (t *tx) EnqueueMessages(ctx context.Context, msgs []*otpd.OutboxMessage) error {
	for _, m := range msgs {
		payload := m.Payload
		if payload == nil {
			payload = []byte{} // NOT NULL
		}
		_, err := t.exec(ctx, qEnqueueMessage, m.ID, m.Notifier, payload, m.Attempts,
			sqlstore.MS(m.NextAttemptAt), sqlstore.MS(m.CreatedAt), sqlstore.MS(m.ExpiresAt), m.LastError, m.LeaseOwner)
		if isUniqueViolation(err) {
			return otpd.Errorf(otpd.ECONFLICT, "Message %s already exists.", m.ID)
		} else if err != nil {
			return mapError("enqueue message", err)
		}
	}
	return nil
}

// ClaimMessages implements otpd.OutboxTx with one UPDATE ... RETURNING. The
// messages returned carry their new lease (NextAttemptAt and LeaseOwner). SQLite does
// not order RETURNING rows, so they are sorted here: oldest (CreatedAt, then
// the time-ordered ID) first.
func (t *tx) ClaimMessages(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]*otpd.OutboxMessage, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := t.query(ctx, qClaimMessages, sqlstore.MS(leaseUntil), sqlstore.MS(now), limit, owner)
	if err != nil {
		return nil, mapError("claim messages", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanMessage)
	if err != nil {
		return nil, mapError("claim messages", err)
	}
	sqlstore.SortClaimed(out)
	return out, nil
}

// DeleteMessage implements otpd.OutboxTx. Deleting a missing message is not
// an error.
func (t *tx) DeleteMessage(ctx context.Context, id string) error {
	_, err := t.exec(ctx, qDeleteMessage, id)
	return mapError("delete message", err)
}

// RenewLeases implements otpd.OutboxTx with one UPDATE ... RETURNING.
func (t *tx) RenewLeases(ctx context.Context, owner string, ids []string, leaseUntil time.Time) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := t.query(ctx, qRenewLeases, owner, string(list), sqlstore.MS(leaseUntil))
	if err != nil {
		return nil, mapError("renew leases", err)
	}
	defer rows.Close()
	out, err := sqlstore.Collect(rows, sqlstore.ScanString)
	if err != nil {
		return nil, mapError("renew leases", err)
	}
	return out, nil
}

// RescheduleMessage implements otpd.OutboxTx: one UPDATE conditional on the
// owner. A message that is gone (deleted after another dispatcher delivered
// it) or held by another owner (its lease ran out and it was claimed again)
// is left alone: that is not an error.
func (t *tx) RescheduleMessage(ctx context.Context, owner, id string, attempts int, next time.Time, lastError string) (bool, error) {
	n, err := t.execCount(ctx, "reschedule message", qRescheduleMessage, id, attempts, sqlstore.MS(next), lastError, owner)
	return n > 0, err
}

// CountMessages implements otpd.OutboxTx.
func (t *tx) CountMessages(ctx context.Context) (int, error) {
	var n int
	if err := t.queryRow(ctx, qCountMessages).Scan(&n); err != nil {
		return 0, mapError("count messages", err)
	}
	return n, nil
}
