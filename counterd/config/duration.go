package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("5s", "1m30s") in YAML and JSON.
type Duration struct {
	time.Duration
	// invalid is the text of a value that did not parse. Decoding keeps going so that
	// Validate can report it with its field path.
	invalid string
}

// MarshalJSON writes the duration as a string such as "5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON accepts a duration string such as "250ms" or "1h". A value that does not parse
// is kept for Validate to report.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		d.invalid = string(data)
		return nil
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		d.invalid = s
		return nil
	}
	d.Duration = parsed
	return nil
}

var durationType = reflect.TypeOf(Duration{})

// invalidDurations walks v, a struct, and returns an error for each Duration that did not
// parse, named by its path of JSON field names.
func invalidDurations(v reflect.Value, path string) []error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return invalidDurations(v.Elem(), path)
	case reflect.Slice:
		var errs []error
		for i := range v.Len() {
			errs = append(errs, invalidDurations(v.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	case reflect.Struct:
		if v.Type() == durationType {
			if bad := v.Interface().(Duration).invalid; bad != "" {
				return []error{fmt.Errorf("%s: %q is not a duration; use a number with a unit such as \"500ms\", \"5s\" or \"1h\"", path, bad)}
			}
			return nil
		}
		var errs []error
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			child := name
			if path != "" {
				child = path + "." + name
			}
			errs = append(errs, invalidDurations(v.Field(i), child)...)
		}
		return errs
	}
	return nil
}
