package jsclient

import (
	"bytes"
	"regexp"
	"testing"
)

// The module's VERSION constant and package.json agree, so the file served
// as wsgate-<version>.js says what it is.
func TestVersionMatchesSource(t *testing.T) {
	v, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`export const VERSION = "([^"]+)";`).FindSubmatch(Source)
	if m == nil || string(m[1]) != v {
		t.Fatalf("wsgate.js VERSION %q, package.json %q", m, v)
	}
	if !bytes.Contains(Types, []byte("export declare class Client")) {
		t.Fatal("wsgate.d.ts declares no Client")
	}
}
