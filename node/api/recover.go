package api

import (
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"
)

// errPanic is the answer to a request whose handler panicked.
func errPanic(id string) *Error {
	return &Error{Status: http.StatusInternalServerError, Type: typeServer, Code: "internal_error",
		Message: "internal error; request id " + id}
}

// recoverPanic turns a panic in a later handler into a 500 that names the
// request id, logged with its stack, so one bad request does not end the
// node.
func (s *Server) recoverPanic(c *fiber.Ctx) error {
	return s.safely(requestInfo(c).id, c.Next)
}

// safely runs fn, turning a panic into the error the client of request
// id gets. Streams run their backend call through it on a goroutine of
// their own.
func (s *Server) safely(id string, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = s.panicked(id, v)
		}
	}()
	return fn()
}

// panicked logs a recovered panic with its stack and returns the error
// the client gets.
func (s *Server) panicked(id string, v any) error {
	s.log.Error("panic", zap.String("id", id), zap.String("panic", fmt.Sprint(v)), zap.ByteString("stack", debug.Stack()))
	return errPanic(id)
}
