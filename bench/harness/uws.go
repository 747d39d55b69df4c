package harness

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	uwspeer "github.com/wsgate/wsgate/bench/peers/uws"
)

// The uws target is uWebSockets.js (bench/peers/uws/server.mjs) on Node.js.
// uWebSockets.js is published on GitHub, not on the npm registry; the peer
// takes its binaries from the npm package uws-pack 20.0.8, which repackages
// uWebSockets.js v20 builds for Node 18, 20, 21 and 22 (checked: the Linux
// x64 binary exports uWS's own symbols, e.g. uWS_App_ws). It is opt-in
// (-targets uws, BENCH_TARGETS) because it needs Node.js and the npm
// registry on first use.
func init() {
	Builtin["uws"] = TargetSpec{Name: "uws", Install: installUWS, Args: []string{"-addr", "{addr}", "-mode", "{mode}"}}
}

// installUWS copies the embedded peer into
// $XDG_CACHE_HOME/wsgate-bench/uws-<digest>, runs `npm ci` there the first
// time, and returns a launcher script that execs node (so the pid the
// harness samples is the server's).
func installUWS() (string, error) {
	digest, err := uwspeer.Digest()
	if err != nil {
		return "", fmt.Errorf("uws: %w", err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("uws: no cache folder: %w", err)
	}
	dir := filepath.Join(base, "wsgate-bench", "uws-"+digest)
	launcher := filepath.Join(dir, "run.sh")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "uws-pack", "package.json")); err == nil {
		if _, err := os.Stat(launcher); err == nil {
			return launcher, nil
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("uws: needs Node.js 18-22 (node not found: %v)", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("uws: %w", err)
	}
	for _, n := range uwspeer.Names {
		b, err := fs.ReadFile(uwspeer.Files, n)
		if err != nil {
			return "", fmt.Errorf("uws: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			return "", fmt.Errorf("uws: %w", err)
		}
	}
	cmd := exec.Command("npm", "ci", "--omit=dev", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("uws: npm ci in %s failed (needs the npm registry the first time): %v: %s", dir, err, lastLines(string(out), 5))
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %q %q \"$@\"\n", node, filepath.Join(dir, "server.mjs"))
	if err := os.WriteFile(launcher, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("uws: %w", err)
	}
	return launcher, nil
}
