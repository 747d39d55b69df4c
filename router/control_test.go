package router

import (
	"errors"
	"strings"
	"testing"
)

// TestParseControl checks every operation's body rules: what is accepted
// (with defaults filled in) and what is a 400.
func TestParseControl(t *testing.T) {
	ok := []struct {
		op, body string
		want     ControlRequest
	}{
		{CtlDisconnect, `{"user":"alice","reconnect":true,"reason":"moving you"}`, ControlRequest{User: "alice", Reconnect: true, Reason: "moving you"}},
		{CtlDisconnect, `{"user":"alice","reason":"` + strings.Repeat("é", 61) + `"}`, ControlRequest{User: "alice", Reason: strings.Repeat("é", 61)}},
		{CtlSubscribe, `{"user":"alice","room":"chat.1"}`, ControlRequest{User: "alice", Room: "chat.1"}},
		{CtlUnsubscribe, `{"user":"alice","channel":"news.eu"}`, ControlRequest{User: "alice", Channel: "news.eu"}},
		{CtlPresence, `{"room":"lobby"}`, ControlRequest{Room: "lobby"}},
		{CtlPresenceStats, `{"room":"lobby"}`, ControlRequest{Room: "lobby"}},
		{CtlHistory, `{"room":"lobby"}`, ControlRequest{Room: "lobby", Limit: DefaultHistoryLimit}},
		{CtlHistory, `{"room":"lobby","since":7,"limit":1000}`, ControlRequest{Room: "lobby", Since: 7, Limit: 1000}},
		{CtlInfo, ``, ControlRequest{}},
		{CtlInfo, ` {} `, ControlRequest{}},
	}
	for _, c := range ok {
		got, err := ParseControl(c.op, []byte(c.body))
		if err != nil || *got != c.want {
			t.Errorf("%s %s: %+v %v, want %+v", c.op, c.body, got, err, c.want)
		}
	}
	bad := []struct{ op, body string }{
		{"reboot", `{}`},
		{CtlDisconnect, `{}`},
		{CtlDisconnect, `{"user":"a b"}`},
		{CtlDisconnect, `{"user":"` + strings.Repeat("u", 129) + `"}`},
		{CtlDisconnect, `{"user":"alice","reason":"` + strings.Repeat("x", 124) + `"}`},
		{CtlDisconnect, `{"user":"alice","reason":"\xff"}`},
		{CtlDisconnect, `{"user":"alice","extra":1}`},
		{CtlDisconnect, `{"user":"alice"} {"user":"bob"}`},
		{CtlDisconnect, `{"user":"alice","room":"r"}`},
		{CtlDisconnect, `{"user":7}`},
		{CtlSubscribe, `{"user":"alice"}`},
		{CtlSubscribe, `{"user":"alice","room":"r","channel":"c"}`},
		{CtlSubscribe, `{"room":"r"}`},
		{CtlUnsubscribe, `{"user":"alice","room":"r","reason":"x"}`},
		{CtlPresence, `{}`},
		{CtlPresence, `{"room":"r","user":"u"}`},
		{CtlPresenceStats, `{"room":""}`},
		{CtlHistory, `{"room":"r","limit":1001}`},
		{CtlHistory, `{"room":"r","limit":-1}`},
		{CtlHistory, `{"room":"r","since":-1}`},
		{CtlInfo, `{"room":"r"}`},
		{CtlInfo, `[`},
	}
	for _, c := range bad {
		_, err := ParseControl(c.op, []byte(c.body))
		var ce *ControlError
		if !errors.As(err, &ce) || ce.Status != 400 || ce.Outcome != CtlBadRequest {
			t.Errorf("%s %s: %v, want a 400", c.op, c.body, err)
		}
	}
}

// TestMergeControl checks how the instances' parts become one answer.
func TestMergeControl(t *testing.T) {
	parts := []ControlPart{
		{Instance: "b", Connections: 2, Users: []string{"bob", "alice"}, UserCount: 2, UptimeS: 1.5},
		{Instance: "a", Connections: 1, Users: []string{"alice"}, UserCount: 1, UptimeS: 3},
	}
	for op, want := range map[string]string{
		CtlDisconnect:    `{"connections":3}`,
		CtlSubscribe:     `{"connections":3}`,
		CtlPresence:      `{"users":["alice","bob"]}`,
		CtlPresenceStats: `{"users":2,"connections":3}`,
		CtlInfo:          `{"instances":[{"id":"a","connections":1,"users":1,"uptime_s":3},{"id":"b","connections":2,"users":2,"uptime_s":1.5}]}`,
	} {
		got, err := mergeControl(op, parts)
		if err != nil || string(got) != want {
			t.Errorf("%s: %s %v, want %s", op, got, err, want)
		}
	}
	if got, _ := mergeControl(CtlPresence, []ControlPart{{Instance: "a"}}); string(got) != `{"users":[]}` {
		t.Errorf("empty presence: %s, want {\"users\":[]}", got)
	}
}
