package yamlconfig

import (
	"reflect"
	"strings"
	"time"
)

// Keys lists every key a config type accepts, as dotted paths in field order
// ("listen", "listen.grpc", ...). It follows yaml tags through structs and through
// pointers, slices and maps whose elements are structs (an untagged field is its
// lower-cased name, as yaml.v3 decodes it); time.Duration, time.Time and other
// non-struct types end a path. Doc tests use it so that a config field cannot be added
// without its documentation.
func Keys(t reflect.Type) []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() || t == reflect.TypeFor[time.Duration]() {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if strings.Contains(opts, "inline") {
				walk(prefix, f.Type)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name) // yaml.v3's key for an untagged field
			}
			out = append(out, prefix+name)
			walk(prefix+name+".", f.Type)
		}
	}
	walk("", t)
	return out
}
