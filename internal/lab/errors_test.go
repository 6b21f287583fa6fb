package lab

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigErrorRender(t *testing.T) {
	err := bad("Instances", "{Instances} %d exceeds {Clients} %d", 11, 10)
	if !errors.Is(err, ErrConfig) {
		t.Fatal("ConfigError does not match ErrConfig")
	}
	if got := err.Error(); got != "Instances 11 exceeds Clients 10" {
		t.Errorf("Error() = %q", got)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "Instances" {
		t.Fatalf("errors.As: %v", err)
	}
	flag := func(f string) string { return "--" + strings.ToLower(f) }
	if got := ce.Render(flag); got != "--instances 11 exceeds --clients 10" {
		t.Errorf("Render = %q", got)
	}
}
