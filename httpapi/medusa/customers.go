package medusa

import (
	"net/http"
	"time"

	"github.com/otpd/otpd"
	"github.com/otpd/otpd/httpapi"
)

var createCustomerBody = []httpapi.Field{
	{Name: "email", Type: "string", Nullable: true},
	{Name: "first_name", Type: "string", Nullable: true},
	{Name: "last_name", Type: "string", Nullable: true},
	{Name: "phone", Type: "string", Nullable: true},
	{Name: "company_name", Type: "string", Nullable: true},
	{Name: "metadata", Type: "object", Nullable: true},
}

// customer is Medusa's store customer representation.
type customer struct {
	ID          string         `json:"id"`
	Email       *string        `json:"email"`
	CompanyName *string        `json:"company_name"`
	FirstName   *string        `json:"first_name"`
	LastName    *string        `json:"last_name"`
	Phone       *string        `json:"phone"`
	Metadata    map[string]any `json:"metadata"`
	HasAccount  bool           `json:"has_account"`
	DeletedAt   *string        `json:"deleted_at"`
	CreatedAt   string         `json:"created_at"`
	UpdatedAt   string         `json:"updated_at"`
	Addresses   []any          `json:"addresses"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// timestamp formats t as Medusa does: UTC, milliseconds, "Z".
func timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func toCustomer(a *otpd.Actor) customer {
	md := a.Metadata
	if len(md) == 0 {
		md = nil
	}
	return customer{
		ID: a.ID, Email: nullable(a.Email), CompanyName: nullable(a.CompanyName),
		FirstName: nullable(a.FirstName), LastName: nullable(a.LastName), Phone: nullable(a.Phone),
		Metadata: md, HasAccount: a.HasAccount, CreatedAt: timestamp(a.CreatedAt), UpdatedAt: timestamp(a.UpdatedAt),
		Addresses: []any{},
	}
}

// handleCreateCustomer serves POST /store/customers: create the customer of
// a registration token's auth identity.
func (h *Handler) handleCreateCustomer(w http.ResponseWriter, r *http.Request) {
	if !h.checkPublishableKey(w, r) {
		return
	}
	p, _ := h.authenticate(w, r, fromBearer|fromSession, []string{h.storeActor()}, true)
	if p == nil {
		return
	}
	body := h.decode(w, r, createCustomerBody)
	if body == nil {
		return
	}
	a, err := h.Actors.CreateActor(r.Context(), p, otpd.ActorFields{
		Email:       body.StringPtr("email"),
		Phone:       body.StringPtr("phone"),
		FirstName:   body.StringPtr("first_name"),
		LastName:    body.StringPtr("last_name"),
		CompanyName: body.StringPtr("company_name"),
		Metadata:    body.Object("metadata"),
	})
	if err != nil {
		h.writeAuthError(w, r, h.word(err, p.ActorType, ""))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"customer": toCustomer(a)})
}

// handleGetCustomer serves GET /store/customers/me.
func (h *Handler) handleGetCustomer(w http.ResponseWriter, r *http.Request) {
	if !h.checkPublishableKey(w, r) {
		return
	}
	p, _ := h.authenticate(w, r, fromBearer|fromSession, []string{h.storeActor()}, false)
	if p == nil {
		return
	}
	a, err := h.Actors.FindActor(r.Context(), p)
	if err != nil {
		h.writeAuthError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"customer": toCustomer(a)})
}
