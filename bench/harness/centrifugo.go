package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/wsgate/wsgate/bench/loadclient"
	"github.com/wsgate/wsgate/bench/wsproto"
)

// CentrifugoModule and CentrifugoVersion are what the centrifugo target
// installs with `go install` on first use (WSBENCH_CENTRIFUGO_VERSION
// overrides the version).
const (
	CentrifugoModule  = "github.com/centrifugal/centrifugo/v6"
	CentrifugoVersion = "v6.9.1"
)

func init() {
	RegisterCodec("centrifugo", func(in *WorkerInit) Codec {
		return &centrifugoCodec{worker: in.Index, echo: in.CodecArgs["mode"] == "echo"}
	})
	Builtin["centrifugo"] = TargetSpec{Name: "centrifugo", Install: installCentrifugo, Prepare: centrifugoConfig,
		Path: "/connection/websocket", Codec: "centrifugo", SelfDelivery: true}
}

// centrifugoBinDir is the cache folder of the installed binary:
// $XDG_CACHE_HOME/wsgate-bench/centrifugo-<version> (os.UserCacheDir).
func centrifugoBinDir(version string) (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("centrifugo: no cache folder for the binary: %w", err)
	}
	return filepath.Join(base, "wsgate-bench", "centrifugo-"+version), nil
}

// installCentrifugo returns the cached centrifugo binary, running
// `go install` into the cache folder the first time.
func installCentrifugo() (string, error) {
	version := CentrifugoVersion
	if v := os.Getenv("WSBENCH_CENTRIFUGO_VERSION"); v != "" {
		version = v
	}
	dir, err := centrifugoBinDir(version)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "centrifugo")
	if st, err := os.Stat(bin); err == nil && st.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("centrifugo: %w", err)
	}
	cmd := exec.Command("go", "install", CentrifugoModule+"@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("centrifugo: go install %s@%s into %s failed (needs the Go module proxy the first time): %v: %s",
			CentrifugoModule, version, dir, err, lastLines(string(out), 5))
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("centrifugo: go install succeeded but %s is missing: %w", bin, err)
	}
	return bin, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// centrifugoConfig writes the instance's config file into dir and returns
// the command line. Settings (keys from Centrifugo v6's configtypes):
// client.insecure accepts anonymous connections that may subscribe and
// publish to any channel (its doc: "Do not use in production" — this is a
// benchmark on loopback); allowed_origins "*" because the load client sends
// no Origin; websocket.use_write_buffer_pool "to reduce allocations" with
// many mostly idle connections; logs at error level so logging does not
// cost CPU in the measurement. Everything else is left at its default
// (memory engine, no history, 25 s app-level pings the load client answers).
func centrifugoConfig(in *Instance, dir string) ([]string, error) {
	host, port, err := net.SplitHostPort(in.Addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"http_server": map[string]any{"address": host, "port": p},
		"log":         map[string]any{"level": "error"},
		"client":      map[string]any{"insecure": true, "allowed_origins": []string{"*"}},
		"websocket":   map[string]any{"use_write_buffer_pool": true},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "centrifugo-"+port+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, fmt.Errorf("centrifugo config: %w", err)
	}
	return []string{"--config", path}, nil
}

// centrifugoCodec speaks Centrifugo's JSON client protocol: on open a
// connect command and a subscribe (channel "bench" in broadcast, a channel
// of the connection's own in echo, where each message is a client publish
// into it and comes back as a push). Replies may arrive several to a frame,
// one per line. Server pings ({}) are answered with {}.
type centrifugoCodec struct {
	worker int
	nextID uint32
	echo   bool
}

var (
	cfBroadcastChannel = []byte("bench")
	cfPing             = []byte("{}")
)

// appendChannel appends the connection's channel: "bench" for broadcast;
// for echo a name unique to the connection (worker index + the Conn's
// address, unique among live connections of the worker process).
func (c *centrifugoCodec) appendChannel(dst []byte, cn *loadclient.Conn) []byte {
	if !c.echo {
		return append(dst, cfBroadcastChannel...)
	}
	dst = append(dst, 'e')
	dst = strconv.AppendInt(dst, int64(c.worker), 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, uint64(uintptr(unsafe.Pointer(cn))), 36)
}

func (c *centrifugoCodec) Open(cn *loadclient.Conn) {
	b := []byte(`{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"`)
	b = c.appendChannel(b, cn)
	b = append(b, `"}}`...)
	_ = cn.WriteMessage(wsproto.OpText, b)
}

// Encode is not used: EncodeFor names the sending connection's channel.
func (c *centrifugoCodec) Encode(dst []byte, intended int64, seq uint64, size int) []byte {
	return c.EncodeFor(nil, dst, intended, seq, size)
}

// EncodeFor implements ConnEncoder: a client publish.
func (c *centrifugoCodec) EncodeFor(cn *loadclient.Conn, dst []byte, intended int64, seq uint64, size int) []byte {
	c.nextID++
	if c.nextID < 3 {
		c.nextID = 3 // 1 and 2 are connect and subscribe
	}
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, uint64(c.nextID), 10)
	dst = append(dst, `,"publish":{"channel":"`...)
	dst = c.appendChannel(dst, cn)
	// data is a JSON string (any JSON value is valid publication data),
	// so the push carries "data":"wsb1.<stamp>" as the gateway's messages do
	dst = append(dst, `","data":"`...)
	dst = appendStamp(dst, intended, seq, size)
	return append(dst, `"}}`...)
}

func (c *centrifugoCodec) Decode(p []byte) (int64, uint64, bool) {
	if !bytes.Contains(p, []byte(`"push"`)) {
		return 0, 0, false
	}
	return parseStamp(p)
}

// LineDelimited implements LineCodec: Centrifugo batches replies into one
// frame, one per line.
func (c *centrifugoCodec) LineDelimited() bool { return true }

func (c *centrifugoCodec) Control(cn *loadclient.Conn, p []byte) int {
	switch {
	case bytes.Equal(bytes.TrimSpace(p), cfPing):
		if cn != nil {
			_ = cn.WriteMessage(wsproto.OpText, cfPing)
		}
		return CtlIgnore
	case bytes.Contains(p, []byte(`"error"`)):
		return CtlError
	case bytes.Contains(p, []byte(`"subscribe"`)):
		return CtlReady
	case bytes.Contains(p, []byte(`"connect"`)), bytes.Contains(p, []byte(`"publish"`)):
		return CtlIgnore
	}
	return CtlOther
}
