package server

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
)

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleAdds() *counterv1.AddCountsRequest {
	return &counterv1.AddCountsRequest{Adds: []*counterv1.AddCountRequest{
		{Namespace: "default", CounterName: "a", Delta: 5, IdempotencyToken: &counterv1.IdempotencyToken{
			Token: "t1", GenerationTime: timestamppb.New(time.Unix(1_700_000_000, 123))}},
		{Namespace: "default", CounterName: "b", Delta: -9223372036854775808},
		{Namespace: "other", CounterName: "b", IdempotencyToken: &counterv1.IdempotencyToken{Token: "t2"}},
		{Namespace: "default", CounterName: "", Delta: 1, IdempotencyToken: &counterv1.IdempotencyToken{
			GenerationTime: &timestamppb.Timestamp{Seconds: -1, Nanos: -5}}},
		{},
	}}
}

func sampleGets() *counterv1.GetCountsRequest {
	return &counterv1.GetCountsRequest{Gets: []*counterv1.GetCountRequest{
		{Namespace: "default", CounterName: "a"},
		{Namespace: "default", CounterName: "héllo"},
		{Namespace: "other"},
		{},
	}}
}

// field appends one length-delimited field.
func field(b []byte, num protowire.Number, value []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, value)
}

// varintField appends one varint field.
func varintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// TestBatchDecodeTakesTheFastPath checks that ordinary batch requests are decoded by the
// fast decoder, equal to what proto.Unmarshal gives.
func TestBatchDecodeTakesTheFastPath(t *testing.T) {
	adds := marshal(t, sampleAdds())
	var gotAdds counterv1.AddCountsRequest
	if !decodeAddCounts(adds, &gotAdds) {
		t.Fatal("decodeAddCounts left an ordinary request to proto.Unmarshal")
	}
	if want := sampleAdds(); !proto.Equal(want, &gotAdds) {
		t.Errorf("AddCountsRequest decoded as %v, want %v", &gotAdds, want)
	}

	gets := marshal(t, sampleGets())
	var gotGets counterv1.GetCountsRequest
	if !decodeGetCounts(gets, &gotGets) {
		t.Fatal("decodeGetCounts left an ordinary request to proto.Unmarshal")
	}
	if want := sampleGets(); !proto.Equal(want, &gotGets) {
		t.Errorf("GetCountsRequest decoded as %v, want %v", &gotGets, want)
	}

	for _, empty := range []proto.Message{&counterv1.AddCountsRequest{}, &counterv1.GetCountsRequest{}} {
		if err := (protoCodec{}).Unmarshal(nil, empty); err != nil {
			t.Errorf("empty %T: %v", empty, err)
		}
	}
}

// TestBatchDecodeMergesRepeatedFields checks protobuf's rules for a field sent twice: the
// last scalar wins, and message fields merge.
func TestBatchDecodeMergesRepeatedFields(t *testing.T) {
	var ts, tok, item []byte
	ts = varintField(ts, fieldSeconds, 7)
	tok = field(tok, fieldGenerationTime, ts)
	tok = field(tok, fieldTokenString, []byte("first"))
	item = field(item, fieldCounterName, []byte("x"))
	item = varintField(item, fieldDelta, 1)
	item = field(item, fieldToken, tok)
	item = varintField(item, fieldDelta, 2)
	item = field(item, fieldToken, field(field(nil, fieldTokenString, []byte("second")),
		fieldGenerationTime, varintField(nil, fieldNanos, 9)))
	data := field(nil, fieldItems, item)

	var want, got counterv1.AddCountsRequest
	if err := proto.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if !decodeAddCounts(data, &got) {
		t.Fatal("decodeAddCounts left repeated known fields to proto.Unmarshal")
	}
	if !proto.Equal(&want, &got) {
		t.Errorf("repeated fields decoded as %v, proto.Unmarshal gives %v", &got, &want)
	}
	if g := got.Adds[0]; g.Delta != 2 || g.IdempotencyToken.Token != "second" ||
		g.IdempotencyToken.GenerationTime.Seconds != 7 || g.IdempotencyToken.GenerationTime.Nanos != 9 {
		t.Errorf("got %v, want delta 2 and token second at 7 s 9 ns", g)
	}
}

// TestBatchDecodeFallsBack checks that what the fast decoder does not handle reaches
// proto.Unmarshal through the codec: unknown fields are kept, and invalid input is rejected.
func TestBatchDecodeFallsBack(t *testing.T) {
	unknown := field(marshal(t, sampleGets()), 9, []byte("from a newer client"))
	var m counterv1.GetCountsRequest
	if decodeGetCounts(unknown, &m) {
		t.Fatal("decodeGetCounts accepted an unknown field")
	}
	if err := (protoCodec{}).Unmarshal(unknown, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Gets) != 4 || len(m.ProtoReflect().GetUnknown()) == 0 {
		t.Errorf("got %d gets and unknown fields %q, want 4 gets and the unknown field kept", len(m.Gets), m.ProtoReflect().GetUnknown())
	}

	invalid := map[string][]byte{
		"invalid UTF-8 in a counter name": field(nil, fieldItems, field(nil, fieldCounterName, []byte{0xff})),
		"truncated item":                  append(protowire.AppendTag(nil, fieldItems, protowire.BytesType), 5, 1),
		"overlong varint":                 field(nil, fieldItems, append(protowire.AppendTag(nil, fieldDelta, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)),
		"invalid UTF-8 in a namespace":    field(nil, fieldItems, field(nil, fieldNamespace, []byte("a\xc3"))),
	}
	for name, data := range invalid {
		var adds counterv1.AddCountsRequest
		if decodeAddCounts(data, &adds) {
			t.Errorf("%s: decodeAddCounts accepted it", name)
		}
		if err := (protoCodec{}).Unmarshal(data, &adds); err == nil {
			t.Errorf("%s: the codec accepted it as AddCountsRequest", name)
		}
		var gets counterv1.GetCountsRequest
		if decodeGetCounts(data, &gets) {
			t.Errorf("%s: decodeGetCounts accepted it", name)
		}
		if err := (protoCodec{}).Unmarshal(data, &gets); err == nil {
			t.Errorf("%s: the codec accepted it as GetCountsRequest", name)
		}
	}
}

// TestBatchDecodeAllocations checks what the fast decoder is for: a request of many items
// in one namespace costs a few allocations plus one per counter name, where proto.Unmarshal
// allocates each item and each string.
func TestBatchDecodeAllocations(t *testing.T) {
	const items = 20
	req := &counterv1.GetCountsRequest{}
	for i := range items {
		req.Gets = append(req.Gets, &counterv1.GetCountRequest{Namespace: "default", CounterName: fmt.Sprintf("counter-%d", i)})
	}
	data := marshal(t, req)
	fast := testing.AllocsPerRun(100, func() {
		var m counterv1.GetCountsRequest
		if !decodeGetCounts(data, &m) {
			t.Fatal("fast path not taken")
		}
	})
	generic := testing.AllocsPerRun(100, func() {
		var m counterv1.GetCountsRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
	})
	// The message, the items, the pointers, one namespace and a name per item.
	if want := float64(4 + items); fast > want {
		t.Errorf("fast decoding of %d gets took %.0f allocations, want at most %.0f (proto.Unmarshal: %.0f)", items, fast, want, generic)
	}
	t.Logf("%d gets: %.0f allocations, against %.0f with proto.Unmarshal", items, fast, generic)
}

// FuzzBatchDecode compares the fast decoder with proto.Unmarshal on any input: whatever the
// fast decoder accepts, proto.Unmarshal accepts too, with an equal message.
func FuzzBatchDecode(f *testing.F) {
	f.Add(marshal(f, sampleAdds()))
	f.Add(marshal(f, sampleGets()))
	f.Add(field(nil, fieldItems, field(nil, fieldToken, field(nil, fieldGenerationTime, varintField(nil, fieldNanos, 1<<40)))))
	f.Add(field(nil, fieldItems, varintField(nil, fieldNamespace, 1)))
	f.Add([]byte{0x0a, 0x02, 0x12})
	f.Fuzz(func(t *testing.T, data []byte) {
		var fastAdds, wantAdds counterv1.AddCountsRequest
		if decodeAddCounts(data, &fastAdds) {
			if err := proto.Unmarshal(data, &wantAdds); err != nil {
				t.Fatalf("fast decoder accepted AddCountsRequest %x, which proto.Unmarshal rejects: %v", data, err)
			}
			if !proto.Equal(&wantAdds, &fastAdds) {
				t.Fatalf("AddCountsRequest %x: fast %v, proto.Unmarshal %v", data, &fastAdds, &wantAdds)
			}
		}
		var fastGets, wantGets counterv1.GetCountsRequest
		if decodeGetCounts(data, &fastGets) {
			if err := proto.Unmarshal(data, &wantGets); err != nil {
				t.Fatalf("fast decoder accepted GetCountsRequest %x, which proto.Unmarshal rejects: %v", data, err)
			}
			if !proto.Equal(&wantGets, &fastGets) {
				t.Fatalf("GetCountsRequest %x: fast %v, proto.Unmarshal %v", data, &fastGets, &wantGets)
			}
		}
	})
}

// BenchmarkBatchDecode compares the fast decoder with proto.Unmarshal on batches of the size
// that the batching client sends under load.
func BenchmarkBatchDecode(b *testing.B) {
	const items = 24
	gets := &counterv1.GetCountsRequest{}
	adds := &counterv1.AddCountsRequest{}
	for i := range items {
		name := fmt.Sprintf("counter-%06d", i)
		gets.Gets = append(gets.Gets, &counterv1.GetCountRequest{Namespace: "default", CounterName: name})
		adds.Adds = append(adds.Adds, &counterv1.AddCountRequest{Namespace: "default", CounterName: name, Delta: 1,
			IdempotencyToken: &counterv1.IdempotencyToken{Token: fmt.Sprintf("%032x", i), GenerationTime: timestamppb.Now()}})
	}
	getData, addData := marshal(b, gets), marshal(b, adds)
	for _, bench := range []struct {
		name   string
		decode func()
	}{
		{"gets/fast", func() {
			var m counterv1.GetCountsRequest
			decodeGetCounts(getData, &m)
		}},
		{"gets/proto", func() {
			var m counterv1.GetCountsRequest
			_ = proto.Unmarshal(getData, &m)
		}},
		{"adds/fast", func() {
			var m counterv1.AddCountsRequest
			decodeAddCounts(addData, &m)
		}},
		{"adds/proto", func() {
			var m counterv1.AddCountsRequest
			_ = proto.Unmarshal(addData, &m)
		}},
	} {
		b.Run(bench.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bench.decode()
			}
		})
	}
}
