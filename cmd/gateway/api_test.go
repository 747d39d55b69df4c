package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestPublishAPI drives POST /api/publish on a real gateway process: the
// status codes of section 5 and delivery to a room member.
func TestPublishAPI(t *testing.T) {
	gw := startGateway(t, baseArgs("-api-key", "k3y")...)
	cl := dialClient(t, gw.Addr, "alice")
	cl.join("news")

	post := func(key, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+gw.Admin+"/api/publish", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, key, body string
		want            int
	}{
		{name: "no key", body: `{"room":"news","data":1}`, want: http.StatusUnauthorized},
		{name: "wrong key", key: "nope", body: `{"room":"news","data":1}`, want: http.StatusUnauthorized},
		{name: "not JSON", key: "k3y", body: `{`, want: http.StatusBadRequest},
		{name: "no target", key: "k3y", body: `{"data":1}`, want: http.StatusBadRequest},
		{name: "two targets", key: "k3y", body: `{"room":"news","user":"bob","data":1}`, want: http.StatusBadRequest},
		{name: "no data", key: "k3y", body: `{"room":"news"}`, want: http.StatusBadRequest},
		{name: "bad name", key: "k3y", body: `{"room":"bad name","data":1}`, want: http.StatusBadRequest},
		{name: "bad priority", key: "k3y", body: `{"room":"news","data":1,"priority":"urgent"}`, want: http.StatusBadRequest},
		{name: "unknown field", key: "k3y", body: `{"room":"news","data":1,"colour":"red"}`, want: http.StatusBadRequest},
		{name: "accepted", key: "k3y", body: `{"room":"news","data":{"headline":"hi"},"from":"desk"}`, want: http.StatusAccepted},
	} {
		if got := post(tc.key, tc.body); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	m := cl.read()
	if m.Type != "message" || m.Room != "news" || m.From != "desk" || string(m.Data) != `{"headline":"hi"}` {
		t.Fatalf("delivered %+v, want the accepted message only", m)
	}
	if post("k3y", `{"all":true,"data":"everyone"}`) != http.StatusAccepted {
		t.Fatal("publish to all refused")
	}
	if m := cl.read(); m.Type != "message" || string(m.Data) != `"everyone"` {
		t.Fatalf("gw.all delivery %+v", m)
	}
}

// TestPublishAPIDisabled: without -api-key the endpoint refuses everything.
func TestPublishAPIDisabled(t *testing.T) {
	gw := startGateway(t, baseArgs()...)
	resp, err := http.Post("http://"+gw.Admin+"/api/publish", "application/json", strings.NewReader(`{"room":"news","data":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
}
