package router

import (
	"time"

	"github.com/wsgate/wsgate/engine"
	"github.com/wsgate/wsgate/wire"
)

// Token lifetime (PROTOCOL.md section 9). A connection whose token has an
// exp carries one deadline on its loop's timing wheel (engine.Conn's app
// deadline): at exp the client gets token_expired, and the same deadline is
// moved to exp + TokenGrace, where the connection is closed with 4011 unless
// a refresh moved it to the new token's exp first. Nothing per connection
// but that deadline and the expired flag; no timer, no goroutine.

// armExpiry puts cl's deadline at its token's exp (none when the token has
// no exp) and forgets an expiry already announced.
func (r *Router) armExpiry(cl *client) {
	cl.tokenExpired = false
	if cl.exp == 0 {
		cl.conn.ClearAppDeadline()
		return
	}
	cl.conn.SetAppDeadline(time.Unix(cl.exp, 0))
}

// OnAppDeadline is engine.AppDeadlineHandler: the token's exp came (send
// token_expired and wait out the grace) or the grace ran out (close 4011).
func (r *Router) OnAppDeadline(c *engine.Conn) {
	cl, ok := c.App().(*client)
	if !ok || cl.perms == nil || cl.exp == 0 {
		return
	}
	s := cl.shard
	exp := time.Unix(cl.exp, 0)
	closeAt := exp.Add(r.opts.TokenGrace)
	due := exp
	if cl.tokenExpired {
		due = closeAt
	}
	if time.Now().Before(due) {
		// A deadline beyond the wheel's reach fires at its cap (engine
		// appdeadline.go): not due yet, set it again.
		c.SetAppDeadline(due)
		return
	}
	if cl.tokenExpired || r.opts.TokenGrace <= 0 {
		if !cl.tokenExpired {
			s.stats.TokensExpired++
			s.out = cl.codec.AppendTokenExpired(s.out[:0], 0)
			s.write(cl, s.out)
		}
		s.stats.ExpiryCloses++
		c.Close(engine.CloseTokenExpired, "token expired")
		return
	}
	cl.tokenExpired = true
	s.stats.TokensExpired++
	left := max(time.Until(closeAt), 0)
	s.out = cl.codec.AppendTokenExpired(s.out[:0], left.Milliseconds())
	s.write(cl, s.out)
	c.SetAppDeadline(closeAt)
}

// errRefreshForbidden answers a refresh whose token names another user; the
// old token stays in force.
var errRefreshForbidden = &wire.ProtocolError{Code: wire.CodeForbidden, Message: "token is for another user"}

// handleRefresh replaces an authenticated connection's permissions, expiry
// and admin flag with those of a new token for the same user, leaves what
// they no longer allow, and moves the expiry deadline. A token that does
// not verify changes nothing.
func (r *Router) handleRefresh(cl *client, e *wire.Envelope) {
	s := cl.shard
	g, err := r.verifier.Verify(e.Token)
	if err != nil {
		s.stats.RefreshInvalid++
		r.replyError(cl, &wire.ProtocolError{Code: wire.CodeUnauthorized, Message: "invalid token: " + err.Error()}, e.ID)
		return
	}
	if g.Sub != cl.user {
		s.stats.RefreshForbidden++
		r.replyError(cl, errRefreshForbidden, e.ID)
		return
	}
	s.stats.RefreshOK++
	cl.setGrant(g) // the old Permissions go when no connection holds them (auth/intern.go)
	r.revokeMemberships(cl)
	r.armExpiry(cl)
	s.out = cl.codec.AppendRefreshed(s.out[:0], cl.exp, e.ID)
	s.write(cl, s.out)
}

// revokeMemberships leaves every room and channel cl's permissions no longer
// allow, telling the client `left {room|channel, reason: revoked}` for each.
func (r *Router) revokeMemberships(cl *client) {
	s := cl.shard
	for i := len(cl.members) - 1; i >= 0; i-- {
		// Backwards: leaveAt moves the last membership into slot i, one
		// already checked.
		m := cl.members[i]
		var target wire.Target
		switch {
		case m.kind == KindRoom && !cl.perms.MayJoin([]byte(m.name)):
			target = wire.TargetRoom
		case m.kind == KindChannel && !cl.perms.MaySubscribe([]byte(m.name)):
			target = wire.TargetChannel
		default:
			continue
		}
		name := m.name
		r.leaveAt(cl, i, nil)
		s.out = cl.codec.AppendLeftTarget(s.out[:0], target, []byte(name), wire.LeftRevoked)
		s.write(cl, s.out)
	}
}

var _ engine.AppDeadlineHandler = (*Router)(nil)
