package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otpd/otpd"
)

// TestMedusaStoreActorType: the store routes' actor type comes from the
// configuration and must be a configured actor type.
func TestMedusaStoreActorType(t *testing.T) {
	c := DefaultConfig()
	h, err := c.medusaHandler(&flows{}, []byte("x"), nil)
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
	if h, _ := c.medusaHandler(&flows{}, []byte("x"), nil); h.StoreActorType != "member" {
		t.Fatalf("StoreActorType = %q, want member", h.StoreActorType)
	}
	c.Medusa.StoreActorType = "robot"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "medusa.store_actor_type") {
		t.Fatalf("an unknown actor type: %v, want an error naming medusa.store_actor_type", err)
	}
}

// TestMedusaKeepUnprovenPasswords: medusa.keep_unproven_passwords (env
// OTPD_MEDUSA_KEEP_UNPROVEN_PASSWORDS) is off by default and reaches the
// code flow.
func TestMedusaKeepUnprovenPasswords(t *testing.T) {
	c := DefaultConfig()
	if c.Medusa.KeepUnprovenPasswords || newFlows(c, &otpd.Engine{}, nil, nil, nil).codes.KeepUnprovenPasswords {
		t.Fatal("unproven passwords kept by default")
	}
	path := filepath.Join(t.TempDir(), "otpd.yaml")
	if err := os.WriteFile(path, []byte("medusa:\n  keep_unproven_passwords: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadConfigFile(path); err != nil {
		t.Fatal(err)
	}
	if !newFlows(c, &otpd.Engine{}, nil, nil, nil).codes.KeepUnprovenPasswords {
		t.Fatal("medusa.keep_unproven_passwords: true did not reach the code flow")
	}
	if err := c.ApplyEnv(func(k string) (string, bool) {
		return "false", k == "OTPD_MEDUSA_KEEP_UNPROVEN_PASSWORDS"
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if newFlows(c, &otpd.Engine{}, nil, nil, nil).codes.KeepUnprovenPasswords {
		t.Fatal("OTPD_MEDUSA_KEEP_UNPROVEN_PASSWORDS=false did not override the file")
	}
}
