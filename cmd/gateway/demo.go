package main

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"

	jsclient "github.com/wsgate/wsgate/clients/js"
)

// demoFiles is the browser chat client served at /demo/ on the admin port:
// plain HTML and JavaScript, no build step.
//
//go:embed demo
var demoFiles embed.FS

// demoConfig tells the demo page where the gateway's WebSocket endpoint is.
type demoConfig struct {
	EngineAddr string // bound WebSocket listen address (host:port)
	WSPath     string
	Mode       string // router, echo or broadcast
}

// demoInfo is GET /demo/config.json.
type demoInfo struct {
	WSURL        string `json:"ws_url"`
	Mode         string `json:"mode"`
	TokenCommand string `json:"token_command"`
}

// registerClient serves the JavaScript client library (clients/js) as an ES
// module: /client/wsgate-<version>.js (cached for good: the name changes
// with the content), /client/wsgate.js (always this gateway's version, not
// cached) and /client/wsgate.d.ts.
func registerClient(mux *http.ServeMux) {
	version, err := jsclient.Version()
	if err != nil {
		panic(err) // package.json is embedded at build time; its test checks it
	}
	serve := func(body []byte, contentType, cacheControl string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.Header().Set("Cache-Control", cacheControl)
			w.Header().Set("Access-Control-Allow-Origin", "*") // a module imported by pages on other origins
			_, _ = w.Write(body)
		}
	}
	const js = "text/javascript; charset=utf-8"
	mux.HandleFunc("GET /client/wsgate-"+version+".js", serve(jsclient.Source, js, "public, max-age=31536000, immutable"))
	mux.HandleFunc("GET /client/wsgate.js", serve(jsclient.Source, js, "no-cache"))
	mux.HandleFunc("GET /client/wsgate.d.ts", serve(jsclient.Types, "text/plain; charset=utf-8", "no-cache"))
}

// demoTokenCommand is the hint the demo page shows: a command that works
// from a checkout (the gateway binary is rarely on $PATH); with -dev the
// gateway prints its secret at start.
const demoTokenCommand = "WSGATE_JWT_SECRET=<secret> go run ./cmd/gateway token -sub alice -rooms 'lobby,chat.*' -ttl 1h"

// registerDemo serves the page and its config on mux, and the client
// library it is built on.
func registerDemo(mux *http.ServeMux, cfg demoConfig) {
	registerClient(mux)
	sub, err := fs.Sub(demoFiles, "demo")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	files := http.StripPrefix("/demo/", http.FileServerFS(sub))
	mux.HandleFunc("GET /demo", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/demo/", http.StatusMovedPermanently)
	})
	mux.Handle("GET /demo/", files)
	mux.HandleFunc("GET /demo/config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(demoInfo{
			WSURL:        wsURL(cfg.EngineAddr, cfg.WSPath, r.Host),
			Mode:         cfg.Mode,
			TokenCommand: demoTokenCommand,
		})
	})
}

// wsURL is the WebSocket URL a browser that reached the admin port as
// reqHost should use: the engine's bound port, on the engine's host unless
// that is a wildcard, in which case the host the browser already uses.
func wsURL(engineAddr, path, reqHost string) string {
	host, port, err := net.SplitHostPort(engineAddr)
	if err != nil {
		host, port = "", "8080"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = reqHost
		if h, _, err := net.SplitHostPort(reqHost); err == nil {
			host = h
		}
		if host == "" {
			host = "127.0.0.1"
		}
	}
	return "ws://" + net.JoinHostPort(host, port) + path
}
