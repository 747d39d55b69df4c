package natsbp

// The router's Upstream (router/events.go): lifecycle events and hook
// requests. Events are plain publishes; a hook request carries a reply
// subject <inbox>.<token> on the instance's one reply subscription
// (<inbox>.*), whose callback hands each answer to the router with its
// token. NATS answers a request nobody subscribed to with a 503 status
// message (no responders), which the router treats as unavailable.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/wsgate/wsgate/router"
)

// UpstreamPrefix is the subject prefix (router.Upstream).
func (b *Backplane) UpstreamPrefix() string { return b.opts.Prefix }

// ServeUpstreamReplies sets the function that takes hook answers
// (router.Upstream); call before Start.
func (b *Backplane) ServeUpstreamReplies(fn func(token uint64, data []byte, noResponders bool)) {
	b.upReplies = fn
}

// UpstreamPublish publishes an event or a hook request (router.Upstream).
// It runs on the router's upstream goroutine, never on an event loop.
func (b *Backplane) UpstreamPublish(subject string, token uint64, body []byte) error {
	if token == 0 {
		return b.nc.Publish(subject, body)
	}
	if b.upInbox == "" {
		return fmt.Errorf("natsbp: no reply subscription for hook requests")
	}
	return b.nc.PublishRequest(subject, b.upInbox+strconv.FormatUint(token, 36), body)
}

// startUpstream subscribes the reply inbox when the router wants answers.
func (b *Backplane) startUpstream() error {
	fn := b.upReplies
	if fn == nil {
		return nil
	}
	inbox := b.nc.NewInbox() + "."
	_, err := b.nc.Subscribe(inbox+"*", func(m *nats.Msg) {
		token, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, inbox), 36, 64)
		if err != nil {
			return
		}
		noResponders := len(m.Data) == 0 && m.Header.Get("Status") == "503"
		fn(token, m.Data, noResponders)
	})
	if err != nil {
		return fmt.Errorf("natsbp: hook reply subscription: %w", err)
	}
	b.upInbox = inbox
	return nil
}

var _ router.Upstream = (*Backplane)(nil)
