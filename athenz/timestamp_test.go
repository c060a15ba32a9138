package athenz_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/athenz-mesh/athenz-mesh/athenz"
)

func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    string // the RDL form after parsing; "" when an error is expected
		wantErr string // substring of the error
	}{
		{"milliseconds", "2024-01-02T03:04:05.600Z", "2024-01-02T03:04:05.600Z", ""},
		{"no fraction", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000Z", ""},
		{"one digit", "2024-01-02T03:04:05.6Z", "2024-01-02T03:04:05.600Z", ""},
		{"two digits", "2024-01-02T03:04:05.06Z", "2024-01-02T03:04:05.060Z", ""},
		{"epoch", "1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00.000Z", ""},
		{"leap day", "2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999Z", ""},
		{"four digits", "2024-01-02T03:04:05.6001Z", "", "want 1 to 3 fractional digits, got 4"},
		{"nanoseconds", "2024-01-02T03:04:05.123456789Z", "", "got 9"},
		{"comma separator", "2024-01-02T03:04:05,123456789Z", "", "must follow '.'"},
		{"dot without digits", "2024-01-02T03:04:05.Z", "", "got 0"},
		{"offset", "2024-01-02T03:04:05.000+00:00", "", "must be UTC and end in Z"},
		{"lower-case z", "2024-01-02T03:04:05.000z", "", "must be UTC"},
		{"lower-case t", "2024-01-02t03:04:05.000Z", "", "not an RFC 3339 time"},
		{"date only", "2024-01-02Z", "", "not an RFC 3339 time"},
		{"bad month", "2024-13-02T03:04:05.000Z", "", "not an RFC 3339 time"},
		{"empty", "", "", "must be UTC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := athenz.ParseTimestamp(tc.input)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseTimestamp(%q) = %v, %v; want error containing %q", tc.input, ts, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTimestamp(%q): %v", tc.input, err)
			}
			if got := ts.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if ts.Location() != time.UTC {
				t.Errorf("location %v, want UTC", ts.Location())
			}
		})
	}
}

func TestNewTimestampTruncatesToUTCMilliseconds(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"sub-millisecond dropped", time.Date(2024, 1, 2, 3, 4, 5, 999_999_999, time.UTC), "2024-01-02T03:04:05.999Z"},
		{"converted to UTC", time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", -7*3600)), "2024-01-02T10:04:05.000Z"},
		{"zero stays zero", time.Time{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := athenz.NewTimestamp(tc.in).String(); got != tc.want {
				t.Errorf("NewTimestamp(%v).String() = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestTimestampJSON(t *testing.T) {
	type doc struct {
		At       athenz.Timestamp  `json:"at"`
		Optional athenz.Timestamp  `json:"optional,omitzero"`
		Pointer  *athenz.Timestamp `json:"pointer,omitempty"`
	}
	tests := []struct {
		name     string
		input    string
		wantErr  string
		wantJSON string
	}{
		{"round trip", `{"at":"2024-01-02T03:04:05.6Z"}`, "", `{"at":"2024-01-02T03:04:05.600Z"}`},
		{"null leaves zero", `{"at":"2024-01-02T03:04:05.600Z","optional":null,"pointer":null}`, "", `{"at":"2024-01-02T03:04:05.600Z"}`},
		{"pointer kept", `{"at":"2024-01-02T03:04:05.600Z","pointer":"1970-01-01T00:00:01Z"}`, "",
			`{"at":"2024-01-02T03:04:05.600Z","pointer":"1970-01-01T00:00:01.000Z"}`},
		{"number refused", `{"at":1704164645}`, "want a string", ""},
		{"bad text refused", `{"at":"yesterday"}`, "must be UTC", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			err := json.Unmarshal([]byte(tc.input), &d)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Unmarshal(%s) error %v, want %q", tc.input, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", tc.input, err)
			}
			out, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.wantJSON {
				t.Errorf("Marshal = %s, want %s", out, tc.wantJSON)
			}
		})
	}
}

// FuzzParseTimestamp checks that whatever ParseTimestamp accepts prints in the RDL form
// and parses back to the same instant. The zero instant (0001-01-01T00:00:00Z) prints as
// "" by contract, as rdl.Timestamp does, so it has no second parse.
func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{
		"2024-01-02T03:04:05.600Z", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.6Z",
		"0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2024-01-02T03:04:05,1Z",
		"2024-01-02T03:04:05.000+00:00", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := athenz.ParseTimestamp(s)
		if err != nil {
			return
		}
		out := ts.String()
		if ts.IsZero() {
			if out != "" {
				t.Fatalf("zero timestamp from %q prints %q, want \"\"", s, out)
			}
			return
		}
		if len(out) != len("2006-01-02T15:04:05.000Z") || !strings.HasSuffix(out, "Z") {
			t.Fatalf("%q prints as %q, not the RDL form", s, out)
		}
		again, err := athenz.ParseTimestamp(out)
		if err != nil {
			t.Fatalf("%q prints as %q, which does not parse: %v", s, out, err)
		}
		if !again.Equal(ts.Time) || again.String() != out {
			t.Fatalf("%q: parse→String→parse gives %v, want %v", s, again, ts)
		}
	})
}
