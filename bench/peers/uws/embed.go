// Package uws embeds the uWebSockets.js peer of wsbench (server.mjs, its
// package.json and lock) so that the harness can install it into a cache
// folder and run it from any working directory; see bench/harness/uws.go.
package uws

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
)

// Files holds server.mjs, package.json and package-lock.json.
//
//go:embed server.mjs package.json package-lock.json
var Files embed.FS

// Names are the files in Files, in a fixed order.
var Names = []string{"server.mjs", "package.json", "package-lock.json"}

// Digest is a short hash of the embedded files: a cache folder holding
// other versions of them is refreshed.
func Digest() (string, error) {
	h := sha256.New()
	for _, n := range Names {
		b, err := fs.ReadFile(Files, n)
		if err != nil {
			return "", err
		}
		h.Write([]byte(n))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}
