package lab

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrConfig is wrapped by every Config.Validate error.
var ErrConfig = errors.New("bad storm configuration")

// ErrUnreachable is returned when the target does not answer the admin
// connection's PING before the run starts.
var ErrUnreachable = errors.New("cannot reach Valkey")

// ConfigError is what is wrong with one field of a Config. Its message
// names fields in braces ("{Instances} 11 exceeds {Clients} 10"): Error
// prints them as Go field names, and Render lets a caller name them its own
// way (the CLI prints its flags).
type ConfigError struct {
	// Field is the Config field at fault, e.g. "Clients" or "Spawn.Down".
	Field string
	// Msg names Field and any other field in braces.
	Msg string
	// Err is the cause, if the message reports one (ErrNotBuiltIn).
	Err error
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

func (e *ConfigError) Error() string { return e.Render(func(f string) string { return f }) }

// Is makes errors.Is(err, ErrConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

var fieldRef = regexp.MustCompile(`\{([A-Za-z.]+)\}`)

// Render is the message with every {Field} replaced by name(Field).
func (e *ConfigError) Render(name func(field string) string) string {
	return fieldRef.ReplaceAllStringFunc(e.Msg, func(m string) string { return name(m[1 : len(m)-1]) })
}

// bad returns a ConfigError for field; format should mention {field}.
func bad(field, format string, a ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)}
}
