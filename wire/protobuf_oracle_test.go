package wire

// The reference side of the gw.protobuf tests: google.golang.org/protobuf
// reading the published schema (docs/wsgate.proto), so that the tests hold
// the hand-written codec equal to the library and the library to the file
// clients generate their code from. No generated Go code is checked in (no
// protoc here): the schema is read by a small parser for the subset the file
// uses, which fails on any line it does not understand, and turned into
// descriptors for dynamicpb.

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// pbSchema is the published schema as protobuf descriptors.
type pbSchema struct {
	client, server protoreflect.MessageDescriptor
}

var pbFieldLine = regexp.MustCompile(`^(optional |repeated )?([A-Za-z0-9_.]+) ([a-z_]+) = ([0-9]+)(?: \[json_name = "([a-z_]+)"\])?;$`)

// loadPBSchema parses docs/wsgate.proto.
func loadPBSchema(t testing.TB) pbSchema {
	t.Helper()
	src, err := os.ReadFile("../docs/wsgate.proto")
	if err != nil {
		t.Fatalf("read schema: %v", err)
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("wsgate.proto"),
		Package: proto.String("wsgate.v1"),
		Syntax:  proto.String("proto3"),
	}
	var cur *descriptorpb.DescriptorProto
	for n, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "//"):
		case line == `syntax = "proto3";`, line == "package wsgate.v1;":
		case line == `import "google/protobuf/struct.proto";`:
			fdp.Dependency = append(fdp.Dependency, "google/protobuf/struct.proto")
		case strings.HasPrefix(line, "message ") && strings.HasSuffix(line, " {") && cur == nil:
			cur = &descriptorpb.DescriptorProto{Name: proto.String(strings.Fields(line)[1])}
			fdp.MessageType = append(fdp.MessageType, cur)
		case line == "}" && cur != nil:
			cur = nil
		default:
			m := pbFieldLine.FindStringSubmatch(line)
			if m == nil || cur == nil {
				t.Fatalf("docs/wsgate.proto:%d: line not understood by the test's parser: %q", n+1, line)
			}
			num, _ := strconv.Atoi(m[4])
			fd := &descriptorpb.FieldDescriptorProto{
				Name:   proto.String(m[3]),
				Number: proto.Int32(int32(num)),
				Label:  descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}
			if m[5] != "" {
				fd.JsonName = proto.String(m[5])
			}
			switch m[2] {
			case "string":
				fd.Type = descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
			case "uint64":
				fd.Type = descriptorpb.FieldDescriptorProto_TYPE_UINT64.Enum()
			case "int64":
				fd.Type = descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum()
			case "bool":
				fd.Type = descriptorpb.FieldDescriptorProto_TYPE_BOOL.Enum()
			case "google.protobuf.Value", "google.protobuf.Struct":
				fd.Type = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
				fd.TypeName = proto.String("." + m[2])
			default:
				t.Fatalf("docs/wsgate.proto:%d: type %s not known to the test's parser", n+1, m[2])
			}
			switch m[1] {
			case "repeated ":
				fd.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
			case "optional ": // proto3 optional: a synthetic oneof
				fd.Proto3Optional = proto.Bool(true)
				fd.OneofIndex = proto.Int32(int32(len(cur.OneofDecl)))
				cur.OneofDecl = append(cur.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: proto.String("_" + m[3])})
			}
			cur.Field = append(cur.Field, fd)
		}
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	s := pbSchema{client: fd.Messages().ByName("ClientMessage"), server: fd.Messages().ByName("ServerMessage")}
	if s.client == nil || s.server == nil {
		t.Fatal("schema lacks ClientMessage or ServerMessage")
	}
	return s
}

// clientFromJSON builds a ClientMessage from its gw.json text with protojson
// (which reads the JSON names) and marshals it with the library.
func (s pbSchema) clientFromJSON(t testing.TB, js string) []byte {
	t.Helper()
	m := dynamicpb.NewMessage(s.client)
	if err := protojson.Unmarshal([]byte(js), m); err != nil {
		t.Fatalf("protojson %s: %v", js, err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %s: %v", js, err)
	}
	return b
}

// serverToJSON reads a ServerMessage with the library and returns it as
// gw.json values: protojson, with its 64-bit integer strings made numbers.
func (s pbSchema) serverToJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	m := dynamicpb.NewMessage(s.server)
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatalf("library cannot read our ServerMessage % x: %v", b, err)
	}
	js, err := protojson.MarshalOptions{EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		t.Fatalf("protojson of our ServerMessage: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatal(err)
	}
	for k, v := range out {
		kind := s.server.Fields().ByJSONName(k).Kind()
		if str, ok := v.(string); ok && (kind == protoreflect.Int64Kind || kind == protoreflect.Uint64Kind) {
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				t.Fatalf("%s: %q is not a number", k, str)
			}
			out[k] = f
		}
	}
	return out
}

// libValue unmarshals a Value body with the library.
func libValue(b []byte) (*structpb.Value, error) {
	v := new(structpb.Value)
	return v, proto.Unmarshal(b, v)
}

// jsonEqual reports whether two JSON texts hold the same value (numbers as
// float64, duplicate keys last-wins, as encoding/json reads them).
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not JSON %q: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not JSON %q: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// hasEmptyValue reports whether v or any Value inside sets no kind (no JSON
// form, refused by the gateway).
func hasEmptyValue(v *structpb.Value) bool {
	switch k := v.GetKind().(type) {
	case nil:
		return true
	case *structpb.Value_StructValue:
		for _, c := range k.StructValue.GetFields() {
			if c == nil || hasEmptyValue(c) {
				return true
			}
		}
	case *structpb.Value_ListValue:
		for _, c := range k.ListValue.GetValues() {
			if hasEmptyValue(c) {
				return true
			}
		}
	}
	return false
}
