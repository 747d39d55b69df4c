package wire

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// docExampleDelivery is the room message docs/protocol.md shows in all four
// encodings ("One message in all four encodings"); the CBOR and protobuf
// blocks have their own tests (TestCBORDocExample, TestProtobufDocExample).
func docExampleDelivery(data []byte) *Delivery {
	return &Delivery{Target: TargetRoom, Name: []byte("lobby"), From: []byte("alice"), Data: data,
		ID: []byte("a1b2c3d4-0-2s"), TS: 1764580000000}
}

func TestDocExampleJSONAndMsgpack(t *testing.T) {
	raw, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "## One message in all four encodings")
	if !ok {
		t.Fatal("docs/protocol.md lacks the section One message in all four encodings")
	}
	wantJSON := CodecJSON.AppendDelivery(nil, docExampleDelivery([]byte(`{"text":"hi"}`)))
	if !strings.Contains(sec, "```json\n"+string(wantJSON)+"\n```") {
		t.Errorf("the gw.json example is not what the encoder writes:\n%s", wantJSON)
	}

	const begin, end = "<!-- msgpack-example:delivery -->", "<!-- /msgpack-example:delivery -->"
	_, rest, ok := strings.Cut(sec, begin)
	block, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("docs/protocol.md lacks the %s block", begin)
	}
	var hexText strings.Builder
	for _, line := range strings.Split(block, "\n") {
		if strings.HasPrefix(line, "```") {
			continue
		}
		code, _, _ := strings.Cut(line, "#")
		hexText.WriteString(strings.ReplaceAll(code, " ", ""))
	}
	got, err := hex.DecodeString(hexText.String())
	if err != nil {
		t.Fatalf("msgpack example hex: %v", err)
	}
	data, err := JSONToMsgpack(nil, []byte(`{"text":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := CodecMsgpack.AppendDelivery(nil, docExampleDelivery(data))
	if !bytes.Equal(got, want) {
		t.Fatalf("the gw.msgpack example is\n%x\nthe encoder writes\n%x", got, want)
	}
	if len(wantJSON) != 109 || len(want) != 79 {
		t.Errorf("sizes in the doc: gw.json %d (doc 109), gw.msgpack %d (doc 79)", len(wantJSON), len(want))
	}
}
