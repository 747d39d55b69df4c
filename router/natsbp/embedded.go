package natsbp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configures the NATS server a gateway runs in-process when
// no external NATS is given, so one instance needs no setup.
type EmbeddedOptions struct {
	// Listen is the client address services connect to (default
	// "127.0.0.1:4222"; "-" disables the listener: in-process only).
	Listen string
	// ClusterListen is the route address for other gateways' embedded
	// servers ("" = no cluster).
	ClusterListen string
	// Routes are nats-route:// URLs of other embedded servers.
	Routes []string
	// ClusterName names the cluster (default "wsgate").
	ClusterName string
	// ServerName must be unique in a cluster (default: derived from the ports).
	ServerName string
	// JetStream enables history; StoreDir is where it keeps files.
	JetStream bool
	StoreDir  string
}

// StartEmbedded starts a NATS server and waits until it accepts connections.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	opts := &server.Options{
		NoSigs:       true,
		NoLog:        true,
		ServerName:   o.ServerName,
		JetStream:    o.JetStream,
		StoreDir:     o.StoreDir,
		MaxPayload:   8 << 20,
		PingInterval: 20 * time.Second,
	}
	switch o.Listen {
	case "-":
		opts.DontListen = true
	case "":
		o.Listen = "127.0.0.1:4222"
		fallthrough
	default:
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsbp: nats-listen %q: %w", o.Listen, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	if o.ClusterListen != "" {
		host, port, err := splitHostPort(o.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("natsbp: nats-cluster %q: %w", o.ClusterListen, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Cluster.Host, opts.Cluster.Port = host, port
		opts.Cluster.Name = o.ClusterName
		if opts.Cluster.Name == "" {
			opts.Cluster.Name = "wsgate"
		}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("natsbp: nats-routes %q: want nats-route://host:port", r)
			}
			opts.Routes = append(opts.Routes, u)
		}
	} else if len(o.Routes) > 0 {
		return nil, errors.New("natsbp: nats-routes needs nats-cluster (the route listen address)")
	}
	if opts.ServerName == "" {
		opts.ServerName = "wsgate-" + strconv.Itoa(opts.Port) + "-" + strconv.Itoa(opts.Cluster.Port)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsbp: embedded server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("natsbp: embedded server did not become ready within 10s")
	}
	return s, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}
