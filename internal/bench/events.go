package bench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// EventCounter counts the events of one streamed response, fed one line at
// a time as the lines arrive.
type EventCounter interface {
	// Line takes one line without its terminator ("\n" or "\r\n") and
	// reports whether it completed the first event that carries generated
	// text, which marks the time to first token.
	Line(line []byte) (firstContent bool)
	// Events is the number of data events received before the end marker.
	Events() int
	// Complete reports whether the end marker arrived and nothing followed.
	Complete() bool
}

// SSECounter counts the data events of an OpenAI-style server-sent event
// stream: events up to "data: [DONE]", which is not itself counted.
// Comment lines and events without data are ignored, as EventSource does.
type SSECounter struct {
	events, content, afterDone int
	done                       bool
	// state of the event being read
	hasData, dataContent, dataDone bool
}

var doneData = []byte("[DONE]")

// Line implements EventCounter.
func (c *SSECounter) Line(line []byte) bool {
	if len(line) == 0 {
		return c.dispatch()
	}
	if line[0] == ':' {
		return false
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	if string(field) != "data" {
		return false
	}
	if !c.hasData && bytes.Equal(value, doneData) {
		c.dataDone = true
	} else {
		c.dataDone = false
	}
	c.hasData = true
	if hasContent(value) {
		c.dataContent = true
	}
	return false
}

// dispatch ends the event being read, at a blank line.
func (c *SSECounter) dispatch() bool {
	if !c.hasData {
		return false
	}
	first := false
	switch {
	case c.done:
		c.afterDone++
	case c.dataDone:
		c.done = true
	default:
		c.events++
		if c.dataContent {
			c.content++
			first = c.content == 1
		}
	}
	c.hasData, c.dataContent, c.dataDone = false, false, false
	return first
}

// Events implements EventCounter.
func (c *SSECounter) Events() int { return c.events }

// Complete implements EventCounter.
func (c *SSECounter) Complete() bool { return c.done && c.afterDone == 0 && !c.hasData }

// NDJSONCounter counts the lines of an Ollama NDJSON stream up to and
// including the one with "done":true.
type NDJSONCounter struct {
	events, content, afterDone int
	done                       bool
}

// Line implements EventCounter.
func (c *NDJSONCounter) Line(line []byte) bool {
	if len(bytes.TrimSpace(line)) == 0 {
		return false
	}
	if c.done {
		c.afterDone++
		return false
	}
	c.events++
	if isDone(line) {
		c.done = true
	}
	if hasContent(line) {
		c.content++
		return c.content == 1
	}
	return false
}

// Events implements EventCounter.
func (c *NDJSONCounter) Events() int { return c.events }

// Complete implements EventCounter.
func (c *NDJSONCounter) Complete() bool { return c.done && c.afterDone == 0 }

var (
	contentKey = []byte(`"content":`)
	doneKey    = []byte(`"done":`)
)

// hasContent reports whether a JSON document has a "content" key with a
// non-empty string value. It is a byte scan, not a parse, so the load
// generator spends little CPU beside the processes it measures.
func hasContent(b []byte) bool {
	for {
		i := bytes.Index(b, contentKey)
		if i < 0 {
			return false
		}
		b = bytes.TrimLeft(b[i+len(contentKey):], " \t")
		if len(b) >= 2 && b[0] == '"' && b[1] != '"' {
			return true
		}
	}
}

// isDone reports whether a JSON document has "done": true.
func isDone(b []byte) bool {
	for {
		i := bytes.Index(b, doneKey)
		if i < 0 {
			return false
		}
		b = bytes.TrimLeft(b[i+len(doneKey):], " \t")
		if bytes.HasPrefix(b, []byte("true")) {
			return true
		}
	}
}

// maxLine bounds one line of a stream.
const maxLine = 1 << 20

// errLineTooLong is returned for a line longer than maxLine.
var errLineTooLong = errors.New("stream line too long")

// ReadLines feeds every line of r to c and calls onFirst when c reports the
// first event with content. It returns nil at the end of r.
func ReadLines(br *bufio.Reader, c EventCounter, onFirst func()) error {
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(line) > maxLine {
				return errLineTooLong
			}
			long = append(long, line...)
			continue
		}
		if long != nil {
			line = append(long, line...)
			long = nil
			if len(line) > maxLine {
				return errLineTooLong
			}
		}
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			if c.Line(line) && onFirst != nil {
				onFirst()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
