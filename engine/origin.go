package engine

import (
	"bytes"
	"path"
	"strings"
)

// originPolicy matches a browser's Origin header against -allowed-origins.
// It stops cross-site WebSocket hijacking: a page on another site cannot
// open a socket that rides on the user's cookies. Immutable after start.
type originPolicy struct {
	patterns []string // lower-case hosts or globs, optionally with :port
}

func newOriginPolicy(allowed []string) originPolicy {
	p := originPolicy{}
	for _, a := range allowed {
		p.patterns = append(p.patterns, strings.ToLower(strings.TrimSpace(a)))
	}
	return p
}

// allowed reports whether origin (for example "https://app.example.com:8443")
// may connect. An empty policy allows every origin.
func (p originPolicy) allowed(origin []byte) bool {
	if len(p.patterns) == 0 {
		return true
	}
	host := origin
	if i := bytes.Index(host, []byte("://")); i >= 0 {
		host = host[i+3:]
	}
	if i := bytes.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	h := strings.ToLower(string(host))
	hostOnly := h
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		hostOnly = h[:i]
	}
	for _, pat := range p.patterns {
		candidate := hostOnly
		if strings.Contains(pat, ":") {
			candidate = h
		}
		if ok, _ := path.Match(pat, candidate); ok {
			return true
		}
	}
	return false
}
