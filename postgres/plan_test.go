package postgres_test

import (
	"strings"
	"testing"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/postgres"
)

// TestLookupByIDUsesPrimaryKey: under a generic plan (what a prepared
// statement gets after a few executions), on a fresh table whose
// statistics say nothing, the lookups by id find the row by the primary key,
// never by scanning the challenges of one tenant and actor type.
func TestLookupByIDUsesPrimaryKey(t *testing.T) {
	db := open(t, newSchema(t), postgres.Options{})
	for name, sql := range postgres.LookupByIDStatements {
		args := map[string]string{
			"FindChallenge":      "'public', 'ver_x'",
			"AttemptChallengeID": "'public', 'api:', 'ver_x', 0",
			"CancelChallenge":    "'public', 'ver_x', 0",
		}[name]
		var plan []string
		err := db.Update(t.Context(), func(tx otpd.Tx) error {
			c := postgres.TxConn(tx)
			if _, err := c.Exec(t.Context(), "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
				return err
			}
			stmt := "plan_" + strings.ToLower(name)
			if _, err := c.Exec(t.Context(), "PREPARE "+stmt+" AS "+sql); err != nil {
				return err
			}
			defer c.Exec(t.Context(), "DEALLOCATE "+stmt)
			rows, err := c.Query(t.Context(), "EXPLAIN EXECUTE "+stmt+"("+args+")")
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var line string
				rows.Scan(&line)
				plan = append(plan, line)
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		text := strings.Join(plan, "\n")
		if !strings.Contains(text, "challenges_pkey") || strings.Contains(text, "challenges_key_idx") {
			t.Errorf("%s: generic plan does not use the primary key:\n%s", name, text)
		}
	}
}
