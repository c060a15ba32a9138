package athenz

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// timestampLayout is the RDL timestamp layout: UTC, exactly three fractional digits.
const timestampLayout = "2006-01-02T15:04:05.000Z"

// Timestamp is an RDL timestamp. It always marshals as UTC with exactly millisecond
// precision (2024-01-02T03:04:05.600Z), because signatures over Athenz documents are
// computed on that form, and it parses 0 to 3 fractional digits as the Athenz clients do.
type Timestamp struct {
	time.Time
}

// NewTimestamp returns t truncated to milliseconds, in UTC.
func NewTimestamp(t time.Time) Timestamp {
	return Timestamp{t.UTC().Truncate(time.Millisecond)}
}

// ParseTimestamp parses an RDL timestamp: RFC 3339 in UTC ("Z"), with 0 to 3 fractional
// digits. Offsets other than Z and more than millisecond precision are refused, so that a
// timestamp re-serialises to the bytes a signature covers.
func ParseTimestamp(s string) (Timestamp, error) {
	if !strings.HasSuffix(s, "Z") {
		return Timestamp{}, fmt.Errorf("timestamp %q: must be UTC and end in Z", s)
	}
	// time.Parse also takes ',' as the decimal separator, which would slip any number of
	// fractional digits past the check below; the RDL form only ever uses '.'.
	if strings.IndexByte(s, ',') >= 0 {
		return Timestamp{}, fmt.Errorf("timestamp %q: fractional seconds must follow '.', not ','", s)
	}
	if dot := strings.IndexByte(s, '.'); dot >= 0 {
		if frac := len(s) - dot - 2; frac < 1 || frac > 3 {
			return Timestamp{}, fmt.Errorf("timestamp %q: want 1 to 3 fractional digits, got %d", s, frac)
		}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Timestamp{}, fmt.Errorf("timestamp %q: not an RFC 3339 time such as 2024-01-02T03:04:05.000Z", s)
	}
	return NewTimestamp(t), nil
}

// String returns the RDL form, or "" for the zero timestamp.
func (t Timestamp) String() string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timestampLayout)
}

// MarshalJSON writes the RDL form as a JSON string.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.String())
}

// UnmarshalJSON reads a JSON string in RDL form. A JSON null leaves t unchanged, as the
// encoding/json convention asks, so an optional timestamp sent as null reads as absent.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: want a string, got %s", b)
	}
	v, err := ParseTimestamp(s)
	if err != nil {
		return err
	}
	*t = v
	return nil
}
