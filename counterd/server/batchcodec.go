package server

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
)

// protoCodec is Connect's binary protobuf codec, used by gRPC and Connect alike, with a faster
// decoder for the two batch requests. proto.Unmarshal allocates each item of a repeated
// message field, and each string of each item, separately. The fast decoder puts a request's
// items in one slice, with their tokens and times, and shares a namespace that repeats the
// item before. For a GetCounts request of 24 items, that is 28 allocations instead of 79, and
// about 40% less time (BenchmarkBatchDecode).
//
// It handles only messages whose every field is declared, with the declared wire type, and
// whose strings are valid UTF-8. Anything else, such as unknown fields from a newer client,
// goes to proto.Unmarshal, which keeps or rejects it as before.
type protoCodec struct{}

func (protoCodec) Name() string { return "proto" }

func (protoCodec) Marshal(message any) ([]byte, error) {
	return protoCodec{}.MarshalAppend(nil, message)
}

// MarshalAppend lets Connect marshal into its pooled buffers.
func (protoCodec) MarshalAppend(dst []byte, message any) ([]byte, error) {
	m, ok := message.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", message)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

func (protoCodec) Unmarshal(data []byte, message any) error {
	switch m := message.(type) {
	case *counterv1.GetCountsRequest:
		if decodeGetCounts(data, m) {
			return nil
		}
	case *counterv1.AddCountsRequest:
		if decodeAddCounts(data, m) {
			return nil
		}
	}
	m, ok := message.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", message)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", message, err)
	}
	return nil
}

// Field numbers of the batch requests, as in counter.proto.
const (
	fieldItems = 1 // gets of GetCountsRequest, adds of AddCountsRequest

	fieldNamespace   = 1
	fieldCounterName = 2
	fieldDelta       = 3
	fieldToken       = 4 // of AddCountRequest

	fieldTokenString    = 1
	fieldGenerationTime = 2

	fieldSeconds = 1
	fieldNanos   = 2
)

// countItems returns the number of items of a batch request, which are its field 1, and
// false when data has any other field, another wire type or a malformed field.
func countItems(data []byte) (int, bool) {
	n := 0
	for len(data) > 0 {
		num, typ, tagLen := protowire.ConsumeTag(data)
		if tagLen < 0 || num != fieldItems || typ != protowire.BytesType {
			return 0, false
		}
		data = data[tagLen:]
		_, valueLen := protowire.ConsumeBytes(data)
		if valueLen < 0 {
			return 0, false
		}
		data = data[valueLen:]
		n++
	}
	return n, true
}

// nextItem returns the bytes of the next item of a batch request that countItems accepted,
// and the rest of the request.
func nextItem(data []byte) (item, rest []byte) {
	_, _, tagLen := protowire.ConsumeTag(data)
	item, valueLen := protowire.ConsumeBytes(data[tagLen:])
	return item, data[tagLen+valueLen:]
}

// nextField reads one field of an item: its number, wire type and value bytes, or for a
// varint its value. ok is false when the field is malformed or of another wire type.
func nextField(data []byte) (num protowire.Number, typ protowire.Type, value []byte, varint uint64, rest []byte, ok bool) {
	num, typ, tagLen := protowire.ConsumeTag(data)
	if tagLen < 0 {
		return 0, 0, nil, 0, nil, false
	}
	data = data[tagLen:]
	var n int
	switch typ {
	case protowire.BytesType:
		value, n = protowire.ConsumeBytes(data)
	case protowire.VarintType:
		varint, n = protowire.ConsumeVarint(data)
	default:
		return 0, 0, nil, 0, nil, false
	}
	if n < 0 {
		return 0, 0, nil, 0, nil, false
	}
	return num, typ, value, varint, data[n:], true
}

// namespaces copies namespace names, and reuses the copy when an item repeats the name of
// the item before it, as the items of one client's batch usually do.
type namespaces struct{ last string }

func (ns *namespaces) get(b []byte) string {
	if string(b) != ns.last {
		ns.last = string(b)
	}
	return ns.last
}

// decodeItems decodes each item of a batch request with decode, into one slice of T, and
// returns a pointer to each item's message M, which message finds in its T. The pointers are
// nil for a request without items, as proto.Unmarshal leaves them. ok is false when the request
// has a field other than its items, or decode returns false for an item.
func decodeItems[T, M any](data []byte, decode func(item []byte, dst *T) bool, message func(*T) *M) (ptrs []*M, ok bool) {
	n, ok := countItems(data)
	if !ok {
		return nil, false
	}
	if n == 0 {
		return nil, true
	}

	items := make([]T, n)
	ptrs = make([]*M, n)
	for i := range items {
		var item []byte
		item, data = nextItem(data)
		if !decode(item, &items[i]) {
			return nil, false
		}
		ptrs[i] = message(&items[i])
	}
	return ptrs, true
}

// decodeGetCounts decodes data into m and reports true, or reports false and leaves m
// unchanged when data needs proto.Unmarshal.
func decodeGetCounts(data []byte, m *counterv1.GetCountsRequest) bool {
	var ns namespaces
	gets, ok := decodeItems(data, func(item []byte, g *counterv1.GetCountRequest) bool {
		for len(item) > 0 {
			num, typ, value, _, rest, ok := nextField(item)
			if !ok || typ != protowire.BytesType || !utf8.Valid(value) {
				return false
			}
			switch num {
			case fieldNamespace:
				g.Namespace = ns.get(value)
			case fieldCounterName:
				g.CounterName = string(value)
			default:
				return false
			}
			item = rest
		}
		return true
	}, func(g *counterv1.GetCountRequest) *counterv1.GetCountRequest { return g })
	if !ok {
		return false
	}

	m.Reset()
	m.Gets = gets
	return true
}

// addItem is one item of an AddCounts request, with room for its token and the token's time.
// An item has at most one of each, however often their fields repeat.
type addItem struct {
	add   counterv1.AddCountRequest
	token counterv1.IdempotencyToken
	time  timestamppb.Timestamp
}

// decodeAddCounts decodes data into m and reports true, or reports false and leaves m
// unchanged when data needs proto.Unmarshal.
func decodeAddCounts(data []byte, m *counterv1.AddCountsRequest) bool {
	var ns namespaces
	adds, ok := decodeItems(data, func(item []byte, dst *addItem) bool {
		a := &dst.add
		for len(item) > 0 {
			num, typ, value, varint, rest, ok := nextField(item)
			if !ok {
				return false
			}
			switch {
			case num == fieldNamespace && typ == protowire.BytesType && utf8.Valid(value):
				a.Namespace = ns.get(value)
			case num == fieldCounterName && typ == protowire.BytesType && utf8.Valid(value):
				a.CounterName = string(value)
			case num == fieldDelta && typ == protowire.VarintType:
				a.Delta = int64(varint)
			case num == fieldToken && typ == protowire.BytesType:
				a.IdempotencyToken = &dst.token
				if !decodeToken(value, &dst.token, &dst.time) {
					return false
				}
			default:
				return false
			}
			item = rest
		}
		return true
	}, func(dst *addItem) *counterv1.AddCountRequest { return &dst.add })
	if !ok {
		return false
	}

	m.Reset()
	m.Adds = adds
	return true
}

// decodeToken merges an IdempotencyToken's bytes into t, as protobuf merges a message field
// that appears more than once. A generation time goes to ts.
func decodeToken(data []byte, t *counterv1.IdempotencyToken, ts *timestamppb.Timestamp) bool {
	for len(data) > 0 {
		num, typ, value, _, rest, ok := nextField(data)
		if !ok || typ != protowire.BytesType {
			return false
		}
		switch num {
		case fieldTokenString:
			if !utf8.Valid(value) {
				return false
			}
			t.Token = string(value)
		case fieldGenerationTime:
			t.GenerationTime = ts
			if !decodeTimestamp(value, ts) {
				return false
			}
		default:
			return false
		}
		data = rest
	}
	return true
}

// decodeTimestamp merges a google.protobuf.Timestamp's bytes into ts.
func decodeTimestamp(data []byte, ts *timestamppb.Timestamp) bool {
	for len(data) > 0 {
		num, typ, _, varint, rest, ok := nextField(data)
		if !ok || typ != protowire.VarintType {
			return false
		}
		switch num {
		case fieldSeconds:
			ts.Seconds = int64(varint)
		case fieldNanos:
			ts.Nanos = int32(varint)
		default:
			return false
		}
		data = rest
	}
	return true
}
