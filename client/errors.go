package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Sentinels an *Error matches with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrConflict      = errors.New("conflict")
	ErrNoLeader      = errors.New("no leader")
	ErrIndeterminate = errors.New("outcome indeterminate")
	ErrUnauthorized  = errors.New("unauthorized")
	ErrForbidden     = errors.New("forbidden")
	ErrBadRequest    = errors.New("bad request")
	ErrRateLimited   = errors.New("rate limited")
	ErrUnavailable   = errors.New("unavailable")
)

// Error is an error answer of the API: its HTTP status and the fields of
// its error body.
type Error struct {
	Status  int
	Type    string
	Code    string
	Message string
	// Param names the request field the error is about, when it is one.
	Param string
	// RetryAfter is the Retry-After the server sent (0: none).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := "sovra: " + strconv.Itoa(e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Param != "" {
		s += " (" + e.Param + ")"
	}
	return s + ": " + e.Message
}

// Is matches the sentinels by the error's code, or failing that its
// status.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case "no_leader":
		return target == ErrNoLeader || target == ErrUnavailable
	case "indeterminate":
		return target == ErrIndeterminate
	}
	return target == sentinelOf(e.Status)
}

func sentinelOf(status int) error {
	switch status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusRequestEntityTooLarge:
		return ErrBadRequest
	case http.StatusTooManyRequests:
		return ErrRateLimited
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	}
	return nil
}

// errorBody is the API's error object (the OpenAI format).
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// parseError makes an *Error of an error answer; a body that is not the
// API's error object keeps its start as the message.
func parseError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	var b errorBody
	if err := json.Unmarshal(body, &b); err != nil || b.Error.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
		if len(body) > 0 {
			e.Message = string(body[:min(len(body), 200)])
		}
		return e
	}
	e.Message, e.Type = b.Error.Message, b.Error.Type
	if b.Error.Param != nil {
		e.Param = *b.Error.Param
	}
	if b.Error.Code != nil {
		e.Code = *b.Error.Code
	}
	return e
}
