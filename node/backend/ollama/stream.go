package ollama

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/node/backend"
)

// Chat and Generate read Ollama's NDJSON stream here rather than through
// api.Client: the client allocates and zeroes an 8 MB line buffer for every
// call and decodes each line twice, which cost sovra-bench 1-3 ms of CPU per
// request. Lines are read with a pooled buffer and decoded once.

// maxLine is the longest NDJSON line accepted, as in Ollama's client.
const maxLine = 8 << 20

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// streamNDJSON posts req to u and calls line for every line of the
// answer. line must not keep the slice.
func (c *Client) streamNDJSON(ctx context.Context, u *url.URL, req any, line func([]byte) error) error {
	body, err := encodeRequest(req)
	if err != nil {
		return fmt.Errorf("%w: encode request: %v", backend.ErrBadRequest, err)
	}
	resp, err := c.post(ctx, u, body)
	if err != nil {
		return mapErr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= http.StatusBadRequest {
		return responseError(resp)
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(resp.Body)
	defer func() { br.Reset(nil); readers.Put(br) }()
	return readLines(ctx, br, maxLine, line)
}

// post sends body to u. It builds the request from parts made once
// (net/http's NewRequestWithContext parses the URL and allocates the
// header every time) and, where Client.Do would add nothing, calls the
// transport itself, its errors wrapped as Do wraps them.
func (c *Client) post(ctx context.Context, u *url.URL, body []byte) (*http.Response, error) {
	hreq := (&http.Request{
		Method: http.MethodPost, URL: u, Host: u.Host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
	}).WithContext(ctx)
	if c.rt == nil {
		hreq.Header = c.header.Clone()
		return c.hc.Do(hreq)
	}
	hreq.Header = c.header
	resp, err := c.rt.RoundTrip(hreq)
	if err != nil {
		return nil, &url.Error{Op: "Post", URL: u.String(), Err: err}
	}
	return resp, nil
}

// readLines calls line for every line of br that is not blank, and fails
// with backend.ErrFailed on a line longer than max bytes (about: it may
// pass one up to max plus br's buffer).
func readLines(ctx context.Context, br *bufio.Reader, max int, line func([]byte) error) error {
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if long = append(long, chunk...); len(long) > max {
				return fmt.Errorf("%w: a line of the answer is over %d bytes", backend.ErrFailed, max)
			}
			continue
		}
		whole := chunk
		if long != nil {
			whole, long = append(long, chunk...), nil
		}
		if len(bytes.TrimSpace(whole)) > 0 {
			if lerr := line(whole); lerr != nil {
				return lerr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return mapErr(ctx, err)
		}
	}
}

// responseError maps an HTTP error answer from Ollama.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	se := api.StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	if json.Unmarshal(b, &se) != nil || se.ErrorMessage == "" {
		se.ErrorMessage = strings.TrimSpace(string(b))
	}
	return statusErr(se)
}

// decodeLine decodes one streamed message; an {"error": ...} line is a
// failure of the backend.
func decodeLine[R any](b []byte) (R, error) {
	var r R
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%w: unreadable line from ollama: %v", backend.ErrFailed, err)
	}
	if bytes.Contains(b, []byte(`"error"`)) { // rare: look at the top-level field
		var m struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(b, &m); err == nil && m.Error != "" {
			return r, fmt.Errorf("%w: %s", backend.ErrFailed, m.Error)
		}
	}
	return r, nil
}
