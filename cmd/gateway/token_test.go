package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/auth"
)

// runTokenCmd runs `gateway token args...` as a real process and returns its
// stdout, stderr and exit code.
func runTokenCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBinary(t), append([]string{"token", "-jwt-secret", testSecret, "-sub", "alice"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("gateway token %v: %v", args, err)
	}
	return strings.TrimSpace(stdout.String()), stderr.String(), code
}

// `gateway token -ttl 0` (or a negative ttl) used to mint a token without
// exp, one that never expires, without a word. It is an error now; a token
// without exp takes an explicit -no-exp.
func TestTokenCommandTTL(t *testing.T) {
	strict, err := auth.NewVerifier(auth.Config{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	lenient, err := auth.NewVerifier(auth.Config{Secret: []byte(testSecret), AllowNoExp: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-ttl", "0"}, {"-ttl", "0s"}, {"-ttl", "-5m"}, {"-no-exp", "-ttl", "1h"}, {"-no-exp", "-ttl", "0"}} {
		out, errOut, code := runTokenCmd(t, args...)
		if code != 2 || out != "" {
			t.Fatalf("token %v: exit %d, stdout %q; want exit 2 and no token", args, code, out)
		}
		if !strings.Contains(errOut, "-no-exp") {
			t.Fatalf("token %v: stderr %q does not point to -no-exp", args, errOut)
		}
	}

	out, errOut, code := runTokenCmd(t, "-no-exp")
	if code != 0 {
		t.Fatalf("token -no-exp: exit %d: %s", code, errOut)
	}
	if _, err := strict.Verify([]byte(out)); !errors.Is(err, auth.ErrMissingExp) {
		t.Fatalf("token -no-exp against a verifier that needs exp: %v, want %v", err, auth.ErrMissingExp)
	}
	c, err := lenient.Verify([]byte(out))
	if err != nil || c.Exp != 0 || c.Sub != "alice" {
		t.Fatalf("token -no-exp: claims %+v, err %v; want alice without exp", c, err)
	}

	for _, tc := range []struct {
		args []string
		ttl  time.Duration
	}{{nil, time.Hour}, {[]string{"-ttl", "10m"}, 10 * time.Minute}} {
		before := time.Now()
		out, errOut, code := runTokenCmd(t, tc.args...)
		if code != 0 {
			t.Fatalf("token %v: exit %d: %s", tc.args, code, errOut)
		}
		c, err := strict.Verify([]byte(out))
		if err != nil {
			t.Fatalf("token %v: %v", tc.args, err)
		}
		lo, hi := before.Add(tc.ttl).Truncate(time.Second), time.Now().Add(tc.ttl)
		if exp := c.ExpTime(); exp.Before(lo) || exp.After(hi) {
			t.Fatalf("token %v: exp %v, want %v..%v", tc.args, exp, lo, hi)
		}
	}
}
