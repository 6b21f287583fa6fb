//go:build !(glide && cgo && linux)

package lab

import "context"

// glideBuiltIn: this binary was built without the glide tag, cgo or Linux.
const glideBuiltIn = false

// newValkeyGlide is never reached: Config.Validate refuses the strategy.
func newValkeyGlide(context.Context, *run, string) (pinger, error) { return nil, ErrNotBuiltIn }
