package simulate

import "github.com/stormguard/stormguard/internal/lab"

func labGlide(retries int) lab.PolicyParams {
	return lab.PolicyParams{Retries: retries, GlideSet: map[string]bool{"retries": true}}
}
