// Command wsbench is the load-test harness of wsgate.
//
//	wsbench idle|connect|echo|broadcast|reconnect [flags]   one scenario against -targets
//	wsbench room|p2p|cross|slow [flags]                    router-mode (JSON protocol) scenarios, gateway only
//	wsbench compare [flags]                                 all scenarios against gateway, nbio, gorilla
//	wsbench report -in results.json                         re-render table/charts/results.md
//
// It starts every target server itself (building it with `go build` into a
// temp dir), spreads the client connections over worker processes (this
// binary re-executed as `wsbench worker`, one epoll loop each, bound to
// 127.0.0.2, 127.0.0.3, ...), samples the server's RSS/CPU from /proc and
// writes results.json, SVG charts and results.md under -out.
package main

import (
	"os"

	"github.com/wsgate/wsgate/bench/harness"
)

func main() { os.Exit(harness.Main(os.Args[1:], os.Stdout, os.Stderr)) }
