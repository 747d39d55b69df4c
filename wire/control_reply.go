package wire

// Replies the control API (PROTOCOL.md section 11) makes a connection see
// when a service acts on it.

// ReasonServer is the `reason` of a `left` or `unsubscribed` caused by the
// control API's unsubscribe.
const ReasonServer = "server"

// AppendServerJoined (reply.go) writes the control API's subscribe.

// AppendLeftReason appends `{type, key: name, reason}`: the left (key
// "room") or unsubscribed (key "channel") of a membership the gateway
// removed without the client asking.
func (c Codec) AppendLeftReason(dst []byte, typ, key string, name []byte, reason string) []byte {
	w := beginObj(c, dst, typ)
	w.bstr(key, name)
	w.sstr("reason", reason)
	return w.end()
}
