// Package quickstart carries the quickstart example domains into the binary, so that
// `athenz-mesh dev` starts with them when no --domains directory is given.
package quickstart

import "embed"

// Domains holds domains/*.yaml: the sports, media and ops domains the README explains.
//
//go:embed domains/*.yaml
var Domains embed.FS
