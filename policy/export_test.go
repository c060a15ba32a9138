package policy

import "testing"

// CheckMarshalMatches exposes the encoder check to the external tests that use the
// generator (which imports this package, so it cannot be used from internal tests).
func CheckMarshalMatches(t *testing.T, worlds map[string][]*Domain) { checkMarshalMatches(t, worlds) }
