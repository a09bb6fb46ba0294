package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/anthropic"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/backend"
	"github.com/sovra/sovra/node/router"
)

// Error is an API error with everything the OpenAI error object carries.
// Handlers return it (or a backend sentinel); errorHandler renders it in
// the format of the route's family.
type Error struct {
	Status     int
	Type       string
	Code       string
	Param      string
	Message    string
	RetryAfter int // seconds; 0 leaves the header out
}

func (e *Error) Error() string { return e.Message }

// OpenAI error types.
const (
	typeInvalid     = "invalid_request_error"
	typeServer      = "server_error"
	typeRateLimit   = "rate_limit_error"
	typeUnavailable = "service_unavailable_error"
)

// StatusClientClosed is logged for requests whose client hung up.
const StatusClientClosed = 499

func invalidParam(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: typeInvalid, Param: param, Message: fmt.Sprintf(format, args...)}
}

// unsupportedParam refuses a parameter the server cannot honour.
func unsupportedParam(param, format string, args ...any) *Error {
	e := invalidParam(param, format, args...)
	e.Code = "unsupported_parameter"
	return e
}

// modelNotFound is the answer to a request for a model that is not
// served, the same on every route; it repeats the start of the name only.
func modelNotFound(model string) *Error {
	return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "model_not_found", Param: "model",
		Message: fmt.Sprintf("The model '%s' does not exist or is not served by this cluster.", cut(model))}
}

// notReady answers a request this node cannot judge yet: it has not
// caught up with the cluster's state (or has no leader).
func notReady(reason error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "node_not_ready",
		Message: "This node is not ready to serve this model yet (" + reason.Error() + "); retry shortly, or use another node."}
}

// isModelNotFound reports whether err says the requested model is not
// served (a cloud model's refusal says why in its own words).
func isModelNotFound(err error) bool {
	if errors.Is(err, router.ErrInvalidModelName) || errors.Is(err, router.ErrCloudModel) {
		return false
	}
	return errors.Is(err, router.ErrModelNotServed) || errors.Is(err, backend.ErrModelNotFound)
}

// toAPIError maps any error a handler returns to an API error. It is the one
// place where domain errors become HTTP statuses.
func toAPIError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		return fiberError(fe)
	}
	var le *router.LoadingError
	if errors.As(err, &le) {
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "model_loading",
			Message:    fmt.Sprintf("The model '%s' is loading; retry shortly. (%s)", le.Deployment, le.Progress),
			RetryAfter: max(1, int(le.RetryAfter.Seconds()))}
	}
	if e := quotaError(err); e != nil {
		return e
	}
	if e := routingError(err); e != nil {
		return e
	}
	switch {
	case errors.Is(err, auth.ErrUnauthenticated), errors.Is(err, auth.ErrForbidden),
		errors.Is(err, auth.ErrJurisdictionForbidden), errors.Is(err, router.ErrModelForbidden):
		return authError(err)
	case errors.Is(err, router.ErrInvalidModelName):
		return &Error{Status: http.StatusBadRequest, Type: typeInvalid, Code: "invalid_model_name", Param: "model", Message: err.Error()}
	case errors.Is(err, router.ErrModelNotServed):
		return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "model_not_found", Param: "model", Message: err.Error()}
	case errors.Is(err, router.ErrOptionRefused):
		return optionRefused(err)
	case errors.Is(err, backend.ErrModelNotFound):
		return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "model_not_found", Param: "model", Message: err.Error()}
	case errors.Is(err, backend.ErrBadRequest):
		return &Error{Status: http.StatusBadRequest, Type: typeInvalid, Message: err.Error()}
	case errors.Is(err, backend.ErrOverloaded):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "backend_overloaded", Message: "The model is at capacity; retry shortly. (" + err.Error() + ")", RetryAfter: 1}
	case errors.Is(err, backend.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "backend_unavailable", Message: "The inference backend is unreachable; retry shortly.", RetryAfter: 2}
	case errors.Is(err, backend.ErrTruncated), errors.Is(err, backend.ErrFailed):
		return &Error{Status: http.StatusBadGateway, Type: typeServer, Code: "backend_error", Message: err.Error()}
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "no_leader", Message: err.Error(), RetryAfter: 1}
	case errors.Is(err, cluster.ErrIndeterminate):
		return &Error{Status: http.StatusGatewayTimeout, Type: typeServer, Code: "indeterminate",
			Message: err.Error() + "; retry with the same Idempotency-Key to learn the outcome"}
	case errors.Is(err, cluster.ErrBadToken):
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "bad_token", Message: err.Error()}
	case errors.Is(err, cluster.ErrNotPeer):
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "not_peer", Message: err.Error()}
	case errors.Is(err, cluster.ErrMemberExists):
		return &Error{Status: http.StatusConflict, Type: typeInvalid, Code: "member_exists", Message: err.Error()}
	case errors.Is(err, cluster.ErrStorage):
		return &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "storage_unavailable", Message: err.Error(), RetryAfter: 5}
	case errors.Is(err, cluster.ErrUpgradeRequired):
		return &Error{Status: http.StatusConflict, Type: typeInvalid, Code: "upgrade_required", Message: err.Error()}
	case errors.Is(err, cluster.ErrRestoreNotForced):
		return &Error{Status: http.StatusConflict, Type: typeInvalid, Code: "restore_not_forced", Param: "force", Message: err.Error()}
	case errors.Is(err, cluster.ErrInvalid), errors.Is(err, state.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Type: typeInvalid, Message: err.Error()}
	case errors.Is(err, cluster.ErrNotMember), errors.Is(err, state.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "not_found", Message: err.Error()}
	case errors.Is(err, state.ErrExists), errors.Is(err, state.ErrConflict):
		return &Error{Status: http.StatusConflict, Type: typeInvalid, Code: "conflict", Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return &Error{Status: StatusClientClosed, Type: typeInvalid, Code: "client_closed", Message: "client closed the request"}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusGatewayTimeout, Type: typeServer, Code: "timeout", Message: "the backend did not answer in time"}
	}
	return &Error{Status: http.StatusInternalServerError, Type: typeServer, Code: "internal_error", Message: "internal error"}
}

// optionRefused is the answer to a request setting an option clients may
// not set, naming it.
func optionRefused(err error) *Error {
	e := &Error{Status: http.StatusBadRequest, Type: typeInvalid, Code: "unsupported_parameter", Param: "options", Message: err.Error()}
	var oe *router.OptionError
	if errors.As(err, &oe) {
		e.Param = "options." + oe.Option
		if oe.Invalid {
			e.Code = "" // allowed, but not with this value
		}
	}
	return e
}

func fiberError(fe *fiber.Error) *Error {
	e := &Error{Status: fe.Code, Type: typeInvalid, Message: fe.Message}
	switch fe.Code {
	case http.StatusBadRequest:
		// Only fasthttp's parser fails a request with a Fiber 400, and its
		// message quotes the request's whole header block, credentials
		// included.
		e.Message = "The request could not be read: it is not valid HTTP/1.1 (its request line, headers or body framing)."
	case http.StatusNotFound:
		e.Code = "unknown_url"
	case http.StatusMethodNotAllowed:
		e.Code = "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		e.Code = "request_too_large"
		e.Message = "The request body is larger than this server accepts."
	case http.StatusTooManyRequests:
		e.Type = typeRateLimit
	}
	if fe.Code >= 500 {
		e.Type = typeServer
	}
	return e
}

// openAIBody is the OpenAI error object.
type openAIBody struct {
	Error openAIError `json:"error"`
}

type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *Error) openAI() openAIBody {
	b := openAIBody{Error: openAIError{Message: e.Message, Type: e.Type}}
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code != "" {
		b.Error.Code = &e.Code
	}
	return b
}

// family is the error format of a route.
type family int

const (
	familyOpenAI family = iota
	familyAnthropic
	familyOllama
)

// familyOf is the family of a route's path. Routes match whatever the
// case of the path ("/API/CHAT" is /api/chat), so the family does too.
func familyOf(path string) family {
	path = strings.ToLower(path)
	switch {
	case strings.HasPrefix(path, "/v1/messages"):
		return familyAnthropic
	case strings.HasPrefix(path, "/api/"), strings.HasPrefix(path, "/internal/v1/forward/api/"):
		return familyOllama
	}
	return familyOpenAI
}

// errorBody renders e in the family's format.
func errorBody(f family, e *Error) any {
	switch f {
	case familyAnthropic:
		b := anthropic.NewError(e.Status, e.Message)
		b.Error.Type = anthropicType(e.Status)
		return b
	case familyOllama:
		return map[string]string{"error": e.Message}
	}
	return e.openAI()
}

// anthropicType is the error type Anthropic's API gives with a status.
// Ollama's anthropic.NewError calls 413 and the other client errors
// api_error, which Anthropic keeps for its own failures.
func anthropicType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	}
	if status >= 400 && status < 500 {
		return "invalid_request_error"
	}
	return "api_error"
}

// inBandError is the payload that ends a stream that fails after its first
// byte.
func inBandError(f family, e *Error) []byte {
	b, _ := json.Marshal(errorBody(f, e))
	return b
}

// writeError sends e as the response.
func writeError(c *fiber.Ctx, e *Error) error {
	if e.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="sovra"`)
	}
	status := e.Status
	if status == StatusClientClosed {
		return nil
	}
	if len(e.Message) > maxMessage {
		cp := *e
		cp.Message = cutTo(e.Message, maxMessage)
		e = &cp
	}
	return c.Status(status).JSON(errorBody(familyOf(c.Path()), e))
}

// maxMessage bounds an error message: whatever a message quotes of a
// request, the answer stays small.
const maxMessage = 1024

// maxEcho is how much of a client's string an error message repeats.
const maxEcho = 48

// cut is the start of s, at most maxEcho bytes, marked when cut.
func cut(s string) string { return cutTo(s, maxEcho) }

// cutTo is the start of s, at most n bytes of whole runes, marked when
// cut.
func cutTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
