package synchttp

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// net/http's Request.Write is general (trailers, chunked bodies, proxies,
// header sanitising) and costs a few microseconds a request in fmt,
// sorting and a transfer writer. The requests sovra sends (a JSON body
// of known length, a few plain headers) are written here directly, with
// the same bytes on the wire up to the order of the headers; anything
// else goes to net/http (TestWriteRequestAsNetHTTPDoes holds the two to
// the same request as a server reads it).

// defaultUserAgent is what net/http sends when the header names none.
const defaultUserAgent = "Go-http-client/1.1"

// writeRequest writes req to bw, closing its body as Request.Write does.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	if !plainRequest(req) {
		return req.Write(bw)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	ua := defaultUserAgent
	if v, ok := req.Header["User-Agent"]; ok {
		ua = v[0]
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\nUser-Agent: ")
	bw.WriteString(ua)
	if req.ContentLength > 0 || req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		bw.WriteString("\r\nContent-Length: ")
		var n [20]byte
		bw.Write(strconv.AppendInt(n[:0], req.ContentLength, 10))
	}
	for k, vs := range req.Header {
		if k == "User-Agent" {
			continue
		}
		for _, v := range vs {
			bw.WriteString("\r\n")
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
		}
	}
	_, err := bw.WriteString("\r\n\r\n")
	if req.Body == nil || req.Body == http.NoBody {
		return err
	}
	defer req.Body.Close()
	if err != nil {
		return err
	}
	n, err := io.CopyN(bw, req.Body, req.ContentLength)
	if err == nil {
		var extra [1]byte
		m, _ := io.ReadFull(req.Body, extra[:])
		n += int64(m)
	}
	if err == io.EOF || n != req.ContentLength {
		return fmt.Errorf("http: ContentLength=%d with Body length %d", req.ContentLength, n)
	}
	return err
}

// plainRequest says whether writeRequest writes req as net/http would:
// HTTP/1.1 to an origin server, a body of known length (or none), no
// trailers, and header fields that need neither sanitising nor a place
// of their own.
func plainRequest(req *http.Request) bool {
	switch {
	case req.URL == nil || req.URL.Opaque != "" || req.URL.User != nil || req.Close,
		len(req.TransferEncoding) > 0 || req.Trailer != nil,
		!plainHost(req.Host) || req.Host == "" && !plainHost(req.URL.Host),
		!slices.Contains(plainMethods, req.Method):
		return false
	}
	if req.Body == nil || req.Body == http.NoBody {
		if req.ContentLength != 0 {
			return false
		}
	} else if req.ContentLength <= 0 {
		return false
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			return false
		case "User-Agent":
			if len(vs) != 1 || vs[0] == "" {
				return false
			}
		}
		if http.CanonicalHeaderKey(k) != k || !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) || v != trimSpace(v) {
				return false
			}
		}
	}
	return true
}

// plainHost says whether net/http would send host as it is (it takes
// an IPv6 zone out).
func plainHost(host string) bool {
	return httpguts.ValidHostHeader(host) && !strings.Contains(host, "%")
}

var plainMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPatch}

// trimSpace trims what net/http trims from a header value.
func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
