package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/otpd/otpd"
)

// JWKSMaxAge is how long clients may cache the JWKS. A rotation publishes
// the new key before it signs (otpd signing-keys rotate --activate-in,
// default twice this), so a verifier that honours it knows the new key
// before it sees a token of it.
const JWKSMaxAge = 5 * time.Minute

// JWKS serves the public parts of keys' published signing keys as a JSON
// Web Key Set (RFC 7517), cacheable for JWKSMaxAge.
func JWKS(keys *otpd.SigningKeys) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := json.Marshal(keys.JWKS())
		if err != nil {
			WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal", "message": internalMessage})
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(JWKSMaxAge.Seconds())))
		h.Set("X-Content-Type-Options", "nosniff")
		w.Write(body)
	})
}
