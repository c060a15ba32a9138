package policy

import (
	"encoding/json"
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// jsonTree builds, for valid JSON, the same yaml.Node tree that yaml.v3 builds (kinds,
// tags, values, lines and columns), about ten times faster and with far less garbage: a
// domain export with a million members is tens of megabytes of JSON, and yaml.v3's
// general YAML scanner dominated loading it. Callers check json.Valid first; a test holds
// the trees equal to yaml.v3's on the test data and on fuzzed input.
func jsonTree(data []byte) (*yaml.Node, error) {
	s := &jsonScanner{data: data, line: 1, col: 1}
	s.space()
	n, err := s.value()
	if err != nil {
		return nil, err
	}
	s.space()
	if s.pos != len(s.data) {
		return nil, fmt.Errorf("line %d: unexpected data after the JSON value", s.line)
	}
	return n, nil
}

// jsonScanner walks valid JSON, tracking yaml.v3's positions: 1-based lines (a "\r\n"
// pair or a lone "\r" or "\n" ends a line) and 1-based columns counted in characters.
type jsonScanner struct {
	data      []byte
	pos       int
	line, col int
	slab      []yaml.Node // nodes are allocated in blocks
}

func (s *jsonScanner) node(kind yaml.Kind, tag string) *yaml.Node {
	if len(s.slab) == 0 {
		s.slab = make([]yaml.Node, 512)
	}
	n := &s.slab[0]
	s.slab = s.slab[1:]
	n.Kind, n.Tag, n.Line, n.Column = kind, tag, s.line, s.col
	return n
}

// advance consumes n bytes that contain no line breaks.
func (s *jsonScanner) advance(n int) {
	for _, c := range s.data[s.pos : s.pos+n] {
		if c&0xC0 != 0x80 { // count characters, not UTF-8 continuation bytes
			s.col++
		}
	}
	s.pos += n
}

func (s *jsonScanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t':
			s.pos++
			s.col++
		case '\n':
			s.pos++
			s.line, s.col = s.line+1, 1
		case '\r':
			s.pos++
			if s.pos < len(s.data) && s.data[s.pos] == '\n' {
				s.pos++
			}
			s.line, s.col = s.line+1, 1
		default:
			return
		}
	}
}

func (s *jsonScanner) value() (*yaml.Node, error) {
	if s.pos >= len(s.data) {
		return nil, fmt.Errorf("line %d: unexpected end of JSON", s.line)
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		return s.str()
	case c == 't' || c == 'f':
		n := s.node(yaml.ScalarNode, "!!bool")
		return s.literal(n, map[bool]string{true: "true", false: "false"}[c == 't'])
	case c == 'n':
		return s.literal(s.node(yaml.ScalarNode, "!!null"), "null")
	default:
		return s.number()
	}
}

func (s *jsonScanner) literal(n *yaml.Node, word string) (*yaml.Node, error) {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return nil, fmt.Errorf("line %d: invalid JSON literal", s.line)
	}
	n.Value = word
	s.advance(len(word))
	return n, nil
}

func (s *jsonScanner) number() (*yaml.Node, error) {
	start, float := s.pos, false
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c == '.' || c == 'e' || c == 'E' {
			float = true
		} else if !(c == '-' || c == '+' || ('0' <= c && c <= '9')) {
			break
		}
		s.pos++
	}
	if s.pos == start {
		return nil, fmt.Errorf("line %d: unexpected character %q", s.line, s.data[start])
	}
	n := s.node(yaml.ScalarNode, numberTag(string(s.data[start:s.pos]), float))
	n.Value = string(s.data[start:s.pos])
	s.col += s.pos - start
	return n, nil
}

// numberTag resolves a JSON number as yaml.v3 does: an integer that fits 64 bits is
// !!int, any other number that fits a float64 is !!float, and the rest (1e999) is !!str.
func numberTag(v string, float bool) string {
	if !float {
		if _, err := strconv.ParseInt(v, 10, 64); err == nil {
			return "!!int"
		}
		if _, err := strconv.ParseUint(v, 10, 64); err == nil {
			return "!!int"
		}
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return "!!float"
	}
	return "!!str"
}

func (s *jsonScanner) str() (*yaml.Node, error) {
	n := s.node(yaml.ScalarNode, "!!str")
	n.Style = yaml.DoubleQuotedStyle
	start, escaped := s.pos, false
	s.pos++ // opening quote
	for s.pos < len(s.data) && s.data[s.pos] != '"' {
		if s.data[s.pos] == '\\' {
			escaped = true
			s.pos++
		}
		s.pos++
	}
	if s.pos >= len(s.data) {
		return nil, fmt.Errorf("line %d: unterminated string", s.line)
	}
	s.pos++ // closing quote
	raw := s.data[start:s.pos]
	s.pos = start
	s.advance(len(raw)) // valid JSON strings hold no raw line breaks
	if !escaped {
		n.Value = string(raw[1 : len(raw)-1])
		return n, nil
	}
	if err := json.Unmarshal(raw, &n.Value); err != nil {
		return nil, fmt.Errorf("line %d: %w", n.Line, err)
	}
	return n, nil
}

func (s *jsonScanner) object() (*yaml.Node, error) {
	n := s.node(yaml.MappingNode, "!!map")
	n.Style = yaml.FlowStyle
	s.advance(1)
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.advance(1)
		return n, nil
	}
	for {
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return nil, fmt.Errorf("line %d: want an object key", s.line)
		}
		k, err := s.str()
		if err != nil {
			return nil, err
		}
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return nil, fmt.Errorf("line %d: want ':'", s.line)
		}
		s.advance(1)
		s.space()
		v, err := s.value()
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, k, v)
		s.space()
		if s.pos < len(s.data) && s.data[s.pos] == ',' {
			s.advance(1)
			continue
		}
		if s.pos < len(s.data) && s.data[s.pos] == '}' {
			s.advance(1)
			return n, nil
		}
		return nil, fmt.Errorf("line %d: want ',' or '}'", s.line)
	}
}

func (s *jsonScanner) array() (*yaml.Node, error) {
	n := s.node(yaml.SequenceNode, "!!seq")
	n.Style = yaml.FlowStyle
	s.advance(1)
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.advance(1)
		return n, nil
	}
	for {
		s.space()
		v, err := s.value()
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, v)
		s.space()
		if s.pos < len(s.data) && s.data[s.pos] == ',' {
			s.advance(1)
			continue
		}
		if s.pos < len(s.data) && s.data[s.pos] == ']' {
			s.advance(1)
			return n, nil
		}
		return nil, fmt.Errorf("line %d: want ',' or ']'", s.line)
	}
}
