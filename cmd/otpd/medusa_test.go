package main

import (
	"strings"
	"testing"
)

// TestMedusaStoreActorType: the store routes' actor type comes from the
// configuration and must be a configured actor type.
func TestMedusaStoreActorType(t *testing.T) {
	c := DefaultConfig()
	h, err := c.medusaHandler(&flows{}, []byte("x"))
	if err != nil || h.StoreActorType != "customer" {
		t.Fatalf("default: %q %v", h.StoreActorType, err)
	}
	c.ActorTypes = append(c.ActorTypes, ActorTypeConfig{Name: "member", IDPrefix: "mem"})
	if err := c.ApplyEnv(func(k string) (string, bool) {
		return "member", k == "OTPD_MEDUSA_STORE_ACTOR_TYPE"
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("a configured actor type: %v", err)
	}
	if h, _ := c.medusaHandler(&flows{}, []byte("x")); h.StoreActorType != "member" {
		t.Fatalf("StoreActorType = %q, want member", h.StoreActorType)
	}
	c.Medusa.StoreActorType = "robot"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "medusa.store_actor_type") {
		t.Fatalf("an unknown actor type: %v, want an error naming medusa.store_actor_type", err)
	}
}
