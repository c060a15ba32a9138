package yamlconfig

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	type leaf struct {
		A string `yaml:"a"`
	}
	type inner struct {
		Leaf    leaf `yaml:",inline"`
		B       int  `yaml:"b"`
		skipped int
	}
	type config struct {
		Listen  inner            `yaml:"listen"`
		List    []leaf           `yaml:"list"`
		Ptr     *leaf            `yaml:"ptr"`
		Map     map[string]*leaf `yaml:"map"`
		Wait    time.Duration    `yaml:"wait"`
		At      time.Time        `yaml:"at"`
		Ignored string           `yaml:"-"`
		NoTag   string
	}
	want := []string{"listen", "listen.a", "listen.b", "list", "list.a", "ptr", "ptr.a", "map", "map.a", "wait", "at", "notag"}
	if got := Keys(reflect.TypeFor[config]()); !slices.Equal(got, want) {
		t.Fatalf("Keys = %v\nwant   %v", got, want)
	}
}
