package server

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// jsonCodec is Connect's JSON codec with two changes. Fields with zero values are written, so
// GetCount on a counter at zero returns {"count":"0"} rather than {}. Unknown fields are
// rejected instead of ignored, so a misspelled "delta" fails instead of adding 0.
type jsonCodec struct{ name string }

func (c jsonCodec) Name() string { return c.name }

func (c jsonCodec) Marshal(message any) ([]byte, error) {
	m, ok := message.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", message)
	}
	return protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
}

func (c jsonCodec) Unmarshal(data []byte, message any) error {
	m, ok := message.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", message)
	}
	if err := protojson.Unmarshal(data, m); err != nil {
		return fmt.Errorf("invalid JSON for %s: %w; fields take their JSON names, such as counterName and idempotencyToken", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}
