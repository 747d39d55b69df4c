package main

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
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

// registerDemo serves the page and its config on mux.
func registerDemo(mux *http.ServeMux, cfg demoConfig) {
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
			TokenCommand: "WSGATE_JWT_SECRET=<secret> gateway token -sub alice -rooms 'lobby,chat.*' -ttl 1h",
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
