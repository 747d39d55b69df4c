package natsbp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// holdPort listens on a free loopback port for the test's lifetime.
func holdPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String()
}

// freePort returns a loopback port nothing listens on (closed again).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// A port in use is reported in the server's own words at once, not after
// the 10s readiness timeout (which the old StartEmbedded ran into), also
// with a cluster configured, whose route goroutine then never starts.
func TestStartEmbeddedPortTakenReportsCause(t *testing.T) {
	for _, cluster := range []string{"", "127.0.0.1:0"} {
		taken := holdPort(t)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		s, err := StartEmbeddedContext(ctx, EmbeddedOptions{Listen: taken, ClusterListen: cluster})
		cancel()
		if err == nil {
			s.Shutdown()
			t.Fatalf("cluster %q: started on a port in use", cluster)
		}
		if !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("cluster %q: error %q does not name the cause", cluster, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cluster %q: the start waited for its deadline (%v): %v", cluster, time.Since(start), err)
		}
	}
}

// A store directory that cannot be created ends the start with
// JetStream's own error.
func TestStartEmbeddedBadStoreDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	start := time.Now()
	s, err := StartEmbeddedContext(ctx, EmbeddedOptions{Listen: "127.0.0.1:0", JetStream: true, StoreDir: filepath.Join(file, "store")})
	if err == nil {
		s.Shutdown()
		t.Fatal("started with a store under a regular file")
	}
	if !strings.Contains(err.Error(), "JetStream") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %q: want JetStream's own cause", err)
	}
	t.Logf("reported after %v", time.Since(start))
	if err := (EmbeddedOptions{JetStream: true, StoreDir: filepath.Join(file, "store"), Listen: "-"}).Preflight(); err == nil ||
		!strings.Contains(err.Error(), "data-dir") || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("preflight: %v, want data-dir ... not a directory", err)
	}
}

func TestEmbeddedPreflight(t *testing.T) {
	taken := holdPort(t)
	err := EmbeddedOptions{Listen: taken}.Preflight()
	if err == nil || err.Error() != "nats-listen "+taken+": address already in use" {
		t.Fatalf("client port in use: %v", err)
	}
	err = EmbeddedOptions{Listen: "-", ClusterListen: taken}.Preflight()
	if err == nil || !strings.HasPrefix(err.Error(), "nats-cluster "+taken) {
		t.Fatalf("route port in use: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := (EmbeddedOptions{Listen: freePort(t), JetStream: true, StoreDir: dir}).Preflight(); err != nil {
		t.Fatalf("free port, new data dir: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("data dir not created: %v", err)
	}
}

// No client listener and a cluster cannot work with nats-server v2.15 (it
// opens the route port after the client port); it is refused at once
// instead of hanging (the old code hung in Shutdown after 10s).
func TestStartEmbeddedNoClientPortCluster(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		s, err := StartEmbedded(EmbeddedOptions{Listen: "-", ClusterListen: "127.0.0.1:0"})
		if err == nil {
			s.Shutdown()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "nats-listen -") || !strings.Contains(err.Error(), "nats-cluster") {
			t.Fatalf("error %v: want a refusal naming nats-listen - and nats-cluster", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("StartEmbedded hangs with -nats-listen - and a cluster")
	}
}

// A JetStream cluster node whose peers are not up waits for the meta
// leader; cancelling the context ends the wait promptly and says so.
func TestStartEmbeddedContextCancelWhileWaitingForMetaLeader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	waiting := make(chan struct{})
	var once sync.Once
	logw := writerFunc(func(b []byte) (int, error) {
		if strings.Contains(string(b), "waiting for the JetStream meta leader") {
			once.Do(func() { close(waiting) })
		}
		return len(b), nil
	})
	route, store := "nats-route://"+freePort(t), t.TempDir()
	go func() {
		s, err := StartEmbeddedContext(ctx, EmbeddedOptions{Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0",
			Routes: []string{route}, ServerName: "lonely", JetStream: true, StoreDir: store, Logger: slog.New(slog.NewTextHandler(logw, nil))})
		if err == nil {
			s.Shutdown()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("returned %v before the cancel: a lone node with an absent peer has no meta leader", err)
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("no log line saying it waits for the meta leader")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "meta leader") {
			t.Fatalf("error %v: want context canceled while waiting for the meta leader", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not end the wait")
	}
}

// Three embedded JetStream servers started together form a cluster with a
// meta leader, each with a stable name; StartEmbeddedContext returns on
// each once the meta group is current.
func TestEmbeddedClusterJetStreamReady(t *testing.T) {
	routes := []string{freePort(t), freePort(t), freePort(t)}
	var urls []string
	for _, r := range routes {
		urls = append(urls, "nats-route://"+r)
	}
	servers := make([]*server.Server, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = StartEmbeddedContext(ctx, EmbeddedOptions{Listen: "127.0.0.1:0", ClusterListen: routes[i],
				Routes: urls, ServerName: "js" + string(rune('a'+i)), JetStream: true, StoreDir: t.TempDir()})
		}()
	}
	wg.Wait()
	for i, s := range servers {
		if s != nil {
			t.Cleanup(s.Shutdown)
		}
		if errs[i] != nil {
			t.Fatalf("server %d: %v", i, errs[i])
		}
	}
	leaders := 0
	for _, s := range servers {
		if !s.JetStreamIsClustered() {
			t.Fatalf("%s: JetStream not clustered", s.Name())
		}
		if s.JetStreamIsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d meta leaders, want 1", leaders)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
