package simulate

import "github.com/stormguard/stormguard/backoff"

// labGlide is GLIDE's defaults with retries replaced.
func labGlide(retries int) backoff.Params {
	g := backoff.DefaultGLIDE()
	g.Retries = retries
	return backoff.Params{GLIDE: g}
}
