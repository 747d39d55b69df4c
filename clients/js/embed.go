// Package jsclient embeds the JavaScript client library (wsgate.js, its
// type declarations and package.json) so the gateway can serve it from its
// admin port. The embed lives here, next to the sources, because go:embed
// cannot reach a parent directory: a copy under cmd/gateway could drift
// from the library, this cannot.
package jsclient

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

// Source is wsgate.js, the ES module.
//
//go:embed wsgate.js
var Source []byte

// Types is wsgate.d.ts, the TypeScript declarations.
//
//go:embed wsgate.d.ts
var Types []byte

//go:embed package.json
var packageJSON []byte

// Version returns the library's version from its package.json, the one
// npm publishes.
func Version() (string, error) {
	var p struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(packageJSON, &p); err != nil {
		return "", fmt.Errorf("jsclient: package.json: %w", err)
	}
	if p.Version == "" {
		return "", fmt.Errorf("jsclient: package.json has no version")
	}
	return p.Version, nil
}
